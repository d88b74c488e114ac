"""Failed quality gates flagged on the run, where people look, not only on an asset's Checks tab."""

import dagster as dg

from assetql_dagster.defs import run_tags


def flag_failed_check(context: dg.OpExecutionContext, result: dg.AssetCheckResult) -> dg.AssetCheckResult:
    """`result`, after adding it to the run's `assetql/quality` tag when it failed."""
    if not result.passed:
        run = context.instance.get_run_by_id(context.run.run_id)
        flagged = [f for f in run.tags.get(run_tags.QUALITY, "").split("; ") if f]
        flagged.append(f"{result.check_name} failed: {result.description}")
        context.instance.add_run_tags(context.run.run_id, {run_tags.QUALITY: "; ".join(dict.fromkeys(flagged))})
    return result
