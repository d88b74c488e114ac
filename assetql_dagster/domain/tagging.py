"""Descriptive tags with confidences and sources: from pixels, batch metadata, zero-shot CLIP or a
vision-language model.

Tag kinds, in the order merged tags are listed: category (the image's category path), object,
scene and style, color, mood and composition. Every image gets at least five tags from its pixels
alone (named colours and colour temperature, lighting and contrast, orientation), so the minimum
holds however unsure a model is. Model labels (zero-shot CLIP over TAG_GROUPS, or Bedrock) are
kept only at or above their group's threshold, at most the group's maximum.

`python -m assetql_dagster.domain.tagging` prints docs/tags.md: vocabulary, templates, thresholds
and the category hierarchy, all from the tables here and in `categories`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from assetql_dagster.domain.categories import (
    CATEGORY_SOURCES,
    CLIP_CATEGORY_THRESHOLD,
    KEYWORD_CONFIDENCE,
    CategoryPath,
    categories_markdown,
)
from assetql_dagster.domain.style_parameters import COOL_ABOVE_KELVIN, WARM_BELOW_KELVIN
from assetql_dagster.domain.validation import check_int, check_unit

KIND_ORDER = ("category", "object", "scene", "style", "color", "mood", "composition", "season", "campaign")
# Where a tag comes from: the CSV, the prompt's keywords or a person (categories), image statistics,
# zero-shot CLIP, the Bedrock vision-language model, or the batch's settings (its season and campaign).
TAG_SOURCES = (*CATEGORY_SOURCES, "pixels", "bedrock", "batch")
# What tags stored before sources were recorded read as; re-materializing `tags` records them.
UNRECORDED_SOURCE = "unrecorded"

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
# Colour temperature of the mean colour, by the style parameters' warm/cool limits; confidence
# reaches 1 this many mired past a limit (mired = 10^6 / kelvin, roughly even steps as seen).
TEMPERATURE_LABELS = ("warm tones", "neutral tones", "cool tones")
TEMPERATURE_FULL_MIRED = 50.0

SQUARE_TOLERANCE = 0.05
WIDE_RATIO = 1.7


@dataclass(frozen=True)
class TagGroup:
    """One zero-shot vocabulary: each label is scored through every template (open_clip's
    classifier: template embeddings averaged), probabilities are a softmax over the group's labels,
    and labels at or above `threshold` become tags, the `max_tags` most probable."""

    kind: str
    labels: tuple[str, ...]
    templates: tuple[str, ...]
    threshold: float
    max_tags: int
    about: str


# Thresholds are for a trained CLIP (logit scale 100), where a label the model picks out takes most
# of its group's probability. They sit well above what a model that cannot tell gets: the offline
# tiny CLIP's highest probabilities are about half of them, so it keeps no label at all.
TAG_GROUPS: tuple[TagGroup, ...] = (
    TagGroup(
        "object",
        (
            "character", "creature", "dragon", "sword", "axe", "bow", "staff", "shield", "armor", "helmet",
            "potion", "scroll", "book", "treasure chest", "key", "gem", "coin", "ring", "crown", "food",
            "plant", "tree", "flower", "animal", "person", "vehicle", "building", "furniture", "shoe", "bag",
            "bottle", "clothing", "jewelry", "watch", "logo", "icon",
        ),
        (
            "a photo of {article} {label}.", "an illustration of {article} {label}.",
            "a 3d render of {article} {label}.", "a game asset of {article} {label}.",
            "a product photo of {article} {label}.",
        ),
        0.35,
        3,
        "what the image shows: game assets and products",
    ),
    TagGroup(
        "scene",
        (
            "indoor", "outdoor", "forest", "city", "mountains", "sea", "desert", "outer space", "dungeon",
            "studio", "plain background", "abstract",
        ),
        ("{article} {label} scene.", "a photo of {article} {label} scene.", "an illustration of {article} {label} scene."),
        0.55,
        1,
        "the setting",
    ),
    TagGroup(
        "style",
        (
            "photorealistic", "cartoon", "pixel art", "watercolor", "oil painting", "3d render",
            "flat illustration", "anime", "sketch", "low poly", "vector art", "fantasy illustration",
        ),
        ("{article} {label} image.", "an image in {label} style.", "art in {label} style."),
        0.55,
        1,
        "the rendering medium",
    ),
    TagGroup(
        "color",
        (
            "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray",
            "gold", "silver", "multicolored",
        ),
        ("{article} {label} image.", "an image in {label} colors.", "a picture that is mostly {label}."),
        0.5,
        2,
        "colours as seen (the palette's named colours come from the pixels)",
    ),
    TagGroup(
        "mood",
        (
            "epic", "calm", "cheerful", "gloomy", "mysterious", "playful", "elegant", "menacing", "cozy",
            "dramatic", "whimsical", "serene",
        ),
        ("{article} {label} image.", "an image with {article} {label} mood.", "{article} {label} scene."),
        0.5,
        2,
        "the atmosphere (lighting and contrast come from the pixels)",
    ),
    TagGroup(
        "composition",
        ("close-up", "full body", "centered", "isometric", "top-down", "side view", "wide shot", "pattern"),
        ("{article} {label} image.", "a picture with {article} {label} composition.", "{article} {label} photo."),
        0.7,
        1,
        "framing and viewpoint (orientation comes from the dimensions)",
    ),
)
TAG_GROUPS_BY_KIND: dict[str, TagGroup] = {group.kind: group for group in TAG_GROUPS}
# Categories are scored like objects: each subcategory's CLIP text through the object templates.
CATEGORY_TEMPLATES = TAG_GROUPS_BY_KIND["object"].templates

_HEX = re.compile(r"#[0-9a-fA-F]{6}")


@dataclass(frozen=True)
class Tag:
    """A descriptive label of some kind, with a confidence in [0, 1] and where it came from."""

    label: str
    kind: str
    confidence: float
    source: str = UNRECORDED_SOURCE

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label.strip():
            raise ValueError(f"tag label must be a non-empty string, got {self.label!r}")
        if self.kind not in KIND_ORDER:
            raise ValueError(f"tag kind must be one of {list(KIND_ORDER)}, got {self.kind!r}")
        check_unit(f"confidence of tag {self.label!r}", self.confidence)
        if self.source not in TAG_SOURCES:
            raise ValueError(f"source of tag {self.label!r} must be one of {list(TAG_SOURCES)}, got {self.source!r}")


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
    return [Tag(name, "color", min(1.0, share), "pixels") for name, share in ranked]


def _band_tag(value: float, bands: tuple[float, float], labels: tuple[str, str, str]) -> Tag:
    """Tag for the band `value` falls in; confidence grows from 0.5 at a threshold to 1 far from it."""
    low, high = bands
    if value < low:
        label, depth = labels[0], (low - value) / low
    elif value > high:
        label, depth = labels[2], (value - high) / (1.0 - high)
    else:
        label, depth = labels[1], min(value - low, high - value) / ((high - low) / 2)
    return Tag(label, "mood", 0.5 + 0.5 * min(1.0, depth), "pixels")


def mood_tags(brightness: float, contrast: float) -> list[Tag]:
    """One lighting tag and one contrast tag from luma brightness and contrast, both in [0, 1]."""
    check_unit("brightness", brightness)
    check_unit("contrast", contrast)
    return [
        _band_tag(brightness, LIGHTING_BANDS, LIGHTING_LABELS),
        _band_tag(contrast, CONTRAST_BANDS, CONTRAST_LABELS),
    ]


def temperature_tag(kelvin: float) -> Tag:
    """"warm tones", "neutral tones" or "cool tones" from the mean colour's temperature in kelvin."""
    if isinstance(kelvin, bool) or not isinstance(kelvin, (int, float)) or not kelvin > 0:
        raise ValueError(f"colour temperature must be a positive number of kelvin, got {kelvin!r}")
    mired, warm, cool = (1e6 / k for k in (kelvin, WARM_BELOW_KELVIN, COOL_ABOVE_KELVIN))
    if mired > warm:
        label, depth = TEMPERATURE_LABELS[0], (mired - warm) / TEMPERATURE_FULL_MIRED
    elif mired < cool:
        label, depth = TEMPERATURE_LABELS[2], (cool - mired) / TEMPERATURE_FULL_MIRED
    else:
        label, depth = TEMPERATURE_LABELS[1], min(mired - cool, warm - mired) / ((warm - cool) / 2)
    return Tag(label, "color", 0.5 + 0.5 * min(1.0, depth), "pixels")


