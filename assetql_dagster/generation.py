"""Generating a list of planned images into storage, resumably.

An image counts as done when both its PNG and its thumbnail are stored; since storage writes
are atomic and names are deterministic, a re-run skips finished images and regenerates only
the rest, and a crash can never leave a half-written image that looks finished.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from assetql_dagster.domain.contact_sheet import thumbnail_bytes
from assetql_dagster.domain.layout import raw_image_key, thumbnail_key
from resources.storage import AssetStorage

CPU_MICRO_BATCH = 4
GPU_PIXELS_PER_MICRO_BATCH = 8 * 1024 * 1024


@dataclass(frozen=True)
class RenderSettings:
    width: int
    height: int
    steps: int
    guidance_scale: float


@dataclass
class GenerationReport:
    generated: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    seconds_generating: float = 0.0


def micro_batch_size(requested: int | str, device_type: str, width: int, height: int) -> int:
    """`auto` fills a GPU with roughly 8 megapixels per call; CPUs gain little from batching."""
    if requested != "auto":
        return int(requested)
    if device_type != "cuda":
        return CPU_MICRO_BATCH
    return max(1, min(64, GPU_PIXELS_PER_MICRO_BATCH // (width * height)))


def image_record(batch: str, job: dict, render: RenderSettings) -> dict:
    return {
        "image_id": job["image_id"],
        "file_name": job["file_name"],
        "raw_key": raw_image_key(batch, job["image_id"]),
        "thumb_key": thumbnail_key(batch, job["image_id"]),
        "width": render.width,
        "height": render.height,
        "seed": job["seed"],
    }


def is_stored(storage: AssetStorage, batch: str, job: dict) -> bool:
    return storage.exists(raw_image_key(batch, job["image_id"])) and storage.exists(
        thumbnail_key(batch, job["image_id"])
    )


def generate_images(
    storage: AssetStorage,
    batch: str,
    jobs: Sequence[dict],
    generate: Callable[[list[dict]], list],
    render: RenderSettings,
    micro_batch: int,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> GenerationReport:
    """Generate every job not yet stored, writing each image as soon as its micro-batch returns."""
    report = GenerationReport()
    pending = []
    for job in jobs:
        (report.skipped if is_stored(storage, batch, job) else pending).append(image_record(batch, job, render))
    by_id = {job["image_id"]: job for job in jobs}
    for start in range(0, len(pending), micro_batch):
        chunk = pending[start : start + micro_batch]
        began = time.perf_counter()
        images = generate([by_id[r["image_id"]] for r in chunk])
        report.seconds_generating += time.perf_counter() - began
        for record, image in zip(chunk, images, strict=True):
            png = io.BytesIO()
            image.save(png, format="PNG")
            storage.write_bytes(record["thumb_key"], thumbnail_bytes(image), "image/jpeg")
            storage.write_bytes(record["raw_key"], png.getvalue(), "image/png")
            report.generated.append(record)
        progress(len(report.skipped) + len(report.generated), len(jobs))
    return report
