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


def batch_run_tags(key: str, origin: str, **extra: str) -> dict[str, str]:
    """Tags of a run that materializes batch partition `key`, which came from `origin`."""
    return {BATCH: key, ORIGIN: origin, **extra}
# Set when a batch quality gate (style pass rate, completion) fails, so the runs list shows it.
QUALITY = "assetql/quality"
