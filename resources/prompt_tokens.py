"""What the text encoder keeps of a prompt: its tokenizer, loaded without the model's weights."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from resources.models import TINY_MODEL, remote_model


@dataclass(frozen=True)
class PromptFit:
    """A prompt as the text encoder sees it."""

    kept: str  # the text the encoder reads: the prompt itself, or its decoded first tokens
    dropped: int  # tokens cut off the end


class PromptTokenizer:
    """Counts a prompt's tokens as the pipeline does and says what a too-long prompt loses."""

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer
        # The encoder's window holds the begin and end tokens too.
        self.limit = tokenizer.model_max_length - 2

    def fit(self, prompt: str) -> PromptFit:
        # verbose=False: a too-long prompt is what this asks about, not worth a logged warning.
        ids = self._tokenizer(prompt, add_special_tokens=False, verbose=False).input_ids
        if len(ids) <= self.limit:
            return PromptFit(prompt, 0)
        return PromptFit(self._tokenizer.decode(ids[: self.limit]), len(ids) - self.limit)


class WholePrompts:
    """A remote model's prompts: its service reads (and limits) them itself, so nothing is cut here."""

    limit = None

    def fit(self, prompt: str) -> PromptFit:
        return PromptFit(prompt, 0)


@functools.lru_cache(maxsize=4)
def load_prompt_tokenizer(model: str, models_dir: str | None = None) -> PromptTokenizer | WholePrompts:
    """The tokenizer of `model` (the pipeline's `tokenizer` folder), once per process."""
    if remote_model(model) is not None:
        return WholePrompts()
    # Imported here: transformers takes seconds to import, and most prompts are short enough
    # that nobody asks.
    if model == TINY_MODEL:
        from resources.tiny_tokenizer import load_tiny_tokenizer

        return PromptTokenizer(load_tiny_tokenizer())
    from transformers import AutoTokenizer

    return PromptTokenizer(
        AutoTokenizer.from_pretrained(model, subfolder="tokenizer", cache_dir=models_dir, local_files_only=True)
    )
