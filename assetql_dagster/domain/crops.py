"""Fitting an image into a fixed frame: a smart crop that keeps the most interesting part (smartcrop's
edge, saturation and skin features), or the whole image padded with a background colour."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from smartcrop import SmartCrop

Box = tuple[float, float, float, float]

# The crop is chosen on a copy at most this large: smartcrop scores every window position in Python,
# so its time grows with the image, and a few hundred pixels already locate a subject.
ANALYSIS_SIDE = 512
# smartcrop scores on a grid of cells; about this many across the long side keeps a 64 px source
# as finely placed as a 512 px one (its default of 8 px cells leaves a 64 px image only 8).
FEATURE_CELLS = 64


def crop_window(size: tuple[int, int], aspect: float) -> tuple[float, float]:
    """The largest width and height of ratio `aspect` (width / height) inside an image of `size`."""
    width, height = size
    if width / height > aspect:
        return height * aspect, float(height)
    return float(width), width / aspect


def smart_crop_box(image: Image.Image, aspect: float) -> Box:
    """The largest (left, top, right, bottom) window of ratio `aspect` whose content smartcrop scores best."""
    width, height = image.size
    crop_width, crop_height = crop_window(image.size, aspect)
    scale = min(1.0, ANALYSIS_SIDE / max(width, height))
    small = image.convert("RGB")
    if scale < 1:
        small = small.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)
    cell = max(1, math.ceil(max(small.size) / FEATURE_CELLS))
    window = (
        min(small.width, max(1, math.floor(crop_width * scale))),
        min(small.height, max(1, math.floor(crop_height * scale))),
    )
    # min_scale = max_scale = 1: only windows of the full crop size, since the frame's aspect is what
    # is cut to; smartcrop's zooming in on a smaller window would also drop content.
    best = SmartCrop(score_down_sample=cell).analyse(
        small, *window, max_scale=1, min_scale=1, num_scale_steps=1, step=cell
    )["top_crop"]
    # The chosen window's centre, back in the source's pixels; the exact-ratio window is placed on it
    # and kept inside the image (smartcrop's windows are whole analysis pixels, a little off the ratio).
    centre_x = (best["x"] + best["width"] / 2) / scale
    centre_y = (best["y"] + best["height"] / 2) / scale
    left = min(max(centre_x - crop_width / 2, 0.0), width - crop_width)
    top = min(max(centre_y - crop_height / 2, 0.0), height - crop_height)
    return left, top, left + crop_width, top + crop_height


def crop_to(image: Image.Image, size: tuple[int, int], box: Box) -> Image.Image:
    """`box` of `image` resized to exactly `size` with Lanczos (upscaling small sources too)."""
    return image.resize(size, Image.Resampling.LANCZOS, box=box)


def pad_to(image: Image.Image, size: tuple[int, int], background: tuple[int, int, int]) -> Image.Image:
    """`image` scaled with Lanczos to fit inside `size` whole, centred on a `background` canvas of `size`."""
    scale = min(size[0] / image.width, size[1] / image.height)
    fitted = image.resize(
        (min(size[0], max(1, round(image.width * scale))), min(size[1], max(1, round(image.height * scale)))),
        Image.Resampling.LANCZOS,
    )
    canvas = Image.new("RGB", size, background)
    canvas.paste(fitted, ((size[0] - fitted.width) // 2, (size[1] - fitted.height) // 2))
    return canvas


def edge_colour(image: Image.Image) -> tuple[int, int, int]:
    """The median colour of `image`'s outer pixels: a padding that continues its background."""
    pixels = np.asarray(image.convert("RGB"))
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    red, green, blue = (int(round(value)) for value in np.median(border, axis=0))
    return red, green, blue
