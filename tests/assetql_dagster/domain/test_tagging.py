import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import pytest

from assetql_dagster.domain.categories import CategoryPath
from assetql_dagster.domain.style_parameters import COOL_ABOVE_KELVIN, WARM_BELOW_KELVIN
from assetql_dagster.domain.tagging import (
    COLOR_NAMES,
    CONTRAST_BANDS,
    CONTRAST_LABELS,
    KIND_ORDER,
    LIGHTING_BANDS,
    LIGHTING_LABELS,
    TAG_GROUPS,
    TAG_GROUPS_BY_KIND,
    TEMPERATURE_LABELS,
    WIDE_RATIO,
    Tag,
    category_tags,
    color_tags,
    composition_tags,
    confident_tags,
    merge_tags,
    mood_tags,
    nearest_color_name,
    tags_markdown,
    temperature_tag,
    zero_shot_prompts,
    zero_shot_tags,
)

ROOT = Path(__file__).resolve().parents[3]


def hex_of(rgb):
    return "#" + "".join(f"{c:02x}" for c in rgb)


def test_tag_is_frozen_and_validated():
    tag = Tag("red", "color", 0.5, "pixels")
    with pytest.raises(dataclasses.FrozenInstanceError):
        tag.label = "blue"
    with pytest.raises(ValueError, match="confidence of tag 'red'"):
        Tag("red", "color", 1.5, "pixels")
    with pytest.raises(ValueError, match="tag kind must be one of"):
        Tag("red", "colour", 0.5, "pixels")


def test_every_new_tag_names_its_source():
    # The default is only what tags stored before sources were recorded read as.
    with pytest.raises(ValueError, match=r"source of tag 'red' must be one of \[.*'pixels'.*got 'unrecorded'"):
        Tag("red", "color", 0.5)
    with pytest.raises(ValueError, match="got 'camera'"):
        Tag("red", "color", 0.5, "camera")


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
    assert {t.source for t in tags} == {"pixels"}


@pytest.mark.parametrize(
    ("kelvin", "label"),
    [(2700, TEMPERATURE_LABELS[0]), (6504, TEMPERATURE_LABELS[1]), (15000, TEMPERATURE_LABELS[2])],
)
def test_temperature_tag_reads_warm_neutral_and_cool(kelvin, label):
    tag = temperature_tag(kelvin)
    assert (tag.label, tag.kind, tag.source) == (label, "color", "pixels")
    assert 0.5 <= tag.confidence <= 1.0


def test_temperature_confidence_grows_away_from_the_limits():
    assert temperature_tag(WARM_BELOW_KELVIN - 1).confidence == pytest.approx(0.5, abs=0.01)
    assert temperature_tag(COOL_ABOVE_KELVIN + 1).confidence == pytest.approx(0.5, abs=0.01)
    assert temperature_tag(1800).confidence == temperature_tag(25000).confidence == 1.0
    with pytest.raises(ValueError, match="positive number of kelvin, got 0"):
        temperature_tag(0)


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


def test_category_tags_are_the_paths_parts_with_their_source():
    assert category_tags(CategoryPath("weapon", "sword"), "csv") == [
        Tag("weapon", "category", 1.0, "csv"), Tag("sword", "category", 1.0, "csv")]
    assert category_tags(CategoryPath("Magic Items"), "keywords", 0.9) == [Tag("Magic Items", "category", 0.9, "keywords")]
    assert category_tags(None, "") == []
    with pytest.raises(ValueError, match="category source must be one of .*got 'pixels'"):
        category_tags(CategoryPath("weapon"), "pixels")


def test_groups_cover_the_requirements_kinds_and_thresholds_drop_a_model_that_cannot_tell():
    assert [g.kind for g in TAG_GROUPS] == ["object", "scene", "style", "color", "mood", "composition"]
    for group in TAG_GROUPS:
        assert len(group.labels) == len(set(group.labels)) >= 8
        assert len(group.templates) >= 3 and group.max_tags >= 1
        # A model that cannot tell the labels apart gives each 1/n: far below the threshold.
        assert group.threshold >= 4 / len(group.labels)


