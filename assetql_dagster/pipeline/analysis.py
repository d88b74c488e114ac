"""Scores and tags of a batch's images.

The style score compares every image with the style profile (and the style loop scores every new
version the same way); the tags describe the current images (colours, mood, composition,
category, CLIP zero-shot labels).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from assetql_dagster.domain.palette import brightness, contrast, dominant_palette
from assetql_dagster.domain.records import (
    ImageJob,
    ImageScore,
    ImageSet,
    ImageTags,
    ScoreSet,
    StoredImage,
    StyleProfile,
    TagSet,
)
from assetql_dagster.domain.scoring import parameter_weights, relative_threshold, verdict
from assetql_dagster.domain.settings import BatchSettings
from assetql_dagster.domain.style_parameters import extract_parameters
from assetql_dagster.domain.tagging import (
    Tag,
    ZERO_SHOT_VOCABULARY,
    category_tag,
    color_tags,
    composition_tags,
    merge_tags,
    mood_tags,
    zero_shot_prompt,
    zero_shot_tags,
)
from assetql_dagster.pipeline.style import style_scores
from resources.storage import AssetStorage

UNSCORED = "unscored"
# Images decoded at once: enough to keep CLIP's batches full, few enough that memory stays flat.
CHUNK = 16


def image_chunks(
    storage: AssetStorage, stored: Sequence[StoredImage], chunk: int = CHUNK
) -> Iterator[tuple[Sequence[StoredImage], list[Image.Image]]]:
    for start in range(0, len(stored), chunk):
        part = stored[start : start + chunk]
        yield part, [Image.open(io.BytesIO(storage.read_bytes(r.raw_key))).convert("RGB") for r in part]


def zero_shot_probabilities(clip, embeddings: np.ndarray) -> dict[str, np.ndarray]:
    """Per vocabulary kind, a [n_images, n_labels] matrix of CLIP zero-shot probabilities."""
    return {
        kind: clip.zero_shot(embeddings, labels, [zero_shot_prompt(label, kind) for label in labels])
        for kind, labels in ZERO_SHOT_VOCABULARY.items()
    }


def score_image(
    record: StoredImage, img: Image.Image, vec: np.ndarray, reference: np.ndarray | None,
    profile: StyleProfile, weights: dict[str, float], threshold: float,
) -> ImageScore:
    """`reference` is the profile's embedding as an array, None without a reference."""
    if reference is None:
        return ImageScore(record.image_id, record.file_name, UNSCORED, note=profile.reason)
    cos = float(np.dot(vec, reference))
    score, parts = style_scores(extract_parameters(img), profile.parameters, cos, weights)
    return ImageScore(
        record.image_id,
        record.file_name,
        verdict(score, threshold),
        style_score=round(score, 4),
        clip_similarity=round(cos, 4),
        **{f"{name}_score": round(value, 4) for name, value in parts.items()},
    )


def pixel_tags(record: StoredImage, img: Image.Image, category: str) -> list[Tag]:
    """Tags read off the pixels and the row: colours, mood, composition, category."""
    return [
        *color_tags(dominant_palette(img, k=5)),
        *mood_tags(brightness(img), contrast(img)),
        *composition_tags(record.width, record.height),
        *category_tag(category),
    ]


def scorer(profile: StyleProfile, settings: BatchSettings, clip) -> tuple[float, Callable[..., list[ImageScore]]]:
    """The batch's pass threshold, and a function scoring (records, decoded images) against `profile`.

    The weights follow the batch's locks and the threshold is relative to how alike the references
    are (see `relative_threshold`).
    """
    weights = parameter_weights(settings.lock_weights)
    threshold = relative_threshold(profile.reference_similarities, settings.style_threshold)
    reference = np.asarray(profile.embedding, dtype=np.float32) if profile.has_reference else None

    def score(records: Sequence[StoredImage], imgs: list[Image.Image]) -> list[ImageScore]:
        # Style embeddings of the profile's backbone; a different configured backbone raises ValueError.
        vectors = (
            clip.style_embeddings(imgs, expected_backbone=profile.embedding_backbone)
            if reference is not None
            else [None] * len(imgs)
        )
        return [
            score_image(record, img, vec, reference, profile, weights, threshold)
            for record, img, vec in zip(records, imgs, vectors)
        ]

    return threshold, score


def score_images(storage: AssetStorage, images: ImageSet, profile: StyleProfile, settings: BatchSettings, clip) -> ScoreSet:
    """Every stored image scored against `profile`."""
    threshold, score = scorer(profile, settings, clip)
    scores = [s for part, imgs in image_chunks(storage, images.stored) for s in score(part, imgs)]
    return ScoreSet(round(threshold, 4), parameter_weights(settings.lock_weights), tuple(scores))


def tag_images(storage: AssetStorage, images: ImageSet, jobs: Sequence[ImageJob], clip) -> TagSet:
    """At least five tags per stored image: colours, mood, composition, category, CLIP labels."""
    categories = {j.image_id: j.category for j in jobs}
    from_pixels: list[list[Tag]] = []
    embeddings: list[np.ndarray] = []
    for part, imgs in image_chunks(storage, images.stored):
        embeddings.append(clip.embed_images(imgs))
        from_pixels += [pixel_tags(record, img, categories[record.image_id]) for record, img in zip(part, imgs)]
    # Zero-shot after the pass, over all embeddings at once, so the label texts are encoded once.
    zero_shot = zero_shot_probabilities(clip, np.concatenate(embeddings)) if embeddings else {}
    tags = []
    for i, (record, own) in enumerate(zip(images.stored, from_pixels)):
        labelled = {
            kind: list(zip(ZERO_SHOT_VOCABULARY[kind], (float(p) for p in probs[i]))) for kind, probs in zero_shot.items()
        }
        tags.append(ImageTags(record.image_id, record.file_name, tuple(merge_tags(own, zero_shot_tags(labelled)))))
    return TagSet(tuple(tags))
