"""Notification on batch completion (FR-BG-007, NFR-007): when a `batch_job` run of a batch partition
succeeds or fails, post its notice to every webhook of the `notifier` (signed when it has a secret)
and log `batch.completed` / `batch.failed` in the activity log. Run status sensors are evaluated by
the Dagster daemon (`dagster dev` runs one)."""

import dagster as dg

from assetql_dagster.defs.jobs import batch_job
from assetql_dagster.defs.resources import NOTIFY_WEBHOOK_ENV, NOTIFY_WEBHOOKS_PREFIX
from assetql_dagster.pipeline.notifications import batch_notice, log_outcome
from resources.catalog import AssetCatalog
from resources.notifier import Notifier
from resources.storage import AssetStorage


def notify(context: dg.RunStatusSensorContext, storage: AssetStorage, catalog: AssetCatalog, notifier: Notifier,
           succeeded: bool, error: str = "") -> None:
    """Notice, activity entry and post for the run `context` is about, which `succeeded` or failed
    with `error`."""
    run = context.dagster_run
    batch = context.partition_key
    if not batch:
        context.log.info(f"run {run.run_id} of {run.job_name} has no batch partition: nothing to notify")
        return
    notice = batch_notice(storage, batch, run.run_id, succeeded=succeeded, error=error)
    log_outcome(catalog, notice)
    if not notifier.enabled:
        context.log.info(f"{notice.headline()}; not notified: notifications are off "
                         f"(neither ${NOTIFY_WEBHOOK_ENV} nor any ${NOTIFY_WEBHOOKS_PREFIX}<NAME> is set)")
        return
    # Webhooks that did not take it were each warned about by the notifier.
    if delivered := notifier.send(notice, context.log):
        context.log.info(f"notified {notice.event} to {delivered} of {len(notifier.urls)} webhook(s): "
                         f"{notice.headline()}")


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[batch_job], default_status=dg.DefaultSensorStatus.RUNNING,
)
def batch_succeeded_sensor(context: dg.RunStatusSensorContext, storage: AssetStorage, catalog: AssetCatalog,
                           notifier: Notifier) -> None:
    """Notifies that a batch run succeeded and logs `batch.completed` in the activity log."""
    notify(context, storage, catalog, notifier, succeeded=True)


@dg.run_failure_sensor(monitored_jobs=[batch_job], default_status=dg.DefaultSensorStatus.RUNNING)
def batch_failed_sensor(context: dg.RunFailureSensorContext, storage: AssetStorage, catalog: AssetCatalog,
                        notifier: Notifier) -> None:
    """Notifies that a batch run failed (with why) and logs `batch.failed` in the activity log."""
    notify(context, storage, catalog, notifier, succeeded=False, error=failure_reason(context))


def failure_reason(context: dg.RunFailureSensorContext) -> str:
    """The run's failure message and the first failed step's error, which says what went wrong."""
    reason = context.failure_event.message or f"run {context.dagster_run.run_id} failed"
    steps = context.get_step_failure_events()
    error = steps[0].step_failure_data.error if steps and steps[0].step_failure_data else None
    # Dagster wraps what the step raised (DagsterExecutionStepExecutionError): the innermost cause says why.
    while error is not None and error.cause is not None:
        error = error.cause
    if error is not None:
        reason += f" {steps[0].step_key}: {error.message.strip()}"  # the message starts with the class
    return reason
