"""`gpu_executor`: Dagster's step-delegating executor over a pool of devices."""

import os
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.execution.tags import get_tag_concurrency_limits_config
from dagster._core.executor.step_delegating import StepDelegatingExecutor

from gpu_executor.device_pool import AUTO_DEVICES, CPU_DEVICE, DevicePool, resolve_devices
from gpu_executor.step_handler import DevicePoolStepHandler
from gpu_executor.tags import GPU_TAG

# Local processes are cheap to poll, so a crashed step is noticed within seconds.
HEALTH_CHECK_INTERVAL_S = 2

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
        description="Most step processes, CPU and GPU together, at once. Default: the CPU count.",
    ),
    "tag_concurrency_limits": get_tag_concurrency_limits_config(),
    "retries": get_retries_config(),
    "step_poll_interval_s": dg.Field(
        dg.Float,
        default_value=1.0,
        description="Seconds between reads of the event log for step progress.",
    ),
    "device_release_timeout_s": dg.Field(
        dg.Float,
        default_value=60.0,
        description=(
            "Seconds a step process may keep running after it reported its result before it is "
            "stopped, so the device it holds can go to the next GPU step."
        ),
    ),
}


@dg.executor(
    name="gpu_executor",
    config_schema=GPU_EXECUTOR_CONFIG,
    requirements=dg.multiple_process_executor_requirements(),
)
def gpu_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Run each step in its own process; steps tagged `assetql/gpu: "true"` each hold one device."""
    config = init_context.executor_config
    pool = DevicePool(resolve_devices(config["devices"]) or [CPU_DEVICE])
    return StepDelegatingExecutor(
        DevicePoolStepHandler(pool, _positive(config, "device_release_timeout_s")),
        retries=RetryMode.from_config(config["retries"]),
        sleep_seconds=_positive(config, "step_poll_interval_s"),
        check_step_health_interval_seconds=HEALTH_CHECK_INTERVAL_S,
        max_concurrent=_max_concurrent(config["max_concurrent"]),
        tag_concurrency_limits=tag_concurrency_limits(
            config.get("tag_concurrency_limits", []), gpu_slots=len(pool)
        ),
    )


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


def _positive(config: Mapping[str, Any], key: str) -> float:
    value = config[key]
    if value <= 0:
        raise ValueError(f"gpu_executor {key} must be > 0 seconds, got {value}")
    return value
