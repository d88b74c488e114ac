"""A batch's `priority`: a named level or an integer, as the run priority Dagster's queue orders by."""

from __future__ import annotations

# Named levels spread over the integer range so a team can still slot a batch between two of them.
PRIORITY_LEVELS = {"low": -5, "normal": 0, "high": 5, "urgent": 10}
PRIORITY_MIN, PRIORITY_MAX = -10, 10


def priority_error(value: object) -> str | None:
    """Why `value` is not a priority, or None when it is."""
    if value in PRIORITY_LEVELS and isinstance(value, str):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and PRIORITY_MIN <= value <= PRIORITY_MAX:
        return None
    return (f"must be one of {', '.join(PRIORITY_LEVELS)} or an integer from {PRIORITY_MIN} to {PRIORITY_MAX} "
            f"(higher runs first), got {value!r:.200}")


def run_priority(value: str | int) -> int:
    """The run priority of a checked `priority` setting: higher is dequeued first."""
    return PRIORITY_LEVELS[value] if isinstance(value, str) else value
