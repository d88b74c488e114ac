"""The style profile: what a batch's references look like, to score every image against."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping
from itertools import combinations

import numpy as np
from PIL import Image

from assetql_dagster.domain.palette import brightness, contrast, hex_to_lab, palette_of_images
from assetql_dagster.domain.records import BatchInput, PaletteColor, StyleProfile
from assetql_dagster.domain.scoring import clip_similarity_to_unit, combined_style_score
from assetql_dagster.domain.style_parameters import (
    Palette,
    StyleParameters,
    Swatch,
    extract_parameters,
    parameter_scores,
    profile_parameters,
)
from resources.storage import AssetStorage

NO_REFERENCE = "no style reference"


def load_references(storage: AssetStorage, keys: tuple[str, ...]) -> list[Image.Image]:
    return [Image.open(io.BytesIO(storage.read_bytes(key))).convert("RGB") for key in keys]


def ip_adapter_references(storage: AssetStorage, batch: BatchInput) -> list[Image.Image]:
    """The references an IP-Adapter conditions on: the batch's, when it configures one (else none)."""
    return load_references(storage, batch.references) if batch.settings.ip_adapter else []


def style_scores(
    image: StyleParameters, profile: StyleParameters, cosine: float, weights: Mapping[str, float]
) -> tuple[float, dict[str, float]]:
    """The combined style score and the score of each parameter, the embedding's from its cosine."""
    scores = {**parameter_scores(image, profile), "embedding": clip_similarity_to_unit(cosine)}
    return combined_style_score(scores, weights), scores


def build_profile(
    references: tuple[str, ...], images: list[Image.Image], clip, clip_model: str, weights: Mapping[str, float]
) -> StyleProfile:
    """CLIP embedding (mean of the references', unit length), style parameters, palette, brightness,
    contrast, and how alike the references are to each other (scored with `weights`)."""
    if not images:
        return StyleProfile(has_reference=False, reason=NO_REFERENCE)
    vectors = clip.style_embeddings(images)  # CLIP's image embeddings unless a style checkpoint is configured
    embedding = vectors.mean(axis=0)
    embedding = embedding / np.linalg.norm(embedding)
    each = [extract_parameters(img) for img in images]
    pairs = [
        style_scores(each[i], each[j], float(np.dot(vectors[i], vectors[j])), weights)[0]
        for i, j in combinations(range(len(images)), 2)
    ]
    return StyleProfile(
        has_reference=True,
        references=references,
        clip_model=clip_model,
        embedding_backbone=clip.style_backbone,
        embedding=tuple(float(v) for v in embedding.astype(np.float32)),
        palette=tuple(PaletteColor(h, round(s, 4)) for h, s in palette_of_images(images)),
        brightness=round(float(np.mean([brightness(r) for r in images])), 4),
        contrast=round(float(np.mean([contrast(r) for r in images])), 4),
        parameters=profile_parameters(images),
        reference_similarities=tuple(round(p, 4) for p in pairs),
    )


def with_target_palette(profile: StyleProfile, colours: tuple[str, ...]) -> StyleProfile:
    """`profile` aiming at `colours` (brand or season colours, equal shares) instead of the references'
    palette: what a palette lock pulls images toward and the palette score compares with."""
    share = round(1.0 / len(colours), 4)
    swatches = tuple(Swatch(c, hex_to_lab(c), share) for c in colours)
    parameters = dataclasses.replace(profile.parameters, palette=Palette(swatches)) if profile.parameters else None
    return dataclasses.replace(profile, palette=tuple(PaletteColor(c, share) for c in colours), parameters=parameters)
