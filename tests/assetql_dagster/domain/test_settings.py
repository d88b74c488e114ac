import dataclasses
import difflib
import json
import os
from datetime import date
from pathlib import Path

import pytest

from assetql_dagster.domain import settings as settings_module
from assetql_dagster.domain.errors import BatchValidationError
from assetql_dagster.domain.settings import (
    MAX_SETTINGS_BYTES,
    MAX_YAML_ALIASES,
    MAX_YAML_NODES,
    BatchSettings,
    identifier_error,
    load_settings,
    parse_settings,
    read_settings,
    settings_table_markdown,
)

FIELDS = [f.name for f in dataclasses.fields(BatchSettings)]
README = Path(__file__).parents[3] / "README.md"


def problems_of(data, file="batch.yaml"):
    with pytest.raises(BatchValidationError) as caught:
        parse_settings(data, file)
    return caught.value.problems


def write_yaml(tmp_path, text, name="batch.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_field_is_documented():
    for field in dataclasses.fields(BatchSettings):
        assert callable(field.metadata["check"]), field.name
        for key in ("doc", "readme", "readme_default"):
            assert field.metadata[key].strip(), (field.name, key)


def _readme_settings_table():
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("### `batch.yaml` settings")
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    return table


def test_readme_settings_table_matches_declarations():
    expected = settings_table_markdown().splitlines()
    actual = _readme_settings_table()
    diff = "\n".join(difflib.unified_diff(actual, expected, "README.md", "generated", lineterm=""))
    assert actual == expected, (
        "README.md's `batch.yaml` settings table differs from the settings declared in "
        "assetql_dagster/domain/settings.py. Regenerate it with "
        "`python -m assetql_dagster.domain.settings` and paste the output over the table under "
        f"'### `batch.yaml` settings':\n{diff}"
    )


def test_settings_table_has_a_row_per_setting():
    rows = settings_table_markdown().splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == [f"| `{name}`" for name in FIELDS]
    assert "| `steps` | 20 | denoising steps, 1–150 |" in rows
    assert "| `exports` | `[zip, manifest, gallery, links]` |" in settings_table_markdown()


def test_empty_mapping_gives_defaults():
    assert parse_settings({}, "batch.yaml") == BatchSettings()


def test_valid_values_are_kept():
    data = {
        "name": "spring-2025",
        "description": "Spring campaign",
        "template": "{prompt}, {style|flat}",
        "style": ["brand-x@2", "preset:watercolor"],
        "negative_prompt": "blurry",
        "modifiers": "pastel colors",
        "model": "org/model",
        "width": 512,
        "height": 768,
        "steps": 150,
        "guidance_scale": 0,
        "variations": 8,
        "seed": 2**32 - 1,
        "max_rows": 10_000,
        "style_threshold": 1,
        "min_pass_rate": 0.5,
        "min_completion_rate": 0,
        "locks": {"texture": 0, "palette": 100},
        "ip_adapter": "h94/IP-Adapter/models/ip-adapter_sd15.safetensors",
        "style_strength": 0.5,
        "lora": [["brand.safetensors", 0.75]],
        "max_attempts": 10,
        "regeneration_budget": 1,
        "max_manual_regenerations": 0,
        "naming_pattern": "{sku}-{seq}-{color_scheme}",
        "shard_size": 500,
        "micro_batch": 64,
        "exports": ["zip", "links", "unity"],
        "export_options": {"unity": {"format": "tga", "max_size": 1024}},
        "translator": "glossary",
        "glossary": {"es": {"espada": "sword"}},
        "season": "christmas",
        "region": "UK",
        "palette": ["#C8102E", "#ffffff"],
        "campaign": "winter-sale",
        "priority": "high",
        "export_only": "approved",
        "link_expiry": "36h",
        "tagger": "bedrock",
        "bedrock_model": "anthropic.claude-3-haiku-20240307-v1:0",
    }
    settings = parse_settings(data, "batch.yaml")
    floats = {"guidance_scale": 0.0, "style_threshold": 1.0, "min_completion_rate": 0.0, "regeneration_budget": 1.0}
    locks = (("palette", 100), ("texture", 0))
    stored = {"exports": ("zip", "links", "unity"), "locks": locks, "lora": (("brand.safetensors", 0.75),),
              "export_options": (("unity", '{"format": "tga", "max_size": 1024}'),),
              "glossary": (("es", '{"espada": "sword"}'),), "palette": ("#c8102e", "#ffffff")}
    assert settings.to_dict() == {**data, **floats, **stored}
    assert isinstance(settings.guidance_scale, float)
    assert settings.options_of("unity") == {"format": "tga", "max_size": 1024} and settings.options_of("print") == {}
    assert BatchSettings.from_snapshot(settings.to_dict()) == settings


def test_locks_are_kept_sorted_and_survive_a_snapshot():
    settings = parse_settings({"locks": {"palette": 80, "lighting": 50}}, "batch.yaml")
    assert settings.locks == (("lighting", 50), ("palette", 80))
    assert settings.lock_weights == {"lighting": 50, "palette": 80}
    assert BatchSettings.from_snapshot(settings.to_dict()) == settings
    assert (settings.max_attempts, settings.regeneration_budget) == (3, 0.3)


def test_modifiers_list_is_comma_joined():
    settings = parse_settings({"modifiers": ["autumn ", "warm light", ""]}, "batch.yaml")
    assert settings.modifiers == "autumn, warm light"


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("name", "my batch", "letters, digits"),
        ("name", 5, "must be text"),
        ("description", ["x"], "must be text"),
        ("template", "", "non-empty text"),
        ("template", {"prompt": None}, "put the value in quotes"),
        ("negative_prompt", 3, "must be text"),
        ("modifiers", [1, 2], "must be text"),
        ("model", "  ", "non-empty text"),
        ("width", 63, "from 64 to 2048"),
        ("width", 2056, "from 64 to 2048"),
        ("width", 100, "multiple of 8"),
        ("height", 512.0, "integer"),
        ("steps", 0, "from 1 to 150"),
        ("steps", 151, "from 1 to 150"),
        ("steps", True, "integer"),
        ("steps", "20", "integer"),
        ("guidance_scale", -0.1, "from 0 to 30"),
        ("guidance_scale", 30.5, "from 0 to 30"),
        ("guidance_scale", float("nan"), "number"),
        ("guidance_scale", "7", "number"),
        ("variations", 9, "from 1 to 8"),
        ("seed", -1, "from 0 to 4294967295"),
        ("seed", 2**32, "from 0 to 4294967295"),
        ("max_rows", 0, "from 1 to 10000"),
        ("max_rows", 10_001, "from 1 to 10000"),
        ("style_threshold", 1.01, "from 0 to 1"),
        ("min_pass_rate", 1.5, "from 0 to 1"),
        ("min_completion_rate", -0.01, "from 0 to 1"),
        ("locks", ["palette"], "must be a mapping of style parameter to weight 0-100"),
        ("locks", {"palete": 50}, "unknown parameter(s) ['palete'] in locks"),
        ("locks", {"palette": 101}, "lock for 'palette' must be an integer from 0 to 100, got 101"),
        ("locks", {"palette": "high"}, "must be an integer from 0 to 100"),
        ("max_attempts", 0, "from 1 to 10"),
        ("ip_adapter", "", "non-empty text"),
        ("style_strength", 1.5, "from 0 to 1"),
        ("lora", "brand.safetensors", "must be a list of {path: ..., scale: 0 to 2} entries"),
        ("lora", [{"path": "a.safetensors", "scale": 3}], "entry 1: scale must be a number from 0 to 2, got 3"),
        ("lora", [{"file": "a.safetensors"}], "entry 1 is {'file': 'a.safetensors'}"),
        ("regeneration_budget", 1.5, "from 0 to 1"),
        ("max_manual_regenerations", 101, "from 0 to 100"),
        ("max_manual_regenerations", 2.5, "from 0 to 100"),
        ("naming_pattern", "", "non-empty"),
        ("naming_pattern", None, "non-empty"),
        ("shard_size", 501, "from 1 to 500"),
        ("micro_batch", 0, "'auto' or an integer from 1 to 64"),
        ("micro_batch", "max", "'auto' or an integer from 1 to 64"),
        ("link_expiry", "366d", "out of range: expected 3600s (1 hour) to 31536000s (365 days), or 'permanent'"),
        ("link_expiry", 59, "SigV4"),
        ("link_expiry", "1 week", "expected seconds, a number with unit s, m, h or d"),
        ("link_expiry", "forever", "or 'permanent'"),
        ("link_expiry", True, "whole number of seconds"),
        ("exports", [], "must be a non-empty list of export names (zip, manifest, gallery, links or an installed exporter)"),
        ("exports", ["zip", "Unity!"], "['Unity!'] is not an export name"),
        ("exports", ["zip", {"unity": {}}], "an exporter's options go under export_options"),
        ("export_options", ["unity"], "must be a mapping of exporter name to its options"),
        ("template", {"en": "{subject}", "pt": "{subject}"}, "has ['pt'] where a language is expected"),
        ("negative_prompt", {"ja": 3}, "ja: must be text"),
        ("translator", "deepl", "must be one of none, glossary, aws-translate, got 'deepl'"),
        ("glossary", {"en": {"a": "b"}}, "has 'en' where a language to translate from is expected: es, fr, de, ja"),
        ("glossary", {"es": {"espada": 3}}, "es: terms and their English must be text, got 'espada': 3"),
        ("palette", ["#ff0000", "red"], "must be a list of 1 to 8 colours as '#rrggbb'"),
        ("season", "xmas", "did you mean 'christmas'?"),
        ("region", "Germany", "'DE'"),
        ("campaign", "Winter Sale", "must be 1-64 letters"),
        ("export_options", {"unity": "tga"}, "unity: must be a mapping of option to value, got 'tga'"),
        ("export_options", {"print": {"when": date(2026, 1, 1)}}, "print: options must be text, numbers"),
        ("exports", ["zip", "zip"], "more than once"),
        ("exports", "zip", "non-empty list"),
        ("tagger", "claude", "must be one of local, bedrock, got 'claude'"),
        ("export_only", "reviewed", "must be one of all, approved, got 'reviewed'"),
        ("bedrock_model", "", "non-empty text"),
    ],
)
def test_invalid_value_names_field(field, value, fragment):
    [problem] = problems_of({field: value})
    assert (problem.file, problem.column) == ("batch.yaml", field)
    assert fragment in problem.message


