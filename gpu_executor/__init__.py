"""A Dagster executor that runs a run's steps in long-lived worker processes, one per device."""

from gpu_executor.device_pool import CPU_DEVICE, DevicePool, resolve_devices, visible_cuda_devices
from gpu_executor.executor import gpu_executor
from gpu_executor.step_handler import DEVICE_ENV_VAR, WorkerPoolStepHandler, step_env
from gpu_executor.tags import GPU_TAG, is_gpu_step

__all__ = [
    "CPU_DEVICE",
    "DEVICE_ENV_VAR",
    "GPU_TAG",
    "DevicePool",
    "WorkerPoolStepHandler",
    "gpu_executor",
    "is_gpu_step",
    "resolve_devices",
    "step_env",
    "visible_cuda_devices",
]
