"""What images cost (NFR-IMGGEN-005/006): device time × an hourly price per device kind, or calls × a
price per call for remote models, plus storage per GB-month; the daily budget's alert and hold marks.

`DEFAULT_PRICES` is the one place the default prices live (USD, on-demand list prices of one GPU of
each kind in late 2025, rounded); a YAML file named by `$ASSETQL_PRICES` overrides any of them
(`pipeline.costs.load_prices`), e.g.

    device_hour: {h100: 3.5}
    remote_call: {bedrock: 0.04}
    storage_gb_month: 0.021
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

CPU = "cpu"
DEVICE_KINDS = ("cpu", "a10g", "l4", "a100", "h100")
REMOTE_PROVIDERS = ("sagemaker", "bedrock")
LOCAL = "local"
GB = 1024**3
# The daily budget: past ALERT_SHARE of it an alert goes out (once a day), at HOLD_SHARE new batches wait.
ALERT_SHARE = 0.8
HOLD_SHARE = 1.0
OK, ALERT, HOLD = "ok", "alert", "hold"
# Diffusion throughput of each device kind relative to an A10G (published Stable Diffusion
# benchmarks, rounded): what turns seconds measured on one kind into the others' for the comparison.
RELATIVE_SPEED = {"cpu": 0.03, "a10g": 1.0, "l4": 0.8, "a100": 2.2, "h100": 3.3}


@dataclasses.dataclass(frozen=True)
class PriceTable:
    """USD per device hour by device kind, per remote call by provider, per GB-month stored; GPU
    devices are priced as `gpu_kind` (the card the deployment runs on)."""

    device_hour: Mapping[str, float]
    remote_call: Mapping[str, float]
    storage_gb_month: float
    gpu_kind: str = "a10g"

    def __post_init__(self) -> None:
        for name, table, known in (("device_hour", self.device_hour, DEVICE_KINDS),
                                   ("remote_call", self.remote_call, REMOTE_PROVIDERS)):
            for kind, price in table.items():
                if kind not in known:
                    raise ValueError(f"price {name}.{kind!r} names no known kind; expected one of {', '.join(known)}")
                _check_price(f"{name}.{kind}", price)
        _check_price("storage_gb_month", self.storage_gb_month)
        if self.gpu_kind not in DEVICE_KINDS or self.gpu_kind == CPU:
            raise ValueError(f"gpu_kind {self.gpu_kind!r} must be one of {', '.join(DEVICE_KINDS[1:])}")

    def with_overrides(self, overrides: Mapping[str, Any]) -> PriceTable:
        """This table with the prices `overrides` (the `$ASSETQL_PRICES` YAML mapping) sets."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown price setting(s) {sorted(unknown)}; expected device_hour, remote_call, "
                             "storage_gb_month or gpu_kind")
        changes: dict[str, Any] = {}
        for name in ("device_hour", "remote_call"):
            if name in overrides:
                if not isinstance(overrides[name], Mapping):
                    raise ValueError(f"price setting {name} must map kinds to USD, got {overrides[name]!r}")
                changes[name] = {**getattr(self, name), **overrides[name]}
        for name in ("storage_gb_month", "gpu_kind"):
            if name in overrides:
                changes[name] = overrides[name]
        return dataclasses.replace(self, **changes)

    def device_kind(self, device: str) -> str:
        """The price kind of a torch device string (`cpu`, `cuda:0`)."""
        return CPU if device.split(":")[0] == CPU else self.gpu_kind

    def seconds_usd(self, seconds: float, kind: str) -> float:
        """What `seconds` of device `kind` cost."""
        if kind not in self.device_hour:
            raise ValueError(f"no hourly price for device kind {kind!r}; priced kinds: {', '.join(self.device_hour)}")
        return seconds * self.device_hour[kind] / 3600

    def calls_usd(self, calls: int, provider: str) -> float:
        """What `calls` remote invocations of `provider` cost."""
        if provider not in self.remote_call:
            raise ValueError(f"no per-call price for provider {provider!r}; priced: {', '.join(self.remote_call)}")
        return calls * self.remote_call[provider]

    def storage_usd(self, stored_bytes: int, months: float = 1.0) -> float:
        """What keeping `stored_bytes` for `months` costs."""
        return stored_bytes / GB * self.storage_gb_month * months


