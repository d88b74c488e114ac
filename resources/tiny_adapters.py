"""Tiny random-weight adapters for the tiny Stable Diffusion pipeline, written offline for tests and demos.

Built the way diffusers' own tests build theirs: an IP-Adapter whose cross-attention weights come from
`IPAdapterAttnProcessor` and whose image projection comes from `ImageProjection`, sized to the UNet's
cross-attention layers, beside a tiny CLIP image encoder; and a LoRA made with peft on the UNet's
attention projections, saved with `StableDiffusionPipeline.save_lora_weights`. Both are seeded, so
the same seed writes the same weights. Their effect on an image is noise, as the models' is.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from diffusers.models.attention_processor import IPAdapterAttnProcessor
from diffusers.models.embeddings import ImageProjection
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from resources.models import IMAGE_ENCODER_FOLDER, IP_ADAPTER_WEIGHT_NAMES, LORA_WEIGHT_NAME
from resources.tiny_models import build_tiny_sd_pipeline

# Image embeddings the tiny encoder projects to; the image projection maps them to 4 tokens of the
# UNet's cross-attention width, as the original IP-Adapter does.
TINY_IMAGE_EMBED_DIM = 32
IP_ADAPTER_TOKENS = 4
# Random nn.Linear weights (std about 0.1 at these widths) barely move a 2-step image; scaled up, the
# tiny adapters change it by a few grey levels, so tests can see their scales act.
_IP_WEIGHT_GAIN = 4.0
TINY_LORA_RANK = 4
LORA_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")


def _unet(unet: UNet2DConditionModel | None) -> UNet2DConditionModel:
    return unet if unet is not None else build_tiny_sd_pipeline().unet


def _cross_attention_width(unet: UNet2DConditionModel, processor_name: str) -> int:
    """Channel width of the attention block `processor_name` sits in (diffusers' own rule)."""
    channels = unet.config.block_out_channels
    if processor_name.startswith("mid_block"):
        return channels[-1]
    if processor_name.startswith("up_blocks"):
        return list(reversed(channels))[int(processor_name[len("up_blocks.")])]
    return channels[int(processor_name[len("down_blocks.")])]


def tiny_ip_adapter_state_dict(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """Flat IP-Adapter weights for `unet` (`image_proj.*`, `ip_adapter.*`) from the current torch RNG.

    `ip_adapter.{n}.to_k_ip.weight` / `to_v_ip.weight` number the cross-attention (attn2) layers 1, 3,
    5, ... in `unet.attn_processors` order, the numbering `load_ip_adapter` reads.
    """
    weights: dict[str, torch.Tensor] = {}
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue  # self-attention takes no image tokens
        processor = IPAdapterAttnProcessor(
            hidden_size=_cross_attention_width(unet, name),
            cross_attention_dim=unet.config.cross_attention_dim,
            num_tokens=(IP_ADAPTER_TOKENS,),
        ).state_dict()
        weights[f"ip_adapter.{key_id}.to_k_ip.weight"] = processor["to_k_ip.0.weight"] * _IP_WEIGHT_GAIN
        weights[f"ip_adapter.{key_id}.to_v_ip.weight"] = processor["to_v_ip.0.weight"] * _IP_WEIGHT_GAIN
        key_id += 2
    projection = ImageProjection(
        image_embed_dim=TINY_IMAGE_EMBED_DIM,
        cross_attention_dim=unet.config.cross_attention_dim,
        num_image_text_embeds=IP_ADAPTER_TOKENS,
    ).state_dict()
    weights["image_proj.proj.weight"] = projection["image_embeds.weight"]
    weights["image_proj.proj.bias"] = projection["image_embeds.bias"]
    weights["image_proj.norm.weight"] = projection["norm.weight"]
    weights["image_proj.norm.bias"] = projection["norm.bias"]
    return {key: value.detach().contiguous() for key, value in weights.items()}


def tiny_image_encoder() -> CLIPVisionModelWithProjection:
    """A CLIP image encoder of 32 px inputs and TINY_IMAGE_EMBED_DIM-wide embeddings, from the torch RNG."""
    return CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=TINY_IMAGE_EMBED_DIM,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            image_size=32,
            patch_size=4,
        )
    )


def build_tiny_ip_adapter(folder: str | Path, seed: int = 0, unet: UNet2DConditionModel | None = None) -> Path:
    """Write an IP-Adapter for `unet` (default: the tiny pipeline's) into `folder` and return the folder.

    Layout (what `resources.models.locate_ip_adapter` expects): `ip_adapter.safetensors` and
    `image_encoder/` (config.json, model.safetensors).
    """
    folder = Path(folder)
    unet = _unet(unet)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        weights = tiny_ip_adapter_state_dict(unet)
        encoder = tiny_image_encoder()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(weights, folder / IP_ADAPTER_WEIGHT_NAMES[0])
    encoder.save_pretrained(folder / IMAGE_ENCODER_FOLDER)
    return folder


def build_tiny_lora(path: str | Path, seed: int = 0, unet: UNet2DConditionModel | None = None) -> Path:
    """Write LoRA weights (rank TINY_LORA_RANK on the attention projections of `unet`, default the tiny
    pipeline's) and return the weights file: `path` itself when it ends in .safetensors, otherwise
    `path/pytorch_lora_weights.safetensors`."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    path = Path(path)
    folder, weight_name = (path.parent, path.name) if path.suffix == ".safetensors" else (path, LORA_WEIGHT_NAME)
    # peft adds the LoRA layers to the model it is given: never to the caller's.
    unet = copy.deepcopy(unet) if unet is not None else _unet(None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # init_lora_weights=False makes B random too (peft's default zeros it, a LoRA that does nothing).
        config = LoraConfig(
            r=TINY_LORA_RANK,
            lora_alpha=TINY_LORA_RANK,
            target_modules=list(LORA_TARGET_MODULES),
            init_lora_weights=False,
        )
        unet.add_adapter(config)
    layers = get_peft_model_state_dict(unet)
    folder.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers, weight_name=weight_name)
    return folder / weight_name
