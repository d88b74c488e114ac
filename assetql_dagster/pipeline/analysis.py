"""Scores and tags of a batch's images.

The style score compares every image with the style profile (and the style loop scores every new
version the same way); the tags describe the current images (colours, mood and composition from
the pixels, the category path, and model labels: zero-shot CLIP, or Bedrock where the batch asks
for it and it answers).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from assetql_dagster.domain.categories import CategoryPath, category_from_probabilities, leaves
from assetql_dagster.domain.palette import dominant_palette
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
from assetql_dagster.domain.style_parameters import extract_parameters, image_lighting
from assetql_dagster.domain.tagging import (
    CATEGORY_TEMPLATES,
    TAG_GROUPS,
    TAG_GROUPS_BY_KIND,
    Tag,
    category_tags,
    color_tags,
    composition_tags,
    confident_tags,
    merge_tags,
    mood_tags,
    temperature_tag,
    zero_shot_prompts,
    zero_shot_tags,
)
from assetql_dagster.pipeline.categorizing import found_category
from assetql_dagster.pipeline.style import style_scores
from resources.storage import AssetStorage
from resources.vision_tagger import VisionAnswerError, VisionTagger, VisionTaggerUnavailable

UNSCORED = "unscored"
# Images decoded at once: enough to keep CLIP's batches full, few enough that memory stays flat.
CHUNK = 16
# The vision model reads a JPEG of at most this side: enough to see what an image shows, and far
# under Bedrock's size limit per image.
VISION_MAX_SIDE = 1024
_log = logging.getLogger(__name__)


def image_chunks(
    storage: AssetStorage, stored: Sequence[StoredImage], chunk: int = CHUNK
) -> Iterator[tuple[Sequence[StoredImage], list[Image.Image]]]:
    for start in range(0, len(stored), chunk):
        part = stored[start : start + chunk]
        yield part, [Image.open(io.BytesIO(storage.read_bytes(r.raw_key))).convert("RGB") for r in part]


def zero_shot_probabilities(clip, embeddings: np.ndarray) -> dict[str, np.ndarray]:
    """Per tag group, a [n_images, n_labels] matrix of CLIP zero-shot probabilities."""
    return {
        group.kind: clip.zero_shot(
            embeddings, group.labels, [zero_shot_prompts(label, group.templates) for label in group.labels]
        )
        for group in TAG_GROUPS
    }


def clip_tags(probabilities: dict[str, np.ndarray], row: int) -> list[Tag]:
    """The zero-shot tags of image `row` of `zero_shot_probabilities`, kept by their group's threshold."""
    return zero_shot_tags({
        kind: list(zip(TAG_GROUPS_BY_KIND[kind].labels, (float(p) for p in probs[row])))
        for kind, probs in probabilities.items()
    })


def clip_categories(clip, embeddings: np.ndarray) -> list[tuple[CategoryPath, float] | None]:
    """Per image, the subcategory zero-shot CLIP finds above the category threshold, else None."""
    paths, texts = zip(*leaves())
    probs = clip.zero_shot(
        embeddings, [p.path for p in paths], [zero_shot_prompts(text, CATEGORY_TEMPLATES) for text in texts]
    )
    return [category_from_probabilities(list(zip(paths, (float(p) for p in row)))) for row in probs]


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


def pixel_tags(record: StoredImage, img: Image.Image) -> list[Tag]:
    """At least five tags read off the pixels: named colours and colour temperature, lighting and
    contrast, orientation."""
    lighting = image_lighting(img)
    return [
        *color_tags(dominant_palette(img, k=5)),
        temperature_tag(lighting.kelvin),
        *mood_tags(lighting.mean_luminance, lighting.contrast),
        *composition_tags(record.width, record.height),
    ]


