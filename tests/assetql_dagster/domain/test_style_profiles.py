from pathlib import Path

import pytest

from assetql_dagster.domain.errors import BatchValidationError
from assetql_dagster.domain.profiles import (
    MAX_NOTES,
    ProfileReference,
    StyleProfileSpec,
    diff_profiles,
    parse_batch_style,
    parse_ref,
)
from assetql_dagster.domain.settings import parse_settings
from assetql_dagster.domain.style_refs import PRESETS, StyleRef

README = Path(__file__).parents[3] / "README.md"
SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64


def spec(**changes) -> StyleProfileSpec:
    fields = dict(
        name="brand-x",
        version=1,
        created_at="2025-03-01T10:00:00Z",
        references=(ProfileReference("style-profiles/brand-x/v1/references/a.png", SHA_A),),
        locks={"palette": 80},
        threshold=0.8,
        notes="spring",
    )
    return StyleProfileSpec(**{**fields, **changes})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("brand-x", StyleRef("brand-x")),
        ("brand-x@2", StyleRef("brand-x", 2)),
        ("preset:watercolor", StyleRef("watercolor", preset=True)),
        ("v1.2_b", StyleRef("v1.2_b")),
    ],
)
def test_style_references_parse_and_print_back(text, expected):
    assert parse_ref(text) == expected
    assert str(parse_ref(text)) == text


@pytest.mark.parametrize(
    "text, message",
    [
        ("brand-x@0", "version '0' of profile 'brand-x' must be a whole number from 1 (e.g. 'brand-x@2')"),
        ("brand-x@two", "version 'two' of profile 'brand-x' must be a whole number from 1"),
        ("brand-x@", "version '' of profile 'brand-x'"),
        ("brand x", "profile name 'brand x' must be 1-64 letters, digits"),
        ("@2", "profile name '' must be 1-64"),
        ("preset:oil", "unknown preset 'oil'; expected one of preset:cartoon, preset:watercolor, preset:realistic, "
                       "preset:anime, preset:storybook, preset:3d_render"),
        (7, "a style entry must be text"),
    ],
)
def test_malformed_style_references_say_what_is_expected(text, message):
    with pytest.raises(ValueError) as raised:
        parse_ref(text)
    assert message in str(raised.value)


def test_errors_quote_a_huge_value_boundedly():
    for text in ("x" * 100_000 + "@1", "brand-x@" + "9" * 100_000, "preset:" + "y" * 100_000):
        with pytest.raises(ValueError) as raised:
            parse_ref(text)
        assert len(str(raised.value)) < 400


def test_a_batch_style_is_one_entry_or_one_profile_and_one_preset():
    assert parse_batch_style(None) == ()
    assert parse_batch_style("brand-x") == (StyleRef("brand-x"),)
    assert parse_batch_style(["preset:anime", "brand-x@3"]) == (StyleRef("anime", preset=True), StyleRef("brand-x", 3))


@pytest.mark.parametrize(
    "value, message",
    [
        (["brand-x", "brand-y@2"], "names two reference profiles ('brand-x', 'brand-y@2'); use at most one"),
        (["preset:anime", "preset:cartoon"], "names two presets"),
        ([], "must be a profile ('brand-x', 'brand-x@2'), a preset ('preset:watercolor') or a list"),
        (["a", "preset:anime", "b"], "or a list of at most one of each"),
        ({"name": "brand-x"}, "or a list of at most one of each"),
        (["brand-x", 3], "a style entry must be text"),
    ],
)
def test_invalid_batch_styles_are_rejected(value, message):
    with pytest.raises(ValueError) as raised:
        parse_batch_style(value)
    assert message in str(raised.value)


def test_the_style_setting_is_checked_where_batch_yaml_is_read():
    assert parse_settings({"style": ["brand-x@2", "preset:watercolor"]}, "batch.yaml").style == [
        "brand-x@2", "preset:watercolor"]
    assert parse_settings({}, "batch.yaml").style is None
    with pytest.raises(BatchValidationError) as raised:
        parse_settings({"style": "preset:oil"}, "batch.yaml")
    [problem] = raised.value.problems
    assert (problem.file, problem.column) == ("batch.yaml", "style")
    assert "unknown preset 'oil'; expected one of preset:cartoon" in problem.message


