"""Progress of `images` on the run itself, so the UI's run list and `assetql run` show done/total,
rate and ETA while the shards (each its own step, possibly in parallel) generate."""

from __future__ import annotations

import time

import dagster as dg

from assetql_dagster.defs import run_tags
from assetql_dagster.domain.progress import ImageProgress


def _state_key(run_id: str) -> str:
    return f"assetql/progress/{run_id}"


def run_progress(instance: dg.DagsterInstance, run_id: str) -> ImageProgress | None:
    """The images progress of run `run_id`, or None before its first shard reported."""
    # Kept in the instance's key-value store rather than a tag: the per-shard counts are for
    # machines, and the run's tags are what people read in the UI.
    state = instance.run_storage.get_cursor_values({_state_key(run_id)}).get(_state_key(run_id))
    return ImageProgress.parse(state) if state else None


def report_progress(context: dg.OpExecutionContext, shard: str, done: int, total: int) -> str:
    """Record that `shard` has `done` images and return the batch's progress line.

    Shards on other devices write the same state; each merges its own count into the latest one,
    so a count lost to a concurrent write is restored by that shard's next report.
    """
    now = time.time()
    progress = run_progress(context.instance, context.run.run_id) or ImageProgress(total, now)
    progress.done_by_shard[shard] = done
    line = progress.line(now)
    context.instance.run_storage.set_cursor_values({_state_key(context.run.run_id): progress.dump()})
    context.instance.add_run_tags(context.run.run_id, {run_tags.PROGRESS: line})
    return line