def vision_jpeg(img: Image.Image) -> bytes:
    """`img` as the JPEG the vision model reads, at most VISION_MAX_SIDE on its longer side."""
    small = img.copy()
    small.thumbnail((VISION_MAX_SIDE, VISION_MAX_SIDE))
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def vision_tags(
    tagger: VisionTagger, model_id: str, warn: Callable[[str], None]
) -> Callable[[StoredImage, Image.Image], list[Tag] | None]:
    """Per image, the vision model's tags (kept by the tag groups' thresholds), or None where the
    local tagger stands in: for that image when its answer is unusable, and for the rest of the batch
    once Bedrock is unavailable (each further call would wait out the same retries)."""
    unavailable = False

    def describe(record: StoredImage, img: Image.Image) -> list[Tag] | None:
        nonlocal unavailable
        if unavailable:
            return None
        try:
            found = tagger.tag_image(vision_jpeg(img), "image/jpeg", model_id)
        except VisionTaggerUnavailable as exc:
            unavailable = True
            warn(f"Bedrock is unavailable, so {record.file_name} and the images after it are tagged locally: {exc}")
            return None
        except VisionAnswerError as exc:
            warn(f"{record.file_name}: Bedrock's answer is unusable, so it is tagged locally: {exc}")
            return None
        return confident_tags(Tag(t.label, t.kind, t.confidence, "bedrock") for t in found)

    return describe


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


def batch_tags(settings: BatchSettings, job: ImageJob) -> list[Tag]:
    """`season:NAME` and `campaign:NAME` of the batch, on every image, so search finds them."""
    found = [Tag(f"season:{job.season}", "season", 1.0, "batch")] if job.season else []
    return found + ([Tag(f"campaign:{settings.campaign}", "campaign", 1.0, "batch")] if settings.campaign else [])


def tag_images(
    storage: AssetStorage,
    settings: BatchSettings,
    images: ImageSet,
    jobs: Sequence[ImageJob],
    clip,
    vision: VisionTagger | None = None,
    warn: Callable[[str], None] = _log.warning,
) -> TagSet:
    """At least five tags per stored image, and its category path.

    Pixel tags always; model tags from `vision` (Bedrock) when the batch's `tagger` is `bedrock`,
    else (or where it fails) zero-shot CLIP; the category from the CSV, the prompt's keywords or
    zero-shot CLIP. Hand-set categories are not baked in: the catalog applies them (see
    `categorizing`), so clearing one brings back what was found here.
    """
    if settings.tagger == "bedrock" and vision is None:
        raise ValueError("batch setting tagger: bedrock needs a vision tagger resource, got None")
    describe = vision_tags(vision, settings.bedrock_model, warn) if settings.tagger == "bedrock" else None
    from_pixels: list[list[Tag]] = []
    from_vision: list[list[Tag] | None] = []
    embeddings: list[np.ndarray] = []
    for part, imgs in image_chunks(storage, images.stored):
        embeddings.append(clip.embed_images(imgs))
        from_pixels += [pixel_tags(record, img) for record, img in zip(part, imgs)]
        from_vision += [describe(record, img) if describe else None for record, img in zip(part, imgs)]
    vectors = np.concatenate(embeddings) if embeddings else np.zeros((0, 0), dtype=np.float32)
    # Zero-shot after the pass, over all the images that need it at once.
    local = {i: row for row, i in enumerate(i for i, described in enumerate(from_vision) if described is None)}
    zero_shot = zero_shot_probabilities(clip, vectors[list(local)]) if local else {}
    jobs_by_id = {j.image_id: j for j in jobs}
    found = [found_category(jobs_by_id[record.image_id]) for record in images.stored]
    unfound = [i for i, f in enumerate(found) if f is None]
    by_clip = dict(zip(unfound, clip_categories(clip, vectors[unfound]))) if unfound else {}
    tags = []
    for i, record in enumerate(images.stored):
        model_tags = from_vision[i] if from_vision[i] is not None else clip_tags(zero_shot, local[i])
        category, source, confidence = found[i] or (
            (by_clip[i][0], "clip", by_clip[i][1]) if by_clip.get(i) else (None, "", 0.0)
        )
        tags.append(ImageTags(
            record.image_id, record.file_name,
            tuple(merge_tags(category_tags(category, source, confidence), model_tags, from_pixels[i],
                             batch_tags(settings, jobs_by_id[record.image_id]))),
            # Kept for the catalog's similarity search; 6 decimals is float32's precision.
            embedding=tuple(round(float(v), 6) for v in vectors[i]),
            category=category.path if category else "",
            category_source=source,
        ))
    return TagSet(tuple(tags), embedding_model=clip.embedding_model)
