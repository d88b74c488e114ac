import dataclasses
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from assetql_dagster.domain.scoring import PARAMETERS
from assetql_dagster.domain.style_parameters import (
    GABOR_FREQUENCIES,
    GABOR_ORIENTATIONS,
    KELVIN_RANGE,
    LUMA_BINS,
    PALETTE_SIZE,
    extract_parameters,
    parameter_scores,
    profile_parameters,
)

SIZE = 128  # MAX_SIDE: measured as drawn, not resampled
RED, BLUE = (255, 0, 0), (0, 0, 255)


def flat(colour, size=(SIZE, SIZE)) -> Image.Image:
    return Image.new("RGB", size, colour)


def with_box(centre_x: float, centre_y: float, half: int = 4) -> Image.Image:
    """Grey canvas with a black square centred at fractions (centre_x, centre_y) of the frame."""
    img = flat((200, 200, 200))
    x, y = round(centre_x * SIZE), round(centre_y * SIZE)
    ImageDraw.Draw(img).rectangle((x - half, y - half, x + half - 1, y + half - 1), fill=(0, 0, 0))
    return img


def stripes(period: int, vertical: bool = True) -> Image.Image:
    """Black-and-white stripes `period` px apart; vertical stripes vary along x (orientation 0)."""
    ramp = (np.arange(SIZE) % period) < period // 2
    grid = np.tile(ramp, (SIZE, 1)) if vertical else np.tile(ramp[:, None], (1, SIZE))
    return Image.fromarray(np.where(grid, 255, 0).astype(np.uint8)).convert("RGB")


def gabor_energy(img: Image.Image, frequency: float, orientation: int) -> float:
    gabor = extract_parameters(img).texture.gabor
    return gabor[GABOR_FREQUENCIES.index(frequency) * GABOR_ORIENTATIONS + orientation]


def noise(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))


