import hashlib
import re
from datetime import datetime, timedelta, timezone

import pytest

from assetql_dagster.domain.naming import (
    BUILTIN_PLACEHOLDERS,
    DEFAULT_PATTERN,
    MAX_STEM_LENGTH,
    NameAllocator,
    available_placeholders,
    check_literal_text,
    format_seq,
    format_timestamp,
    image_identity,
    placeholder_values,
    render_name,
    sanitize_component,
    short_hash,
    validate_pattern,
)

SAFE = re.compile(r"[A-Za-z0-9._-]+")


@pytest.mark.parametrize(
    "raw",
    ["../../etc/passwd", "..\\..\\windows\\system32", "/abs/path", "a..b", "...", "-rf", ".hidden", "C:\\x"],
)
def test_sanitize_blocks_path_traversal(raw):
    name = sanitize_component(raw)
    assert SAFE.fullmatch(name)
    assert ".." not in name
    assert "/" not in name and "\\" not in name
    assert not name.startswith((".", "-"))


def test_sanitize_folds_unicode_to_ascii():
    assert sanitize_component("Café Crème") == "Cafe-Creme"
    assert sanitize_component("ｆｕｌｌ") == "full"  # full-width letters
    assert SAFE.fullmatch(sanitize_component("龍 ⚔ ドラゴン"))


def test_sanitize_replaces_control_characters_and_collapses_runs():
    assert sanitize_component("a\x00\x1f\nb\t\tc") == "a-b-c"
    assert sanitize_component("a  /  b") == "a-b"


@pytest.mark.parametrize("raw", ["", "\x00", "///", "..", "☕"])
def test_sanitize_never_returns_empty(raw):
    assert sanitize_component(raw) == "x"


def test_sanitize_truncates_long_names():
    name = sanitize_component("a" * 500)
    assert len(name) == MAX_STEM_LENGTH


def test_sanitize_defuses_windows_reserved_names():
    assert sanitize_component("CON").upper() != "CON"
    assert sanitize_component("nul.txt").split(".")[0].upper() != "NUL"


def test_validate_pattern_accepts_builtins_and_extra_columns():
    available = available_placeholders(["color_scheme"])
    validate_pattern(DEFAULT_PATTERN, available)
    validate_pattern("{sku}-{seq}-{color_scheme}", available)
    assert BUILTIN_PLACEHOLDERS <= available


def test_validate_pattern_names_unknown_placeholder_and_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown placeholder '\{colour\}'.*allowed: .*\{batch\}"):
        validate_pattern("{batch}_{colour}", available_placeholders())


@pytest.mark.parametrize(
    "pattern", ["{0.__class__}", "{batch.__class__}", "{batch[0]}", "{}", "{batch!r}", "{seq:>10}"]
)
def test_validate_pattern_rejects_format_string_tricks(pattern):
    with pytest.raises(ValueError, match="invalid placeholder"):
        validate_pattern(pattern, available_placeholders())


@pytest.mark.parametrize("pattern", ["{batch", "batch}", "{{batch}}", ""])
def test_validate_pattern_rejects_malformed_patterns(pattern):
    with pytest.raises(ValueError, match="naming pattern"):
        validate_pattern(pattern, available_placeholders())


def test_render_name_substitutes_and_sanitises():
    values = {"batch": "spring/sale", "variant_id": "v1", "hash": "abcd1234"}
    assert render_name("{batch}_{variant_id}_{hash}", values) == "spring-sale_v1_abcd1234"
    assert render_name("../{batch}", {"batch": ".."}) == "x"


def test_render_name_does_not_evaluate_values_as_patterns():
    assert render_name("{batch}", {"batch": "{0.__class__}"}) == "0.__class__"


def test_strict_render_refuses_what_the_batch_pattern_would_cut_or_fill_in():
    assert render_name("{sku}_{variation}", {"sku": "SKU 1", "variation": "2"}, strict=True) == "SKU-1_2"
    with pytest.raises(ValueError, match=f"of 85 characters; names are at most {MAX_STEM_LENGTH}"):
        render_name("{sku}", {"sku": "a" * 85}, strict=True)
    assert render_name("{sku}", {"sku": "a" * 85}) == "a" * MAX_STEM_LENGTH
    with pytest.raises(ValueError, match="gives an empty name"):
        render_name("{sku}", {"sku": "/"}, strict=True)
    assert render_name("{sku}", {"sku": "/"}) == "x"


@pytest.mark.parametrize("pattern", ["{sku}/{variation}", "..\\{sku}", "{sku} {variation}", "{sku}:{row}"])
def test_literal_text_a_file_name_cannot_hold_is_refused(pattern):
    with pytest.raises(ValueError, match="outside its placeholders; file names hold only"):
        check_literal_text(pattern)


def test_literal_text_of_safe_characters_passes():
    check_literal_text("shop_{sku}-v{variation}.final")


def test_render_name_requires_every_placeholder_value():
    with pytest.raises(ValueError, match=r"unknown placeholder '\{sku\}'"):
        render_name("{batch}_{sku}", {"batch": "b"})


def test_timestamp_is_utc():
    moment = datetime(2024, 3, 9, 23, 30, 5, tzinfo=timezone(timedelta(hours=-2)))
    expected = moment.astimezone(timezone.utc)
    assert format_timestamp(moment) == (
        f"{expected.year:04d}{expected.month:02d}{expected.day:02d}T"
        f"{expected.hour:02d}{expected.minute:02d}{expected.second:02d}Z"
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(datetime(2024, 1, 1))


def test_seq_is_one_based_and_padded():
    assert format_seq(7) == "0007"
    with pytest.raises(ValueError, match="sequence number must be an integer >= 1, got 0"):
        format_seq(0)


def test_identity_and_hash():
    identity = image_identity("batch", "v1", 2, 42)
    assert identity != image_identity("batch", "v1", 2, 43)
    # A separator inside a field cannot make two different images share an identity.
    assert image_identity("a/b", "c", 1, 1) != image_identity("a", "b/c", 1, 1)
    assert short_hash(identity) == hashlib.sha256(identity.encode()).hexdigest()[:8]


def test_placeholder_values_render_with_default_pattern():
    identity = image_identity("spring", "v1", 1, 7)
    moment = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    values = placeholder_values(
        batch="spring", variant_id="v1", variation=1, identity=identity, created_at=moment, seq=3,
        extra={"seq": "ignored", "palette": "warm"},
    )
    assert values["seq"] == format_seq(3)
    assert values["palette"] == "warm"
    expected = f"spring_v1_{format_timestamp(moment)}_{short_hash(identity)}"
    assert render_name(DEFAULT_PATTERN, values) == expected


def test_allocator_suffixes_collisions_case_insensitively():
    allocator = NameAllocator()
    names = [allocator.allocate(stem) for stem in ["Hero", "hero", "HERO", "hero-2"]]
    assert names == ["Hero", "hero-2", "HERO-3", "hero-2-2"]
    assert len({n.casefold() for n in names}) == len(names)


def test_allocator_never_hands_out_a_reserved_name():
    allocator = NameAllocator(reserved=["Hero", "hero-2"])
    assert [allocator.allocate("hero"), allocator.allocate("villain")] == ["hero-3", "villain"]


def test_allocator_keeps_long_names_within_limit():
    allocator = NameAllocator()
    first, second = allocator.allocate("a" * 200), allocator.allocate("a" * 200)
    assert first != second
    assert len(second) <= MAX_STEM_LENGTH
    assert second.endswith("-2")
