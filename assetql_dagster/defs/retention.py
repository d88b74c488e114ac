"""Retention on a clock: a daily job deleting the working files of batches past the retention
(`assetql gc` in the daemon) and taking their images out of the catalog."""

import os
from collections.abc import Mapping

import dagster as dg

from assetql_dagster.pipeline.retention import RETENTION_ENV, collect_garbage, retention_days
from resources.catalog import AssetCatalog
from resources.storage import AssetStorage


@dg.op
def expired_working_files(context: dg.OpExecutionContext, storage: AssetStorage, catalog: AssetCatalog) -> None:
    """Deletes the raw images, thumbnails and versions of batches past the retention; records and packages stay."""
    days = retention_days()
    expired = collect_garbage(storage, days, catalog=catalog)
    for batch in expired:
        context.log.info(batch.describe("deleted"))
    context.log.info(f"retention {days} days: {len(expired)} batch(es), {sum(b.bytes for b in expired)} bytes deleted")


@dg.job(description="Deletes the working files of batches past $ASSETQL_RETENTION_DAYS (default 30), as `assetql gc` does.")
def retention_job():
    expired_working_files()


def retention_schedule(env: Mapping[str, str] = os.environ) -> dg.ScheduleDefinition:
    """Every night at 03:00 UTC. It starts on its own only where the deployment sets
    $ASSETQL_RETENTION_DAYS: deleting images is not something a first demo should find done for it."""
    running = bool(env.get(RETENTION_ENV, "").strip())
    return dg.ScheduleDefinition(
        name="retention_schedule",
        job=retention_job,
        cron_schedule="0 3 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
    )
