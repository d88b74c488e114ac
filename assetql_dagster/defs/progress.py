"""Progress of `images` on the run itself, so the UI's run list and `assetql run` show done/total,
rate and ETA while the shards (each its own step, possibly in parallel) generate."""

from __future__ import annotations

import time

import dagster as dg

from assetql_dagster.defs import run_tags
from assetql_dagster.domain.progress import ImageProgress


def run_progress(instance: dg.DagsterInstance, run_id: str) -> ImageProgress | None:
    run = instance.get_run_by_id(run_id)
    state = run.tags.get(run_tags.PROGRESS_STATE) if run else None
    return ImageProgress.parse(state) if state else None


def report_progress(context: dg.OpExecutionContext, shard: str, done: int, total: int) -> str:
    """Record that `shard` has `done` images and return the batch's progress line.

    Shards on other devices write the same tags; each merges its own count into the latest state,
    so a count lost to a concurrent write is restored by that shard's next report.
    """
    now = time.time()
    progress = run_progress(context.instance, context.run_id) or ImageProgress(total, now)
    progress.done_by_shard[shard] = done
    line = progress.line(now)
    context.instance.add_run_tags(
        context.run_id, {run_tags.PROGRESS: line, run_tags.PROGRESS_STATE: progress.dump()}
    )
    return line
