"""Print files (FR-IMGGEN-011/012): the print size of an image, upscaling to it, colour correction,
sharpening, encoding at 300 DPI under a size limit, and reading a print file back.

Sizes: a portrait (an image as tall as wide or taller) prints at least 2048×2048 px, a scene at
least 3000 px on its long side and 2000 px on its short side (3000×2000 landscape, 2000×3000 when a
scene is taller than wide). An image is scaled by the smallest factor that meets both minimums,
keeping its aspect ratio, and never shrunk.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from assetql_dagster.domain.web_images import (
    has_transparency,
    jpeg_under,
    png_bytes,
    size_and_profile_problems,
    srgb_jpeg_problems,
)

PRINT_DPI = 300
# Under 5 MB per file (FR-IMGGEN-012); counted in decimal megabytes, the stricter reading for a print shop.
MAX_PRINT_BYTES = 5_000_000
PORTRAIT, SCENE = "portrait", "scene"
PRINT_KINDS = ("auto", PORTRAIT, SCENE)
PORTRAIT_MINIMUM = (2048, 2048)
SCENE_MINIMUM = (3000, 2000)  # (long side, short side)
# A print larger than this (an extreme aspect ratio scaled up to a minimum) is refused rather than
# spend its memory: a 3:1 scene at 6000×2000 is 12 MP.
MAX_PRINT_PIXELS = 40_000_000
# Colours of the palette an RGBA print falls back to when its full-colour PNG is over the size limit.
PNG_FALLBACK_COLOURS = 256

# A 4× model's call: (RGB image, prompt, seed) -> the image `factor` times larger.
ModelUpscale = Callable[[Image.Image, str, int], Image.Image]


def print_kind(size: tuple[int, int], kind: str = "auto") -> str:
    """"portrait" or "scene": `kind` itself, or for "auto" a scene when wider than tall, else a portrait."""
    if kind not in PRINT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(PRINT_KINDS)}, got {kind!r}")
    if kind != "auto":
        return kind
    width, height = size
    return SCENE if width > height else PORTRAIT


def minimum_size(size: tuple[int, int], kind: str) -> tuple[int, int]:
    """The least (width, height) a print of `kind` needs, the scene minimum turned to the image's orientation."""
    if kind == PORTRAIT:
        return PORTRAIT_MINIMUM
    if kind != SCENE:
        raise ValueError(f"kind must be {PORTRAIT!r} or {SCENE!r}, got {kind!r}")
    long_side, short_side = SCENE_MINIMUM
    width, height = size
    return (long_side, short_side) if width >= height else (short_side, long_side)


def print_size(size: tuple[int, int], minimum: tuple[int, int]) -> tuple[int, int]:
    """`size` scaled by the smallest factor (at least 1) that makes it at least `minimum`, aspect kept."""
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"an image to print must be at least 1×1 px, got {width}×{height}")
    scale = max(minimum[0] / width, minimum[1] / height, 1.0)
    # Both sides are at least their minimum before rounding, so rounding cannot take one below it; the
    # aspect ratio then stays within half a pixel.
    target = (round(width * scale), round(height * scale))
    if target[0] * target[1] > MAX_PRINT_PIXELS:
        raise ValueError(
            f"a {width}×{height} image prints at {target[0]}×{target[1]} px to reach {minimum[0]}×{minimum[1]}, "
            f"more than {MAX_PRINT_PIXELS:,} pixels; its aspect ratio is too extreme for this print kind"
        )
    return target


def inches(size: tuple[int, int], dpi: int = PRINT_DPI) -> tuple[float, float]:
    """The printed size of `size` pixels at `dpi`, in inches (two decimals)."""
    return round(size[0] / dpi, 2), round(size[1] / dpi, 2)


