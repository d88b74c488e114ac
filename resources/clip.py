"""CLIP image/text embeddings and zero-shot labels as a Dagster resource, loaded once per process.

`model_name` "tiny" is a small random-weight model (offline, for demos and tests); any other name
is an open_clip architecture such as "ViT-B-32", with `pretrained` an open_clip tag or the path of
a checkpoint file. The open_clip code lives in `resources.open_clip_model`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from resources.models import TINY_MODEL, load_count

if TYPE_CHECKING:
    from resources.open_clip_model import LoadedClip


class ClipEmbedder(dg.ConfigurableResource):
    """Loads an open_clip model (cached per process) on the configured device."""

    model_name: str = TINY_MODEL
    pretrained: str | None = None
    device: str = "auto"

    def load(self) -> LoadedClip:
        """The configured model, loading it on first use in this process."""
        # Imported here because torch and open_clip take seconds to import, and every step process imports
        # this module: steps that never embed start fast.
        from resources.open_clip_model import load_clip

        return load_clip(self.model_name, self.pretrained, self.device)

    @staticmethod
    def loads() -> int:
        """CLIP models this process has built so far."""
        return load_count("open_clip")