@pytest.mark.parametrize(
    ("field", "value"), [("steps", 151), ("guidance_scale", 31.5), ("micro_batch", "max"), ("name", "a b")]
)
def test_invalid_value_is_quoted_in_message(field, value):
    [problem] = problems_of({field: value})
    assert repr(value) in problem.message


def test_unknown_key_names_key_and_lists_allowed():
    [problem] = problems_of({"stepz": 30})
    assert problem.column == "stepz"
    assert "did you mean 'steps'?" in problem.message
    assert all(name in problem.message for name in FIELDS)


def test_all_problems_are_reported_together():
    problems = problems_of({"steps": 0, "seed": -5, "colour": "red", "width": 65})
    assert [p.column for p in problems] == ["steps", "seed", "colour", "width"]


def test_round_trip_through_json():
    settings = BatchSettings(name="b1", width=512, micro_batch=4, template="{prompt}", guidance_scale=2)
    data = json.loads(json.dumps(settings.to_dict()))
    restored = BatchSettings.from_snapshot(data)
    assert restored == settings
    assert isinstance(restored.exports, tuple) and isinstance(restored.guidance_scale, float)


def test_snapshot_is_trusted_not_revalidated():
    # Snapshots were validated when the batch was registered; restoring one must not re-check it.
    data = {**BatchSettings().to_dict(), "steps": 0, "exports": ["zip"]}
    restored = BatchSettings.from_snapshot(data)
    assert (restored.steps, restored.exports) == (0, ("zip",))


