"""Style parameters of an image, and how closely an image's parameters follow a reference profile.

Four measured parameters describe what a reviewer checks besides the overall look that the CLIP
embedding captures:

- palette: up to 5 dominant colours, k-means in CIELAB (`palette.lab_palette`), with their shares;
- lighting: 16-bin luma histogram, mean luma, contrast and colour temperature in kelvin;
- composition: left-right symmetry and rule-of-thirds energy of the Sobel edge map;
- texture: energy shares of a Gabor filter bank and the high-frequency share of the spectrum.

Images are read through `palette.to_rgb` (transparency on white, 16-bit scaled to 8 bits) and,
except for the palette, measured on a copy shrunk to at most MAX_SIDE px: these parameters describe
the image as a whole, and the filters run in milliseconds at that size.

Every value is a plain float, str or tuple, so `dataclasses.asdict` of a `StyleParameters` is
JSON-ready. `parameter_scores` compares an image with a profile, one score in [0, 1] per parameter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.signal import fftconvolve
from skimage.color import rgb2xyz
from skimage.filters import gabor_kernel, sobel, window

from assetql_dagster.domain.palette import (
    brightness,
    check_has_pixels,
    contrast,
    downscaled,
    histogram_similarity,
    lab_palette,
    lab_to_hex,
    luma_histogram,
    mean_histogram,
    to_rgb,
)

MAX_SIDE = 128
PALETTE_SIZE = 5
LUMA_BINS = 16

# McCamy's (1992) cubic for correlated colour temperature from CIE 1931 xy, in powers of
# n = (x - 0.3320) / (0.1858 - y). It fits the Planckian locus; away from it, it is an extrapolation,
# so it is used only where it is monotonic: n below the cubic's local minimum (-1.2817, 1620 K) would
# make a deeper orange read cooler, and chromaticities below the epicentre's y (deep blue, violet)
# flip the sign of n: those read as the coolest temperature. Results lie in KELVIN_RANGE, from the
# cubic's minimum to 25000 K, where the cubic has long left the locus.
_MCCAMY = (449.0, 3525.0, 6823.3, 5520.33)
_MCCAMY_EPICENTRE = (0.3320, 0.1858)
_MCCAMY_N_MIN = -1.2817
KELVIN_RANGE = (float(np.polyval(_MCCAMY, _MCCAMY_N_MIN)), 25000.0)
# The sRGB white point D65, what an image with no light at all (pure black) is taken to be lit by.
_D65_KELVIN = 6504.0
# Labels for `Lighting.tone`: sRGB white (6504 K) and light tints of it read neutral.
WARM_BELOW_KELVIN = 5000.0
COOL_ABOVE_KELVIN = 8000.0

# Gabor bank at MAX_SIDE px: 3 scales (periods of about 12, 6 and 3 px) x 4 orientations
# (0, 45, 90, 135 degrees). skimage's kernels have unit Gaussian mass, so responses of luma in
# [0, 1] are on a common scale across filters.
GABOR_FREQUENCIES = (0.08, 0.16, 0.32)
GABOR_ORIENTATIONS = 4
_GABOR_BANK = tuple(
    gabor_kernel(frequency, theta=math.pi * i / GABOR_ORIENTATIONS)
    for frequency in GABOR_FREQUENCIES
    for i in range(GABOR_ORIENTATIONS)
)
_GABOR_PAD = max(max(kernel.shape) for kernel in _GABOR_BANK) // 2
# One 8-bit grey level: mean responses below it are quantisation noise, not texture. Added to every
# energy before normalising, it also gives a flat image the uniform distribution (no preferred
# scale or orientation) instead of a division by zero.
_GABOR_FLOOR = 1.0 / 255.0
# Spatial frequencies above half the Nyquist limit (0.25 cycles per pixel) count as fine detail.
HIGH_FREQUENCY_CUTOFF = 0.25

# Half an 8-bit grey level: a weaker Sobel response is rounding noise (a flat image's is ~1e-17),
# while a one-level step still counts as an edge.
_EDGE_FLOOR = 0.5 / 255.0

# Rule-of-thirds bands: within 1/24 of the side of a third line, i.e. a band 1/12 of the side wide
# around each of the four lines; together they cover about 31% of the frame.
THIRDS_BAND = 1.0 / 24.0

# Score scales, each the difference at which a parameter's score reaches 0 (see parameter_scores).
PALETTE_DELTA_E_ZERO = 50.0
MIRED_ZERO = 150.0


@dataclass(frozen=True)
class Swatch:
    """One palette colour: its "#rrggbb", CIELAB (D65) centre and share of the pixels."""

    hex: str
    lab: tuple[float, float, float]
    share: float


@dataclass(frozen=True)
class Palette:
    """Up to PALETTE_SIZE swatches, largest share first, shares summing to 1."""

    swatches: tuple[Swatch, ...]


@dataclass(frozen=True)
class Lighting:
    """Luma histogram (LUMA_BINS bins summing to 1), mean luma and contrast (std of luma / 0.5),
    all in [0, 1], and the correlated colour temperature of the mean colour in kelvin."""

    histogram: tuple[float, ...]
    mean_luminance: float
    contrast: float
    kelvin: float

    @property
    def tone(self) -> str:
        """"warm", "neutral" or "cool", by WARM_BELOW_KELVIN and COOL_ABOVE_KELVIN."""
        if self.kelvin < WARM_BELOW_KELVIN:
            return "warm"
        return "cool" if self.kelvin > COOL_ABOVE_KELVIN else "neutral"


@dataclass(frozen=True)
class Composition:
    """Left-right symmetry of the edge map and its share on the rule-of-thirds bands, in [0, 1]."""

    symmetry: float
    thirds_energy: float


@dataclass(frozen=True)
class Texture:
    """Share of the Gabor bank's energy per filter (frequency-major, as GABOR_FREQUENCIES x
    orientations), summing to 1, and the share of spectral power above HIGH_FREQUENCY_CUTOFF."""

    gabor: tuple[float, ...]
    high_frequency_ratio: float


@dataclass(frozen=True)
class StyleParameters:
    palette: Palette
    lighting: Lighting
    composition: Composition
    texture: Texture


def _palette(imgs: Sequence[Image.Image]) -> Palette:
    return Palette(
        tuple(Swatch(lab_to_hex(lab), lab, share) for lab, share in lab_palette(imgs, k=PALETTE_SIZE))
    )


def _kelvin(rgb: np.ndarray) -> float:
    """McCamy CCT of the mean linear colour of an (H, W, 3) sRGB array in [0, 1], in KELVIN_RANGE."""
    xyz = rgb2xyz(rgb).reshape(-1, 3).mean(axis=0)
    total = xyz.sum()
    if total == 0.0:
        return _D65_KELVIN
    x, y = xyz[0] / total, xyz[1] / total
    x_e, y_e = _MCCAMY_EPICENTRE
    if y <= y_e:
        return KELVIN_RANGE[1]
    n = max((x - x_e) / (y_e - y), _MCCAMY_N_MIN)
    return float(np.clip(np.polyval(_MCCAMY, n), *KELVIN_RANGE))


def _lighting(small: Image.Image, rgb: np.ndarray) -> Lighting:
    return Lighting(
        histogram=tuple(float(v) for v in luma_histogram(small, LUMA_BINS)),
        mean_luminance=brightness(small),
        contrast=contrast(small),
        kelvin=_kelvin(rgb),
    )


def _composition(luma: np.ndarray) -> Composition:
    edges = sobel(luma)
    edges[edges < _EDGE_FLOOR] = 0.0
    total = edges.sum()
    if total == 0.0:
        # Nothing drawn: nothing is off balance, and nothing sits on a third line.
        return Composition(symmetry=1.0, thirds_energy=0.0)
    # |E - mirror(E)| sums to at most 2 * sum(E), reached when no edge has a mirrored counterpart.
    symmetry = 1.0 - np.abs(edges - edges[:, ::-1]).sum() / (2.0 * total)

    def on_thirds(length: int) -> np.ndarray:
        centres = (np.arange(length) + 0.5) / length
        return (np.abs(centres - 1 / 3) <= THIRDS_BAND) | (np.abs(centres - 2 / 3) <= THIRDS_BAND)

    bands = on_thirds(luma.shape[0])[:, None] | on_thirds(luma.shape[1])[None, :]
    return Composition(symmetry=float(symmetry), thirds_energy=float(edges[bands].sum() / total))


def _texture(luma: np.ndarray) -> Texture:
    # Without its mean, brightness leaks into neither the filters nor the spectrum.
    detail = luma - luma.mean()
    # skimage.filters.gabor convolves in the image domain, ~20x slower at these kernel sizes; its
    # kernels through an FFT convolution, on the same mirrored border ("symmetric" in numpy's
    # terms, "reflect" in scipy.ndimage's), give its responses to within 1e-15.
    padded = np.pad(detail, _GABOR_PAD, mode="symmetric")
    inner = (slice(_GABOR_PAD, -_GABOR_PAD),) * 2
    energy = np.array([np.abs(fftconvolve(padded, k, mode="same")[inner]).mean() for k in _GABOR_BANK])
    energy += _GABOR_FLOOR
    # A Hann window stops the jump between opposite borders, which the FFT treats as adjacent,
    # from reading as high-frequency detail.
    power = np.abs(np.fft.fft2(detail * window("hann", detail.shape))) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(detail.shape[0]), np.fft.fftfreq(detail.shape[1]), indexing="ij")
    total = power.sum()
    high = power[np.hypot(fx, fy) > HIGH_FREQUENCY_CUTOFF].sum() / total if total > 0 else 0.0
    return Texture(gabor=tuple(float(v) for v in energy / energy.sum()), high_frequency_ratio=float(high))


def _small(img: Image.Image) -> Image.Image:
    check_has_pixels(img)
    # BOX averages each source area: the statistics of the shrunk copy are those of the image.
    return downscaled(to_rgb(img), MAX_SIDE, Image.Resampling.BOX)


def _measures(img: Image.Image) -> tuple[Lighting, Composition, Texture]:
    small = _small(img)
    rgb = np.asarray(small, dtype=np.float64) / 255.0
    luma = np.asarray(small.convert("L"), dtype=np.float64) / 255.0
    return _lighting(small, rgb), _composition(luma), _texture(luma)


def image_lighting(img: Image.Image) -> Lighting:
    """The lighting of one image alone (what tags read), without the other parameters' cost."""
    small = _small(img)
    return _lighting(small, np.asarray(small, dtype=np.float64) / 255.0)