def composition_tags(width: int, height: int) -> list[Tag]:
    """Orientation tag (square, landscape or portrait), plus "wide" from a 1.7:1 ratio."""
    check_int("width", width, 1)
    check_int("height", height, 1)
    ratio = width / height
    if abs(ratio - 1.0) <= SQUARE_TOLERANCE:
        orientation = "square"
    else:
        orientation = "landscape" if ratio > 1.0 else "portrait"
    tags = [Tag(orientation, "composition", 1.0, "pixels")]
    if ratio >= WIDE_RATIO:
        tags.append(Tag("wide", "composition", 1.0, "pixels"))
    return tags


def category_tags(category: CategoryPath | None, source: str, confidence: float = 1.0) -> list[Tag]:
    """The category path as tags, its primary and subcategory (none for an uncategorised image)."""
    if category is None:
        return []
    if source not in CATEGORY_SOURCES:
        raise ValueError(f"category source must be one of {list(CATEGORY_SOURCES)}, got {source!r}")
    return [Tag(name, "category", confidence, source) for name in (category.primary, category.sub) if name]


def zero_shot_prompts(label: str, templates: Sequence[str]) -> list[str]:
    """The texts CLIP reads for `label`, one per template, e.g. "a photo of a sword."."""
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"zero-shot label must be a non-empty string, got {label!r}")
    if not templates:
        raise ValueError(f"zero-shot label {label!r} needs at least one template, got {templates!r}")
    article = "an" if label[0].lower() in "aeiou" else "a"
    return [template.format(article=article, label=label) for template in templates]


