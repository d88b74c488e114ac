"""Descriptive tags with confidences, from image statistics, batch metadata and zero-shot CLIP scores.

Tag kinds, in the order merged tags are listed: category (from the input row), object, scene
and style (zero-shot CLIP over ZERO_SHOT_VOCABULARY), color (dominant palette), mood (luma
brightness and contrast) and composition (aspect ratio).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from assetql_dagster.domain.validation import check_int, check_unit

KIND_ORDER = ("category", "object", "scene", "style", "color", "mood", "composition")

COLOR_NAMES: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 30),
    "orange": (245, 140, 30),
    "yellow": (245, 220, 50),
    "gold": (212, 175, 55),
    "olive": (128, 128, 0),
    "green": (50, 160, 60),
    "teal": (0, 128, 128),
    "cyan": (0, 200, 220),
    "blue": (40, 90, 210),
    "navy": (20, 30, 100),
    "purple": (130, 50, 160),
    "pink": (245, 160, 190),
    "maroon": (128, 0, 32),
    "brown": (130, 80, 40),
    "beige": (225, 205, 165),
    "white": (250, 250, 250),
    "light gray": (200, 200, 200),
    "gray": (128, 128, 128),
    "dark gray": (64, 64, 64),
    "black": (10, 10, 10),
}

# Luma thresholds (low, high) splitting each mood axis into three bands, low to high.
LIGHTING_BANDS = (0.35, 0.65)
LIGHTING_LABELS = ("dark", "balanced lighting", "bright")
# Normalised luma contrast: flat images are "muted", typical soft-lit ones "soft".
CONTRAST_BANDS = (0.25, 0.55)
CONTRAST_LABELS = ("muted", "soft", "high-contrast")

SQUARE_TOLERANCE = 0.05
WIDE_RATIO = 1.7

# Zero-shot vocabulary: CLIP scores each label's prompt (zero_shot_prompt) against the image,
# and the most probable labels of each kind become tags. Objects cover typical game and
# e-commerce assets; scenes the setting; styles the rendering medium.
ZERO_SHOT_VOCABULARY: dict[str, list[str]] = {
    "object": [
        "character", "creature", "dragon", "weapon", "sword", "shield", "potion", "chest",
        "vehicle", "building", "tree", "flower", "product", "shoe", "bag", "bottle", "food",
        "animal", "person", "logo", "icon", "gem", "coin", "armor", "helmet",
    ],
    "scene": [
        "indoor", "outdoor", "forest", "city", "mountains", "ocean", "desert", "space",
        "studio backdrop", "abstract",
    ],
    "style": [
        "photorealistic", "cartoon", "pixel art", "watercolor", "oil painting", "3d render",
        "flat illustration", "anime", "sketch", "low poly",
    ],
}
ZERO_SHOT_TEMPLATES = {
    "object": "a photo of {article} {label}",
    "scene": "an image of {article} {label} scene",
    "style": "an image in {label} style",
}
DEFAULT_TOP_K: dict[str, int] = {"object": 2, "scene": 1, "style": 1}

_HEX = re.compile(r"#[0-9a-fA-F]{6}")


@dataclass(frozen=True)
class Tag:
    """A descriptive label of some kind, with a confidence in [0, 1]."""

    label: str
    kind: str
    confidence: float

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label.strip():
            raise ValueError(f"tag label must be a non-empty string, got {self.label!r}")
        if self.kind not in KIND_ORDER:
            raise ValueError(f"tag kind must be one of {list(KIND_ORDER)}, got {self.kind!r}")
        check_unit(f"confidence of tag {self.label!r}", self.confidence)


def nearest_color_name(hex_color: str) -> str:
    """Name in COLOR_NAMES closest to a "#rrggbb" colour (redmean perceptual distance)."""
    if not isinstance(hex_color, str) or not _HEX.fullmatch(hex_color):
        raise ValueError(f"colour must be a hex string like '#1a2b3c', got {hex_color!r}")
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))

    # "Redmean" weights channels by the mean red level: much closer to perceived
    # difference than plain RGB distance, at no cost.
    def distance(name: str) -> float:
        cr, cg, cb = COLOR_NAMES[name]
        red_mean = (r + cr) / 2
        return (
            (2 + red_mean / 256) * (r - cr) ** 2
            + 4 * (g - cg) ** 2
            + (2 + (255 - red_mean) / 256) * (b - cb) ** 2
        )

    return min(COLOR_NAMES, key=distance)


def color_tags(palette: Iterable[tuple[str, float]], max_tags: int = 3) -> list[Tag]:
    """Colour tags from a palette of ("#rrggbb", share); shares of colours with the same name add up."""
    check_int("max_tags", max_tags, 0)
    shares: dict[str, float] = {}
    for hex_color, share in palette:
        check_unit(f"share of colour {hex_color!r}", share)
        name = nearest_color_name(hex_color)
        shares[name] = shares.get(name, 0.0) + float(share)
    ranked = sorted(shares.items(), key=lambda item: (-item[1], item[0]))[:max_tags]
    return [Tag(name, "color", min(1.0, share)) for name, share in ranked]


def _band_tag(value: float, bands: tuple[float, float], labels: tuple[str, str, str]) -> Tag:
    """Tag for the band `value` falls in; confidence grows from 0.5 at a threshold to 1 far from it."""
    low, high = bands
    if value < low:
        label, depth = labels[0], (low - value) / low
    elif value > high:
        label, depth = labels[2], (value - high) / (1.0 - high)
    else:
        label, depth = labels[1], min(value - low, high - value) / ((high - low) / 2)
    return Tag(label, "mood", 0.5 + 0.5 * min(1.0, depth))


def mood_tags(brightness: float, contrast: float) -> list[Tag]:
    """One lighting tag and one contrast tag from luma brightness and contrast, both in [0, 1]."""
    check_unit("brightness", brightness)
    check_unit("contrast", contrast)
    return [
        _band_tag(brightness, LIGHTING_BANDS, LIGHTING_LABELS),
        _band_tag(contrast, CONTRAST_BANDS, CONTRAST_LABELS),
    ]


def composition_tags(width: int, height: int) -> list[Tag]:
    """Orientation tag (square, landscape or portrait), plus "wide" from a 1.7:1 ratio."""
    check_int("width", width, 1)
    check_int("height", height, 1)
    ratio = width / height
    if abs(ratio - 1.0) <= SQUARE_TOLERANCE:
        orientation = "square"
    else:
        orientation = "landscape" if ratio > 1.0 else "portrait"
    tags = [Tag(orientation, "composition", 1.0)]
    if ratio >= WIDE_RATIO:
        tags.append(Tag("wide", "composition", 1.0))
    return tags


def category_tag(category: str | None) -> list[Tag]:
    """The row's category as a certain tag, or nothing when the row has none."""
    label = (category or "").strip()
    return [Tag(label, "category", 1.0)] if label else []


