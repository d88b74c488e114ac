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

from assetql_dagster.domain.validation import check_int

PALETTE_MAX_SIDE = 64
KMEANS_MAX_ITER = 20
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


def _sample_pixels(img: Image.Image, sample: int, rng: np.random.Generator) -> np.ndarray:
    """At most `sample` RGB pixels (N, 3) of a copy of `img` downsampled to <= 64 px per side."""
    check_has_pixels(img)
    scale = min(1.0, PALETTE_MAX_SIDE / max(img.size))
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    # NEAREST keeps only colours present in the image; a filter would invent blends at edges.
    small = to_rgb(img).resize(size, Image.Resampling.NEAREST)
    pixels = np.asarray(small, dtype=np.float64).reshape(-1, 3)
    if len(pixels) > sample:
        pixels = pixels[rng.choice(len(pixels), size=sample, replace=False)]
    return pixels


def _nearest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    # |p - c|² = |p|² - 2 p·c + |c|²; |p|² is the same for every centre, and one matrix product
    # replaces an (n, k, 3) array of differences: tagging runs this for every image.
    return ((centres**2).sum(axis=1) - 2.0 * points @ centres.T).argmin(axis=1)


def _kmeans_pp_init(points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding; `points` must be distinct and k <= len(points) so every draw is defined."""
    centres = np.empty((k, points.shape[1]))
    centres[0] = points[rng.choice(len(points), p=weights / weights.sum())]
    d2 = ((points - centres[0]) ** 2).sum(axis=1)
    for i in range(1, k):
        p = weights * d2
        centres[i] = points[rng.choice(len(points), p=p / p.sum())]
        d2 = np.minimum(d2, ((points - centres[i]) ** 2).sum(axis=1))
    return centres


def _weighted_kmeans(
    points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means on weighted distinct points; returns centres and the weight each holds."""
    k = min(k, len(points))
    centres = _kmeans_pp_init(points, weights, k, rng)
    for _ in range(KMEANS_MAX_ITER):
        labels = _nearest(points, centres)
        mass = np.bincount(labels, weights=weights, minlength=k)
        sums = np.stack(
            [np.bincount(labels, weights=weights * points[:, c], minlength=k) for c in range(3)], axis=1
        )
        # An emptied cluster keeps its centre; it ends with zero mass and is dropped by the caller.
        updated = np.where(mass[:, None] > 0, sums / np.maximum(mass, 1e-12)[:, None], centres)
        if np.allclose(updated, centres):
            break
        centres = updated
    labels = _nearest(points, centres)
    return centres, np.bincount(labels, weights=weights, minlength=k)


def _hex(rgb: np.ndarray) -> str:
    r, g, b = (int(v) for v in np.clip(np.rint(rgb), 0, 255))
    return f"#{r:02x}{g:02x}{b:02x}"


def _palette(imgs: Sequence[Image.Image], k: int, seed: int, sample: int) -> list[tuple[str, float]]:
    check_int("k", k, 1)
    check_int("sample", sample, 1)
    if not imgs:
        raise ValueError("need at least one image to compute a palette, got none")
    rng = np.random.default_rng(seed)
    pixel_sets = [_sample_pixels(img, sample, rng) for img in imgs]
    # Each image weighs the same in total, whatever its size or aspect ratio.
    weights = np.concatenate([np.full(len(px), 1.0 / len(px)) for px in pixel_sets])
    points, inverse = np.unique(np.concatenate(pixel_sets), axis=0, return_inverse=True)
    point_weights = np.bincount(inverse.ravel(), weights=weights)
    centres, mass = _weighted_kmeans(points, point_weights, k, rng)
    shares: dict[str, float] = {}
    for centre, m in zip(centres, mass / mass.sum()):
        if m > 0:
            colour = _hex(centre)
            shares[colour] = shares.get(colour, 0.0) + float(m)
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


def color_histogram(img: Image.Image, bins: int = 8) -> np.ndarray:
    """Joint RGB histogram with `bins` levels per channel, flattened to bins**3 and summing to 1."""
    check_int("bins", bins, 1, 256)
    check_has_pixels(img)
    levels = np.asarray(to_rgb(img), dtype=np.int64).reshape(-1, 3) * bins // 256
    index = (levels[:, 0] * bins + levels[:, 1]) * bins + levels[:, 2]
    counts = np.bincount(index, minlength=bins**3).astype(np.float64)
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
