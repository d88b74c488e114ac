"""Text-to-image generation as a Dagster resource, one pipeline per model loaded once per process.

`model` is "tiny" (random weights, offline, for demos and tests), a Hugging Face hub id already in
the local cache, or a local directory saved with `save_pretrained`. Weights are never downloaded
here: production images are expected to have them baked in or mounted. The diffusers code lives in
`resources.diffusion`.

A pipeline may also carry an IP-Adapter (`ip_adapter`: conditioning on style reference images) and
brand LoRAs (`loras`: (path, scale) pairs applied to every image); see `resources.diffusion.load_pipeline`
and, for the file layouts, `resources.models`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import dagster as dg

from resources.models import load_count, missing_adapter, missing_model

if TYPE_CHECKING:
    from resources.diffusion import LoadedPipeline
    from resources.prompt_tokens import PromptTokenizer


class ImageGenerator(dg.ConfigurableResource):
    """Loads text-to-image pipelines (cached per process) on the configured device."""

    device: str = "auto"
    dtype: str = "auto"
    enable_compile: bool = False
    models_dir: str | None = None

    def load(
        self, model: str, ip_adapter: str | None = None, loras: Sequence[tuple[str, float]] = ()
    ) -> LoadedPipeline:
        """The pipeline for `model` with the given IP-Adapter and (path, scale) LoRAs, loading it on first
        use in this process."""
        # Imported here because torch and diffusers take seconds to import, and every step process imports
        # this module: steps that never generate start fast.
        from resources.diffusion import load_pipeline

        return load_pipeline(
            model, self.device, self.dtype, self.enable_compile, self.models_dir, ip_adapter=ip_adapter, loras=loras
        )

    def prompt_tokenizer(self, model: str) -> PromptTokenizer:
        """The tokenizer of `model`'s text encoder, without loading the model."""
        from resources.prompt_tokens import load_prompt_tokenizer

        return load_prompt_tokenizer(model, self.models_dir)

    def missing_model(self, model: str) -> str | None:
        """Why `model` cannot be loaded from what is on this machine, or None when it can."""
        return missing_model(model, self.models_dir)

    def missing_adapter(self, path: str, kind: str = "lora") -> str | None:
        """Why the adapter `path` of `kind` ("ip_adapter" or "lora") cannot be loaded, or None when it can."""
        return missing_adapter(path, kind, self.models_dir)

    @staticmethod
    def loads() -> int:
        """Diffusers pipelines this process has built so far."""
        return load_count("diffusers")

