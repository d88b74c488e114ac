import io
import struct

import pytest
from PIL import Image, ImageCms

from assetql_dagster.domain.web_images import is_srgb_profile, jpeg_bytes, srgb_icc, srgb_jpeg_problems
from harness.export_jobs import noise_image


def with_red_primary(icc: bytes, xyz: tuple[float, float, float]) -> bytes:
    """`icc` with its red colorant (the rXYZ tag) replaced: an RGB profile of other primaries."""
    count = struct.unpack(">I", icc[128:132])[0]
    for entry in range(count):
        signature, offset, _ = struct.unpack(">4sII", icc[132 + 12 * entry: 144 + 12 * entry])
        if signature == b"rXYZ":
            values = struct.pack(">3i", *(round(v * 65536) for v in xyz))  # s15Fixed16Number
            return icc[: offset + 8] + values + icc[offset + 20:]
    raise AssertionError("no rXYZ tag")


def test_srgb_profiles_are_told_by_their_primaries():
    assert is_srgb_profile(srgb_icc())
    wide_red = with_red_primary(srgb_icc(), (0.5151, 0.2412, -0.0011))  # Display P3's red, D50
    assert ImageCms.ImageCmsProfile(io.BytesIO(wide_red)).profile.xcolor_space == "RGB "
    assert not is_srgb_profile(wide_red)
    assert not is_srgb_profile(ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes())
    assert not is_srgb_profile(b"not a profile")


def test_an_srgb_jpeg_of_the_size_and_under_the_limit_has_no_problems():
    data = jpeg_bytes(noise_image(1, (120, 80)), 90)
    assert srgb_jpeg_problems(data, (120, 80), len(data) + 1) == []


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", icc_profile=srgb_icc())
    return buffer.getvalue()


def jpeg(image: Image.Image, **extra) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **extra)
    return buffer.getvalue()


@pytest.mark.parametrize(("make", "expected"), [
    (lambda: png(noise_image(1, (120, 80))), "is PNG, not JPEG"),
    (lambda: jpeg(noise_image(1, (120, 80))), "has no embedded ICC profile"),
    (lambda: jpeg(noise_image(1, (120, 80)), icc_profile=with_red_primary(srgb_icc(), (0.5151, 0.2412, -0.0011))),
     "embeds an ICC profile that is not sRGB"),
    (lambda: jpeg_bytes(noise_image(1, (100, 80)), 90), "is 100×80, not 120×80"),
    (lambda: jpeg(noise_image(1, (120, 80), "L"), icc_profile=srgb_icc()), "is in mode L, not RGB"),
    (lambda: jpeg_bytes(noise_image(1, (120, 80)), 90)[:2000], "cannot be read as an image"),
    (lambda: b"x" * 10, "cannot be read as an image"),
])
def test_each_problem_of_a_delivered_jpeg_is_named(make, expected):
    problems = srgb_jpeg_problems(make(), (120, 80), 10**6)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_a_file_at_the_limit_is_too_large():
    data = jpeg_bytes(noise_image(1, (120, 80)), 90)
    assert srgb_jpeg_problems(data, (120, 80), len(data)) == [f"is {len(data):,} bytes, not under {len(data):,}"]