def extract_parameters(img: Image.Image) -> StyleParameters:
    """Palette, lighting, composition and texture of one image."""
    return StyleParameters(_palette([img]), *_measures(img))


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values))


def profile_parameters(images: Sequence[Image.Image]) -> StyleParameters:
    """Parameters of a set of reference images: the palette of all of them pooled (each image
    weighing the same), every other value averaged. Temperatures average in mired (1e6 / K), the
    scale on which equal steps look equal, so one bluish reference does not outweigh the others."""
    if not images:
        raise ValueError("need at least one reference image to profile, got none")
    measures = [_measures(img) for img in images]
    lights, comps, textures = zip(*measures)
    mired = _mean([1e6 / light.kelvin for light in lights])
    lighting = Lighting(
        histogram=tuple(float(v) for v in mean_histogram([np.array(light.histogram) for light in lights])),
        mean_luminance=_mean([light.mean_luminance for light in lights]),
        contrast=_mean([light.contrast for light in lights]),
        kelvin=1e6 / mired,
    )
    composition = Composition(
        symmetry=_mean([c.symmetry for c in comps]),
        thirds_energy=_mean([c.thirds_energy for c in comps]),
    )
    texture = Texture(
        gabor=tuple(float(v) for v in np.mean([t.gabor for t in textures], axis=0)),
        high_frequency_ratio=_mean([t.high_frequency_ratio for t in textures]),
    )
    return StyleParameters(_palette(list(images)), lighting, composition, texture)


