import numpy as np
import pytest
from PIL import Image

from assetql_dagster.domain.palette import (
    brightness,
    contrast,
    dominant_palette,
    downscaled,
    histogram_similarity,
    lab_palette,
    lab_to_hex,
    luma_histogram,
    mean_histogram,
    palette_of_images,
)

RED, BLUE = (255, 0, 0), (0, 0, 255)


def two_colour_image(width: int, height: int, split: int) -> Image.Image:
    """Red image whose first `split` columns are blue."""
    img = Image.new("RGB", (width, height), RED)
    img.paste(BLUE, (0, 0, split, height))
    return img


def noise_image(seed: int, size: int = 80) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def hex_of(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


def test_two_colour_image_recovers_colours_and_shares():
    width, split = 48, 12
    palette = dominant_palette(two_colour_image(width, 32, split), k=5)
    assert palette == [(hex_of(RED), pytest.approx(1 - split / width)), (hex_of(BLUE), pytest.approx(split / width))]


def test_large_image_is_downsampled_without_inventing_blended_colours():
    palette = dominant_palette(two_colour_image(640, 480, 160), k=4)
    assert {colour for colour, _ in palette} == {hex_of(RED), hex_of(BLUE)}
    assert sum(share for _, share in palette) == pytest.approx(1.0)


def test_kmeans_is_deterministic_for_a_seed():
    img = noise_image(3)
    assert dominant_palette(img, seed=7) == dominant_palette(img, seed=7)


def test_palette_is_sorted_by_share_and_sums_to_one():
    palette = dominant_palette(noise_image(4), k=5)
    shares = [share for _, share in palette]
    assert len(palette) == 5
    assert shares == sorted(shares, reverse=True)
    assert sum(shares) == pytest.approx(1.0)
    assert all(len(colour) == 7 and colour.startswith("#") for colour, _ in palette)


def test_fewer_distinct_colours_than_k_returns_fewer():
    palette = dominant_palette(Image.new("RGB", (10, 10), BLUE), k=5)
    assert palette == [(hex_of(BLUE), pytest.approx(1.0))]


def test_transparent_pixels_count_as_white():
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert dominant_palette(img) == [(hex_of((255, 255, 255)), pytest.approx(1.0))]


def test_palette_of_images_weighs_each_image_equally():
    small_red = Image.new("RGB", (4, 4), RED)
    large_blue = Image.new("RGB", (60, 60), BLUE)
    assert dict(palette_of_images([small_red, large_blue])) == {
        hex_of(RED): pytest.approx(0.5),
        hex_of(BLUE): pytest.approx(0.5),
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"k": 0}, "k must be an integer >= 1"), ({"sample": 0}, "sample must be an integer >= 1")],
)
def test_invalid_palette_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dominant_palette(Image.new("RGB", (2, 2)), **kwargs)


def test_palette_of_no_images_is_an_error():
    with pytest.raises(ValueError, match="at least one image"):
        palette_of_images([])


def test_brightness_and_contrast_of_known_images():
    black, white = Image.new("L", (10, 10), 0), Image.new("L", (10, 10), 255)
    half = Image.new("L", (10, 10), 0)
    half.paste(255, (0, 0, 5, 10))
    assert brightness(black) == 0.0
    assert brightness(white) == 1.0
    assert brightness(half) == pytest.approx(0.5)
    assert contrast(white) == 0.0
    # Half black, half white is the largest possible spread of luma.
    assert contrast(half) == pytest.approx(1.0)


def test_histogram_similarity_identical_is_one_and_disjoint_is_zero():
    black, white = Image.new("RGB", (5, 5), (0, 0, 0)), Image.new("RGB", (5, 5), (255, 255, 255))
    assert histogram_similarity(luma_histogram(black), luma_histogram(black)) == pytest.approx(1.0)
    assert histogram_similarity(luma_histogram(black), luma_histogram(white)) == 0.0


def test_mean_histogram_of_two_images_shares_half_with_each():
    red, blue = luma_histogram(Image.new("RGB", (5, 5), RED)), luma_histogram(Image.new("RGB", (5, 5), BLUE))
    mean = mean_histogram([red, blue])
    assert mean.sum() == pytest.approx(1.0)
    assert histogram_similarity(mean, red) == pytest.approx(0.5)


