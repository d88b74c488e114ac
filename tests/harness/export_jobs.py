"""Exporter jobs over synthetic images in local storage, for testing one exporter without a batch run."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from assetql_dagster.domain.settings import BatchSettings
from assetql_dagster.pipeline.exporters.base import Exporter, ExportImage, ExportJob
from resources.storage import LocalStorage

BATCH = "shop-0123abcd"


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def noise_image(seed: int, size: tuple[int, int] = (256, 256), mode: str = "RGB") -> Image.Image:
    """A noise image like the tiny model makes (worst case for JPEG sizes)."""
    rng = np.random.default_rng(seed)
    channels = len(mode)
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels if channels > 1 else pixels[..., 0], mode)


def image_row(index: int, *, category: str = "weapons/swords", sku: str = "", width: int = 256,
              height: int = 256, prompt: str | None = None, tags: tuple[str, ...] = ("sword", "steel", "blue")) -> dict:
    """A manifest row as `manifest_rows` writes it (the columns exporters read)."""
    stem = f"item-{index:03d}"
    return {
        "batch": BATCH, "variant_id": f"item-{index}", "variation": 1, "file_name": f"{stem}.png",
        "prompt": prompt if prompt is not None else f"a steel sword number {index}, game icon",
        "negative_prompt": "", "seed": index, "model": "tiny", "width": width, "height": height,
        "style_score": 0.9, "verdict": "pass", "version": 1, "attempts": 1,
        "tags": [f"{label}:{0.9 - i / 10:.2f}" for i, label in enumerate(tags)],
        "category": category, "category_source": "csv", "sku": sku, "language": "en", "extra": {},
        "raw_key": f"raw/{BATCH}/{stem}.png",
    }


def make_job(
    tmp_path: Path, exporter: Exporter, rows: list[dict] | None = None, options: dict | None = None,
    images: list[Image.Image] | None = None, settings: BatchSettings | None = None,
) -> ExportJob:
    """A job of `exporter` over `rows` (default: three noise images in two categories), each row's
    image stored at its raw_key; `options` parsed by the exporter like a batch's export_options."""
    storage = LocalStorage(root=str(tmp_path / "data"))
    rows = rows if rows is not None else [
        image_row(0), image_row(1, category="weapons/axes"), image_row(2, category="potions", sku="POT-2"),
    ]
    for index, row in enumerate(rows):
        image = images[index] if images else noise_image(index, (row["width"], row["height"]))
        storage.write_bytes(row["raw_key"], png_bytes(image), "image/png")
    return ExportJob(
        BATCH, exporter.name, [ExportImage(r) for r in rows], exporter.parse_options(options or {}), storage,
        settings or BatchSettings(),
    )