def _closeness(difference: float, zero_at: float) -> float:
    """1 - difference / zero_at, clipped to [0, 1]: 1 when equal, 0 from `zero_at` on."""
    return float(np.clip(1.0 - abs(difference) / zero_at, 0.0, 1.0))


def _mean_nearest_delta_e(a: Palette, b: Palette) -> float:
    """Share-weighted mean, over a's swatches, of the CIELAB distance (CIE76 ΔE) to b's nearest."""
    lab_a = np.array([s.lab for s in a.swatches])
    lab_b = np.array([s.lab for s in b.swatches])
    nearest = np.linalg.norm(lab_a[:, None, :] - lab_b[None, :, :], axis=2).min(axis=1)
    return float(np.dot([s.share for s in a.swatches], nearest))


def palette_score(image: Palette, profile: Palette) -> float:
    """1 - ΔE / PALETTE_DELTA_E_ZERO, clipped to [0, 1], where ΔE is the share-weighted CIE76
    distance from each colour to the other palette's nearest colour, averaged both ways (so an
    image in one of the profile's colours does not match a five-colour profile). ΔE 2.3 is a
    just-noticeable difference; from 50 on (pure red to orange is 47) colours are unrelated: 0."""
    delta_e = (_mean_nearest_delta_e(image, profile) + _mean_nearest_delta_e(profile, image)) / 2.0
    return _closeness(delta_e, PALETTE_DELTA_E_ZERO)


