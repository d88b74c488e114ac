import pytest

from assetql_dagster.domain.style_parameters import (
    GABOR_FREQUENCIES,
    GABOR_ORIENTATIONS,
    Composition,
    Lighting,
    Palette,
    StyleParameters,
    Swatch,
    Texture,
)
from assetql_dagster.domain.style_prompt import (
    NAMED_COLOURS,
    colour_name,
    hex_to_lab,
    lighting_words,
    lock_weight,
    palette_words,
    style_modifiers,
    texture_words,
)

FILTERS = len(GABOR_FREQUENCIES) * GABOR_ORIENTATIONS


def swatch(hex_colour: str, share: float) -> Swatch:
    return Swatch(hex_colour, hex_to_lab(hex_colour), share)


def lighting(kelvin=3500.0, mean_luminance=0.5, contrast=0.2) -> Lighting:
    return Lighting(histogram=(1 / 16,) * 16, mean_luminance=mean_luminance, contrast=contrast, kelvin=kelvin)


def parameters(swatches=None, light=None, high_frequency_ratio=0.08) -> StyleParameters:
    swatches = swatches or (swatch("#dc143c", 0.5), swatch("#008080", 0.3), swatch("#fffff0", 0.2))
    return StyleParameters(
        palette=Palette(tuple(swatches)),
        lighting=light or lighting(),
        composition=Composition(symmetry=0.5, thirds_energy=0.3),
        texture=Texture(gabor=(1 / FILTERS,) * FILTERS, high_frequency_ratio=high_frequency_ratio),
    )


def test_the_issue_example():
    assert style_modifiers(parameters(), {"palette": 80, "lighting": 50}) == (
        "(crimson, teal and ivory palette)1.40, (warm, soft low-contrast lighting)1.25"
    )


def test_all_three_in_order_and_unlocked_or_unworded_parameters_add_nothing():
    locks = {"texture": 20, "composition": 100, "embedding": 100, "lighting": 100, "palette": 10}
    assert style_modifiers(parameters(), locks) == (
        "(crimson, teal and ivory palette)1.05, (warm, soft low-contrast lighting)1.50, (fine detail texture)1.10"
    )


@pytest.mark.parametrize("locks", [{}, {"palette": 0, "lighting": 0, "texture": 0}, {"composition": 90}])
def test_nothing_locked_gives_an_empty_string(locks):
    assert style_modifiers(parameters(), locks) == ""


@pytest.mark.parametrize(("lock", "weight"), [(0, 1.0), (1, 1.005), (50, 1.25), (80, 1.4), (100, 1.5)])
def test_lock_weight_is_one_plus_half_the_lock_fraction(lock, weight):
    assert lock_weight(lock) == pytest.approx(weight)


@pytest.mark.parametrize(
    ("locks", "message"),
    [
        ({"colour": 50}, r"unknown parameter\(s\) \['colour'\]"),
        ({"palette": 101}, "lock for 'palette' must be an integer from 0 to 100"),
        ({"palette": 0.5}, "lock for 'palette' must be an integer from 0 to 100"),
    ],
)
def test_bad_locks_are_rejected(locks, message):
    with pytest.raises(ValueError, match=message):
        style_modifiers(parameters(), locks)


@pytest.mark.parametrize("name", sorted(NAMED_COLOURS))
def test_every_named_colour_names_itself(name):
    assert colour_name(hex_to_lab(NAMED_COLOURS[name])) == name


@pytest.mark.parametrize(
    ("hex_colour", "name"),
    [
        ("#d01030", "crimson"),
        ("#107a7a", "teal"),
        ("#faf0dc", "beige"),
        ("#c87828", "ochre"),
        ("#0d2721", "dark green"),
    ],
)
def test_near_colours_take_the_nearest_name(hex_colour, name):
    assert colour_name(hex_to_lab(hex_colour)) == name


def test_palette_takes_three_distinct_names_by_share_and_skips_slivers():
    swatches = (
        swatch("#0f2f27", 0.2),
        swatch("#0d2721", 0.35),  # also dark green: named once
        swatch("#c87828", 0.3),
        swatch("#ffffff", 0.03),  # under 5%: skipped
        swatch("#000080", 0.07),
        swatch("#ff0000", 0.05),  # a fourth name: past the three
    )
    assert palette_words(Palette(swatches)) == "dark green, ochre and navy palette"
    assert palette_words(Palette((swatch("#dc143c", 0.7), swatch("#008080", 0.3)))) == "crimson and teal palette"
    assert palette_words(Palette((swatch("#dc143c", 1.0),))) == "crimson palette"
    assert palette_words(Palette(())) == ""


@pytest.mark.parametrize(
    ("light", "words"),
    [
        (lighting(kelvin=3000, mean_luminance=0.2, contrast=0.7), "warm, dim, high-contrast lighting"),
        (lighting(kelvin=6500, mean_luminance=0.5, contrast=0.45), "neutral lighting"),
        (lighting(kelvin=12000, mean_luminance=0.8, contrast=0.1), "cool, bright, soft low-contrast lighting"),
    ],
)
def test_lighting_words(light, words):
    assert lighting_words(light) == words


@pytest.mark.parametrize(
    ("ratio", "words"), [(0.2, "fine detail texture"), (0.02, "moderate detail texture"), (0.0001, "smooth texture")]
)
def test_texture_words(ratio, words):
    assert texture_words(Texture(gabor=(1 / FILTERS,) * FILTERS, high_frequency_ratio=ratio)) == words


def test_hex_to_lab_rejects_malformed_colours():
    with pytest.raises(ValueError, match="colour must be '#rrggbb'"):
        hex_to_lab("#fff")
