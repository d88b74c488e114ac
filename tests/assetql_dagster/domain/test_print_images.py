"""Print images: sizes by kind, colour correction, sharpening, upscaling (Lanczos or a model), encoding
at 300 DPI under a size limit, and the read-back check."""

from __future__ import annotations

import io

import numpy as np
import pytest
from harness.export_jobs import noise_image
from PIL import Image, ImageCms, ImageDraw

from assetql_dagster.domain.print_images import (
    MAX_PRINT_PIXELS,
    PNG_FALLBACK_COLOURS,
    PORTRAIT_MINIMUM,
    colour_correct,
    encode_print,
    inches,
    minimum_size,
    print_file_problems,
    print_kind,
    print_size,
    resolution_problem,
    sharpen,
    upscale,
)
from assetql_dagster.domain.web_images import has_transparency, is_srgb_profile


def gradient(size=(256, 256), alpha=False) -> Image.Image:
    """A smooth image (compresses well), with a transparent border when `alpha`."""
    x = np.linspace(0, 255, size[0], dtype=np.float32)[None, :]
    y = np.linspace(0, 255, size[1], dtype=np.float32)[:, None]
    pixels = np.stack(np.broadcast_arrays(x, y, (x + y) / 2), axis=-1).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if alpha:
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).ellipse((8, 8, size[0] - 8, size[1] - 8), fill=255)
        image.putalpha(mask)
    return image


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(("size", "kind", "expected"), [
    ((256, 256), "auto", "portrait"),
    ((192, 320), "auto", "portrait"),
    ((320, 192), "auto", "scene"),
    ((320, 192), "portrait", "portrait"),
    ((256, 256), "scene", "scene"),
])
def test_auto_kind_is_a_scene_only_when_wider_than_tall(size, kind, expected):
    assert print_kind(size, kind) == expected


def test_unknown_kinds_are_refused_naming_the_value():
    with pytest.raises(ValueError, match="kind must be one of auto, portrait, scene, got 'poster'"):
        print_kind((10, 10), "poster")
    with pytest.raises(ValueError, match="got 'auto'"):
        minimum_size((10, 10), "auto")


def test_the_scene_minimum_turns_with_the_image():
    assert minimum_size((320, 192), "scene") == (3000, 2000)
    assert minimum_size((192, 320), "scene") == (2000, 3000)
    assert minimum_size((192, 320), "portrait") == PORTRAIT_MINIMUM


@pytest.mark.parametrize(("size", "minimum", "expected"), [
    ((256, 256), (2048, 2048), (2048, 2048)),
    ((320, 192), (3000, 2000), (3333, 2000)),  # the short side binds: 2000/192 > 3000/320
    ((400, 200), (3000, 2000), (4000, 2000)),
    ((192, 320), (2000, 3000), (2000, 3333)),
    ((256, 128), (2048, 2048), (4096, 2048)),
    ((4000, 3000), (3000, 2000), (4000, 3000)),  # already large enough: never shrunk
])
def test_print_size_is_the_smallest_scale_meeting_both_minimums(size, minimum, expected):
    found = print_size(size, minimum)
    assert found == expected
    assert found[0] >= minimum[0] and found[1] >= minimum[1]
    assert abs(found[0] / found[1] - size[0] / size[1]) <= 1 / min(found)


def test_an_extreme_aspect_ratio_is_refused_before_using_its_memory():
    with pytest.raises(ValueError, match=rf"2048×64 image prints at 65536×2048 px .* more than {MAX_PRINT_PIXELS:,}"):
        print_size((2048, 64), PORTRAIT_MINIMUM)
    with pytest.raises(ValueError, match="at least 1×1 px, got 0×5"):
        print_size((0, 5), PORTRAIT_MINIMUM)


def test_inches_at_300_dpi():
    assert inches((2048, 2048)) == (6.83, 6.83)
    assert inches((3000, 2000)) == (10.0, 6.67)


def test_neutral_colour_correction_changes_nothing():
    image = noise_image(1, (32, 32))
    assert np.array_equal(np.asarray(colour_correct(image)), np.asarray(image))


