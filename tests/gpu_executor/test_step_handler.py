import pytest

from gpu_executor.device_pool import CPU_DEVICE
from gpu_executor.step_handler import DEVICE_ENV_VAR, step_env


def test_gpu_step_sees_only_its_device():
    assert step_env("1") == {"CUDA_VISIBLE_DEVICES": "1", DEVICE_ENV_VAR: "1"}


@pytest.mark.parametrize("device", [None, CPU_DEVICE])
def test_cpu_placed_steps_see_no_gpu(device):
    assert step_env(device) == {"CUDA_VISIBLE_DEVICES": "", DEVICE_ENV_VAR: CPU_DEVICE}