def lighting_score(image: Lighting, profile: Lighting) -> float:
    """Mean of three closenesses in [0, 1]: intersection of the luma histograms (brightness and its
    distribution), 1 - |contrast difference| (contrasts are in [0, 1]), and 1 - |temperature
    difference in mired| / MIRED_ZERO (150 mired, e.g. 6500 K against 3300 K, scores 0)."""
    return _mean(
        [
            histogram_similarity(np.array(image.histogram), np.array(profile.histogram)),
            _closeness(image.contrast - profile.contrast, 1.0),
            _closeness(1e6 / image.kelvin - 1e6 / profile.kelvin, MIRED_ZERO),
        ]
    )


def composition_score(image: Composition, profile: Composition) -> float:
    """1 - the mean absolute difference of symmetry and thirds energy (both in [0, 1])."""
    return _mean(
        [
            _closeness(image.symmetry - profile.symmetry, 1.0),
            _closeness(image.thirds_energy - profile.thirds_energy, 1.0),
        ]
    )


def texture_score(image: Texture, profile: Texture) -> float:
    """Mean of the cosine similarity of the Gabor energy shares (which scales and orientations
    carry the detail; in [0, 1] as shares are positive) and 1 - |high-frequency ratio difference|."""
    a, b = np.array(image.gabor), np.array(profile.gabor)
    cosine = float(np.clip(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), 0.0, 1.0))
    return _mean([cosine, _closeness(image.high_frequency_ratio - profile.high_frequency_ratio, 1.0)])


def parameter_scores(image: StyleParameters, profile: StyleParameters) -> dict[str, float]:
    """Per-parameter similarity of an image to a profile, each in [0, 1] (1 for identical values),
    keyed "palette", "lighting", "composition" and "texture"; see each *_score for its mapping."""
    return {
        "palette": palette_score(image.palette, profile.palette),
        "lighting": lighting_score(image.lighting, profile.lighting),
        "composition": composition_score(image.composition, profile.composition),
        "texture": texture_score(image.texture, profile.texture),
    }
