"""Image statistics for style profiles and scoring: dominant palette, luma and colour histograms.

Every statistic reads an image through `to_rgb`, which fixes how unusual modes are seen:

- Transparency (RGBA, LA, PA, premultiplied RGBa/La, P with a transparency entry) is composited
  onto a white background (`BACKGROUND`), as the image would look on a white page. A fully
  transparent image therefore reads as white, never as the colour hidden under alpha 0.
- 16-bit and 32-bit integer greyscale (modes I;16, I;16L, I;16B, I;16N and I, which is how 16-bit
  PNG and TIFF files open) is scaled from the 16-bit range 0..65535 to 8 bits (divided by 257,
  values outside the range clipped), not clipped at 255 as a plain conversion would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image
from skimage.color import lab2rgb, rgb2lab
from sklearn.cluster import KMeans
from threadpoolctl import ThreadpoolController

from assetql_dagster.domain.validation import check_int

PALETTE_MAX_SIDE = 64
# One k-means++ seeding per palette, as before the move to scikit-learn: tagging and scoring run this
# for every image, and on a few thousand colours extra restarts cost time without changing the
# dominant colours a tag or a score reads.
KMEANS_N_INIT = 1
# KMeans runs on OpenMP threads that spin-wait for each other. On a few thousand colours a fit takes
# milliseconds, and on a busy machine (concurrent runs, other workers) the waiting dominates: fits
# measured up to 290 ms instead of 3 ms on two loaded cores. One thread is both faster and steady.
# The controller is built after importing sklearn so that it finds sklearn's OpenMP runtime.
_THREADPOOLS = ThreadpoolController()
# Luma is computed by PIL's "L" conversion (ITU-R 601-2 weights); std of values in [0,1] is at most 0.5.
_MAX_LUMA_STD = 0.5


# What transparent pixels are composited onto before any statistic (see the module docstring).
BACKGROUND = (255, 255, 255)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_WIDE_INT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_UINT16_MAX = 65535


def _wide_to_8bit(img: Image.Image) -> Image.Image:
    """8-bit greyscale copy of a 16/32-bit integer image, the 16-bit range scaled onto 0..255."""
    values = np.clip(np.asarray(img, dtype=np.float64), 0, _UINT16_MAX)
    return Image.fromarray(np.rint(values * 255.0 / _UINT16_MAX).astype(np.uint8))


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB copy of `img`: transparency composited onto white, 16-bit values scaled to 8 bits."""
    if img.mode in _WIDE_INT_MODES:
        return _wide_to_8bit(img).convert("RGB")
    if img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def check_has_pixels(img: Image.Image) -> None:
    """Raise ValueError for a zero-width or zero-height image."""
    if img.width == 0 or img.height == 0:
        raise ValueError(f"image has no pixels: size {img.size}, expected width and height >= 1")


def downscaled(img: Image.Image, max_side: int, resample: Image.Resampling) -> Image.Image:
    """`img` shrunk to at most `max_side` px on its longer side, aspect kept; never enlarged."""
    scale = min(1.0, max_side / max(img.size))
    if scale == 1.0:
        return img
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, resample)


def _sample_pixels(img: Image.Image, sample: int, rng: np.random.Generator) -> np.ndarray:
    """At most `sample` RGB pixels (N, 3) of a copy of `img` downsampled to <= 64 px per side."""
    check_has_pixels(img)
    # NEAREST keeps only colours present in the image; a filter would invent blends at edges.
    small = downscaled(to_rgb(img), PALETTE_MAX_SIDE, Image.Resampling.NEAREST)
    pixels = np.asarray(small, dtype=np.float64).reshape(-1, 3)
    if len(pixels) > sample:
        pixels = pixels[rng.choice(len(pixels), size=sample, replace=False)]
    return pixels


def lab_to_hex(lab: Sequence[float]) -> str:
    """"#rrggbb" of a CIELAB (D65) colour, clipped into the sRGB gamut."""
    rgb = lab2rgb(np.asarray(lab, dtype=np.float64)[None, :])[0] * 255.0
    r, g, b = (int(v) for v in np.clip(np.rint(rgb), 0, 255))
    return f"#{r:02x}{g:02x}{b:02x}"


def hex_to_lab(hex_colour: str) -> tuple[float, float, float]:
    """The CIELAB (D65) of a "#rrggbb" colour."""
    rgb = np.array([[int(hex_colour[i:i + 2], 16) / 255.0 for i in (1, 3, 5)]])
    return tuple(float(v) for v in rgb2lab(rgb)[0])


