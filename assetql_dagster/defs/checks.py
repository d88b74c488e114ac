"""Batch quality gates shown next to each partition in the UI."""

import dagster as dg

from assetql_dagster.defs.assets.images import images
from assetql_dagster.defs.assets.scores import UNSCORED, scores
from assetql_dagster.domain.scoring import pass_rate
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.pipeline.records import read_record, read_settings
from resources.storage import AssetStorage


@dg.asset_check(asset=scores, partitions_def=batches_partitions)
def style_pass_rate(context: dg.AssetCheckExecutionContext, storage: AssetStorage) -> dg.AssetCheckResult:
    """Share of images whose style score meets the batch threshold (default at least 85%)."""
    batch = context.partition_key
    minimum = read_settings(storage, batch).min_pass_rate
    verdicts = [s["verdict"] for s in read_record(storage, batch, "scores")["images"]]
    if verdicts and all(v == UNSCORED for v in verdicts):
        return dg.AssetCheckResult(
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            description="no style reference: style pass rate not applicable",
            metadata={"images": len(verdicts)},
        )
    rate = pass_rate(verdicts)
    return dg.AssetCheckResult(
        passed=rate >= minimum,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{rate:.1%} of images pass the style threshold (minimum {minimum:.0%})",
        metadata={"pass_rate": rate, "minimum": minimum, "review": verdicts.count("review")},
    )


@dg.asset_check(asset=images, partitions_def=batches_partitions)
def completion_rate(context: dg.AssetCheckExecutionContext, storage: AssetStorage) -> dg.AssetCheckResult:
    """Share of planned images that were generated and stored (default at least 95%)."""
    batch = context.partition_key
    minimum = read_settings(storage, batch).min_completion_rate
    planned = len(read_record(storage, batch, "prompts"))
    # `collect_images` records only images whose PNG and thumbnail are stored.
    stored = len(read_record(storage, batch, "images"))
    rate = stored / planned if planned else 0.0
    return dg.AssetCheckResult(
        passed=rate >= minimum,
        description=f"{stored} of {planned} planned images stored ({rate:.1%}, minimum {minimum:.0%})",
        metadata={"completion_rate": rate, "stored": stored, "planned": planned, "minimum": minimum},
    )
