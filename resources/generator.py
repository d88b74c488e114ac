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
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from resources.models import load_count, missing_adapter, missing_model, remote_model

if TYPE_CHECKING:
    from resources.diffusion import LoadedPipeline
    from resources.prompt_tokens import PromptTokenizer
    from resources.remote_models import RemoteModels, RemotePipeline


class ImageGenerator(dg.ConfigurableResource):
    """Loads text-to-image pipelines (cached per process) on the configured device."""

    device: str = "auto"
    dtype: str = "auto"
    enable_compile: bool = False
    models_dir: str | None = None
    # Remote models (`sagemaker:ENDPOINT`, `bedrock:MODEL_ID`): see `resources.remote_models.RemoteModels`.
    remote_region_name: str | None = None
    sagemaker_endpoint_url: str | None = None
    bedrock_endpoint_url: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None

    _remote: Any = PrivateAttr(default=None)

    def load(
        self, model: str, ip_adapter: str | None = None, loras: Sequence[tuple[str, float]] = ()
    ) -> LoadedPipeline | RemotePipeline:
        """The pipeline for `model` (a `RemotePipeline` for `sagemaker:`/`bedrock:` names) with the given IP-Adapter and (path, scale) LoRAs, loading it on first
        use in this process."""
        # Imported here because torch and diffusers take seconds to import, and every step process imports
        # this module: steps that never generate start fast.
        from resources.diffusion import load_pipeline

        if remote_model(model) is not None:
            if ip_adapter or loras:
                raise ValueError(f"remote model {model!r} takes no ip_adapter or lora; leave them out of the batch")
            return self.remote_models().load(model)
        return load_pipeline(
            model, self.device, self.dtype, self.enable_compile, self.models_dir, ip_adapter=ip_adapter, loras=loras
        )

    def remote_models(self) -> RemoteModels:
        """The SageMaker and Bedrock runtimes of remote models, their clients made on first use."""
        if self._remote is None:
            from resources.remote_models import RemoteModels

            self._remote = RemoteModels(
                region_name=self.remote_region_name, sagemaker_endpoint_url=self.sagemaker_endpoint_url,
                bedrock_endpoint_url=self.bedrock_endpoint_url, aws_access_key_id=self.aws_access_key_id,
                aws_secret_access_key=self.aws_secret_access_key,
            )
        return self._remote

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