def confident_tags(tags: Iterable[Tag], groups: Mapping[str, TagGroup] = TAG_GROUPS_BY_KIND) -> list[Tag]:
    """Model tags kept by their group's rule: at or above its threshold, its `max_tags` most
    confident (in group order). Tags of a kind without a group are a ValueError."""
    by_kind: dict[str, list[Tag]] = {}
    for tag in tags:
        if tag.kind not in groups:
            raise ValueError(f"model tag kind must be one of {list(groups)}, got {tag.kind!r} for {tag.label!r}")
        by_kind.setdefault(tag.kind, []).append(tag)
    kept = []
    for kind, group in groups.items():
        ranked = sorted(by_kind.get(kind, ()), key=lambda t: (-t.confidence, t.label))
        kept += [t for t in ranked if t.confidence >= group.threshold][: group.max_tags]
    return kept


def zero_shot_tags(label_probs: Mapping[str, Sequence[tuple[str, float]]]) -> list[Tag]:
    """CLIP's tags from {kind: [(label, probability), ...]}, kept by `confident_tags`."""
    return confident_tags(
        Tag(label, kind, float(prob), "clip") for kind, ranked in label_probs.items() for label, prob in ranked
    )


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


def tags_markdown() -> str:
    """docs/tags.md, generated from TAG_GROUPS and the category hierarchy."""
    groups = ["| group | threshold | at most | what it covers | templates | labels |", "|---|---|---|---|---|---|"]
    for g in TAG_GROUPS:
        templates = "<br>".join(f"`{t}`" for t in g.templates)
        groups.append(f"| `{g.kind}` | {g.threshold:g} | {g.max_tags} | {g.about} | {templates} | {', '.join(g.labels)} |")
    pixels = [
        f"- `color`: up to 3 named colours of the palette (confidence: their pixel share), and "
        f"{' / '.join(TEMPERATURE_LABELS)} from the mean colour's temperature (warm below "
        f"{WARM_BELOW_KELVIN:g} K, cool above {COOL_ABOVE_KELVIN:g} K).",
        f"- `mood`: {' / '.join(LIGHTING_LABELS)} from mean luma (bands {LIGHTING_BANDS}), and "
        f"{' / '.join(CONTRAST_LABELS)} from luma contrast (bands {CONTRAST_BANDS}).",
        f"- `composition`: square (ratio within {SQUARE_TOLERANCE:g} of 1), landscape or portrait, plus "
        f"wide from {WIDE_RATIO:g}:1.",
    ]
    return "\n".join([
        "# Tags and categories",
        "",
        "<!-- Generated by `python -m assetql_dagster.domain.tagging > docs/tags.md`; edit the tables in",
        "assetql_dagster/domain/tagging.py and categories.py, not this file. -->",
        "",
        "Every tag has a kind, a confidence in [0, 1] and a source: " + ", ".join(f"`{s}`" for s in TAG_SOURCES) + ".",
        "",
        "## From the pixels (source `pixels`)",
        "",
        "At least five per image whatever a model says; band tags have confidence 0.5 at a band's",
        "edge, rising to 1 away from it.",
        "",
        *pixels,
        "",
        "## Zero-shot CLIP (source `clip`)",
        "",
        "Each label is embedded through every template of its group; the normalised text embeddings",
        "are averaged and renormalised (open_clip's `build_zero_shot_classifier`), once per process",
        "and model. An image's probabilities are the softmax of the model's logit scale times the",
        "cosine to each label of the group. Labels under the group's threshold are dropped; of the",
        "rest, at most the group's maximum are kept. Bedrock tags (source `bedrock`) are kept by the",
        "same thresholds and maxima.",
        "",
        *groups,
        "",
        "## Categories",
        "",
        "An image's category path comes from the first of: a hand-set override (`assetql categorize`,",
        "source `override`); the CSV `category` column (`weapon/sword`, `weapon`, or a subcategory",
        "alone such as `sword`; an unknown value is kept as typed; source `csv`); the first keyword",
        f"of the prompt below, else a primary named in it (source `keywords`, confidence {KEYWORD_CONFIDENCE:g});",
        "zero-shot CLIP over every subcategory's text through the `object` templates, when the best",
        f"reaches {CLIP_CATEGORY_THRESHOLD:g} (source `clip`). Otherwise the image is uncategorised. The",
        "primary and the subcategory are also `category` tags.",
        "",
        categories_markdown(),
        "",
    ])


if __name__ == "__main__":
    print(tags_markdown(), end="")