def test_a_spec_round_trips_through_its_json_form():
    original = spec(preset="anime", threshold=1)
    restored = StyleProfileSpec.from_dict(original.to_dict())
    assert restored == original
    assert restored.threshold == 1.0 and isinstance(restored.threshold, float)
    assert isinstance(restored.references, tuple) and restored.ref == "brand-x@1"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"name": "bad/name"}, "profile name 'bad/name' must be 1-64"),
        ({"version": 0}, "profile version must be an integer >= 1, got 0"),
        ({"created_at": "yesterday"}, "created_at must be a UTC time like '2025-01-31T12:00:00Z', got 'yesterday'"),
        ({"references": ()}, "a profile has 1 to 5 references, got ()"),
        ({"references": tuple(ProfileReference(f"k/{i}.png", SHA_A) for i in range(6))}, "a profile has 1 to 5"),
        ({"references": (ProfileReference("k/a.png", "not-a-hash"),)}, "must have a storage key and a sha256"),
        ({"references": (ProfileReference("k/a.png", SHA_A), ProfileReference("j/a.png", SHA_B))},
         "reference file names repeat"),
        ({"locks": {"shine": 10}}, "unknown parameter(s) ['shine'] in locks, expected among ['palette'"),
        ({"locks": {"palette": 101}}, "lock for 'palette' must be an integer from 0 to 100, got 101"),
        ({"locks": {"palette": 50.5}}, "lock for 'palette' must be an integer from 0 to 100, got 50.5"),
        ({"threshold": 1.5}, "threshold must be a number in [0, 1], got 1.5"),
        ({"threshold": float("nan")}, "threshold must be a number in [0, 1], got nan"),
        ({"notes": "n" * (MAX_NOTES + 1)}, f"notes must be text of at most {MAX_NOTES:,} characters"),
        ({"preset": "oil"}, "unknown preset 'oil'; expected one of cartoon, watercolor"),
    ],
)
def test_every_spec_field_is_checked(changes, message):
    with pytest.raises(ValueError) as raised:
        spec(**changes)
    assert message in str(raised.value)
    assert len(str(raised.value)) < 400


def test_a_stored_profile_with_unknown_or_missing_fields_is_rejected():
    data = spec().to_dict()
    with pytest.raises(ValueError, match=r"unknown style profile field\(s\) \['colour'\]"):
        StyleProfileSpec.from_dict({**data, "colour": "red"})
    with pytest.raises(ValueError, match="incomplete style profile"):
        StyleProfileSpec.from_dict({k: v for k, v in data.items() if k != "created_at"})
    with pytest.raises(ValueError, match="references must be a list of"):
        StyleProfileSpec.from_dict({**data, "references": ["style-profiles/brand-x/v1/references/a.png"]})


def test_diff_lists_every_change_and_nothing_else():
    a = spec()
    assert diff_profiles(a, a) == []
    b = spec(
        version=2,
        created_at="2025-04-01T10:00:00Z",
        # a.png renamed with the same bytes is no difference; c.png is new content.
        references=(ProfileReference("v2/renamed.png", SHA_A), ProfileReference("v2/c.png", SHA_C)),
        locks={"palette": 50, "lighting": 30},
        threshold=None,
        notes="summer",
        preset="watercolor",
    )
    assert diff_profiles(a, b) == [
        f"reference added: c.png (sha256 {SHA_C[:12]})",
        "lock lighting: none -> 30",
        "lock palette: 80 -> 50",
        "threshold: 0.8 -> the batch's own",
        "preset: none -> watercolor",
        "notes: 'spring' -> 'summer'",
    ]
    assert diff_profiles(b, a)[:2] == [f"reference removed: c.png (sha256 {SHA_C[:12]})", "lock lighting: 30 -> none"]


def test_readme_presets_table_matches_the_presets():
    lines = README.read_text(encoding="utf-8").splitlines()
    rows = [line for line in lines[lines.index("## Style profiles"):] if line.startswith("| `preset:")]
    assert rows == [f"| `preset:{name}` | {p.modifiers} | {p.negative_prompt} |" for name, p in PRESETS.items()]
    assert PRESETS["watercolor"].modifiers == "watercolor painting, soft washes, paper texture"
