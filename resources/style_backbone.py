"""Which backbone a style embedding comes from, named without loading anything (no torch).

A style profile records the backbone that embedded its references; images are only scored against a
profile built by the backbone that embeds them, since cosines of different backbones do not compare.
"""

from __future__ import annotations

from pathlib import Path

# Style embeddings are CLIP image embeddings unless a CSD-style checkpoint is configured.
CLIP_BACKBONE = "clip"
CSD_PREFIX = "csd:"


def style_backbone_name(style_checkpoint: str | None) -> str:
    """"clip" without a style checkpoint, else "csd:<checkpoint file name>"."""
    if not style_checkpoint:
        return CLIP_BACKBONE
    return f"{CSD_PREFIX}{Path(style_checkpoint).expanduser().name}"


def check_style_backbone(profile_backbone: str, configured_backbone: str) -> None:
    """Raise ValueError when a profile built by `profile_backbone` is scored with `configured_backbone`."""
    if profile_backbone != configured_backbone:
        raise ValueError(
            f"the style profile's embedding comes from backbone {profile_backbone!r} but the configured style "
            f"backbone is {configured_backbone!r}, and their similarities do not compare; re-materialize "
            "style_profile with the current clip resource (or configure the backbone the profile was built with)"
        )
