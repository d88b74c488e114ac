"""Devices a run may place GPU steps on, and the exclusive hand-out of those devices."""

import os
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

# The single slot that stands in for a device when no GPU is configured or visible.
CPU_DEVICE = "cpu"
AUTO_DEVICES = "auto"
# One entry per GPU the NVIDIA driver has bound (Linux, also inside GPU containers).
NVIDIA_DRIVER_GPUS = Path("/proc/driver/nvidia/gpus")


class DevicePool:
    """Thread-safe set of devices, each held by at most one holder at a time."""

    def __init__(self, devices: Sequence[str]) -> None:
        if not devices:
            raise ValueError("DevicePool needs at least one device, got an empty list")
        duplicates = sorted(d for d, n in Counter(devices).items() if n > 1)
        if duplicates:
            raise ValueError(f"DevicePool devices must be unique, got {duplicates} more than once")
        self._devices = tuple(devices)
        self._holder_by_device: dict[str, str] = {}
        self._freed = threading.Condition()

    def __len__(self) -> int:
        return len(self._devices)

    @property
    def devices(self) -> tuple[str, ...]:
        """The devices in the order they are handed out."""
        return self._devices

    def held(self) -> dict[str, str]:
        """Snapshot of who holds what, as {holder: device}."""
        with self._freed:
            return {holder: device for device, holder in self._holder_by_device.items()}

    def acquire(self, holder: str, timeout: float | None = None) -> str:
        """Give `holder` the first free device, waiting up to `timeout` s (None: forever)."""
        with self._freed:
            if holder in self._holder_by_device.values():
                raise ValueError(f"Holder {holder!r} already holds a device; release it first")
            if not self._freed.wait_for(self._first_free, timeout=timeout):
                raise TimeoutError(
                    f"No device was freed within {timeout} s for {holder!r}; "
                    f"all of {list(self._devices)} are held: {self._holder_by_device}"
                )
            device = self._first_free()
            self._holder_by_device[device] = holder
            return device

    def release(self, holder: str) -> str:
        """Free the device `holder` holds and return it."""
        with self._freed:
            for device, current in self._holder_by_device.items():
                if current == holder:
                    del self._holder_by_device[device]
                    self._freed.notify_all()
                    return device
        raise ValueError(f"Holder {holder!r} holds no device; held: {self.held()}")

    def _first_free(self) -> str | None:
        return next((d for d in self._devices if d not in self._holder_by_device), None)


def resolve_devices(spec: str | Sequence[str]) -> list[str]:
    """The GPU devices that the `devices` setting ("auto" or a list of CUDA device ids) names."""
    if isinstance(spec, str):
        if spec != AUTO_DEVICES:
            raise ValueError(
                f"devices must be {AUTO_DEVICES!r} or a list of CUDA device ids, got {spec!r}"
            )
        return visible_cuda_devices()
    for device in spec:
        _check_device_id(device)
    return list(spec)


def visible_cuda_devices() -> list[str]:
    """One CUDA device id per NVIDIA GPU this process may use.

    Read from the driver's listing instead of asking torch: importing torch costs the orchestrator
    seconds before the first step can start, and CUDA itself narrows the same listing by
    CUDA_VISIBLE_DEVICES ("" hides every GPU).
    """
    if not NVIDIA_DRIVER_GPUS.is_dir():
        return []
    count = sum(1 for _ in NVIDIA_DRIVER_GPUS.iterdir())
    # Step processes get CUDA_VISIBLE_DEVICES overwritten, so index i must be mapped back to the
    # id the parent's own CUDA_VISIBLE_DEVICES gave it, or steps would land on the wrong GPUs.
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is not None:
        return [d.strip() for d in inherited.split(",") if d.strip()][:count]
    return [str(index) for index in range(count)]


def _check_device_id(device: object) -> None:
    if not isinstance(device, str) or not device.strip():
        raise ValueError(f"Each device must be a non-empty CUDA device id string, got {device!r}")
    if device == CPU_DEVICE:
        raise ValueError(
            f"Device {CPU_DEVICE!r} is reserved; use devices: [] to run GPU steps on the CPU"
        )
    if "," in device or device != device.strip():
        raise ValueError(
            f"Each device must name exactly one CUDA device (an index or UUID), got {device!r}"
        )
