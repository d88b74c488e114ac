"""Image files for delivery: sRGB JPEGs with an embedded ICC profile, and the highest quality that
fits a size limit."""

from __future__ import annotations

import io
from functools import cache

from PIL import Image, ImageCms

MIN_QUALITY = 30


@cache
def srgb_icc() -> bytes:
    """The bytes of an sRGB ICC profile (littleCMS's built-in), embedded so viewers need not guess."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def to_srgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """`image` as RGB in sRGB: an embedded profile converted from, alpha flattened onto `background`."""
    profile = image.info.get("icc_profile")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, background)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    elif image.mode != "RGB":
        image = image.convert("RGB")
    if profile and profile != srgb_icc():
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        image = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    return image


def jpeg_bytes(image: Image.Image, quality: int, dpi: int | None = None) -> bytes:
    """`image` as a progressive sRGB JPEG at `quality`, with the sRGB profile embedded."""
    buffer = io.BytesIO()
    extra = {"dpi": (dpi, dpi)} if dpi else {}
    to_srgb(image).save(
        buffer, "JPEG", quality=quality, optimize=True, progressive=True, icc_profile=srgb_icc(), **extra
    )
    return buffer.getvalue()


def jpeg_under(image: Image.Image, max_bytes: int, quality: int = 92, dpi: int | None = None) -> tuple[bytes, int]:
    """The best-quality JPEG of `image` (at most `quality`) smaller than `max_bytes`, and its quality;
    found by bisection. ValueError when even MIN_QUALITY is too large."""
    image = to_srgb(image)
    best = jpeg_bytes(image, quality, dpi)
    if len(best) < max_bytes:
        return best, quality
    low, high, found = MIN_QUALITY, quality - 1, None
    while low <= high:
        middle = (low + high) // 2
        data = jpeg_bytes(image, middle, dpi)
        if len(data) < max_bytes:
            found, low = (data, middle), middle + 1
        else:
            high = middle - 1
    if found is None:
        raise ValueError(
            f"a {image.width}×{image.height} JPEG stays at or above {max_bytes:,} bytes even at quality {MIN_QUALITY}"
        )
    return found


def longest_side_size(size: tuple[int, int], limit: int) -> tuple[int, int]:
    """`size` scaled down (never up), aspect kept, so that its longest side is at most `limit`."""
    width, height = size
    scale = limit / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit_longest_side(image: Image.Image, limit: int) -> Image.Image:
    """`image` resized with Lanczos to `longest_side_size(image.size, limit)` (itself when it fits)."""
    size = longest_side_size(image.size, limit)
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


def is_srgb_profile(icc: bytes) -> bool:
    """Whether the ICC profile `icc` is an RGB profile with sRGB's primaries."""
    # The primaries are compared rather than the description, which any profile may carry.
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile
    except OSError:
        return False
    reference = ImageCms.ImageCmsProfile(io.BytesIO(srgb_icc())).profile
    colorants = ("red_colorant", "green_colorant", "blue_colorant")
    return profile.xcolor_space == "RGB " and all(
        getattr(profile, name) is not None
        and all(abs(a - b) < 0.005 for a, b in zip(getattr(profile, name)[0], getattr(reference, name)[0]))
        for name in colorants
    )


def srgb_jpeg_problems(data: bytes, size: tuple[int, int], max_bytes: int) -> list[str]:
    """Why `data` is not an RGB JPEG of exactly `size`, sRGB profile embedded, under `max_bytes` ([] if it is)."""
    problems = [] if len(data) < max_bytes else [f"is {len(data):,} bytes, not under {max_bytes:,}"]
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # verify() checks only the headers of a JPEG; decoding finds a truncated file
            found = (image.format, image.mode, image.size, image.info.get("icc_profile"))
    except (OSError, SyntaxError) as error:
        return [*problems, f"cannot be read as an image: {error}"]
    image_format, mode, found_size, icc = found
    if image_format != "JPEG":
        problems.append(f"is {image_format}, not JPEG")
    if mode != "RGB":
        problems.append(f"is in mode {mode}, not RGB")
    return problems + size_and_profile_problems(found_size, size, icc)


def size_and_profile_problems(found_size: tuple[int, int], size: tuple[int, int], icc: bytes | None) -> list[str]:
    """What is wrong with an image file's size (against `size`) and its ICC profile (against sRGB)."""
    problems = []
    if found_size != tuple(size):
        problems.append(f"is {found_size[0]}×{found_size[1]}, not {size[0]}×{size[1]}")
    if not icc:
        problems.append("has no embedded ICC profile")
    elif not is_srgb_profile(icc):
        problems.append("embeds an ICC profile that is not sRGB")
    return problems


def has_transparency(image: Image.Image) -> bool:
    """Whether any pixel of `image` is not fully opaque (an all-opaque alpha channel counts as none)."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if "A" not in image.getbands():
        return False
    return image.getchannel("A").getextrema()[0] < 255


def to_srgb_keeping_alpha(image: Image.Image) -> Image.Image:
    """`image` in sRGB: RGBA with its alpha untouched when it has transparency, else RGB like `to_srgb`."""
    if not has_transparency(image):
        return to_srgb(image)
    rgba = image.convert("RGBA")
    # Dropping the alpha channel (not flattening) keeps the colours under transparent pixels; convert()
    # keeps info, so to_srgb still sees the embedded profile.
    colour = to_srgb(rgba.convert("RGB"))
    colour.putalpha(rgba.getchannel("A"))
    return colour


def png_bytes(image: Image.Image, dpi: int | None = None, colours: int | None = None) -> bytes:
    """`image` as an sRGB PNG with the sRGB profile embedded, its transparency kept; reduced to a palette
    of `colours` (Floyd-Steinberg dithered, alpha in the palette) when given."""
    image = to_srgb_keeping_alpha(image)
    if colours:
        # Fast octree is the quantizer Pillow offers for RGBA images.
        image = image.quantize(colours, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.FLOYDSTEINBERG)
    buffer = io.BytesIO()
    extra = {"dpi": (dpi, dpi)} if dpi else {}
    # zlib level 6, not optimize (level 9): on a smooth 3333×2000 RGBA image level 9 took 24 s against
    # 1.7 s, for a file only 11% smaller.
    image.save(buffer, "PNG", compress_level=6, icc_profile=srgb_icc(), **extra)
    return buffer.getvalue()
