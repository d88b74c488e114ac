"""Full-size Stable Diffusion 1.5 and SDXL architectures with random weights, built offline from config.

The component configs are the published ones of stable-diffusion-v1-5 and
stable-diffusion-xl-base-1.0. Random weights run the same kernels over the same tensor shapes as
trained ones, so speed and memory figures carry over; the images are noise. Only two things differ
from the published pipelines, neither of which changes the compute per image:

* the tokenizers are AssetQL's small offline CLIP BPE, so the text encoders' token embedding
  tables have that tokenizer's length instead of 49408 rows (a lookup, not a matmul);
* both use the Euler scheduler, so 30 steps are exactly 30 UNet evaluations (SD 1.5 ships with
  PNDM, whose PLMS variant evaluates the UNet 31 times for 30 steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from resources.tiny_tokenizer import load_tiny_tokenizer, text_encoder_token_ids

# Keys whose published values SD 1.5's and SDXL's UNets share.
_UNET_COMMON = {
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "downsample_padding": 1,
    "center_input_sample": False,
    "mid_block_scale_factor": 1,
}

SD15_UNET = {
    **_UNET_COMMON,
    "sample_size": 64,
    "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}

SDXL_UNET = {
    **_UNET_COMMON,
    "sample_size": 128,
    "block_out_channels": [320, 640, 1280],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "transformer_layers_per_block": [1, 2, 10],
    "cross_attention_dim": 2048,
    "attention_head_dim": [5, 10, 20],
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    # 1280 (text_encoder_2's pooled projection) + 6 micro-conditioning values x 256.
    "projection_class_embeddings_input_dim": 2816,
}

SD15_VAE = {
    "sample_size": 512,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "scaling_factor": 0.18215,
}

# Same architecture as SD 1.5's; diffusers runs it in float32 under fp16 (not bf16) when force_upcast is set.
SDXL_VAE = {**SD15_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}

# OpenAI CLIP ViT-L/14 text tower: SD 1.5's text encoder and SDXL's first one.
CLIP_VIT_L_TEXT = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 768,
}

# OpenCLIP ViT-bigG/14 text tower with its projection: SDXL's second text encoder.
OPENCLIP_BIGG_TEXT = {
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 1280,
}

# SDXL base's published scheduler config.
EULER_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "interpolation_type": "linear",
    "timestep_spacing": "leading",
    "steps_offset": 1,
    "use_karras_sigmas": False,
}


@dataclass(frozen=True)
class Arch:
    """One pipeline architecture: its component configs and published parameter counts."""

    name: str
    pipeline_class: type[DiffusionPipeline]
    unet: dict
    vae: dict
    # (component name, model class, config) per text encoder, in pipeline order.
    text_encoders: tuple[tuple[str, type, dict], ...]
    published_params: dict[str, int]


ARCHS = {
    "sd15": Arch(
        name="Stable Diffusion 1.5",
        pipeline_class=StableDiffusionPipeline,
        unet=SD15_UNET,
        vae=SD15_VAE,
        text_encoders=(("text_encoder", CLIPTextModel, CLIP_VIT_L_TEXT),),
        published_params={"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    ),
    "sdxl": Arch(
        name="Stable Diffusion XL base 1.0",
        pipeline_class=StableDiffusionXLPipeline,
        unet=SDXL_UNET,
        vae=SDXL_VAE,
        text_encoders=(
            ("text_encoder", CLIPTextModel, CLIP_VIT_L_TEXT),
            ("text_encoder_2", CLIPTextModelWithProjection, OPENCLIP_BIGG_TEXT),
        ),
        published_params={
            "unet": 2_567_463_684,
            "vae": 83_653_863,
            "text_encoder": 123_060_480,
            "text_encoder_2": 694_659_840,
        },
    ),
}


def build_models(arch: Arch, token_ids: dict[str, int] | None = None) -> dict[str, torch.nn.Module]:
    """UNet, VAE and text encoder(s) of `arch` with random weights, on torch's current default device.

    `token_ids` (vocab_size, bos/eos/pad_token_id) replaces the published vocabulary's, to match
    another tokenizer.
    """
    models = {"unet": UNet2DConditionModel(**arch.unet), "vae": AutoencoderKL(**arch.vae)}
    for name, model_class, config in arch.text_encoders:
        models[name] = model_class(CLIPTextConfig(**{**config, **(token_ids or {})}))
    return models


def parameter_counts(arch: Arch) -> dict[str, int]:
    """Parameters per component with the published vocabulary, counted on the meta device (no memory used)."""
    with torch.device("meta"):
        models = build_models(arch)
    return {name: sum(p.numel() for p in model.parameters()) for name, model in models.items()}


def build_pipeline(arch: Arch, device: str, dtype: torch.dtype, seed: int = 0) -> DiffusionPipeline:
    """`arch`'s text-to-image pipeline with random weights in `dtype` on `device`, built offline."""
    tokenizer = load_tiny_tokenizer()
    token_ids = text_encoder_token_ids(tokenizer)
    torch.manual_seed(seed)
    # Initialised on the target device (random init of billions of parameters is slow on a CPU) and
    # straight in `dtype`, which also spares diffusers' warning about casting models with `to()`.
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            models = {name: model.eval() for name, model in build_models(arch, token_ids).items()}
    finally:
        torch.set_default_dtype(default_dtype)
    tokenizers = {name.replace("text_encoder", "tokenizer"): tokenizer for name, _, _ in arch.text_encoders}
    extras = (
        {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
        if arch.pipeline_class is StableDiffusionPipeline
        else {}
    )
    scheduler = EulerDiscreteScheduler.from_config(EULER_SCHEDULER)
    return arch.pipeline_class(**models, **tokenizers, scheduler=scheduler, **extras)

