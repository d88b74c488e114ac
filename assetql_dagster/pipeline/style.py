"""The style profile: what a batch's references look like, to score every image against."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from assetql_dagster.domain.palette import brightness, color_histogram, contrast, mean_histogram, palette_of_images
from assetql_dagster.domain.records import PaletteColor, StyleProfile
from resources.storage import AssetStorage

NO_REFERENCE = "no style reference"


def load_references(storage: AssetStorage, keys: tuple[str, ...]) -> list[Image.Image]:
    return [Image.open(io.BytesIO(storage.read_bytes(key))).convert("RGB") for key in keys]


def build_profile(references: tuple[str, ...], images: list[Image.Image], clip, clip_model: str) -> StyleProfile:
    """CLIP embedding (mean of the references', unit length), k-means palette, brightness, contrast, histogram."""
    if not images:
        return StyleProfile(has_reference=False, reason=NO_REFERENCE)
    embedding = clip.embed_images(images).mean(axis=0)
    embedding = embedding / np.linalg.norm(embedding)
    return StyleProfile(
        has_reference=True,
        references=references,
        clip_model=clip_model,
        embedding=tuple(float(v) for v in embedding.astype(np.float32)),
        palette=tuple(PaletteColor(h, round(s, 4)) for h, s in palette_of_images(images)),
        brightness=round(float(np.mean([brightness(r) for r in images])), 4),
        contrast=round(float(np.mean([contrast(r) for r in images])), 4),
        histogram=tuple(float(v) for v in mean_histogram([color_histogram(r) for r in images]).round(6)),
    )
