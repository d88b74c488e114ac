"""How far a batch's image generation has come, in words a person reads at a glance."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

# The head of `ImageProgress.line`: "37/64 images".
_COUNTS = re.compile(r"(\d+)/(\d+) images")


@dataclass
class ImageProgress:
    """Images done per shard of one run, out of the batch's total, since `started` (epoch seconds)."""

    total: int
    started: float
    done_by_shard: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(self.done_by_shard.values())

    def rate(self, now: float) -> float:
        elapsed = now - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self, now: float) -> float | None:
        """Seconds left at the rate so far (elapsed × remaining / done); None before the first image."""
        rate = self.rate(now)
        if self.done >= self.total:
            return 0.0
        return (self.total - self.done) / rate if rate > 0 else None

    def line(self, now: float) -> str:
        """E.g. "37/64 images · 12.3 img/s · ETA 2 s"."""
        text = f"{self.done}/{self.total} images · {self.rate(now):.1f} img/s"
        if self.done >= self.total:
            return f"{text} · done"
        eta = self.eta(now)
        return f"{text} · ETA {round(eta)} s" if eta is not None else text

    def dump(self) -> str:
        return json.dumps({"total": self.total, "started": self.started, "done": self.done_by_shard}, sort_keys=True)

    @classmethod
    def from_line(cls, line: str, started: float) -> ImageProgress | None:
        """The counts a `line` shows, counted from `started`; None when `line` is not one.

        For readers that see the run's progress tag but not the state behind it (Dagster's
        GraphQL API has no access to the instance's key-value store)."""
        match = _COUNTS.match(line)
        return cls(int(match[2]), started, {"run": int(match[1])}) if match else None

    @classmethod
    def parse(cls, text: str) -> ImageProgress:
        data = json.loads(text)
        return cls(int(data["total"]), float(data["started"]), {str(k): int(v) for k, v in data["done"].items()})
