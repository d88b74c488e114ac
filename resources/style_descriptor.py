"""CSD-style descriptors: a CLIP ViT image encoder tuned for style, followed by a style projection head.

CSD (Contrastive Style Descriptors, Somepalli et al. 2024, github.com/learn2phoenix/CSD) keeps a CLIP
ViT's visual tower without its output projection (the `backbone`) and trains two heads on it; the
style head `last_layer_style` is a [width, dim] matrix, and the L2-normalised
`backbone(pixels) @ last_layer_style` is the style descriptor. The content head is not used here.

Checkpoint format (the file `ClipEmbedder.style_checkpoint` names):

- A torch file (`torch.save`) holding either the state dict itself or a dict with the state dict
  under `model_state_dict`, as CSD's training checkpoints (`checkpoint.pth`) and its released ViT-L
  weights have (their other entries, optimizer states, `iter`, `args`, are ignored). It is read with
  `torch.load(weights_only=True)` (tensors, containers, numbers, strings and argparse.Namespace; no
  pickled code runs). A `.safetensors` file of the state dict (the layout of the Hugging Face copy
  tomg-group-umd/CSD-ViT-L) is read too.
- Keys may carry DistributedDataParallel's `module.` prefix. The state dict must hold:
  - `backbone.<name>` for every weight of the configured architecture's visual tower except its output
    projection `proj`, which CSD drops: `backbone.class_embedding`, `backbone.positional_embedding`,
    `backbone.conv1.weight`, `backbone.ln_pre.*`, `backbone.transformer.resblocks.<i>.*`,
    `backbone.ln_post.*` (OpenAI CLIP's names, which open_clip's VisionTransformer shares);
  - `last_layer_style`: the style projection, a [width, dim] tensor (width 1024 for ViT-L/14).
  Other keys (`last_layer_content`, `backbone.proj`) are ignored.

The architecture is the configured CLIP's (`ClipEmbedder.model_name`): for CSD's released ViT-L
weights, "ViT-L-14-quickgelu" (OpenAI's ViT-L/14 uses QuickGELU), with `pretrained` "openai" for the
CLIP that tags. Images go through that CLIP's transform (as CSD's: bicubic resize, centre crop, CLIP's
mean and std).
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

MODEL_STATE_KEY = "model_state_dict"
BACKBONE_PREFIX = "backbone."
STYLE_HEAD_KEY = "last_layer_style"
_DDP_PREFIX = "module."
# Keys named in an error before the rest are counted.
_SHOWN = 8

FORMAT = (
    f"a torch state dict (or a dict holding it under {MODEL_STATE_KEY!r}) with the visual tower's weights under "
    f"{BACKBONE_PREFIX!r} keys (without its output projection `proj`) and {STYLE_HEAD_KEY!r}, a [width, dim] "
    "style projection, as CSD's checkpoints have"
)


class StyleDescriptor(torch.nn.Module):
    """The backbone's pooled features (before any projection) through the style head, L2-normalised."""

    def __init__(self, backbone: torch.nn.Module, head: torch.Tensor):
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Parameter(head, requires_grad=False)

    @property
    def dim(self) -> int:
        return self.head.shape[1]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.backbone(pixels) @ self.head, dim=-1)


