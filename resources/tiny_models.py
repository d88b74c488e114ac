"""Tiny random-weight models built from config, for offline runs, demos and tests.

They exercise the real code paths (diffusers pipeline, open_clip model and transforms) in well
under a second on a CPU, without downloading anything. Their output is noise, not art.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import open_clip
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from resources.tiny_tokenizer import TOKENIZER_MAX_LENGTH, load_tiny_tokenizer, text_encoder_token_ids

TINY_CLIP_NAME = "assetql-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
def build_tiny_vae() -> AutoencoderKL:
    """A VAE with random weights and four latent channels (8x downscaling in two blocks)."""
    return AutoencoderKL(
        block_out_channels=(4, 8),
        norm_num_groups=2,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
    )


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
        vae = build_tiny_vae()
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
