"""How a batch names its style (the `style` setting): a reference profile, a built-in preset, or one of each.

An entry is `brand-x` (the profile's latest version, pinned when the batch is registered),
`brand-x@2` (version 2) or `preset:watercolor` (a built-in, prompt-only preset from PRESETS); the
setting is one entry or a list of at most one profile and one preset.

settings.py checks the setting with `style_error`, so this module cannot import settings.py: the
rule for profile names (settings.identifier_error) is passed in as `name_error`. domain/profiles.py
binds it for everything else.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass

PRESET_PREFIX = "preset:"


@dataclass(frozen=True)
class Preset:
    """A prompt-only style: words appended to every prompt and to the negative prompt."""

    modifiers: str
    negative_prompt: str


# FR-IMGGEN-006. The negative words keep the model away from the media each style is most often
# confused with (a watercolor drifting into a photo or a 3D render).
PRESETS: dict[str, Preset] = {
    "cartoon": Preset(
        "cartoon style, bold clean outlines, flat cel shading, vibrant colors",
        "photo, photorealistic, 3d render",
    ),
    "watercolor": Preset("watercolor painting, soft washes, paper texture", "photo, 3d render"),
    "realistic": Preset(
        "photorealistic, natural lighting, fine detail, sharp focus",
        "cartoon, illustration, painting, anime",
    ),
    "anime": Preset(
        "anime style, cel shading, clean line art, expressive eyes",
        "photo, photorealistic, 3d render",
    ),
    "storybook": Preset(
        "children's storybook illustration, gouache, warm soft colors, whimsical",
        "photo, 3d render, gritty",
    ),
    "3d_render": Preset(
        "3d render, soft global illumination, detailed materials, studio lighting",
        "flat, 2d, sketch, painting",
    ),
}

# At most 9 digits: a version number is a count of edits, and int() of a huge text is slow.
_VERSION_RE = re.compile(r"[1-9][0-9]{0,8}")

NameCheck = Callable[[str, str], "str | None"]


@dataclass(frozen=True)
class StyleRef:
    """One `style` entry: a stored profile (`version` None: its latest) or, when `preset`, a preset."""

    name: str
    version: int | None = None
    preset: bool = False

    def __str__(self) -> str:
        if self.preset:
            return f"{PRESET_PREFIX}{self.name}"
        return self.name if self.version is None else f"{self.name}@{self.version}"


def preset_names() -> str:
    """The presets as a `style` entry spells them, for messages."""
    return ", ".join(f"{PRESET_PREFIX}{name}" for name in PRESETS)


def parse_style_ref(text: object, name_error: NameCheck) -> StyleRef:
    """`brand-x`, `brand-x@2` or `preset:watercolor` as a StyleRef, raising ValueError saying what is wrong."""
    if not isinstance(text, str):
        raise ValueError(
            "a style entry must be text: a profile ('brand-x', 'brand-x@2') or a preset "
            f"('preset:watercolor'), got {reprlib.repr(text)}"
        )
    if text.startswith(PRESET_PREFIX):
        name = text[len(PRESET_PREFIX):]
        if name not in PRESETS:
            raise ValueError(f"unknown preset {reprlib.repr(name)}; expected one of {preset_names()}")
        return StyleRef(name, preset=True)
    name, at, version = text.partition("@")
    problem = name_error(name, "profile name")
    if problem:
        raise ValueError(problem)
    if not at:
        return StyleRef(name)
    if not _VERSION_RE.fullmatch(version):
        raise ValueError(
            f"version {reprlib.repr(version)} of profile {name!r} must be a whole number from 1 "
            f"(e.g. '{name}@2')"
        )
    return StyleRef(name, int(version))


def parse_style(value: object, name_error: NameCheck) -> tuple[StyleRef, ...]:
    """The entries of a `style` setting (none for None), in the order given; ValueError when invalid."""
    if value is None:
        return ()
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, (list, tuple)) or not 1 <= len(entries) <= 2:
        raise ValueError(
            "must be a profile ('brand-x', 'brand-x@2'), a preset ('preset:watercolor') or a list of "
            f"at most one of each, got {reprlib.repr(value)}"
        )
    refs = tuple(parse_style_ref(entry, name_error) for entry in entries)
    if len(refs) == 2 and refs[0].preset == refs[1].preset:
        kind = "presets" if refs[0].preset else "reference profiles"
        raise ValueError(
            f"names two {kind} ('{refs[0]}', '{refs[1]}'); use at most one reference profile and one preset"
        )
    return refs


def style_error(value: object, name_error: NameCheck) -> str | None:
    """Why `value` is not a valid `style` setting, or None when it is."""
    try:
        parse_style(value, name_error)
    except ValueError as error:
        return str(error)
    return None
