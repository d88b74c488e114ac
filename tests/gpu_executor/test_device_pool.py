import sys
import threading

import pytest

from gpu_executor import device_pool
from gpu_executor.device_pool import DevicePool, resolve_devices


def test_hands_out_free_devices_in_order():
    pool = DevicePool(["0", "1"])

    assert [pool.acquire("a"), pool.acquire("b")] == ["0", "1"]
    assert pool.held() == {"a": "0", "b": "1"}


def test_acquire_times_out_while_every_device_is_held():
    pool = DevicePool(["0"])
    pool.acquire("a")

    with pytest.raises(TimeoutError, match="'b'"):
        pool.acquire("b", timeout=0.01)


def test_waiting_acquire_gets_the_device_once_it_is_released():
    pool = DevicePool(["0"])
    pool.acquire("a")
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire("b", timeout=10)))
    waiter.start()

    assert pool.release("a") == "0"
    waiter.join()
    assert got == ["0"]
    assert pool.held() == {"b": "0"}


def test_a_holder_gets_at_most_one_device():
    pool = DevicePool(["0", "1"])
    pool.acquire("a")

    with pytest.raises(ValueError, match="already holds"):
        pool.acquire("a")


def test_releasing_without_holding_is_an_error():
    pool = DevicePool(["0"])

    with pytest.raises(ValueError, match="'a' holds no device"):
        pool.release("a")


@pytest.mark.parametrize(
    ("devices", "message"), [([], "at least one device"), (["0", "1", "0"], r"\['0'\]")]
)
def test_rejects_empty_or_repeated_devices(devices, message):
    with pytest.raises(ValueError, match=message):
        DevicePool(devices)


def test_resolve_keeps_listed_devices():
    assert resolve_devices(["1", "GPU-8c5d"]) == ["1", "GPU-8c5d"]


@pytest.mark.parametrize("device", ["cpu", "0,1", "", " 0", 0])
def test_resolve_rejects_ids_that_are_not_one_cuda_device(device):
    with pytest.raises(ValueError, match=repr(device)):
        resolve_devices([device])


def test_resolve_rejects_strings_other_than_auto():
    with pytest.raises(ValueError, match="'gpu'"):
        resolve_devices("gpu")


@pytest.fixture
def driver_gpus(tmp_path, monkeypatch):
    """A stand-in for /proc/driver/nvidia/gpus listing `count` GPUs."""

    def listing(count: int):
        folder = tmp_path / "gpus"
        folder.mkdir()
        for index in range(count):
            (folder / f"0000:{index:02x}:00.0").mkdir()
        monkeypatch.setattr(device_pool, "NVIDIA_DRIVER_GPUS", folder)

    return listing


def test_auto_lists_every_visible_device(driver_gpus, monkeypatch):
    driver_gpus(2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    assert resolve_devices("auto") == ["0", "1"]


def test_auto_maps_indices_back_to_inherited_visible_devices(driver_gpus, monkeypatch):
    driver_gpus(2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")

    assert resolve_devices("auto") == ["5", "7"]


def test_an_empty_visible_devices_hides_every_gpu(driver_gpus, monkeypatch):
    driver_gpus(2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")

    assert resolve_devices("auto") == []


def test_auto_without_an_nvidia_driver_finds_no_devices_and_never_imports_torch(tmp_path, monkeypatch):
    monkeypatch.setattr(device_pool, "NVIDIA_DRIVER_GPUS", tmp_path / "absent")
    # None in sys.modules makes `import torch` raise ImportError: nothing here may import it.
    monkeypatch.setitem(sys.modules, "torch", None)

    assert resolve_devices("auto") == []