def _check_price(name: str, price: object) -> None:
    if isinstance(price, bool) or not isinstance(price, (int, float)) or price < 0:
        raise ValueError(f"price {name} must be a number of USD ≥ 0, got {price!r}")


DEFAULT_PRICES = PriceTable(
    # AWS on-demand per GPU: g5 (A10G) ≈ 1.01, g6 (L4) ≈ 0.80, p4d (A100) ≈ 4.10, p5 (H100) ≈ 3.93 / 8 GPUs
    # ≈ 6.9 at list, commonly 4–7; a CPU worker (4 vCPU) ≈ 0.17.
    device_hour={"cpu": 0.17, "a10g": 1.01, "l4": 0.80, "a100": 4.10, "h100": 6.90},
    # SageMaker: an ml.g5.xlarge endpoint (1.41 $/h) at ~1 image/2.5 s ≈ 0.001 per call; Bedrock
    # Stability image models are billed per image (SD3.5 Large 0.08).
    remote_call={"sagemaker": 0.001, "bedrock": 0.08},
    # S3 Standard, first 50 TB.
    storage_gb_month=0.023,
)


def provider(model: str) -> str:
    """`sagemaker` or `bedrock` for a remote model (`sagemaker:ENDPOINT`, `bedrock:MODEL_ID`), else `local`."""
    prefix = model.split(":", 1)[0] if ":" in model else ""
    return prefix if prefix in REMOTE_PROVIDERS else LOCAL


@dataclasses.dataclass(frozen=True)
class ImageCost:
    """What one stored image cost: its generation (device time or remote call) and a month of its bytes."""

    image_id: str
    compute_usd: float
    storage_usd: float

    @property
    def total_usd(self) -> float:
        return self.compute_usd + self.storage_usd


@dataclasses.dataclass(frozen=True)
class BatchCost:
    """What a batch's generation cost: device seconds by kind, remote calls, storage, and per image."""

    device_seconds: dict[str, float]
    remote_calls: int
    provider: str
    compute_usd: float
    storage_usd: float
    images: tuple[ImageCost, ...]

    @property
    def total_usd(self) -> float:
        return self.compute_usd + self.storage_usd

    def per_image(self) -> dict[str, float]:
        """Each image's total USD by image id."""
        return {i.image_id: i.total_usd for i in self.images}


def estimate_usd(images: int, seconds_per_image: float, model: str, prices: PriceTable, kind: str) -> float:
    """What generating `images` of `model` costs, on device `kind` at `seconds_per_image`, or remotely."""
    remote = provider(model)
    if remote != LOCAL:
        return prices.calls_usd(images, remote)
    return prices.seconds_usd(images * seconds_per_image, kind)


def comparison(images: int, seconds_per_image: float, measured_kind: str, prices: PriceTable) -> list[tuple[str, float, float]]:
    """(device kind or provider, device seconds, USD) of `images` on every priced device kind (at
    `seconds_per_image` on `measured_kind`, scaled by RELATIVE_SPEED) and remote provider, cheapest first."""
    rows = []
    for kind in prices.device_hour:
        seconds = images * seconds_per_image * RELATIVE_SPEED[measured_kind] / RELATIVE_SPEED[kind]
        rows.append((kind, seconds, prices.seconds_usd(seconds, kind)))
    rows += [(name, 0.0, prices.calls_usd(images, name)) for name in prices.remote_call]
    return sorted(rows, key=lambda row: row[2])


def budget_level(spent_usd: float, budget_usd: float | None) -> str:
    """`ok`, `alert` (≥ 80 % of the daily budget) or `hold` (≥ 100 %); `ok` without a budget."""
    if budget_usd is None:
        return OK
    if spent_usd >= budget_usd * HOLD_SHARE:
        return HOLD
    return ALERT if spent_usd >= budget_usd * ALERT_SHARE else OK


def parse_budget(text: str | None) -> float | None:
    """The daily budget in USD from `$ASSETQL_DAILY_BUDGET_USD` (None when unset or empty)."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"daily budget {text!r} must be a number of USD > 0, e.g. 50") from None
    if not value > 0:
        raise ValueError(f"daily budget {text!r} must be a number of USD > 0, e.g. 50")
    return value
