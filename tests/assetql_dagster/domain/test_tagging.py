import dataclasses
import math

import pytest

from assetql_dagster.domain.tagging import (
    COLOR_NAMES,
    CONTRAST_BANDS,
    CONTRAST_LABELS,
    KIND_ORDER,
    LIGHTING_BANDS,
    LIGHTING_LABELS,
    WIDE_RATIO,
    ZERO_SHOT_VOCABULARY,
    Tag,
    category_tag,
    color_tags,
    composition_tags,
    merge_tags,
    mood_tags,
    nearest_color_name,
    zero_shot_prompt,
    zero_shot_tags,
)


def hex_of(rgb):
    return "#" + "".join(f"{c:02x}" for c in rgb)


def test_tag_is_frozen_and_validated():
    tag = Tag("red", "color", 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tag.label = "blue"
    with pytest.raises(ValueError, match="confidence of tag 'red'"):
        Tag("red", "color", 1.5)
    with pytest.raises(ValueError, match="tag kind must be one of"):
        Tag("red", "colour", 0.5)


@pytest.mark.parametrize("name", sorted(COLOR_NAMES))
def test_each_named_colour_is_its_own_nearest_name(name):
    assert nearest_color_name(hex_of(COLOR_NAMES[name])) == name


@pytest.mark.parametrize(
    ("hex_color", "name"),
    [("#ff0000", "red"), ("#0000FF", "blue"), ("#ffffff", "white"), ("#000000", "black"), ("#ffc0cb", "pink")],
)
def test_common_colours_get_their_everyday_name(hex_color, name):
    assert nearest_color_name(hex_color) == name


@pytest.mark.parametrize("bad", ["red", "#fff", "#gggggg", "ff0000"])
def test_nearest_color_name_rejects_malformed_hex(bad):
    with pytest.raises(ValueError, match="hex string"):
        nearest_color_name(bad)


def test_color_tags_merge_shares_by_name_and_keep_the_largest():
    palette = [("#ff0000", 0.3), ("#fe0101", 0.2), ("#0000ff", 0.25), ("#ffffff", 0.15), ("#000000", 0.1)]
    tags = color_tags(palette, max_tags=3)
    assert [(t.label, t.kind) for t in tags] == [("red", "color"), ("blue", "color"), ("white", "color")]
    assert tags[0].confidence == pytest.approx(0.3 + 0.2)


def test_mood_tags_pick_the_band_of_each_axis():
    low_light, high_light = LIGHTING_BANDS
    low_contrast, high_contrast = CONTRAST_BANDS
    dark_flat = mood_tags(low_light / 2, low_contrast / 2)
    middle = mood_tags((low_light + high_light) / 2, (low_contrast + high_contrast) / 2)
    bright_punchy = mood_tags((high_light + 1) / 2, (high_contrast + 1) / 2)
    assert [t.label for t in dark_flat] == [LIGHTING_LABELS[0], CONTRAST_LABELS[0]]
    assert [t.label for t in middle] == [LIGHTING_LABELS[1], CONTRAST_LABELS[1]]
    assert [t.label for t in bright_punchy] == [LIGHTING_LABELS[2], CONTRAST_LABELS[2]]
    assert all(t.kind == "mood" and 0.5 <= t.confidence <= 1.0 for t in dark_flat + middle + bright_punchy)


def test_mood_confidence_grows_away_from_thresholds():
    low_light = LIGHTING_BANDS[0]
    near = mood_tags(low_light - 0.01, 0.4)[0]
    far = mood_tags(0.0, 0.4)[0]
    assert near.label == far.label == LIGHTING_LABELS[0]
    assert near.confidence < far.confidence == 1.0


def test_mood_tags_validate_range():
    with pytest.raises(ValueError, match="brightness must be a number in \\[0, 1\\]"):
        mood_tags(1.2, 0.3)


@pytest.mark.parametrize(
    ("size", "labels"),
    [
        ((512, 512), ["square"]),
        ((768, 512), ["landscape"]),
        ((512, 768), ["portrait"]),
        ((math.ceil(512 * WIDE_RATIO), 512), ["landscape", "wide"]),
    ],
)
def test_composition_tags(size, labels):
    tags = composition_tags(*size)
    assert [t.label for t in tags] == labels
    assert all(t.kind == "composition" and t.confidence == 1.0 for t in tags)


def test_composition_tags_reject_zero_size():
    with pytest.raises(ValueError, match="height must be an integer >= 1, got 0"):
        composition_tags(10, 0)


def test_category_tag():
    assert category_tag("  weapons ") == [Tag("weapons", "category", 1.0)]
    assert category_tag("") == []
    assert category_tag(None) == []


def test_vocabulary_sizes_and_prompts():
    assert len(ZERO_SHOT_VOCABULARY["object"]) >= 20
    assert len(ZERO_SHOT_VOCABULARY["scene"]) >= 10
    assert len(ZERO_SHOT_VOCABULARY["style"]) >= 10
    assert zero_shot_prompt("sword", "object") == "a photo of a sword"
    assert zero_shot_prompt("animal", "object") == "a photo of an animal"
    assert zero_shot_prompt("forest", "scene") == "an image of a forest scene"
    assert zero_shot_prompt("pixel art", "style") == "an image in pixel art style"
    with pytest.raises(ValueError, match="zero-shot kind must be one of"):
        zero_shot_prompt("sword", "thing")


def test_zero_shot_tags_take_top_k_per_kind():
    probs = {
        "object": [("sword", 0.2), ("shield", 0.5), ("dragon", 0.3)],
        "scene": [("forest", 0.7), ("city", 0.3)],
        "style": [("cartoon", 0.1), ("anime", 0.9)],
    }
    tags = zero_shot_tags(probs)
    assert [(t.label, t.kind, t.confidence) for t in tags] == [
        ("shield", "object", 0.5),
        ("dragon", "object", 0.3),
        ("forest", "scene", 0.7),
        ("anime", "style", 0.9),
    ]
    assert [t.label for t in zero_shot_tags(probs, top_k={"scene": 2})] == ["forest", "city"]


def test_zero_shot_tags_reject_unknown_kind():
    with pytest.raises(ValueError, match="got 'colour'"):
        zero_shot_tags({"colour": [("red", 1.0)]})


def test_merge_tags_dedupes_keeping_max_confidence_and_orders_by_kind():
    groups = (
        [Tag("square", "composition", 1.0), Tag("bright", "mood", 0.7)],
        [Tag("red", "color", 0.4), Tag("Red", "color", 0.6)],
        [Tag("sword", "object", 0.3), Tag("shield", "object", 0.8)],
        category_tag("weapons"),
    )
    merged = merge_tags(*groups)
    assert [t.label for t in merged] == ["weapons", "shield", "sword", "Red", "bright", "square"]
    assert [KIND_ORDER.index(t.kind) for t in merged] == sorted(KIND_ORDER.index(t.kind) for t in merged)
    assert next(t for t in merged if t.kind == "color").confidence == 0.6


def test_merge_tags_requires_min_count():
    with pytest.raises(ValueError, match="only 2 distinct tag\\(s\\).*at least 5"):
        merge_tags([Tag("a", "object", 0.5), Tag("a", "object", 0.6), Tag("b", "scene", 0.5)])