def test_colour_correction_scales_brightness_and_saturation():
    image = noise_image(1, (64, 64))
    brighter = np.asarray(colour_correct(image, brightness=1.3), dtype=np.float32)
    assert brighter.mean() > np.asarray(image, dtype=np.float32).mean() + 10
    grey = np.asarray(colour_correct(image, saturation=0))
    assert np.abs(grey[..., 0].astype(int) - grey[..., 1]).max() <= 1
    assert np.abs(grey[..., 1].astype(int) - grey[..., 2]).max() <= 1


def test_auto_contrast_stretches_a_dull_image_to_the_full_range():
    dull = Image.fromarray((np.asarray(gradient()) // 4 + 100).astype(np.uint8))
    assert np.asarray(dull).max() - np.asarray(dull).min() < 70
    stretched = np.asarray(colour_correct(dull, auto_contrast=True))
    assert stretched.min() <= 5 and stretched.max() >= 250


def test_colour_correction_and_sharpening_leave_alpha_alone():
    image = gradient(alpha=True)
    for changed in (colour_correct(image, contrast=1.8, auto_contrast=True), sharpen(image, 2, 300, 0)):
        assert changed.mode == "RGBA"
        assert np.array_equal(np.asarray(changed.getchannel("A")), np.asarray(image.getchannel("A")))


def test_unsharp_mask_raises_edge_contrast_and_zero_percent_is_off():
    soft = noise_image(2, (32, 32)).resize((256, 256), Image.Resampling.BILINEAR)
    sharpened = sharpen(soft, radius=2, percent=150, threshold=0)
    edges = lambda image: np.abs(np.diff(np.asarray(image, dtype=np.float32), axis=1)).mean()  # noqa: E731
    assert edges(sharpened) > edges(soft) * 1.2
    assert sharpen(soft, percent=0) is soft


def test_lanczos_upscale_reaches_the_size_and_keeps_alpha():
    image = gradient((64, 32), alpha=True)
    big = upscale(image, (512, 256))
    assert big.size == (512, 256) and big.mode == "RGBA"
    assert has_transparency(big)
    assert upscale(image, (64, 32)) is image


class RecordingModel:
    """A stand-in 4× model: nearest-neighbour ×4, recording what it was given."""

    def __init__(self):
        self.calls = []

    def __call__(self, image, prompt, seed):
        self.calls.append((image.mode, image.size, prompt, seed))
        return image.resize((image.width * 4, image.height * 4), Image.Resampling.NEAREST)


def test_a_model_upscale_sees_the_source_when_4x_is_not_enough_and_lanczos_finishes():
    model = RecordingModel()
    big = upscale(noise_image(0, (32, 32), "RGBA"), (2048, 2048), model, 4, "a sword", 7)
    assert model.calls == [("RGB", (32, 32), "a sword", 7)]
    assert big.size == (2048, 2048) and big.mode == "RGBA"


def test_a_model_sees_the_source_reduced_so_it_makes_no_more_than_the_print_needs():
    model = RecordingModel()
    big = upscale(noise_image(0, (1024, 512)), (3000, 1500), model, 4, "a castle", 1)
    # 4× of 750×375 is exactly the print; the full 1024×512 would make 4096×2048.
    assert model.calls == [("RGB", (750, 375), "a castle", 1)]
    assert big.size == (3000, 1500) and big.mode == "RGB"


def test_resolution_problem_names_the_size_and_the_minimum():
    assert resolution_problem((2048, 2100), PORTRAIT_MINIMUM) is None
    assert resolution_problem((2047, 2100), PORTRAIT_MINIMUM) == (
        "is 2047×2100 px, below the 2048×2048 px print minimum (6.83×6.83 in at 300 DPI)")


def test_an_opaque_image_becomes_a_300_dpi_srgb_jpeg_at_quality_95():
    printed = encode_print(gradient((512, 512)))
    assert (printed.format, printed.quality, printed.extension, printed.content_type) == (
        "JPEG", 95, ".jpg", "image/jpeg")
    image = opened(printed.data)
    assert image.format == "JPEG" and image.size == (512, 512) and image.info["dpi"] == (300, 300)
    assert is_srgb_profile(image.info["icc_profile"])


def test_an_all_opaque_alpha_channel_still_gives_a_jpeg():
    image = gradient((64, 64)).convert("RGBA")
    assert encode_print(image).format == "JPEG"


def test_jpeg_quality_is_lowered_until_the_file_fits():
    image = noise_image(3, (512, 512))
    full = encode_print(image)
    printed = encode_print(image, max_bytes=len(full.data) // 2)
    assert printed.format == "JPEG" and printed.quality < 95
    assert len(printed.data) < len(full.data) // 2


def test_a_transparent_image_becomes_a_full_colour_png_with_dpi_and_profile():
    printed = encode_print(gradient((256, 256), alpha=True))
    assert (printed.format, printed.colours, printed.extension) == ("PNG", None, ".png")
    image = opened(printed.data)
    assert image.format == "PNG" and image.mode == "RGBA" and has_transparency(image)
    assert tuple(round(v) for v in image.info["dpi"]) == (300, 300)
    assert is_srgb_profile(image.info["icc_profile"])


def test_a_png_over_the_limit_falls_back_to_a_dithered_palette_keeping_transparency():
    image = noise_image(4, (256, 256), "RGBA")
    full = encode_print(image)
    printed = encode_print(image, max_bytes=len(full.data) - 1)
    assert (printed.format, printed.colours) == ("PNG", PNG_FALLBACK_COLOURS)
    reduced = opened(printed.data)
    assert reduced.mode == "P" and has_transparency(reduced) and len(printed.data) < len(full.data)
    assert is_srgb_profile(reduced.info["icc_profile"])


def test_a_png_still_too_large_as_a_palette_is_refused_saying_why():
    with pytest.raises(ValueError, match=r"a 256×256 PNG with transparency is [\d,]+ bytes, and [\d,]+ even "
                                         r"reduced to 256 colours, not under 1,000; remove its transparency"):
        encode_print(noise_image(4, (256, 256), "RGBA"), max_bytes=1000)


def test_a_sound_print_file_has_no_problems():
    for image, transparent in ((gradient((300, 200)), False), (gradient((300, 200), alpha=True), True)):
        data = encode_print(image).data
        assert print_file_problems(data, (300, 200), (300, 200), transparent) == []


def test_print_file_problems_find_size_dpi_format_profile_and_bytes():
    plain = io.BytesIO()
    gradient((300, 200)).save(plain, "PNG")  # no DPI, no profile, no alpha
    problems = print_file_problems(plain.getvalue(), (300, 200), (400, 200), True, max_bytes=100)
    assert problems == [
        f"is {len(plain.getvalue()):,} bytes, not under 100",
        "is a PNG without the image's transparency",
        "has no embedded ICC profile",
        "is 300×200 px, below the 400×200 px print minimum (1.33×0.67 in at 300 DPI)",
        "has a resolution of none DPI written in it, not 300",
    ]
    jpeg = encode_print(gradient((300, 200)), dpi=72).data
    assert print_file_problems(jpeg, (300, 201), (300, 200), False) == [
        "is 300×200, not 300×201", "has a resolution of (72, 72) DPI written in it, not 300"]
    at_300 = encode_print(gradient((300, 200))).data
    assert print_file_problems(at_300, (300, 200), (300, 200), True) == [
        "is JPEG, not PNG (the image has transparency)"]


def test_another_embedded_profile_is_not_srgb():
    other = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    buffer = io.BytesIO()
    gradient((300, 200), alpha=True).save(buffer, "PNG", icc_profile=other, dpi=(300, 300))
    assert print_file_problems(buffer.getvalue(), (300, 200), (300, 200), True) == [
        "embeds an ICC profile that is not sRGB"]


def test_unreadable_data_is_reported():
    assert print_file_problems(b"not an image", (10, 10), (10, 10), True)[0].startswith("cannot be read as an image")
