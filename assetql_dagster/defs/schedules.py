"""Seasonal campaign schedules: each campaign in the campaigns file is a schedule whose tick
registers a dated batch partition (e.g. `holiday-2026-12-01-1a2b3c4d`) and runs it."""

from __future__ import annotations

import os
import tempfile
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg

from assetql_dagster.domain.batch_loader import load_batch
from assetql_dagster.domain.campaigns import Campaign, CampaignError, campaign_partition_key, load_campaigns
from assetql_dagster.domain.errors import BatchValidationError
from assetql_dagster.domain.layout import batch_partition_key, reference_key
from assetql_dagster.domain.settings import BatchSettings, parse_settings
from assetql_dagster.pipeline.exporters.registry import export_problems
from assetql_dagster.pipeline.registration import copy_stored, register_batch, registered_batch
from assetql_dagster.pipeline.s3_batches import download_s3_batch
from assetql_dagster.defs.jobs import batch_job
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.defs import run_tags
from resources.s3 import S3Connection
from resources.storage import AssetStorage

CAMPAIGNS_ENV = "ASSETQL_CAMPAIGNS"


def schedule_name(campaign: Campaign) -> str:
    """Dagster names allow letters, digits and underscores only."""
    return "campaign_" + campaign.name.replace("-", "_")


def campaign_settings(campaign: Campaign, path: str) -> dict[str, object]:
    """The campaign's batch setting overrides, validated and normalised like batch.yaml."""
    parsed = parse_settings(campaign.settings, f"{path} campaign {campaign.name!r}")
    return {key: getattr(parsed, key) for key in campaign.settings}


def check_campaign_settings(path: str, campaigns: list[Campaign]) -> None:
    """Raise CampaignError naming every campaign whose `settings` are not valid batch settings."""
    problems = []
    for campaign in campaigns:
        try:
            overrides = campaign_settings(campaign, path)
        except BatchValidationError as error:
            problems += [
                f"campaign {campaign.name!r}, field 'settings', setting '{p.column}': {p.message}"
                for p in error.problems
            ]
            continue
        # The exporters installed here, checked now rather than when the schedule first fires.
        exports = {"exports": list(campaign.exports)} if campaign.exports else {}
        settings = BatchSettings(**{**overrides, **exports})
        for problem in export_problems(settings, path):
            field = "exports" if problem.column == "exports" and campaign.exports else f"settings', setting '{problem.column}"
            problems.append(f"campaign {campaign.name!r}, field '{field}': {problem.message}")
    if problems:
        raise CampaignError(path, problems)


def campaign_overrides(campaign: Campaign, settings: BatchSettings, path: str) -> dict[str, object]:
    """Settings for the campaign's batch: its name, its overrides, and its modifiers appended."""
    overrides: dict[str, object] = {"name": campaign.name, **campaign_settings(campaign, path)}
    if campaign.exports:
        overrides["exports"] = list(campaign.exports)
    if campaign.modifiers:
        base = overrides.get("modifiers", settings.modifiers)
        overrides["modifiers"] = ", ".join(m for m in (base, campaign.modifiers.strip()) if m)
    return overrides


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


def reference_batch(storage: AssetStorage, name: str) -> str:
    """The partition whose stored style references `name` means: that partition key, or the
    newest registered batch of that name."""
    stored = {key.split("/")[1] for key in storage.list_keys("style-references")}
    if name in stored:
        return name
    # Partition keys are "{slug}-{8 hex}"; a batch name maps to the slug.
    slug = batch_partition_key(name, "0" * 8)[:-8]
    matches = [key for key in stored if key.startswith(slug) and len(key) == len(slug) + 8]
    if not matches:
        raise ValueError(
            f"style_profile {name!r} names no batch with stored style references under "
            f"'style-references/' (found {sorted(stored) or 'none'}); materialize that batch first "
            "or give a references folder"
        )
    return max(matches, key=lambda key: registered_batch(storage, key).registered_at)


def style_references(campaign: Campaign, storage: AssetStorage, target: Path) -> Path | None:
    """The references folder replacing the batch's own, or None to keep them."""
    profile = campaign.style_profile
    if profile is None:
        return None
    # load_campaigns made folders absolute; a bare word names a batch.
    if "/" in profile:
        return Path(profile)
    batch = reference_batch(storage, profile)
    folder = target / "style-references"
    copy_stored(storage, reference_key(batch, ""), folder)
    return folder


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
            overrides=campaign_overrides(campaign, load_batch(source).settings, path),
            references=style_references(campaign, storage, Path(tmp)),
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
        tags=run_tags.batch_run_tags(
            key, campaign.source, **{run_tags.CAMPAIGN: campaign.name, run_tags.EXPORTS: ",".join(campaign.exports)}
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
    """One schedule per campaign; raises CampaignError naming each invalid campaign and field."""
    path = str(path)
    campaigns = load_campaigns(path)
    check_campaign_settings(path, campaigns)
    return [campaign_schedule(campaign, path) for campaign in campaigns]


def schedules_from_env() -> list[dg.ScheduleDefinition]:
    """The schedules of the campaigns file named by $ASSETQL_CAMPAIGNS, or none when unset."""
    path = os.environ.get(CAMPAIGNS_ENV)
    return campaign_schedules(path) if path else []
