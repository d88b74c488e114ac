"""The AssetQL code location: one dynamically partitioned asset graph per batch.

This module only assembles what `defs/` declares. The environment picks the deployment:
`ASSETQL_STORAGE=local` (default) or `s3` chooses the storage, `ASSETQL_EXECUTOR=gpu` (default) or
`k8s` the executor, `ASSETQL_DROP_BUCKET` adds the S3 drop sensor, `ASSETQL_CAMPAIGNS` the campaign
schedules and `ASSETQL_REMOTE_POOLS` a pool per remote endpoint (see README, "Production").
"""

import dagster as dg

from assetql_dagster.defs.assets.analysis import scores, tags
from assetql_dagster.defs.assets.batch_input import batch_input
from assetql_dagster.defs.assets.catalog_entry import catalog_entry
from assetql_dagster.defs.assets.curation import curated_images
from assetql_dagster.defs.assets.distribution import distribution_assets
from assetql_dagster.defs.assets.exports import exports
from assetql_dagster.defs.assets.images import images_asset
from assetql_dagster.defs.assets.prompts import prompts
from assetql_dagster.defs.assets.style_profile import style_profile
from assetql_dagster.defs.executors import executor_from_env
from assetql_dagster.defs.gpu import remote_pools_from_env
from assetql_dagster.defs.budget import budget_sensor
from assetql_dagster.defs.io_manager import record_io_manager
from assetql_dagster.defs.jobs import batch_job
from assetql_dagster.defs.notifications import batch_failed_sensor, batch_succeeded_sensor
from assetql_dagster.defs.registration import register_batch_job, registered_batch_sensor
from assetql_dagster.defs.resources import resources_from_env
from assetql_dagster.defs.retention import retention_job, retention_schedule
from assetql_dagster.defs.schedules import schedules_from_env
from assetql_dagster.defs.sensors import drop_sensors, inbox_sensor
from assetql_dagster.pipeline.exporters.registry import installed_exporters


def with_io_manager(resources: dict) -> dict:
    """`resources` plus the IO manager that passes stage records through their `storage`."""
    return {**resources, "io_manager": record_io_manager}


def build_definitions() -> dg.Definitions:
    """The code location as configured by the environment."""
    return dg.Definitions(
        assets=[
            batch_input, style_profile, prompts,
            # Remote models declared in $ASSETQL_REMOTE_POOLS get shard ops on pools of their own.
            images_asset(remote_pools_from_env()),
            scores, curated_images, tags, exports, catalog_entry,
            # One asset per exporter installed in this environment (built-ins and plugins).
            *distribution_assets(installed_exporters()),
        ],
        jobs=[batch_job, register_batch_job, retention_job],
        sensors=[inbox_sensor, registered_batch_sensor, batch_succeeded_sensor, batch_failed_sensor, budget_sensor,
                 *drop_sensors()],
        schedules=[*schedules_from_env(), retention_schedule()],
        resources=with_io_manager(resources_from_env()),
        # The warm per-device gpu_executor unless the deployment names another (defs/executors.py).
        executor=executor_from_env(),
    )


defs = build_definitions()
