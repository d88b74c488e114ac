"""Costing batches from what their runs measured: per shard device seconds (or remote calls) and the
stored bytes, priced by `domain.costs`; the expected cost of a batch before it runs; daily totals."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import yaml

from assetql_dagster.domain.batch_loader import BatchSource
from assetql_dagster.domain.costs import (
    DEFAULT_PRICES,
    LOCAL,
    BatchCost,
    ImageCost,
    PriceTable,
    comparison,
    estimate_usd,
    parse_budget,
    provider,
)
from assetql_dagster.domain.records import ShardResult, StoredImage
from resources.storage import AssetStorage

PRICES_ENV = "ASSETQL_PRICES"
BUDGET_ENV = "ASSETQL_DAILY_BUDGET_USD"


def load_prices(environ: Mapping[str, str] = os.environ) -> PriceTable:
    """The default prices, overridden by the YAML file `$ASSETQL_PRICES` names, if any."""
    path = environ.get(PRICES_ENV, "").strip()
    if not path:
        return DEFAULT_PRICES
    try:
        overrides = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"cannot read the prices file ${PRICES_ENV}={path!r}: {err}") from None
    if not isinstance(overrides, dict):
        raise ValueError(f"the prices file {path!r} must be a YAML mapping, got {type(overrides).__name__}")
    return DEFAULT_PRICES.with_overrides(overrides)


def daily_budget(environ: Mapping[str, str] = os.environ) -> float | None:
    """The daily budget in USD (`$ASSETQL_DAILY_BUDGET_USD`), None when there is none."""
    return parse_budget(environ.get(BUDGET_ENV))


def batch_cost(storage: AssetStorage, batch: str, model: str, shards: Sequence[ShardResult], prices: PriceTable) -> BatchCost:
    """What the run's `shards` of `batch` (on `model`) cost: each shard's generation seconds at its
    device's hourly price (calls × the provider's price for a remote model), shared by the shard's
    stored images, plus a month of each stored image's PNG and thumbnail. Time spent on images that
    failed counts in the batch's compute, in no image's."""
    remote = provider(model)
    sizes = {**storage.sizes(f"raw/{batch}/"), **storage.sizes(f"thumbnails/{batch}/")}
    device_seconds: dict[str, float] = {}
    images: list[ImageCost] = []
    compute = 0.0
    for shard in shards:
        if remote == LOCAL:
            kind = prices.device_kind(shard.device)
            device_seconds[kind] = device_seconds.get(kind, 0.0) + shard.generation_seconds
            shard_usd = prices.seconds_usd(shard.generation_seconds, kind)
        else:
            shard_usd = prices.calls_usd(shard.generated, remote)
        compute += shard_usd
        for image in shard.stored:
            images.append(ImageCost(image.image_id, shard_usd / len(shard.stored), prices.storage_usd(_bytes(image, sizes))))
    return BatchCost(
        device_seconds=device_seconds,
        remote_calls=0 if remote == LOCAL else sum(s.generated for s in shards),
        provider=remote,
        compute_usd=compute,
        storage_usd=sum(i.storage_usd for i in images),
        images=tuple(images),
    )


def _bytes(image: StoredImage, sizes: Mapping[str, int]) -> int:
    return sizes.get(image.raw_key, 0) + sizes.get(image.thumb_key, 0)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What a batch is expected to take before it runs: images, device seconds, USD, and the basis."""

    images: int
    seconds: float
    usd: float
    device_kind: str
    basis: str


def estimate(source: BatchSource, seconds_per_image: float, basis: str, prices: PriceTable, device: str) -> Estimate:
    """The expected cost of `source` at `seconds_per_image` (with its `basis`) on torch `device`
    (`cpu`, `cuda`), or per call for a remote model."""
    images = len(source.rows) * source.settings.variations
    model, kind = source.settings.model, prices.device_kind(device)
    usd = estimate_usd(images, seconds_per_image, model, prices, kind)
    remote = provider(model)
    if remote == LOCAL:
        return Estimate(images, images * seconds_per_image, usd, kind, basis)
    return Estimate(images, 0.0, usd, remote, f"{remote} at {prices.remote_call[remote]} USD per call")


def day_of(timestamp: float) -> date:
    """The UTC day of an epoch `timestamp`: budgets are per UTC day."""
    return datetime.fromtimestamp(timestamp, UTC).date()


def estimate_report(source: BatchSource, seconds_per_image: float, basis: str, prices: PriceTable, device: str) -> list[str]:
    """What `assetql validate --estimate` prints: the expected images, device time and cost of
    `source`, its basis, and the same images on every device kind and remote provider."""
    expected = estimate(source, seconds_per_image, basis, prices, device)
    lines = [
        f"estimate: {expected.images} image(s), {expected.seconds:.1f} s of {expected.device_kind} time, "
        f"{expected.usd:.4f} USD",
        f"  basis: {expected.basis}; prices: {PRICES_ENV} or the defaults (see README, \"Cost and budgets\")",
        "  the same images elsewhere (device time scaled by relative speed):",
        f"  {'device/provider':<16} {'seconds':>10} {'USD':>10}",
    ]
    measured_kind = prices.device_kind(device)
    for kind, seconds, usd in comparison(expected.images, seconds_per_image, measured_kind, prices):
        lines.append(f"  {kind:<16} {seconds:>10.1f} {usd:>10.4f}")
    return lines