def _on_colour(image: Image.Image, change: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """`change` applied to the RGB channels of an RGB or RGBA image, its alpha channel left as it was."""
    if image.mode == "RGB":
        return change(image)
    if image.mode != "RGBA":
        raise ValueError(f"expected an RGB or RGBA image, got mode {image.mode}")
    result = change(image.convert("RGB"))
    result.putalpha(image.getchannel("A"))
    return result


def colour_correct(
    image: Image.Image, brightness: float = 1.0, contrast: float = 1.0, saturation: float = 1.0,
    auto_contrast: bool = False,
) -> Image.Image:
    """`image` (RGB or RGBA) auto-contrasted if asked, then scaled by ImageEnhance factors (1: unchanged)."""

    def correct(rgb: Image.Image) -> Image.Image:
        if auto_contrast:
            # A little clipping keeps a few stray pixels from deciding the whole stretch.
            rgb = ImageOps.autocontrast(rgb, cutoff=0.5)
        for enhancer, factor in ((ImageEnhance.Brightness, brightness), (ImageEnhance.Contrast, contrast),
                                 (ImageEnhance.Color, saturation)):
            if factor != 1:
                rgb = enhancer(rgb).enhance(factor)
        return rgb

    return _on_colour(image, correct)


def sharpen(image: Image.Image, radius: float = 2.0, percent: int = 100, threshold: int = 3) -> Image.Image:
    """`image` (RGB or RGBA) through an unsharp mask (`percent` 0: unchanged), its alpha left unsharpened."""
    # Sharpening alpha would draw halos around a cut-out subject.
    if percent == 0 or radius == 0:
        return image
    return _on_colour(image, lambda rgb: rgb.filter(ImageFilter.UnsharpMask(radius, percent, threshold)))


def upscale(
    image: Image.Image, size: tuple[int, int], model: ModelUpscale | None = None, factor: int = 4,
    prompt: str = "", seed: int = 0,
) -> Image.Image:
    """`image` (RGB or RGBA) at `size`: by Lanczos, or by `model` (`factor`×) then Lanczos to the exact size."""
    # The model sees the image reduced, where needed, to about `size / factor`, so that it never makes
    # more pixels than the print needs: its memory and time grow with its output. It works in RGB; alpha
    # is resized by Lanczos alone.
    if image.size == tuple(size):
        return image
    if model is None:
        return image.resize(size, Image.Resampling.LANCZOS)
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    rgb = image.convert("RGB")
    room = max(size[0] / (factor * rgb.width), size[1] / (factor * rgb.height))
    if room < 1:
        rgb = rgb.resize((max(1, math.ceil(rgb.width * room)), max(1, math.ceil(rgb.height * room))),
                         Image.Resampling.LANCZOS)
    result = model(rgb, prompt, seed).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    if alpha is not None:
        result.putalpha(alpha.resize(size, Image.Resampling.LANCZOS))
    return result


def resolution_problem(size: tuple[int, int], minimum: tuple[int, int], dpi: int = PRINT_DPI) -> str | None:
    """Why an image of `size` cannot print at the `minimum` size; None when it can."""
    if size[0] >= minimum[0] and size[1] >= minimum[1]:
        return None
    low = inches(minimum, dpi)
    return (f"is {size[0]}×{size[1]} px, below the {minimum[0]}×{minimum[1]} px print minimum "
            f"({low[0]}×{low[1]} in at {dpi} DPI)")


@dataclass(frozen=True)
class PrintFile:
    """An encoded print: its bytes, format ("JPEG" or "PNG"), JPEG quality, and palette size if reduced."""

    data: bytes
    format: str
    quality: int | None = None
    colours: int | None = None

    @property
    def extension(self) -> str:
        return ".png" if self.format == "PNG" else ".jpg"

    @property
    def content_type(self) -> str:
        return "image/png" if self.format == "PNG" else "image/jpeg"


def encode_print(image: Image.Image, max_bytes: int = MAX_PRINT_BYTES, quality: int = 95,
                 dpi: int = PRINT_DPI) -> PrintFile:
    """`image` as an sRGB print file at `dpi` under `max_bytes`: PNG with transparency, JPEG otherwise."""
    # A JPEG drops below `quality` by bisection until it fits. A PNG cannot trade quality for size: one
    # over the limit is reduced to a dithered 256-colour palette (alpha kept), and refused when even
    # that is too large.
    if not has_transparency(image):
        data, found = jpeg_under(image, max_bytes, quality, dpi)
        return PrintFile(data, "JPEG", quality=found)
    data = png_bytes(image, dpi)
    if len(data) < max_bytes:
        return PrintFile(data, "PNG")
    reduced = png_bytes(image, dpi, PNG_FALLBACK_COLOURS)
    if len(reduced) < max_bytes:
        return PrintFile(reduced, "PNG", colours=PNG_FALLBACK_COLOURS)
    raise ValueError(
        f"a {image.width}×{image.height} PNG with transparency is {len(data):,} bytes, and {len(reduced):,} even "
        f"reduced to {PNG_FALLBACK_COLOURS} colours, not under {max_bytes:,}; remove its transparency to get "
        "a JPEG, or print it smaller"
    )


def print_file_problems(data: bytes, size: tuple[int, int], minimum: tuple[int, int], transparent: bool,
                        max_bytes: int = MAX_PRINT_BYTES, dpi: int = PRINT_DPI) -> list[str]:
    """Why `data` is not a print of `size` (≥ `minimum`) at `dpi` in sRGB under `max_bytes`, PNG iff `transparent`."""
    if not transparent:
        problems = srgb_jpeg_problems(data, size, max_bytes)
    else:
        problems = [] if len(data) < max_bytes else [f"is {len(data):,} bytes, not under {max_bytes:,}"]
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            found = (image.format, image.size, image.info.get("dpi"), image.info.get("icc_profile"),
                     has_transparency(image))
    except (OSError, SyntaxError) as error:
        # srgb_jpeg_problems has already said so for a JPEG.
        return [*problems, f"cannot be read as an image: {error}"] if transparent else problems
    image_format, found_size, found_dpi, icc, found_transparency = found
    if transparent:
        # srgb_jpeg_problems covers these for a JPEG.
        if image_format != "PNG":
            problems.append(f"is {image_format}, not PNG (the image has transparency)")
        elif not found_transparency:
            problems.append("is a PNG without the image's transparency")
        problems += size_and_profile_problems(found_size, size, icc)
    too_small = resolution_problem(found_size, minimum, dpi)
    if too_small:
        problems.append(too_small)
    # PNG stores pixels per metre, so 300 DPI reads back as 299.9994.
    if not found_dpi or any(round(value) != dpi for value in found_dpi):
        problems.append(f"has a resolution of {found_dpi or 'none'} DPI written in it, not {dpi}")
    return problems
