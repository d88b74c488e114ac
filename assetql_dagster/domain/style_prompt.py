"""Prompt modifiers from a style profile: the locked parameters put into words, with compel weights.

`style_modifiers(profile_parameters, locks)` describes each locked parameter of a profile's
`StyleParameters` in a few words and weights the phrase by its lock, in compel's syntax, for
appending to a prompt, e.g.

    (crimson, teal and ivory palette)1.40, (warm, soft low-contrast lighting)1.25, (fine detail texture)1.10

- palette: the names of the profile's largest swatches (by share, at most PALETTE_NAMES distinct
  names, swatches under MIN_SWATCH_SHARE skipped), each the nearest of NAMED_COLOURS in CIELAB
  (CIE76 ΔE, the distance the palette itself is clustered by);
- lighting: the colour temperature's tone (`Lighting.tone`: warm, neutral or cool), "dim" or
  "bright" for a mean luma below DIM_BELOW or above BRIGHT_ABOVE, "soft low-contrast" or
  "high-contrast" for a contrast below LOW_CONTRAST_BELOW or above HIGH_CONTRAST_ABOVE;
- texture: "fine detail", "moderate detail" or "smooth" by the high-frequency share of the spectrum
  (FINE_DETAIL_ABOVE, SMOOTH_BELOW).

Composition and the embedding have no words here: the embedding lock is the IP-Adapter's job, and
layout words would fight the prompt's subject. Only parameters with a lock above 0 contribute; a
lock of L weighs its phrase 1 + L / 100 * MAX_EXTRA_WEIGHT (1.0 to 1.5): at most half as strong
again as the prompt's own words, past which SD 1.x images degrade. Nothing locked: "".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from skimage.color import rgb2lab

from assetql_dagster.domain.scoring import LOCK_MAX, parameter_weights
from assetql_dagster.domain.style_parameters import Lighting, Palette, StyleParameters, Texture

# Weight of a fully locked parameter's phrase above 1.
MAX_EXTRA_WEIGHT = 0.5
PALETTE_NAMES = 3
MIN_SWATCH_SHARE = 0.05
DIM_BELOW = 0.35
BRIGHT_ABOVE = 0.65
# Contrast is the std of luma / 0.5: uniform luma has 0.58, a typical photograph 0.4 to 0.5.
LOW_CONTRAST_BELOW = 0.3
HIGH_CONTRAST_ABOVE = 0.6
# Share of spectral power above a quarter of the sampling rate: a blurred image has about 1e-4, crisp
# painted artwork 0.05 to 0.15, white noise 0.8.
FINE_DETAIL_ABOVE = 0.05
SMOOTH_BELOW = 0.005

# Common colour words an image model knows, by sRGB; dark and muted tones included, since palettes of
# real artwork are mostly those.
NAMED_COLOURS: dict[str, str] = {
    "black": "#000000",
    "charcoal": "#36454f",
    "grey": "#808080",
    "silver": "#c0c0c0",
    "white": "#ffffff",
    "ivory": "#fffff0",
    "beige": "#f5f5dc",
    "tan": "#d2b48c",
    "brown": "#8b4513",
    "dark brown": "#4a2c17",
    "maroon": "#800000",
    "crimson": "#dc143c",
    "red": "#ff0000",
    "coral": "#ff7f50",
    "salmon": "#fa8072",
    "orange": "#ffa500",
    "ochre": "#cc7722",
    "amber": "#ffbf00",
    "gold": "#ffd700",
    "yellow": "#ffff00",
    "olive": "#808000",
    "lime green": "#32cd32",
    "green": "#008000",
    "dark green": "#013220",
    "emerald": "#50c878",
    "mint": "#98ff98",
    "teal": "#008080",
    "turquoise": "#40e0d0",
    "cyan": "#00ffff",
    "sky blue": "#87ceeb",
    "blue": "#0000ff",
    "royal blue": "#4169e1",
    "navy": "#000080",
    "midnight blue": "#191970",
    "indigo": "#4b0082",
    "deep purple": "#301934",
    "purple": "#800080",
    "violet": "#8f00ff",
    "lavender": "#e6e6fa",
    "magenta": "#ff00ff",
    "pink": "#ffc0cb",
}


def hex_to_lab(hex_colour: str) -> tuple[float, float, float]:
    """CIELAB (D65) of a "#rrggbb" colour, as the palette computes it (skimage's rgb2lab)."""
    digits = hex_colour.lstrip("#")
    if len(digits) != 6:
        raise ValueError(f"colour must be '#rrggbb', got {hex_colour!r}")
    rgb = np.array([[int(digits[i : i + 2], 16) for i in (0, 2, 4)]], dtype=np.float64) / 255.0
    return tuple(float(v) for v in rgb2lab(rgb)[0])


_NAMES = tuple(NAMED_COLOURS)
_NAMED_LAB = np.array([hex_to_lab(h) for h in NAMED_COLOURS.values()])


def colour_name(lab: Sequence[float]) -> str:
    """The name in NAMED_COLOURS nearest to a CIELAB colour (CIE76 ΔE; ties go to the earlier name)."""
    distances = np.linalg.norm(_NAMED_LAB - np.asarray(lab, dtype=np.float64), axis=1)
    return _NAMES[int(np.argmin(distances))]


def lock_weight(lock: int) -> float:
    """Compel weight of a parameter locked at `lock` (0-100): 1 + lock / 100 * MAX_EXTRA_WEIGHT."""
    return 1.0 + lock / LOCK_MAX * MAX_EXTRA_WEIGHT


def _listed(words: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def palette_words(palette: Palette) -> str:
    """"crimson, teal and ivory palette": the largest swatches' names; "" for an empty palette."""
    names: list[str] = []
    for swatch in sorted(palette.swatches, key=lambda s: -s.share):
        if swatch.share < MIN_SWATCH_SHARE:
            continue
        name = colour_name(swatch.lab)
        if name not in names:
            names.append(name)
        if len(names) == PALETTE_NAMES:
            break
    return f"{_listed(names)} palette" if names else ""


def lighting_words(lighting: Lighting) -> str:
    """"warm, dim, soft low-contrast lighting": tone, then brightness and contrast where they stand out."""
    words = [lighting.tone]
    if lighting.mean_luminance < DIM_BELOW:
        words.append("dim")
    elif lighting.mean_luminance > BRIGHT_ABOVE:
        words.append("bright")
    if lighting.contrast < LOW_CONTRAST_BELOW:
        words.append("soft low-contrast")
    elif lighting.contrast > HIGH_CONTRAST_ABOVE:
        words.append("high-contrast")
    return f"{', '.join(words)} lighting"


def texture_words(texture: Texture) -> str:
    """"fine detail texture", "moderate detail texture" or "smooth texture"."""
    if texture.high_frequency_ratio > FINE_DETAIL_ABOVE:
        return "fine detail texture"
    if texture.high_frequency_ratio < SMOOTH_BELOW:
        return "smooth texture"
    return "moderate detail texture"


def _escaped(text: str) -> str:
    # Colour and lighting words carry no compel syntax, but a bracket would end the weighted phrase.
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def style_modifiers(parameters: StyleParameters, locks: Mapping[str, int]) -> str:
    """Compel-weighted phrases for the locked palette, lighting and texture, in that order, joined by ", ".

    `locks` maps parameter names (scoring.PARAMETERS) to 0-100 and is checked like the batch's locks
    (ValueError naming an unknown parameter or a lock out of range). Weights have two decimals.
    """
    parameter_weights(locks)  # raises on unknown parameters and locks out of range
    phrases = []
    for name, words in (
        ("palette", lambda: palette_words(parameters.palette)),
        ("lighting", lambda: lighting_words(parameters.lighting)),
        ("texture", lambda: texture_words(parameters.texture)),
    ):
        lock = locks.get(name, 0)
        if lock <= 0:
            continue
        text = words()
        if text:
            phrases.append(f"({_escaped(text)}){lock_weight(lock):.2f}")
    return ", ".join(phrases)
