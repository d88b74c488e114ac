import numpy as np
import pytest
from PIL import Image

from assetql_dagster.domain.crops import crop_to, crop_window, edge_colour, pad_to, smart_crop_box

FLAT = (200, 190, 180)


def subject_image(size: tuple[int, int], subject: tuple[int, int, int, int]) -> Image.Image:
    """A flat background with a square of noise (the only detail) at `subject` (left, top, right, bottom)."""
    pixels = np.full((size[1], size[0], 3), FLAT, np.uint8)
    left, top, right, bottom = subject
    rng = np.random.default_rng(7)
    pixels[top:bottom, left:right] = rng.integers(0, 256, (bottom - top, right - left, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def inside(subject, box) -> bool:
    return box[0] <= subject[0] and box[1] <= subject[1] and subject[2] <= box[2] and subject[3] <= box[3]


def centred(size, aspect):
    width, height = crop_window(size, aspect)
    left, top = (size[0] - width) / 2, (size[1] - height) / 2
    return left, top, left + width, top + height


@pytest.mark.parametrize(("size", "aspect", "expected"), [
    ((512, 512), 1000 / 1500, (512 * 1000 / 1500, 512)),
    ((512, 512), 1200 / 630, (512, 512 * 630 / 1200)),
    ((300, 200), 1.5, (300, 200)),
])
def test_crop_window_is_the_largest_of_the_ratio(size, aspect, expected):
    assert crop_window(size, aspect) == pytest.approx(expected)


@pytest.mark.parametrize(("size", "subject", "aspect"), [
    ((512, 512), (360, 60, 460, 160), 1080 / 1920),  # story: a narrow window, subject top right
    ((512, 512), (20, 300, 120, 400), 1000 / 1500),  # pin: subject bottom left
    ((512, 512), (200, 400, 300, 500), 1200 / 630),  # link image: a wide window, subject at the bottom
    ((64, 64), (44, 4, 60, 20), 1080 / 1920),  # the tiny model's size: smartcrop's cells shrink with it
    ((1024, 768), (40, 300, 200, 460), 1080 / 1350),  # larger than the analysis copy
])
def test_smart_crop_keeps_an_off_centre_subject_where_a_centre_crop_loses_it(size, subject, aspect):
    image = subject_image(size, subject)
    box = smart_crop_box(image, aspect)
    assert not inside(subject, centred(size, aspect))  # the case is one a plain centre crop gets wrong
    assert inside(subject, box)
    assert 0 <= box[0] and 0 <= box[1] and box[2] <= size[0] and box[3] <= size[1]
    assert (box[2] - box[0]) / (box[3] - box[1]) == pytest.approx(aspect)
    assert (box[2] - box[0], box[3] - box[1]) == pytest.approx(crop_window(size, aspect))


def test_smart_crop_of_the_image_own_ratio_is_the_whole_image():
    assert smart_crop_box(subject_image((300, 200), (10, 10, 50, 50)), 1.5) == pytest.approx((0, 0, 300, 200))


def test_crop_to_upscales_the_box_to_exactly_the_size():
    image = subject_image((64, 64), (0, 0, 32, 64))  # noise on the left half, flat on the right
    cropped = crop_to(image, (1080, 1920), (32, 0, 64, 64))
    assert cropped.size == (1080, 1920)
    assert np.abs(np.asarray(cropped, np.int16)[:, 200:] - FLAT).max() <= 2  # only the flat half, scaled


def test_pad_to_centres_the_whole_image_on_the_background():
    image = Image.new("RGB", (512, 256), (255, 0, 0))
    padded = pad_to(image, (1080, 1080), (0, 0, 255))
    pixels = np.asarray(padded)
    assert padded.size == (1080, 1080)
    # 512×256 scaled to 1080×540, centred: bars of 270 px above and below.
    assert (pixels[:268] == (0, 0, 255)).all() and (pixels[-268:] == (0, 0, 255)).all()
    assert (pixels[272:-272] == (255, 0, 0)).all()


def test_pad_to_an_identical_ratio_leaves_no_background():
    padded = pad_to(Image.new("RGB", (100, 150), (9, 9, 9)), (1000, 1500), (255, 255, 255))
    assert padded.size == (1000, 1500) and (np.asarray(padded) == 9).all()


def test_edge_colour_is_the_border_median_whatever_the_middle():
    image = subject_image((128, 96), (20, 20, 100, 70))
    image.putpixel((0, 0), (0, 0, 0))  # a stray corner pixel does not move a median
    assert edge_colour(image) == FLAT
