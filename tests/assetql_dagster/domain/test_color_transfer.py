import math
import warnings

import numpy as np
import pytest
from PIL import Image
from skimage.color import lab2rgb, rgb2lab

from assetql_dagster.domain.color_transfer import (
    AB_PULL,
    L_PULL,
    palette_arrays,
    transfer_palette,
)
from assetql_dagster.domain.palette import lab_palette, to_rgb
from assetql_dagster.domain.style_parameters import Palette, Swatch, lab_to_hex, palette_score

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
GREY = (128, 128, 128)
RED_LAB = tuple(float(v) for v in rgb2lab(np.array([[1.0, 0.0, 0.0]]))[0])
ALL_RED = [(RED_LAB, 1.0)]


def lab_of(img: Image.Image) -> np.ndarray:
    """(N, 3) CIELAB of an RGB image's pixels."""
    return rgb2lab(np.asarray(img, dtype=np.float64) / 255.0).reshape(-1, 3)


def noise_image(seed: int, size=(96, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def gradient_image(size: int = 96) -> Image.Image:
    """Smooth two-axis colour gradient with mild noise, like a decoded photo."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    rgb = np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x * y)], axis=-1) * 255.0
    rgb += np.random.default_rng(1).normal(0.0, 6.0, rgb.shape)
    return Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))


def warm_palette():
    """Five-colour profile palette of a warm, muted reference image, as lab_palette returns it."""
    rng = np.random.default_rng(7)
    ref = rng.integers(0, 256, (48, 48, 3)) * np.array([0.6, 0.4, 0.25]) + np.array([90, 60, 30])
    return lab_palette([Image.fromarray(ref.astype(np.uint8))], k=5)


def mean_nearest_delta_e(img: Image.Image, palette) -> float:
    """Mean CIE76 ΔE from each pixel of `img` to the nearest palette centre."""
    centres = np.array([lab for lab, _ in palette])
    lab = lab_of(img)
    return float(np.linalg.norm(lab[:, None, :] - centres[None, :, :], axis=2).min(axis=1).mean())


def as_palette(palette) -> Palette:
    return Palette(tuple(Swatch(lab_to_hex(lab), lab, share) for lab, share in palette))


# --- identity, shape, determinism ---------------------------------------------------------------


@pytest.mark.parametrize("img", [noise_image(0), gradient_image(), Image.new("RGB", (5, 3), GREY)])
def test_strength_zero_returns_the_image_pixel_for_pixel(img):
    out = transfer_palette(img, warm_palette(), 0.0)
    assert out.mode == "RGB" and out.size == img.size
    assert out.tobytes() == img.tobytes()
    assert out is not img  # a copy: editing the result leaves the input alone


def test_output_is_rgb_uint8_of_the_input_size():
    img = noise_image(3, size=(37, 23))
    out = transfer_palette(img, warm_palette(), 0.6)
    assert out.mode == "RGB" and out.size == (37, 23)
    assert np.asarray(out).dtype == np.uint8


def test_same_input_gives_the_same_bytes():
    img, palette = gradient_image(), warm_palette()
    first = transfer_palette(img, palette, 0.7).tobytes()
    again = [transfer_palette(img.copy(), list(palette), 0.7).tobytes() for _ in range(3)]
    assert again == [first] * 3


def test_input_image_is_not_modified():
    img = noise_image(4)
    before = img.tobytes()
    transfer_palette(img, ALL_RED, 1.0)
    assert img.tobytes() == before


# --- known answers ------------------------------------------------------------------------------


def test_grey_pulled_toward_red_gets_monotonically_redder():
    img = Image.new("RGB", (32, 32), GREY)
    mean_a = [lab_of(transfer_palette(img, ALL_RED, s))[:, 1].mean() for s in STRENGTHS]
    assert abs(mean_a[0]) < 0.01  # grey has no a*
    assert all(later > earlier + 5.0 for earlier, later in zip(mean_a, mean_a[1:])), mean_a


def test_flat_image_at_full_strength_becomes_the_one_palette_colour():
    # A flat image has no spread: the statistics step moves its one colour onto the palette mean.
    for colour in (GREY, (0, 90, 200), (250, 250, 10)):
        out = transfer_palette(Image.new("RGB", (8, 8), colour), ALL_RED, 1.0)
        assert np.all(np.asarray(out) == (255, 0, 0))


def test_flat_image_at_half_strength_matches_the_two_steps_worked_by_hand():
    # Statistics step: the flat colour moves halfway to the palette mean (a one-colour palette).
    # Pull step: each channel then moves 0.5 * pull of the remaining way to the centre.
    grey = lab_of(Image.new("RGB", (1, 1), GREY))[0]
    red = np.array(RED_LAB)
    after_statistics = grey + 0.5 * (red - grey)
    pull = 0.5 * np.array([L_PULL, AB_PULL, AB_PULL])
    expected = after_statistics + pull * (red - after_statistics)
    out = lab_of(transfer_palette(Image.new("RGB", (4, 4), GREY), ALL_RED, 0.5))
    # 8-bit rounding of the result moves it by at most about 1 ΔE.
    assert np.abs(out - expected).max() < 1.0, (out[0], expected)


def test_pixels_already_on_the_palette_stay_there_at_any_strength():
    # Two-colour image whose palette is exactly its own two colours (equal shares): the statistics
    # already match, and every pixel sits on its nearest centre.
    img = Image.new("RGB", (16, 8), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 8, 8))
    palette = lab_palette([img], k=2)
    for s in STRENGTHS:
        out = np.asarray(transfer_palette(img, palette, s)).astype(int)
        assert np.abs(out - np.asarray(img).astype(int)).max() <= 1


# --- the lock's effect rises with its weight ----------------------------------------------------


PAIRS = {
    "noise-warm5": (noise_image(5), warm_palette()),
    "noise-red": (noise_image(5), ALL_RED),
    "gradient-warm5": (gradient_image(), warm_palette()),
    "gradient-red": (gradient_image(), ALL_RED),
    "gradient-own-palette-of-noise": (gradient_image(), lab_palette([noise_image(11)], k=5)),
    "noise-palette-of-gradient": (noise_image(12), lab_palette([gradient_image()], k=3)),
    # A flat image moves onto the palette's mean colour: monotone toward a one-colour palette (for
    # several colours the mean can lie between them, see the module docstring).
    "flat-grey-red": (Image.new("RGB", (16, 16), GREY), ALL_RED),
    "flat-blue-red": (Image.new("RGB", (16, 16), (20, 40, 200)), ALL_RED),
}


@pytest.mark.parametrize(("img", "palette"), PAIRS.values(), ids=PAIRS.keys())
def test_mean_delta_e_to_the_nearest_palette_colour_falls_with_strength(img, palette):
    outs = [transfer_palette(img, palette, s) for s in STRENGTHS]
    distances = [mean_nearest_delta_e(out, palette) for out in outs]
    assert all(later < earlier for earlier, later in zip(distances, distances[1:])), distances
    assert distances[-1] < 0.6 * distances[0], distances


def test_palette_score_against_the_profile_rises_with_strength():
    profile = as_palette(warm_palette())
    img = gradient_image()
    scores = [
        palette_score(as_palette(lab_palette([transfer_palette(img, profile, s)], k=5)), profile)
        for s in STRENGTHS
    ]
    assert all(later > earlier for earlier, later in zip(scores, scores[1:])), scores
    assert scores[-1] - scores[0] > 0.2, scores


def test_statistics_step_moves_the_image_mean_toward_the_palette_mean():
    palette = warm_palette()
    target = np.array([lab for lab, _ in palette]).T @ np.array([share for _, share in palette])
    img = noise_image(6)
    means = [lab_of(transfer_palette(img, palette, s)).mean(axis=0) for s in STRENGTHS]
    gaps = [np.linalg.norm(mean - target) for mean in means]
    assert all(later < earlier for earlier, later in zip(gaps, gaps[1:])), gaps


# --- palette forms ------------------------------------------------------------------------------


def test_a_palette_object_and_its_lab_list_give_the_same_image():
    palette = warm_palette()
    img = gradient_image()
    assert (
        transfer_palette(img, as_palette(palette), 0.8).tobytes()
        == transfer_palette(img, palette, 0.8).tobytes()
    )


def test_zero_share_centres_are_ignored():
    img = noise_image(8)
    with_unused = [*ALL_RED, ((30.0, -40.0, 20.0), 0.0)]
    expected = transfer_palette(img, ALL_RED, 0.9).tobytes()
    assert transfer_palette(img, with_unused, 0.9).tobytes() == expected


def test_numpy_centres_are_accepted():
    img = noise_image(8)
    expected = transfer_palette(img, ALL_RED, 0.5).tobytes()
    assert transfer_palette(img, [(np.array(RED_LAB), np.float64(1.0))], 0.5).tobytes() == expected


def test_palette_arrays_returns_centres_and_shares():
    centres, shares = palette_arrays([((50, 10, -10), 0.25), ((70.5, 0, 0), 0.75)])
    assert centres.shape == (2, 3) and centres.dtype == np.float64
    assert centres.tolist() == [[50.0, 10.0, -10.0], [70.5, 0.0, 0.0]]
    assert shares.tolist() == [0.25, 0.75]


def test_impossible_colours_are_clipped_without_warnings():
    # L* 10 with b* 100 is no colour at all (its Z would be negative): skimage warns on it.
    impossible = (10.0, 0.0, 100.0)
    with pytest.warns(UserWarning, match="negative Z values"):
        lab2rgb(np.array([impossible]))
    img = noise_image(2, size=(8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outs = [transfer_palette(img, [(impossible, 1.0)], s) for s in (0.5, 1.0)]
    assert all(out.mode == "RGB" and out.size == (8, 8) for out in outs)
    # The flat version of the image lands on the impossible colour itself, shown as its clipped RGB.
    flat = transfer_palette(Image.new("RGB", (4, 4), GREY), [(impossible, 1.0)], 1.0)
    assert len(set(flat.tobytes()[i : i + 3] for i in range(0, 48, 3))) == 1


# --- image modes --------------------------------------------------------------------------------


def test_rgba_is_composited_on_white_like_every_statistic():
    rgba = Image.new("RGBA", (10, 10), (0, 0, 255, 0))  # transparent blue reads as white
    rgba.paste((0, 120, 0, 255), (0, 0, 5, 10))
    assert transfer_palette(rgba, ALL_RED, 0.0).tobytes() == to_rgb(rgba).tobytes()
    out = transfer_palette(rgba, ALL_RED, 0.5)
    assert out.mode == "RGB"
    assert out.tobytes() == transfer_palette(to_rgb(rgba), ALL_RED, 0.5).tobytes()


def test_greyscale_input_is_handled_as_rgb():
    grey = Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1)), mode="L")
    out = transfer_palette(grey, ALL_RED, 0.5)
    assert out.mode == "RGB" and out.size == grey.size
    assert out.tobytes() == transfer_palette(grey.convert("RGB"), ALL_RED, 0.5).tobytes()
    assert lab_of(out)[:, 1].mean() > 10.0  # the grey ramp turned red


def test_16_bit_greyscale_is_scaled_to_8_bits_first():
    wide = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    white = Image.new("RGB", (4, 4), (255, 255, 255))
    assert transfer_palette(wide, ALL_RED, 0.0).tobytes() == white.tobytes()


# --- input validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("strength", [-0.1, 1.5, math.nan, math.inf, True, "0.5", None])
def test_strength_outside_unit_interval_is_rejected_with_its_value(strength):
    with pytest.raises(ValueError, match=r"strength must be a number in \[0, 1\], got") as info:
        transfer_palette(noise_image(0), ALL_RED, strength)
    assert repr(strength) in str(info.value)


def test_numpy_scalar_strength_is_accepted():
    img = noise_image(0)
    expected = transfer_palette(img, ALL_RED, 0.5).tobytes()
    assert transfer_palette(img, ALL_RED, np.float32(0.5)).tobytes() == expected


@pytest.mark.parametrize(
    ("palette", "message"),
    [
        ([], r"^palette is empty: need at least one \(CIELAB centre, share\) pair$"),
        (Palette(()), r"^palette is empty"),
        ("red", r"^palette must be a Palette or a sequence of \(CIELAB centre, share\) pairs, got str$"),
        ({"lab": (50, 0, 0)}, r"got dict$"),
        ([((50, 0, 0), 0.5, 1)], r"^palette\[0\] must be a \(CIELAB centre, share\) pair, got "),
        ([((50, 0, 0), 0.5), 7], r"^palette\[1\] must be a \(CIELAB centre, share\) pair, got 7$"),
        ([((50, 0), 1.0)], r"^palette\[0\] centre must have 3 components \(L\*, a\*, b\*\), got \(50, 0\)$"),
        ([("abc", 1.0)], r"^palette\[0\] centre must have 3 components"),
        ([((50, math.nan, 0), 1.0)], r"^palette\[0\] centre must be 3 finite numbers, got \(50, nan, 0\)$"),
        ([((50, "0", 0), 1.0)], r"^palette\[0\] centre must be 3 finite numbers"),
        ([((101, 0, 0), 1.0)], r"^palette\[0\] L\* must be in \[0, 100\], got 101\.0$"),
        ([((50, 0, -200), 1.0)], r"^palette\[0\] a\* and b\* must be in \[-128, 127\], got \(0\.0, -200\.0\)$"),
        ([((50, 0, 0), -0.5), ((60, 0, 0), 1.5)], r"^palette\[0\] share must be a finite number >= 0, got -0\.5$"),
        ([((50, 0, 0), math.nan)], r"^palette\[0\] share must be a finite number >= 0, got nan$"),
        ([((50, 0, 0), 0.5), ((60, 0, 0), 0.3)], r"^palette shares must sum to 1 \(within 0\.001\), got 0\.8 from shares \[0\.5, 0\.3\]$"),
        ([((50, 0, 0), 0.0)], r"^palette shares must sum to 1 \(within 0\.001\), got 0\.0"),
    ],
)
def test_invalid_palette_is_rejected_precisely(palette, message):
    with pytest.raises(ValueError, match=message):
        transfer_palette(noise_image(0), palette, 0.5)


def test_shares_rounded_to_three_decimals_are_accepted():
    palette = [((50, 0, 0), 0.333), ((60, 10, 0), 0.333), ((70, 0, 10), 0.333)]
    out = transfer_palette(noise_image(0), palette, 0.5)
    assert out.size == (96, 64)


def test_invalid_inputs_are_rejected_even_at_strength_zero():
    with pytest.raises(ValueError, match="palette is empty"):
        transfer_palette(noise_image(0), [], 0.0)
    with pytest.raises(ValueError, match="image has no pixels"):
        transfer_palette(Image.new("RGB", (0, 4)), ALL_RED, 0.0)


def test_non_image_is_a_type_error():
    with pytest.raises(TypeError, match="img must be a PIL.Image.Image, got ndarray"):
        transfer_palette(np.zeros((4, 4, 3), dtype=np.uint8), ALL_RED, 0.5)