def test_histogram_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="same shape"):
        histogram_similarity(np.ones(8) / 8, np.ones(27) / 27)
    with pytest.raises(ValueError, match="same shape"):
        mean_histogram([np.ones(8) / 8, np.ones(27) / 27])


def test_empty_image_is_rejected():
    with pytest.raises(ValueError, match="no pixels"):
        brightness(Image.new("RGB", (0, 3)))


def test_a_fully_transparent_image_reads_as_the_white_background():
    transparent_red = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    assert dominant_palette(transparent_red) == [("#ffffff", 1.0)]
    assert brightness(transparent_red) == pytest.approx(1.0)
    for mode in ("LA", "RGBa"):
        assert dominant_palette(transparent_red.convert(mode)) == [("#ffffff", 1.0)]
    paletted = Image.new("P", (16, 16), 0)
    paletted.putpalette([255, 0, 0] * 256)
    paletted.info["transparency"] = 0
    assert dominant_palette(paletted) == [("#ffffff", 1.0)]


def test_half_transparent_red_is_blended_onto_white():
    palette = dominant_palette(Image.new("RGBA", (8, 8), (255, 0, 0, 128)))
    assert palette == [("#ff7f7f", 1.0)]


def gradient_16bit(width: int = 256, height: int = 8) -> np.ndarray:
    return np.tile(np.linspace(0, 65535, width).round().astype(np.uint16), (height, 1))


@pytest.mark.parametrize("mode", ["I;16", "I", "I;16B"])
def test_16_bit_images_are_scaled_to_8_bits_not_clipped(mode):
    values = gradient_16bit()
    if mode == "I;16B":  # big-endian, as 16-bit TIFFs from some tools open
        img = Image.frombytes(mode, values.shape[::-1], values.astype(">u2").tobytes())
    else:
        img = Image.fromarray(values).convert(mode)
    assert img.mode == mode
    assert brightness(img) == pytest.approx(0.5, abs=0.01)
    hist = luma_histogram(img, bins=2)
    assert hist[0] == pytest.approx(0.5) and hist[-1] == pytest.approx(0.5)
    mid_grey = Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16))  # 128 * 257
    assert dominant_palette(mid_grey) == [("#808080", 1.0)]


def test_lab_palette_gives_cielab_centres_and_shares():
    (red_lab, red_share), (blue_lab, blue_share) = lab_palette([two_colour_image(48, 32, 12)])
    # CIELAB (D65) of sRGB red and blue.
    assert red_lab == pytest.approx((53.24, 80.09, 67.20), abs=0.01)
    assert blue_lab == pytest.approx((32.30, 79.19, -107.86), abs=0.01)
    assert (red_share, blue_share) == (pytest.approx(0.75), pytest.approx(0.25))
    assert (lab_to_hex(red_lab), lab_to_hex(blue_lab)) == (hex_of(RED), hex_of(BLUE))


def test_cluster_centres_are_means_in_cielab():
    half = Image.new("L", (10, 10), 0)
    half.paste(255, (0, 0, 5, 10))
    # Black and white in one cluster average to L* 50, the grey that looks halfway (#777777),
    # not to the sRGB average #808080, which looks lighter than halfway.
    assert dominant_palette(half, k=1) == [("#777777", 1.0)]


def test_lab_to_hex_clips_out_of_gamut_colours():
    assert lab_to_hex((50.0, 200.0, 0.0)).startswith("#ff")
    assert lab_to_hex((100.0, 0.0, 0.0)) == "#ffffff"


def test_luma_histogram_counts_levels_into_equal_bins():
    half = Image.new("L", (10, 10), 0)
    half.paste(255, (0, 0, 5, 10))
    hist = luma_histogram(half, bins=4)
    assert hist.tolist() == [0.5, 0.0, 0.0, 0.5]
    assert luma_histogram(noise_image(6)).shape == (16,)


def test_downscaled_keeps_aspect_and_never_enlarges():
    assert downscaled(Image.new("RGB", (400, 100)), 64, Image.Resampling.BOX).size == (64, 16)
    small = Image.new("RGB", (20, 10))
    assert downscaled(small, 64, Image.Resampling.BOX) is small
