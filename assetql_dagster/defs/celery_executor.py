"""dagster-celery's executor, with a lost worker's step handed to the step's RetryPolicy.

A worker that dies mid-step (SIGKILL, lost node, OOM-killed container) never reports a failure:
its task is unacknowledged (`task_acks_late`), so Redis delivers it again to the next worker once the
visibility timeout passes. Running it there as if nothing happened would hide the loss and bypass
the RetryPolicy's count and backoff. Instead the worker's task refuses a redelivered step
(`StepWorkerLost`), and the executor turns that refusal into the event the multiprocess executor
gives a crashed child process: the step's retry while its policy allows one, its failure after.
"""

from __future__ import annotations

import sys

import celery
import dagster as dg
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._serdes import serialize_value
from dagster._utils.error import serializable_error_info_from_exc_info
from dagster_celery.core_execution_loop import core_celery_execution_loop
from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor, _submit_task
from dagster_celery.executor import celery_executor as dagster_celery_executor


class StepWorkerLost(Exception):
    """The step's task came back from the broker: the worker that was running it died."""


class RedeliveryGuard(celery.Task):
    """The base of the workers' `execute_plan` task: a redelivered step is reported lost, not run again."""

    def __call__(self, *args, **kwargs):
        # Redis marks a message it restores from a dead consumer as redelivered. With one unacknowledged
        # message per worker (prefetch 1, late acks), that message is the step the worker was running.
        if (self.request.delivery_info or {}).get("redelivered"):
            raise StepWorkerLost(
                f"the Celery worker running this step was lost: its task {self.request.id} came back from "
                f"the broker to {self.request.hostname}"
            )
        return super().__call__(*args, **kwargs)


class LostWorkerResult:
    """A step's Celery result whose `get()` turns `StepWorkerLost` into the step's retry or failure event."""

    def __init__(self, result: celery.result.AsyncResult, plan_context, step, known_state):
        self.result = result
        self.plan_context = plan_context
        self.step = step
        # The retry count as it was when this attempt was submitted, which is what decides the next.
        self.known_state = known_state

    def ready(self) -> bool:
        return self.result.ready()

    def revoke(self) -> None:
        self.result.revoke()

    def get(self) -> list:
        try:
            return self.result.get()
        except StepWorkerLost:
            error = serializable_error_info_from_exc_info(sys.exc_info())
            step_context = self.plan_context.for_step(self.step)
            # Both events are logged as they are made; the loop only applies them to the plan.
            lost = DagsterEvent.engine_event(
                step_context, f"Celery worker lost while running step {self.step.key}", EngineEventData.engine_error(error)
            )
            next_attempt = self.plan_context.executor.log_failure_or_retry_event_after_error(
                step_context, error, self.known_state
            )
            return [serialize_value(lost), serialize_value(next_attempt)]


def submit_step(app, plan_context, step, queue, priority, known_state) -> LostWorkerResult:
    """dagster-celery's submission of one step, its result watched for a lost worker."""
    return LostWorkerResult(_submit_task(app, plan_context, step, queue, priority, known_state), plan_context, step, known_state)


class LostWorkerRetryingExecutor(CeleryExecutor):
    """celery_executor, whose steps lost with their worker go through their RetryPolicy."""

    def execute(self, plan_context, execution_plan):
        return core_celery_execution_loop(plan_context, execution_plan, step_execution_fn=submit_step)


@dg.executor(name="celery", config_schema=CELERY_CONFIG, requirements=dg.multiple_process_executor_requirements())
def celery_executor(init_context) -> LostWorkerRetryingExecutor:
    """dagster-celery's executor (same config) that retries a step lost with its worker by its RetryPolicy."""
    base = dagster_celery_executor.executor_creation_fn(init_context)
    return LostWorkerRetryingExecutor(retries=base.retries, broker=base.broker, backend=base.backend,
                                      include=base.include, config_source=vars(base.config_source))