def test_replace_applies_and_normalises_overrides():
    settings = dataclasses.replace(BatchSettings(), steps=4, guidance_scale=2, exports=["zip"])
    assert (settings.steps, settings.guidance_scale, settings.exports) == (4, 2.0, ("zip",))
    assert isinstance(settings.guidance_scale, float)


def test_overrides_are_validated_where_they_enter():
    problems = problems_of({"steps": 0, "variations": 99}, file="settings")
    where = [(p.file, p.column) for p in problems]
    assert where == [("settings", "steps"), ("settings", "variations")]
    assert [p.message for p in problems] == [
        "must be an integer from 1 to 150, got 0",
        "must be an integer from 1 to 8, got 99",
    ]


def test_identifier_error():
    assert identifier_error("spring_2025.v1-a", "name") is None
    assert "must be 1-64" in identifier_error("x" * 65, "name")
    assert "starting with a letter or digit" in identifier_error(".hidden", "name")


def test_identifier_error_bounds_the_quoted_value():
    message = identifier_error("x" * 100_000 + " y", "variant_id")
    assert len(message) < 400
    assert "must be 1-64" in message


def _alias_bomb(tmp_path, key):
    # Nine levels of nine aliases: a few hundred bytes whose values repr() to gigabytes.
    lines = ['a0: &a0 ["lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    lines.append(f"{key}: *a9")
    return write_yaml(tmp_path, "\n".join(lines) + "\n", name="bomb.yaml")


@pytest.mark.parametrize(
    "key", ["steps", "guidance_scale", "template", "model", "micro_batch", "exports", "link_expiry", "name"]
)
def test_alias_bomb_is_rejected_before_values_are_built(tmp_path, key, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an alias bomb must be rejected before any value is constructed")

    monkeypatch.setattr(settings_module.yaml.SafeLoader, "construct_document", refuse)
    settings, problems = read_settings(_alias_bomb(tmp_path, key))
    # The count is over the whole document; a4 (about 2 * 9**4 values) takes it past the limit.
    [problem] = problems
    assert (problem.file, problem.row, problem.column) == ("bomb.yaml", 5, "a4")
    assert f"more than {MAX_YAML_NODES:,} values" in problem.message
    assert settings == BatchSettings()


def test_too_many_alias_references_are_rejected_at_the_alias(tmp_path):
    lines = ["a: &a 1"] + [f"k{i}: *a" for i in range(MAX_YAML_ALIASES + 5)]
    _, problems = read_settings(write_yaml(tmp_path, "\n".join(lines) + "\n"))
    [problem] = problems
    assert problem.row == MAX_YAML_ALIASES + 2  # the first alias over the limit
    assert f"more than {MAX_YAML_ALIASES} YAML alias references" in problem.message


def test_recursive_alias_is_rejected(tmp_path):
    _, problems = read_settings(write_yaml(tmp_path, "a: &a [*a, *a]\n"))
    [problem] = problems
    assert problem.row == 1 and "more than" in problem.message


def test_few_aliases_still_work(tmp_path):
    settings, problems = read_settings(write_yaml(tmp_path, "x: &m 30\nsteps: *m\n"))
    assert settings.steps == 30
    assert not any(p.column == "steps" for p in problems)


def test_oversize_settings_file_is_rejected_unread(tmp_path):
    path = write_yaml(tmp_path, "#" * (MAX_SETTINGS_BYTES + 1))
    settings, [problem] = read_settings(path)
    assert problem.file == "batch.yaml"
    assert f"limit of {MAX_SETTINGS_BYTES:,} bytes" in problem.message


def test_settings_fifo_is_rejected_without_opening(tmp_path):
    path = tmp_path / "batch.yaml"
    os.mkfifo(path)  # opening a FIFO with no writer would block forever
    settings, [problem] = read_settings(path)
    assert problem.file == "batch.yaml" and "not a regular file" in problem.message


def test_long_values_and_keys_are_cut_in_messages():
    long_text = "7" * 10_000 + "d"
    [expiry, key] = problems_of({"link_expiry": long_text, "k" * 10_000: 1})
    assert len(expiry.message) < 400 and "…" in expiry.message
    assert len(key.message) < 1000 and len(key.column) <= 200


def test_number_check_rejects_huge_integers_without_overflow():
    [problem] = problems_of({"guidance_scale": 10**400})
    assert "must be a number from 0 to 30" in problem.message


@pytest.mark.parametrize(
    ("text", "fragment"), [("seed: 2024-02-30\n", "day is out of range"), ("seed: " + "1" * 5000 + "\n", "4300")]
)
def test_yaml_values_python_rejects_are_problems(tmp_path, text, fragment):
    settings, problems = read_settings(write_yaml(tmp_path, text))
    assert settings == BatchSettings()
    [problem] = problems
    assert problem.file == "batch.yaml"
    assert problem.message.startswith("invalid YAML value:") and fragment in problem.message


def test_load_settings_none_or_missing_gives_defaults(tmp_path):
    assert load_settings(None) == BatchSettings()
    assert load_settings(tmp_path / "batch.yaml") == BatchSettings()


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\ufeff"])
def test_load_settings_empty_file_gives_defaults(tmp_path, text):
    assert load_settings(write_yaml(tmp_path, text)) == BatchSettings()


def test_load_settings_reads_values_with_bom(tmp_path):
    path = write_yaml(tmp_path, "\ufeffsteps: 30\ntemplate: '{prompt}, {style|flat}'\n")
    settings = load_settings(path)
    assert (settings.steps, settings.template) == (30, "{prompt}, {style|flat}")


def test_load_settings_problem_rows_are_key_lines(tmp_path):
    path = write_yaml(tmp_path, "# settings\nsteps: 30\n\nseed: -1\ncolor: red\n")
    with pytest.raises(BatchValidationError) as caught:
        load_settings(path)
    assert [(p.file, p.row, p.column) for p in caught.value.problems] == [
        ("batch.yaml", 4, "seed"),
        ("batch.yaml", 5, "color"),
    ]


def test_yaml_syntax_error_names_line(tmp_path):
    path = write_yaml(tmp_path, "steps: 20\nseed: 1\nmodifiers: [autumn, warm\n")
    with pytest.raises(BatchValidationError) as caught:
        load_settings(path)
    [problem] = caught.value.problems
    assert problem.file == "batch.yaml"
    assert problem.row == 4
    assert "invalid YAML" in problem.message


def test_unquoted_template_braces_are_explained(tmp_path):
    path = write_yaml(tmp_path, "template: {prompt}\n")
    with pytest.raises(BatchValidationError) as caught:
        load_settings(path)
    [problem] = caught.value.problems
    assert (problem.row, problem.column) == (1, "template")
    assert "put the value in quotes" in problem.message


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str")])
def test_top_level_must_be_mapping(tmp_path, text, kind):
    with pytest.raises(BatchValidationError) as caught:
        load_settings(write_yaml(tmp_path, text))
    [problem] = caught.value.problems
    assert (problem.file, problem.row) == ("batch.yaml", 1)
    assert f"got {kind}" in problem.message


def test_duplicate_key_is_reported(tmp_path):
    path = write_yaml(tmp_path, "steps: 20\nseed: 1\nsteps: 30\n")
    with pytest.raises(BatchValidationError) as caught:
        load_settings(path)
    [problem] = caught.value.problems
    assert (problem.row, problem.column) == (3, "steps")
    assert "first on row 1" in problem.message


def test_non_utf8_settings_names_line(tmp_path):
    path = tmp_path / "batch.yaml"
    path.write_bytes(b"steps: 20\ndescription: caf\xe9\n")
    with pytest.raises(BatchValidationError) as caught:
        load_settings(path)
    [problem] = caught.value.problems
    assert (problem.row, problem.file) == (2, "batch.yaml")


def test_read_settings_keeps_valid_entries_beside_problems(tmp_path):
    path = write_yaml(tmp_path, "steps: 0\ntemplate: '{prompt}!'\nmax_rows: 3\n")
    settings, problems = read_settings(path)
    assert (settings.steps, settings.template, settings.max_rows) == (BatchSettings().steps, "{prompt}!", 3)
    assert [p.column for p in problems] == ["steps"]


# Lifetimes over 7 days and `permanent` are well-formed here; whether the storage can sign them
# (a CDN is needed) is checked when the batch is registered against it.
@pytest.mark.parametrize("value", ["1h", "7d", 3600, "90m", "8d", "30d", "365d", "permanent"])
def test_link_expiry_accepts_one_hour_to_a_year_and_permanent(value):
    assert parse_settings({"link_expiry": value}, "batch.yaml").link_expiry == value


def test_over_long_link_expiry_names_file_row_and_field(tmp_path):
    path = write_yaml(tmp_path, "steps: 4\nlink_expiry: 400d\n")
    with pytest.raises(BatchValidationError) as caught:
        load_settings(path)
    [problem] = caught.value.problems
    assert (problem.file, problem.row, problem.column) == ("batch.yaml", 2, "link_expiry")
    assert "365 days" in problem.message and "(got '400d')" in problem.message
