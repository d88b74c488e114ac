"""Tiny random-weight models built from config, for offline runs, demos and tests.

They exercise the real code paths (diffusers pipeline, open_clip model and transforms) in well
under a second on a CPU, without downloading anything. Their output is noise, not art.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import open_clip
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from open_clip.tokenizer import bytes_to_unicode, default_bpe
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

TINY_CLIP_NAME = "assetql-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TOKENIZER_MAX_LENGTH = 77
# Enough merges for common English words to be one or two tokens while keeping the text embedding tiny.
TINY_BPE_MERGES = 2000
BOS_TOKEN, EOS_TOKEN = "<|startoftext|>", "<|endoftext|>"


def _bpe_merges(count: int) -> list[str]:
    """The first `count` merges of the CLIP BPE bundled with open_clip (its first line is a header)."""
    with gzip.open(default_bpe(), "rt", encoding="utf-8") as fh:
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


def build_tiny_sd_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """A Stable Diffusion pipeline with random weights: 64x64 px native, four latent channels."""
    tokenizer = load_tiny_tokenizer()
    # Seeding a forked RNG keeps the weights reproducible without disturbing the caller's RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=32,
            block_out_channels=(4, 8),
            layers_per_block=1,
            norm_num_groups=2,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=2,
        )
        vae = AutoencoderKL(
            block_out_channels=(4, 8),
            norm_num_groups=2,
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            latent_channels=4,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                **text_encoder_token_ids(tokenizer),
                hidden_size=32,
                intermediate_size=64,
                num_attention_heads=4,
                num_hidden_layers=2,
                max_position_embeddings=TOKENIZER_MAX_LENGTH,
            )
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def register_tiny_clip() -> None:
    """Make `TINY_CLIP_NAME` a known open_clip architecture (idempotent); it uses open_clip's own tokenizer."""
    if TINY_CLIP_NAME in open_clip.list_models():
        return
    # open_clip registers architectures from JSON files. Its rescans only add entries, so the
    # registration outlives this temporary file.
    with tempfile.TemporaryDirectory(prefix="assetql-tiny-clip-") as tmp:
        path = Path(tmp) / f"{TINY_CLIP_NAME}.json"
        path.write_text(json.dumps(TINY_CLIP_CONFIG), encoding="utf-8")
        open_clip.add_model_config(path)
