"""Seasonal campaign schedules: each campaign of the campaigns file with a `cron` is a schedule whose
tick registers its source, with the campaign applied, as a dated batch partition (e.g.
`holiday-2026-12-01-1a2b3c4d`) and runs it."""

from __future__ import annotations

import os
import tempfile
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg

from assetql_dagster.domain.batch_loader import load_batch
from assetql_dagster.domain.campaigns import Campaign, campaign_overrides, campaign_partition_key
from assetql_dagster.domain.priority import run_priority
from assetql_dagster.domain.settings import BatchSettings
from assetql_dagster.pipeline.campaigns import CAMPAIGNS_ENV, campaign_profiles
from assetql_dagster.pipeline.registration import campaign_references, register_batch
from assetql_dagster.pipeline.s3_batches import download_s3_batch
from assetql_dagster.defs.jobs import batch_job
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.defs import run_tags
from assetql_dagster.defs.budget import queued_batch_tags
from resources.s3 import S3Connection
from resources.storage import AssetStorage


def schedule_name(campaign: Campaign) -> str:
    """Dagster names allow letters, digits and underscores only."""
    return "campaign_" + campaign.name.replace("-", "_")


def schedule_overrides(campaign: Campaign, settings: BatchSettings, path: str) -> dict[str, object]:
    """Settings for the campaign's batch: its name and campaign, and the campaign applied over the
    source's own settings (the source is the campaign's, so the campaign's settings win)."""
    return {"name": campaign.name, "campaign": campaign.name, **campaign_overrides(campaign, settings, path)}


def scheduled_day(context: dg.ScheduleEvaluationContext, zone: str) -> date:
    """The tick's date in the campaign's time zone (now, when evaluated outside a tick)."""
    when = context.scheduled_execution_time or datetime.now(ZoneInfo(zone))
    return when.astimezone(ZoneInfo(zone)).date()


def campaign_source(campaign: Campaign, target: Path, s3: S3Connection) -> Path:
    """The campaign's batch folder or CSV, downloaded into `target` when it is on S3."""
    if not campaign.source.startswith("s3://"):
        return Path(campaign.source)
    bucket, _, key = campaign.source[len("s3://"):].partition("/")
    return download_s3_batch(s3.bucket(bucket), key, target)


def campaign_run(
    context: dg.ScheduleEvaluationContext, campaign: Campaign, path: str, storage: AssetStorage, s3: S3Connection
) -> dg.RunRequest:
    """Register the campaign's batch for the tick's date, add its partition, and request its run."""
    day = scheduled_day(context, campaign.timezone)
    with tempfile.TemporaryDirectory(prefix="assetql-campaign-") as tmp:
        source = campaign_source(campaign, Path(tmp) / "source", s3)
        registration = register_batch(
            storage,
            source,
            origin=f"campaign {campaign.name} ({path}): {campaign.source}",
            overrides=schedule_overrides(campaign, load_batch(source).settings, path),
            references=campaign_references(campaign, storage, Path(tmp)),
            partition_key=lambda batch: campaign_partition_key(campaign.name, day, batch.content_hash),
            creator=f"schedule {schedule_name(campaign)}",
            campaign=campaign.name,
        )
    key = registration.key
    # Schedules cannot return partition requests the way sensors do, so the tick adds it itself.
    if not context.instance.has_dynamic_partition(batches_partitions.name, key):
        context.instance.add_dynamic_partitions(batches_partitions.name, [key])
    context.log.info(f"campaign {campaign.name} for {day}: partition {key}")
    return dg.RunRequest(
        run_key=f"campaign:{campaign.name}:{day.isoformat()}",
        partition_key=key,
        tags=queued_batch_tags(
            context.instance, key, campaign.source, run_priority(registration.source.settings.priority),
            **{run_tags.CAMPAIGN: campaign.name, run_tags.EXPORTS: ",".join(campaign.exports)},
        ),
    )


def campaign_schedule(campaign: Campaign, path: str) -> dg.ScheduleDefinition:
    """The schedule running `campaign` (from campaigns file `path`) on its cron."""

    @dg.schedule(
        name=schedule_name(campaign),
        cron_schedule=campaign.cron,
        execution_timezone=campaign.timezone,
        job=batch_job,
        description=campaign.description or f"Campaign {campaign.name} from {path}",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def _schedule(
        context: dg.ScheduleEvaluationContext, storage: AssetStorage, s3: S3Connection
    ) -> dg.RunRequest:
        return campaign_run(context, campaign, path, storage, s3)

    return _schedule


def campaign_schedules(path: str | Path) -> list[dg.ScheduleDefinition]:
    """One schedule per campaign with a `cron` (the others are profiles that batches apply by name);
    raises CampaignError naming each invalid campaign and field."""
    campaigns = campaign_profiles(path).values()
    return [campaign_schedule(campaign, str(path)) for campaign in campaigns if campaign.scheduled]


def schedules_from_env() -> list[dg.ScheduleDefinition]:
    """The schedules of the campaigns file named by $ASSETQL_CAMPAIGNS, or none when unset."""
    path = os.environ.get(CAMPAIGNS_ENV)
    return campaign_schedules(path) if path else []
