"""Argument checks shared by the domain modules, raising ValueError that names the value."""

from __future__ import annotations

from numbers import Integral, Real


def check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    """Raise ValueError unless `value` is an integer in [low, high] (no upper bound when high is None)."""
    in_range = isinstance(value, Integral) and low <= value and (high is None or value <= high)
    if isinstance(value, bool) or not in_range:
        expected = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def check_unit(name: str, value: object) -> None:
    """Raise ValueError unless `value` is a real number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
