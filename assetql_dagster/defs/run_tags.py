"""Every run tag AssetQL reads or writes, so sensors, schedules, the CLI and the queue agree on names.

`dagster.yaml`'s QueuedRunCoordinator limits runs by `BATCH` (and by its value, one run per batch).
"""

BATCH = "assetql/batch"
ORIGIN = "assetql/origin"
CAMPAIGN = "assetql/campaign"
EXPORTS = "assetql/exports"
RETRY = "assetql/retry"
# Updated while `images` runs: "done/total images · rate · ETA", readable in the UI's run list.
PROGRESS = "assetql/progress"
# The host and process id of the `assetql` command that executes the run: a later command on that
# host marks the run failed if it is still going but that process is gone.
HOST = "assetql/host"
PID = "assetql/pid"
# Set on a `register_batch` run: the partition it added, which `registered_batch_sensor` then runs.
REGISTERED = "assetql/registered"
# "held" on a batch run queued while today's spend is at the daily budget: `dagster.yaml` limits runs
# with that value to 0, so the queue keeps them; `budget_sensor` sets it to "released" the next day.
BUDGET = "assetql/budget"
HELD, RELEASED = "held", "released"


# Dagster's run priority: the queue starts higher values first (the batch's `priority` setting).
PRIORITY = "dagster/priority"


def batch_run_tags(key: str, origin: str, priority: int = 0, **extra: str) -> dict[str, str]:
    """Tags of a run that materializes batch partition `key`, which came from `origin`, queued at `priority`."""
    return {BATCH: key, ORIGIN: origin, PRIORITY: str(priority), **extra}


def stored_priority(storage, key: str) -> int:
    """The run priority of registered batch `key`, from its stored settings."""
    from assetql_dagster.domain.priority import run_priority
    from assetql_dagster.pipeline.registration import registered_batch

    return run_priority(registered_batch(storage, key).settings.priority)
# Set when a batch quality gate (style pass rate, completion) fails, so the runs list shows it.
QUALITY = "assetql/quality"
