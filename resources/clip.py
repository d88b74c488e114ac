"""CLIP image/text embeddings and zero-shot labels as a Dagster resource, loaded once per process.

`model_name` "tiny" is a small random-weight model (offline, for demos and tests); any other name
is an open_clip architecture such as "ViT-B-32", with `pretrained` an open_clip tag or the path of
a checkpoint file. The open_clip code lives in `resources.open_clip_model`.

Style embeddings (what style profiles and style scores compare) are the CLIP image embeddings unless
`style_checkpoint` names a CSD-style checkpoint: a local torch state dict with the visual tower's
weights under `backbone.` keys and `last_layer_style`, a [width, dim] style projection, as CSD's
released checkpoint has, for the architecture `model_name` names (the format is described in
`resources.style_descriptor`). Image and text embeddings, and so tags, stay CLIP's either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import dagster as dg

from resources.models import TINY_MODEL, load_count
from resources.style_backbone import style_backbone_name

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from resources.open_clip_model import LoadedClip


class ClipEmbedder(dg.ConfigurableResource):
    """Loads an open_clip model (cached per process) on the configured device."""

    model_name: str = TINY_MODEL
    pretrained: str | None = None
    device: str = "auto"
    # A CSD-style checkpoint file whose style descriptor replaces the CLIP image embedding in style
    # profiles and style scores; None keeps CLIP's.
    style_checkpoint: str | None = None

    def load(self) -> LoadedClip:
        """The configured model, loading it on first use in this process.

        With a style checkpoint, its descriptor loads on the model's first `style_embeddings` call.
        """
        # Imported here because torch and open_clip take seconds to import, and every step process imports
        # this module: steps that never embed start fast.
        from resources.open_clip_model import load_clip

        return load_clip(self.model_name, self.pretrained, self.device, self.style_checkpoint)

    def style_embeddings(self, imgs: Sequence[Image.Image]) -> np.ndarray:
        """Unit style embeddings [n, d]: the CSD style descriptor with `style_checkpoint`, else CLIP's
        image embeddings. A missing checkpoint raises FileNotFoundError, an invalid one ValueError."""
        return self.load().style_embeddings(imgs)

    @property
    def style_backbone(self) -> str:
        """Which backbone the style embeddings come from: "clip" or "csd:<checkpoint file name>"."""
        return style_backbone_name(self.style_checkpoint)

    @staticmethod
    def loads() -> int:
        """CLIP models this process has built so far."""
        return load_count("open_clip")

    @staticmethod
    def style_loads() -> int:
        """Style descriptors this process has built from style checkpoints so far."""
        return load_count("csd")