def zero_shot_prompt(label: str, kind: str) -> str:
    """Text prompt CLIP scores for a vocabulary label, e.g. "a photo of a sword"."""
    if kind not in ZERO_SHOT_TEMPLATES:
        raise ValueError(f"zero-shot kind must be one of {list(ZERO_SHOT_TEMPLATES)}, got {kind!r}")
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"zero-shot label must be a non-empty string, got {label!r}")
    article = "an" if label[0].lower() in "aeiou" else "a"
    return ZERO_SHOT_TEMPLATES[kind].format(article=article, label=label)


def zero_shot_tags(
    label_probs: Mapping[str, Sequence[tuple[str, float]]], top_k: Mapping[str, int] | None = None
) -> list[Tag]:
    """The `top_k[kind]` most probable labels of each kind, from {kind: [(label, prob), ...]}."""
    top_k = DEFAULT_TOP_K if top_k is None else top_k
    for kind in (*label_probs, *top_k):
        if kind not in ZERO_SHOT_VOCABULARY:
            raise ValueError(f"zero-shot kind must be one of {list(ZERO_SHOT_VOCABULARY)}, got {kind!r}")
    tags = []
    for kind, k in top_k.items():
        check_int(f"top_k[{kind!r}]", k, 0)
        ranked = sorted(label_probs.get(kind, ()), key=lambda item: (-item[1], item[0]))
        tags.extend(Tag(label, kind, float(prob)) for label, prob in ranked[:k])
    return tags


def merge_tags(*groups: Iterable[Tag], min_tags: int = 5) -> list[Tag]:
    """Tags deduplicated by label (keeping the most confident), ordered by kind then confidence."""
    best: dict[str, Tag] = {}
    for tag in (tag for group in groups for tag in group):
        key = tag.label.casefold()
        if key not in best or tag.confidence > best[key].confidence:
            best[key] = tag
    merged = sorted(best.values(), key=lambda t: (KIND_ORDER.index(t.kind), -t.confidence, t.label))
    if len(merged) < min_tags:
        labels = [t.label for t in merged]
        raise ValueError(f"only {len(merged)} distinct tag(s) {labels}, expected at least {min_tags}")
    return merged
