"""Prompt weighting with compel: prompt and negative-prompt embeddings that follow compel's syntax.

`a sword, (crimson and teal palette)1.3` scales how strongly the bracketed words condition the image
(above 1 compel pushes their embeddings away from the empty prompt's; below 1 it blends toward the
prompt without them); `word+` / `word-` are 1.1 / 0.9, and `.blend()` / `.and()` combine prompts (see compel's syntax
documentation). Brackets, double quotes and a `+` or `-` after a word are syntax: `a (red) fox`
reads as `a red fox`, and a bracket escaped with a backslash, `\\(`, stays text. A prompt without
any syntax encodes exactly as the pipeline's own `encode_prompt` does (same tokens, same text
encoder pass), so its image is unchanged.

Supported: Stable Diffusion 1.x/2.x pipelines (one CLIP text encoder, its last hidden state) and SDXL
(both encoders' penultimate hidden states side by side, and text_encoder_2's pooled embedding, as
diffusers' SDXL `encode_prompt` computes them; the pooled embedding is of the text as written, so
there weights act through the per-token embeddings only). Prompts are truncated to the tokenizer's
77 tokens, as diffusers truncates them. `weighted_prompt_encoder` returns None for any other
pipeline, which then takes the prompt text as it is.

Each text is encoded on its own (batch of one), so a prompt's embedding never depends on the other
prompts it is batched with; repeated texts (a shared negative prompt) are encoded once per call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline


class PromptConditioning:
    """Keyword arguments for one image's pipeline call: its prompt and negative prompt embeddings."""

    def __init__(self, kwargs: dict[str, torch.Tensor]):
        self.kwargs = kwargs

    @property
    def length(self) -> int:
        """Tokens in the embeddings (77, or a multiple of it for compel's `.and()`)."""
        return self.kwargs["prompt_embeds"].shape[1]


class WeightedPromptEncoder:
    """Turns prompts with compel syntax into a pipeline's `prompt_embeds` arguments."""

    def __init__(self, pipeline: DiffusionPipeline):
        from compel import Compel, ReturnedEmbeddingsType

        self._sdxl = _is_sdxl(pipeline)

        def dtype_of(encoder):
            return lambda device: encoder.dtype

        if self._sdxl:
            penultimate = ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED
            self._compels = [
                Compel(
                    tokenizer=pipeline.tokenizer,
                    text_encoder=pipeline.text_encoder,
                    returned_embeddings_type=penultimate,
                    truncate_long_prompts=True,
                    dtype_for_device_getter=dtype_of(pipeline.text_encoder),
                ),
                Compel(
                    tokenizer=pipeline.tokenizer_2,
                    text_encoder=pipeline.text_encoder_2,
                    returned_embeddings_type=penultimate,
                    requires_pooled=True,
                    truncate_long_prompts=True,
                    dtype_for_device_getter=dtype_of(pipeline.text_encoder_2),
                ),
            ]
        else:
            self._compels = [
                Compel(
                    tokenizer=pipeline.tokenizer,
                    text_encoder=pipeline.text_encoder,
                    truncate_long_prompts=True,
                    dtype_for_device_getter=dtype_of(pipeline.text_encoder),
                )
            ]

    def _encode(self, text: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(embeddings [1, tokens, dim], pooled embedding [1, dim] or None) of one text."""
        if not self._sdxl:
            return self._compels[0].build_conditioning_tensor(text), None
        first = self._compels[0].build_conditioning_tensor(text)
        second, pooled = self._compels[1].build_conditioning_tensor(text)
        # Both truncate to 77 tokens; only `.and()` conjunctions can make them differ in length.
        longest = max(first.shape[1], second.shape[1])
        first = _padded(first, _empty(self._compels[0]), longest)
        second = _padded(second, _empty(self._compels[1]), longest)
        return torch.cat([first, second], dim=-1), pooled

    def _empty(self) -> torch.Tensor:
        """The empty prompt's embeddings [1, 77, dim], what compel pads shorter conditionings with."""
        return torch.cat([_empty(compel) for compel in self._compels], dim=-1)

    def __call__(
        self, prompts: list[str], negative_prompts: list[str], guidance: bool
    ) -> list[PromptConditioning]:
        """One conditioning per image. Without classifier-free guidance the negative prompts are unused
        by the pipeline and not encoded."""
        cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

        def encode(text: str) -> tuple[torch.Tensor, torch.Tensor | None]:
            if text not in cache:
                cache[text] = self._encode(text)
            return cache[text]

        result = []
        for prompt, negative in zip(prompts, negative_prompts):
            embeds, pooled = encode(prompt)
            kwargs = {"prompt_embeds": embeds}
            if pooled is not None:
                kwargs["pooled_prompt_embeds"] = pooled
            if guidance:
                negative_embeds, negative_pooled = encode(negative)
                if negative_embeds.shape[1] != embeds.shape[1]:
                    # The pipeline needs both one length: the shorter gets empty-prompt tokens, as in compel.
                    longest = max(embeds.shape[1], negative_embeds.shape[1])
                    kwargs["prompt_embeds"] = _padded(embeds, self._empty(), longest)
                    negative_embeds = _padded(negative_embeds, self._empty(), longest)
                kwargs["negative_prompt_embeds"] = negative_embeds
                if negative_pooled is not None:
                    kwargs["negative_pooled_prompt_embeds"] = negative_pooled
            result.append(PromptConditioning(kwargs))
        return result


def _empty(compel) -> torch.Tensor:
    return compel.conditioning_provider.empty_z


def _padded(embeds: torch.Tensor, empty: torch.Tensor, length: int) -> torch.Tensor:
    """`embeds` [1, n * 77, dim] with copies of `empty` [1, 77, dim] appended up to `length` tokens."""
    missing = length - embeds.shape[1]
    if missing <= 0:
        return embeds
    filler = empty.to(device=embeds.device, dtype=embeds.dtype).repeat(1, missing // empty.shape[1], 1)
    return torch.cat([embeds, filler], dim=1)


def _is_sdxl(pipeline: DiffusionPipeline) -> bool:
    from diffusers import StableDiffusionXLPipeline

    return isinstance(pipeline, StableDiffusionXLPipeline)


def weighted_prompt_encoder(pipeline: DiffusionPipeline) -> WeightedPromptEncoder | None:
    """A compel encoder for Stable Diffusion 1.x/2.x and SDXL pipelines; None for any other."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if isinstance(pipeline, StableDiffusionPipeline) and pipeline.text_encoder is not None:
        return WeightedPromptEncoder(pipeline)
    if (
        isinstance(pipeline, StableDiffusionXLPipeline)
        and pipeline.text_encoder is not None
        and pipeline.text_encoder_2 is not None
    ):
        return WeightedPromptEncoder(pipeline)
    return None
