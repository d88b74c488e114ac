"""The tiny models' CLIP-style tokenizer: a small BPE from open_clip's bundled merges.

Kept apart from the tiny models so that counting prompt tokens imports neither torch nor diffusers.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import tempfile
from pathlib import Path

from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

TOKENIZER_MAX_LENGTH = 77
# Enough merges for common English words to be one or two tokens while keeping the text embedding tiny.
TINY_BPE_MERGES = 2000
BOS_TOKEN, EOS_TOKEN = "<|startoftext|>", "<|endoftext|>"


def _bpe_merges(count: int) -> list[str]:
    """The first `count` merges of the CLIP BPE bundled with open_clip (its first line is a header)."""
    # Found, not imported: importing open_clip imports torch.
    package = Path(importlib.util.find_spec("open_clip").submodule_search_locations[0])
    with gzip.open(package / "bpe_simple_vocab_16e6.txt.gz", "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    return lines[1 : count + 1]


def build_tiny_tokenizer(directory: Path) -> CLIPTokenizer:
    """Write a CLIP-style vocab.json and merges.txt with a small BPE into `directory` and load them."""
    merges = _bpe_merges(TINY_BPE_MERGES)
    # Same layout as CLIP's vocabulary: bytes, end-of-word bytes, merge results, then special tokens.
    byte_chars = list(bytes_to_unicode().values())
    tokens = [*byte_chars, *(c + "</w>" for c in byte_chars), *("".join(m.split()) for m in merges)]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(
        json.dumps({token: i for i, token in enumerate(tokens)}, ensure_ascii=False), encoding="utf-8"
    )
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(
        directory,
        model_max_length=TOKENIZER_MAX_LENGTH,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        local_files_only=True,
    )


def load_tiny_tokenizer() -> CLIPTokenizer:
    """`build_tiny_tokenizer` in a temporary directory: once loaded the tokenizer needs no files."""
    with tempfile.TemporaryDirectory(prefix="assetql-tiny-tokenizer-") as tmp:
        return build_tiny_tokenizer(Path(tmp))


def text_encoder_token_ids(tokenizer: CLIPTokenizer) -> dict[str, int]:
    """The CLIPTextConfig fields that must match `tokenizer`: vocabulary size and special token ids."""
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
