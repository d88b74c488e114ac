"""`gpu_executor`: Dagster's step-delegating executor over a pool of devices and its workers."""

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.execution.tags import get_tag_concurrency_limits_config
from dagster._core.executor.step_delegating import StepDelegatingExecutor

from gpu_executor.device_pool import AUTO_DEVICES, CPU_DEVICE, DevicePool, resolve_devices
from gpu_executor.step_handler import WorkerPoolStepHandler
from gpu_executor.tags import GPU_TAG, is_gpu_step

# A health check reads the workers' state in memory (the event log only once a worker is done
# with a step), so a worker that died with its step is noticed within a second.
HEALTH_CHECK_INTERVAL_S = 1

GPU_EXECUTOR_CONFIG = {
    "devices": dg.Field(
        dg.ScalarUnion(scalar_type=str, non_scalar_schema=[str]),
        default_value=AUTO_DEVICES,
        description=(
            f"CUDA device ids (indices or UUIDs) GPU steps may use, one step per device at a "
            f"time, or {AUTO_DEVICES!r} for every device torch can see. With no devices, GPU "
            "steps run one at a time on the CPU."
        ),
    ),
    "max_concurrent": dg.Field(
        dg.Noneable(dg.Int),
        default_value=None,
        description=(
            "Most steps in flight, CPU and GPU together, and so most CPU workers. "
            "Default: the CPU count."
        ),
    ),
    "tag_concurrency_limits": get_tag_concurrency_limits_config(),
    "retries": get_retries_config(),
    "step_poll_interval_s": dg.Field(
        dg.Float,
        default_value=0.1,
        description=(
            "Seconds between reads of the event log for step progress. A read is cheap (about 4% "
            "of a core at 0.1 s), and a step is not followed up until its result has been read."
        ),
    ),
    "device_release_timeout_s": dg.Field(
        dg.Float,
        default_value=60.0,
        description=(
            "Seconds a worker may stay busy with a step after the step reported its result (e.g. "
            "tearing down resources) before the worker is stopped, so its device can go to the "
            "next GPU step."
        ),
    ),
    "preload_modules": dg.Field(
        [str],
        default_value=[],
        description=(
            "Modules (e.g. torch, diffusers) each device worker imports as soon as it starts, "
            "so that the import overlaps with the CPU steps that run first."
        ),
    ),
}


@dg.executor(
    name="gpu_executor",
    config_schema=GPU_EXECUTOR_CONFIG,
    requirements=dg.multiple_process_executor_requirements(),
)
def gpu_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Run steps in worker processes of the run: steps tagged `assetql/gpu: "true"` in the worker
    of a device they hold alone, the others in CPU workers."""
    config = init_context.executor_config
    pool = DevicePool(resolve_devices(config["devices"]) or [CPU_DEVICE])
    max_concurrent = _max_concurrent(config["max_concurrent"])
    return WorkerPoolExecutor(
        WorkerPoolStepHandler(
            pool,
            max_cpu_workers=max_concurrent,
            preload_modules=_module_names(config["preload_modules"]),
            device_release_timeout_s=_positive(config, "device_release_timeout_s"),
        ),
        retries=RetryMode.from_config(config["retries"]),
        sleep_seconds=_positive(config, "step_poll_interval_s"),
        check_step_health_interval_seconds=HEALTH_CHECK_INTERVAL_S,
        max_concurrent=max_concurrent,
        tag_concurrency_limits=tag_concurrency_limits(
            config.get("tag_concurrency_limits", []), gpu_slots=len(pool)
        ),
    )


class WorkerPoolExecutor(StepDelegatingExecutor):
    """Dagster's step-delegating executor; starts the run's workers first, stops them last."""

    def __init__(self, step_handler: WorkerPoolStepHandler, **kwargs: Any) -> None:
        super().__init__(step_handler, **kwargs)
        self._workers = step_handler

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[dg.DagsterEvent]:
        to_run = set(execution_plan.step_keys_to_execute)
        gpu_flags = {
            is_gpu_step(step.key, step.tags or {})
            for step in execution_plan.get_all_steps_in_topo_order()
            if step.key in to_run
        }
        # Started before the first step is: a worker takes seconds to import Dagster and the code
        # location, which then overlaps across workers and with the executor's own start.
        self._workers.start_workers(
            plan_context.reconstructable_job.get_python_origin(),
            plan_context.instance.get_ref(),
            gpu=True in gpu_flags,
            cpu=False in gpu_flags,
        )
        # However the run ends (finished, failed, interrupted, the executor raising), no worker
        # outlives it.
        try:
            yield from super().execute(plan_context, execution_plan)
        finally:
            self._workers.shutdown()


def tag_concurrency_limits(
    user_limits: Sequence[Mapping[str, Any]], gpu_slots: int
) -> list[Mapping[str, Any]]:
    """The configured limits plus the one that keeps GPU steps in flight at the pool size."""
    for limit in user_limits:
        if limit["key"] == GPU_TAG:
            raise ValueError(
                f"tag_concurrency_limits may not limit {GPU_TAG!r}, got {dict(limit)}: GPU steps "
                f"are limited by the number of devices ({gpu_slots})"
            )
    return [*user_limits, {"key": GPU_TAG, "value": "true", "limit": gpu_slots}]


def _max_concurrent(configured: int | None) -> int:
    if configured is None:
        return os.cpu_count() or 1
    if configured < 1:
        raise ValueError(f"gpu_executor max_concurrent must be at least 1, got {configured}")
    return configured


def _module_names(names: Sequence[str]) -> list[str]:
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(
                f"gpu_executor preload_modules must be importable module names such as "
                f"'torch' or 'diffusers.pipelines', got {name!r}"
            )
    return list(names)


def _positive(config: Mapping[str, Any], key: str) -> float:
    value = config[key]
    if value <= 0:
        raise ValueError(f"gpu_executor {key} must be > 0 seconds, got {value}")
    return value