def build_style_descriptor(visual: torch.nn.Module, checkpoint: str, architecture: str) -> StyleDescriptor:
    """A StyleDescriptor from `checkpoint` on a copy of `visual`, the visual tower of `architecture`.

    Raises FileNotFoundError when the file is missing and ValueError, naming what was expected and
    which keys are missing, unexpected or misshapen, when it is not such a checkpoint for this tower.
    """
    state = read_style_state_dict(checkpoint)
    proj = getattr(visual, "proj", None)
    if not isinstance(proj, torch.Tensor) or proj.ndim != 2:
        raise ValueError(
            f"a style checkpoint needs a CLIP ViT visual tower with an output projection `proj`, but model "
            f"{architecture!r} has a {type(visual).__name__}; set model_name to the ViT architecture of the "
            "checkpoint's backbone"
        )
    backbone = copy.deepcopy(visual)
    backbone.proj = None  # CSD's backbone ends before the projection; its heads replace it
    expected = {name: tuple(t.shape) for name, t in backbone.state_dict().items()}
    given = {k[len(BACKBONE_PREFIX):]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}
    given.pop("proj", None)
    head = state.get(STYLE_HEAD_KEY)
    width = proj.shape[0]

    missing = [BACKBONE_PREFIX + n for n in expected if n not in given]
    if head is None:
        missing.insert(0, STYLE_HEAD_KEY)
    unexpected = sorted(BACKBONE_PREFIX + n for n in given if n not in expected)
    misshapen = [
        f"{BACKBONE_PREFIX}{n} has shape {list(given[n].shape)}, {architecture!r} expects {list(shape)}"
        for n, shape in expected.items()
        if n in given and tuple(given[n].shape) != shape
    ]
    if head is not None and (head.ndim != 2 or head.shape[0] != width or head.shape[1] == 0):
        misshapen.insert(
            0, f"{STYLE_HEAD_KEY} has shape {list(head.shape)}, expected [{width}, dim] (the tower's width is {width})"
        )
    problems = []
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    if misshapen:
        problems.append("; ".join(misshapen[:_SHOWN]) + (f" (and {len(misshapen) - _SHOWN} more)" if len(misshapen) > _SHOWN else ""))
    if problems:
        raise ValueError(
            f"style checkpoint {_shown(checkpoint)} does not fit the visual tower of {architecture!r}: "
            f"{'; '.join(problems)}. Expected {FORMAT}, for the architecture model_name names"
        )
    dtype = next(backbone.parameters()).dtype
    backbone.load_state_dict({n: given[n] for n in expected}, strict=True)
    device = next(backbone.parameters()).device
    return StyleDescriptor(backbone, head.detach().to(device=device, dtype=dtype)).eval()


def read_style_state_dict(checkpoint: str) -> dict[str, torch.Tensor]:
    """The tensors of the checkpoint's state dict, on the CPU, with any `module.` prefix removed."""
    path = Path(checkpoint).expanduser()
    try:
        is_file = path.is_file()
    except OSError:
        is_file = False
    if not is_file:
        what = "is a directory, not a file" if safe_is_dir(path) else "does not exist"
        raise FileNotFoundError(f"style checkpoint {_shown(checkpoint)} {what}: expected a local file holding {FORMAT}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded = load_file(str(path), device="cpu")
        else:
            with torch.serialization.safe_globals([argparse.Namespace]):
                loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every reader failure means the same: not such a file
        reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise ValueError(
            f"style checkpoint {_shown(checkpoint)} could not be read ({type(e).__name__}: {reason}); "
            f"expected a torch or .safetensors file holding {FORMAT}"
        ) from e
    if isinstance(loaded, Mapping) and isinstance(loaded.get(MODEL_STATE_KEY), Mapping):
        loaded = loaded[MODEL_STATE_KEY]
    tensors = (
        {_unwrapped(str(k)): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
        if isinstance(loaded, Mapping)
        else {}
    )
    if not tensors:
        held = f"a dict with keys {_listed([str(k) for k in loaded])}" if isinstance(loaded, Mapping) else f"a {type(loaded).__name__}"
        raise ValueError(f"style checkpoint {_shown(checkpoint)} holds no state dict of tensors but {held}; expected {FORMAT}")
    return tensors


def _unwrapped(key: str) -> str:
    return key[len(_DDP_PREFIX):] if key.startswith(_DDP_PREFIX) else key


def _listed(keys: list[str]) -> str:
    more = f" (and {len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return "[" + ", ".join(repr(k) for k in keys[:_SHOWN]) + "]" + more


def _shown(checkpoint: str) -> str:
    return repr(checkpoint if len(checkpoint) <= 200 else checkpoint[:199] + "…")


def safe_is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False
