"""How far a batch's image generation has come, in words a person reads at a glance."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


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

    def line(self, now: float) -> str:
        """E.g. "37/64 images · 12.3 img/s · ETA 2 s"."""
        rate = self.rate(now)
        text = f"{self.done}/{self.total} images · {rate:.1f} img/s"
        if self.done >= self.total:
            return f"{text} · done"
        return f"{text} · ETA {round((self.total - self.done) / rate)} s" if rate > 0 else text

    def dump(self) -> str:
        return json.dumps({"total": self.total, "started": self.started, "done": self.done_by_shard}, sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> ImageProgress:
        data = json.loads(text)
        return cls(int(data["total"]), float(data["started"]), {str(k): int(v) for k, v in data["done"].items()})
