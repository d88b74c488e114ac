"""Choosing the torch device and dtype that models run on."""

from __future__ import annotations

import torch

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def pick_device(requested: str = "auto") -> torch.device:
    """Resolve "auto", "cpu", "cuda" or "cuda:N" to a concrete, available device."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError as e:
        raise ValueError(f"device {requested!r} must be 'auto', 'cpu', 'cuda' or 'cuda:N'") from e
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"device {requested!r} must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device {requested!r} was requested but CUDA is not available on this machine; use 'cpu' or 'auto'"
        )
    count = torch.cuda.device_count()
    # A bare "cuda" is pinned to its index so that "cuda" and "cuda:0" name the same cached model.
    index = torch.cuda.current_device() if device.index is None else device.index
    if index >= count:
        raise ValueError(f"device {requested!r} was requested but only {count} CUDA device(s) exist")
    return torch.device("cuda", index)


def pick_dtype(device: torch.device, requested: str = "auto") -> torch.dtype:
    """Resolve a dtype name; "auto" is bf16 (or fp16 where unsupported) on CUDA and fp32 on CPU."""
    if requested == "auto":
        if device.type != "cuda":
            return torch.float32
        # Emulated bf16 (pre-Ampere GPUs) is slower than fp16, so only native support counts.
        with torch.cuda.device(device):
            return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    if requested not in _DTYPES:
        raise ValueError(f"dtype {requested!r} must be 'auto' or one of {sorted(_DTYPES)}")
    return _DTYPES[requested]