def test_palette_of_a_two_colour_image_finds_both_colours_with_their_shares():
    img = flat(RED)
    img.paste(BLUE, (0, 0, SIZE // 4, SIZE))
    swatches = extract_parameters(img).palette.swatches
    assert [(s.hex, s.share) for s in swatches] == [("#ff0000", pytest.approx(0.75)), ("#0000ff", pytest.approx(0.25))]
    # CIELAB of sRGB red: L* 53.24, a* 80.09, b* 67.20.
    assert swatches[0].lab == pytest.approx((53.24, 80.09, 67.20), abs=0.01)


def test_palette_keeps_at_most_five_colours_summing_to_one():
    swatches = extract_parameters(noise(1)).palette.swatches
    assert len(swatches) == PALETTE_SIZE
    assert sum(s.share for s in swatches) == pytest.approx(1.0)


def test_symmetric_image_scores_higher_symmetry_than_an_asymmetric_one():
    symmetric = with_box(0.5, 0.5)
    asymmetric = with_box(0.2, 0.5)
    assert extract_parameters(symmetric).composition.symmetry == pytest.approx(1.0)
    assert extract_parameters(asymmetric).composition.symmetry < 0.5


def test_content_on_the_third_lines_has_more_thirds_energy_than_centred_content():
    on_thirds = extract_parameters(with_box(1 / 3, 1 / 3)).composition.thirds_energy
    centred = extract_parameters(with_box(0.5, 0.5)).composition.thirds_energy
    assert on_thirds > 0.9
    assert centred < 0.1


def test_a_flat_image_is_symmetric_with_nothing_on_the_thirds():
    composition = extract_parameters(flat((90, 90, 90))).composition
    assert (composition.symmetry, composition.thirds_energy) == (1.0, 0.0)


def test_warm_image_has_lower_kelvin_than_a_cool_one():
    warm = extract_parameters(flat((255, 150, 50))).lighting
    cool = extract_parameters(flat((150, 190, 255))).lighting
    neutral = extract_parameters(flat((128, 128, 128))).lighting
    assert warm.kelvin < neutral.kelvin < cool.kelvin
    # Grey is lit like the sRGB white point, D65 (6504 K by McCamy's formula).
    assert neutral.kelvin == pytest.approx(6504, abs=5)
    assert (warm.tone, neutral.tone, cool.tone) == ("warm", "neutral", "cool")


@pytest.mark.parametrize(("colour", "end"), [(BLUE, 1), (RED, 0), ((0, 0, 0), None)])
def test_colours_far_from_the_planckian_locus_stay_within_the_kelvin_range(colour, end):
    kelvin = extract_parameters(flat(colour)).lighting.kelvin
    # Deep blue is the coolest there is, saturated red the warmest; black has no cast: white point.
    assert kelvin == (pytest.approx(6504, abs=5) if end is None else KELVIN_RANGE[end])


def test_high_contrast_image_has_higher_contrast_and_its_luma_histogram():
    half = flat((0, 0, 0))
    half.paste((255, 255, 255), (0, 0, SIZE // 2, SIZE))
    high, low = extract_parameters(half).lighting, extract_parameters(flat((128, 128, 128))).lighting
    assert high.contrast == pytest.approx(1.0)
    assert low.contrast == 0.0
    assert high.mean_luminance == pytest.approx(0.5)
    assert len(high.histogram) == LUMA_BINS
    assert (high.histogram[0], high.histogram[-1]) == (pytest.approx(0.5), pytest.approx(0.5))


def test_stripes_put_their_gabor_energy_at_the_matching_orientation():
    vertical, horizontal = stripes(6), stripes(6, vertical=False)
    frequency = GABOR_FREQUENCIES[1]  # period 6 px is 0.167 cycles/px
    # Orientation 0 responds to change along x (vertical stripes), orientation 2 (90 degrees) along y.
    assert gabor_energy(vertical, frequency, 0) > 5 * gabor_energy(vertical, frequency, 2)
    assert gabor_energy(horizontal, frequency, 2) > 5 * gabor_energy(horizontal, frequency, 0)
    flat_gabor = extract_parameters(flat((128, 128, 128))).texture.gabor
    assert flat_gabor == pytest.approx((1 / len(flat_gabor),) * len(flat_gabor))
    assert gabor_energy(vertical, frequency, 0) > 3 * flat_gabor[0]


def test_fine_stripes_have_more_high_frequency_than_coarse_ones_and_a_flat_image_none():
    fine = extract_parameters(stripes(3)).texture.high_frequency_ratio
    coarse = extract_parameters(stripes(20)).texture.high_frequency_ratio
    # A square wave's odd harmonics put about 7% of its power above 0.25 cycles/px at period 20.
    assert fine > 0.5 > 0.1 > coarse
    assert extract_parameters(flat((128, 128, 128))).texture.high_frequency_ratio == 0.0


def test_large_image_is_measured_on_a_copy_shrunk_to_max_side():
    small = with_box(0.25, 0.5)
    # Each source pixel becomes a 4x4 block, which the shrink averages back to that pixel exactly.
    large = small.resize((4 * SIZE, 4 * SIZE), Image.Resampling.NEAREST)
    assert extract_parameters(large) == extract_parameters(small)


def test_transparent_image_is_measured_on_white():
    parameters = extract_parameters(Image.new("RGBA", (16, 16), (255, 0, 0, 0)))
    assert parameters.palette.swatches[0].hex == "#ffffff"
    assert parameters.lighting.mean_luminance == pytest.approx(1.0)


def leaves(value):
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaves(v)]
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in leaves(v)]
    return [value]


def test_parameters_are_plain_json_values():
    data = dataclasses.asdict(extract_parameters(noise(2)))
    # Plain Python floats and strings, not numpy scalars, so they serialise and compare as such.
    assert {type(leaf) for leaf in leaves(data)} == {float, str}
    assert json.loads(json.dumps(data))["lighting"]["kelvin"] == data["lighting"]["kelvin"]


def test_identical_images_score_one_on_every_parameter():
    img = noise(3)
    scores = parameter_scores(extract_parameters(img), profile_parameters([img]))
    assert set(scores) == set(PARAMETERS) - {"embedding"}
    assert scores == pytest.approx(dict.fromkeys(scores, 1.0))


def test_a_very_different_image_scores_lower_on_every_parameter():
    reference = with_box(0.5, 0.5)  # light grey, neutral, symmetric, one smooth shape
    different = stripes(3)
    different.paste((255, 120, 0), (0, 0, 40, SIZE))  # orange block on one side of fine stripes
    profile = profile_parameters([reference])
    same = parameter_scores(extract_parameters(reference), profile)
    other = parameter_scores(extract_parameters(different), profile)
    for name in same:
        assert other[name] < same[name] - 0.2, name
        assert 0.0 <= other[name] <= 1.0


def test_profile_pools_the_palette_and_averages_the_rest():
    red, blue = flat(RED), flat(BLUE, size=(40, 40))
    profile = profile_parameters([red, blue])
    assert {(s.hex, round(s.share, 6)) for s in profile.palette.swatches} == {("#ff0000", 0.5), ("#0000ff", 0.5)}
    one, other = extract_parameters(red).lighting, extract_parameters(blue).lighting
    assert profile.lighting.mean_luminance == pytest.approx((one.mean_luminance + other.mean_luminance) / 2)
    # Temperatures average in mired, not kelvin.
    assert profile.lighting.kelvin == pytest.approx(2e6 / (1e6 / one.kelvin + 1e6 / other.kelvin))
    assert sum(profile.texture.gabor) == pytest.approx(1.0)


def test_an_image_in_one_of_the_profiles_colours_does_not_match_its_whole_palette():
    profile = profile_parameters([flat(RED), flat(BLUE)])
    assert parameter_scores(extract_parameters(flat(RED)), profile)["palette"] < 0.5


def test_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match="at least one reference image"):
        profile_parameters([])
    with pytest.raises(ValueError, match="no pixels"):
        extract_parameters(Image.new("RGB", (0, 4)))