def lab_palette(
    imgs: Iterable[Image.Image], k: int = 5, seed: int = 0, sample: int = 4096
) -> list[tuple[tuple[float, float, float], float]]:
    """Up to `k` colour clusters of the images pooled, as (CIELAB centre, share), largest share first.

    Each image weighs the same in total, whatever its size; shares sum to 1. Clustering runs in
    CIELAB because distances there approximate perceived colour difference (CIE76 ΔE), where equal
    sRGB distances are very unequal differences to the eye, from one hue to another: clusters and
    their mean colours then follow what a viewer sees as one colour.
    """
    check_int("k", k, 1)
    check_int("sample", sample, 1)
    imgs = list(imgs)
    if not imgs:
        raise ValueError("need at least one image to compute a palette, got none")
    rng = np.random.default_rng(seed)
    pixel_sets = [_sample_pixels(img, sample, rng) for img in imgs]
    weights = np.concatenate([np.full(len(px), 1.0 / len(px)) for px in pixel_sets])
    # Clustering the distinct colours with their pixel weight gives the same result as clustering
    # every pixel, on far fewer points: flat artwork has a handful of colours in thousands of pixels.
    points, inverse = np.unique(np.concatenate(pixel_sets), axis=0, return_inverse=True)
    point_weights = np.bincount(inverse.ravel(), weights=weights)
    lab = rgb2lab(points / 255.0)
    # KMeans needs at least k distinct points; an image with fewer colours has that many clusters.
    kmeans = KMeans(n_clusters=min(k, len(points)), n_init=KMEANS_N_INIT, random_state=seed)
    with _THREADPOOLS.limit(limits=1, user_api="openmp"):
        labels = kmeans.fit_predict(lab, sample_weight=point_weights)
    mass = np.bincount(labels, weights=point_weights, minlength=kmeans.n_clusters)
    clusters = [
        (tuple(float(v) for v in centre), float(m))
        for centre, m in zip(kmeans.cluster_centers_, mass / mass.sum())
        if m > 0  # a centre that ends up nearest to no colour describes nothing in the image
    ]
    return sorted(clusters, key=lambda item: (-item[1], item[0]))


def _palette(imgs: Sequence[Image.Image], k: int, seed: int, sample: int) -> list[tuple[str, float]]:
    shares: dict[str, float] = {}
    for lab, share in lab_palette(imgs, k, seed, sample):
        # Two Lab centres can round to the same 8-bit colour; a palette lists each colour once.
        colour = lab_to_hex(lab)
        shares[colour] = shares.get(colour, 0.0) + share
    return sorted(shares.items(), key=lambda item: (-item[1], item[0]))


def dominant_palette(
    img: Image.Image, k: int = 5, seed: int = 0, sample: int = 4096
) -> list[tuple[str, float]]:
    """Up to `k` dominant colours as ("#rrggbb", share), largest share first; shares sum to 1."""
    return _palette([img], k, seed, sample)


def palette_of_images(
    imgs: Iterable[Image.Image], k: int = 5, seed: int = 0, sample: int = 4096
) -> list[tuple[str, float]]:
    """Dominant palette of several images pooled, each image weighing the same."""
    return _palette(list(imgs), k, seed, sample)


def _luma(img: Image.Image) -> np.ndarray:
    check_has_pixels(img)
    return np.asarray(to_rgb(img).convert("L"), dtype=np.float64) / 255.0


def brightness(img: Image.Image) -> float:
    """Mean luma in [0, 1]."""
    return float(_luma(img).mean())


def contrast(img: Image.Image) -> float:
    """Standard deviation of luma, normalised to [0, 1] by its maximum possible value 0.5."""
    return float(min(1.0, _luma(img).std() / _MAX_LUMA_STD))


def luma_histogram(img: Image.Image, bins: int = 16) -> np.ndarray:
    """Histogram of luma over `bins` equal ranges of [0, 1], summing to 1."""
    check_int("bins", bins, 1, 256)
    counts, _ = np.histogram(_luma(img), bins=bins, range=(0.0, 1.0))
    return counts / counts.sum()


def mean_histogram(hists: Iterable[np.ndarray]) -> np.ndarray:
    """Element-wise mean of histograms of the same shape (still sums to 1 if each input does)."""
    stacked = list(hists)
    if not stacked:
        raise ValueError("need at least one histogram to average, got none")
    shapes = {np.shape(h) for h in stacked}
    if len(shapes) != 1:
        raise ValueError(f"histograms must all have the same shape, got shapes {sorted(shapes)}")
    return np.mean(np.stack(stacked), axis=0)


def histogram_similarity(h1: np.ndarray, h2: np.ndarray) -> float:
    """Histogram intersection of two normalised histograms: 1 when identical, 0 when disjoint."""
    a, b = np.asarray(h1, dtype=np.float64), np.asarray(h2, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"histograms must have the same shape, got {a.shape} and {b.shape}")
    return float(np.clip(np.minimum(a, b).sum(), 0.0, 1.0))