def test_zero_shot_prompts_fill_every_template_with_article_and_label():
    assert zero_shot_prompts("animal", TAG_GROUPS_BY_KIND["object"].templates)[:2] == [
        "a photo of an animal.", "an illustration of an animal."]
    assert zero_shot_prompts("forest", ["{article} {label} scene."]) == ["a forest scene."]
    with pytest.raises(ValueError, match="needs at least one template"):
        zero_shot_prompts("sword", [])
    with pytest.raises(ValueError, match="non-empty string, got ''"):
        zero_shot_prompts("", ["{label}"])


def test_zero_shot_tags_keep_labels_at_or_above_the_group_threshold_up_to_its_maximum():
    obj, scene = TAG_GROUPS_BY_KIND["object"], TAG_GROUPS_BY_KIND["scene"]
    probs = {
        "object": [("sword", obj.threshold), ("shield", 0.9), ("dragon", obj.threshold - 0.01),
                   ("gem", 0.8), ("coin", 0.85)],
        "scene": [("forest", scene.threshold - 0.01), ("city", 0.01)],
    }
    tags = zero_shot_tags(probs)
    assert [(t.label, t.kind, t.source) for t in tags] == [
        ("shield", "object", "clip"), ("coin", "object", "clip"), ("gem", "object", "clip")][: obj.max_tags]
    assert "dragon" not in {t.label for t in tags} and not [t for t in tags if t.kind == "scene"]


def test_a_near_uniform_model_gives_no_zero_shot_tags():
    uniform = {g.kind: [(label, 1 / len(g.labels)) for label in g.labels] for g in TAG_GROUPS}
    assert zero_shot_tags(uniform) == []


def test_confident_tags_apply_the_same_rule_to_any_source_and_reject_unknown_kinds():
    kept = confident_tags([Tag("dragon", "object", 0.9, "bedrock"), Tag("cozy", "mood", 0.1, "bedrock")])
    assert kept == [Tag("dragon", "object", 0.9, "bedrock")]
    with pytest.raises(ValueError, match="model tag kind must be one of .*got 'category'"):
        confident_tags([Tag("weapon", "category", 1.0, "csv")])


def test_merge_tags_dedupes_keeping_max_confidence_and_orders_by_kind():
    groups = (
        [Tag("square", "composition", 1.0, "pixels"), Tag("bright", "mood", 0.7, "pixels")],
        [Tag("red", "color", 0.4, "pixels"), Tag("Red", "color", 0.6, "clip")],
        [Tag("sword", "object", 0.3, "clip"), Tag("shield", "object", 0.8, "clip")],
        category_tags(CategoryPath("weapons"), "csv"),
    )
    merged = merge_tags(*groups)
    assert [t.label for t in merged] == ["weapons", "shield", "sword", "Red", "bright", "square"]
    assert [KIND_ORDER.index(t.kind) for t in merged] == sorted(KIND_ORDER.index(t.kind) for t in merged)
    assert next(t for t in merged if t.kind == "color") == Tag("Red", "color", 0.6, "clip")


def test_merge_tags_requires_min_count():
    with pytest.raises(ValueError, match="only 2 distinct tag\\(s\\).*at least 5"):
        merge_tags([Tag("a", "object", 0.5, "clip"), Tag("a", "object", 0.6, "clip"), Tag("b", "scene", 0.5, "clip")])


def test_docs_tags_md_is_generated_from_the_tables():
    written = (ROOT / "docs" / "tags.md").read_text()
    assert written == tags_markdown(), (
        "docs/tags.md differs from the tables in assetql_dagster/domain/tagging.py and categories.py; "
        "regenerate it with `python -m assetql_dagster.domain.tagging > docs/tags.md`"
    )
    printed = subprocess.run([sys.executable, "-m", "assetql_dagster.domain.tagging"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    assert printed == written
    for group in TAG_GROUPS:
        assert f"| `{group.kind}` | {group.threshold:g} | {group.max_tags} |" in written
