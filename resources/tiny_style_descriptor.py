"""A tiny CSD-style checkpoint with random weights, built offline for demos and tests.

Its backbone is the tiny open_clip model's visual tower (`TINY_CLIP_CONFIG`, so it fits
`ClipEmbedder(model_name="tiny")`) with its own seeded random weights, and its style head is a random
[width, dim] projection. It is laid out as CSD's training checkpoints are (see
`resources.style_descriptor`): the state dict under `model_state_dict` with DistributedDataParallel's
`module.` prefix, beside `iter` and `args`. Its descriptors are noise, not style.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import open_clip
import torch

from resources.open_clip_model import _quiet_random_init
from resources.style_descriptor import BACKBONE_PREFIX, MODEL_STATE_KEY, STYLE_HEAD_KEY
from resources.tiny_models import TINY_CLIP_CONFIG, TINY_CLIP_NAME, register_tiny_clip

TINY_STYLE_DIM = 16


def build_tiny_style_checkpoint(path: str | Path, seed: int = 1, style_dim: int = TINY_STYLE_DIM) -> Path:
    """Write the checkpoint to `path` (a torch file) and return that path.

    The weights depend only on `seed`; the tiny CLIP itself is seeded with 0, so with any other seed
    the backbone differs from the one that tags.
    """
    register_tiny_clip()
    width = TINY_CLIP_CONFIG["vision_cfg"]["width"]
    # Forked so the caller's RNG stream is left as it was.
    with torch.random.fork_rng(devices=[]), _quiet_random_init(True):
        torch.manual_seed(seed)
        visual = open_clip.create_model(TINY_CLIP_NAME, pretrained=None, device="cpu").visual
        style_head = torch.randn(width, style_dim) * width**-0.5
    state = {f"module.{BACKBONE_PREFIX}{name}": t.clone() for name, t in visual.state_dict().items() if name != "proj"}
    state[f"module.{STYLE_HEAD_KEY}"] = style_head
    # CSD starts both heads from the CLIP projection; the content head is ignored when describing style.
    state["module.last_layer_content"] = visual.proj.detach().clone()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {MODEL_STATE_KEY: state, "iter": 0, "args": argparse.Namespace(arch="tiny", content_proj_head="default")},
        path,
    )
    return path
