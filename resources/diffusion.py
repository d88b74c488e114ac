"""Diffusers text-to-image pipelines, each loaded once per process; imports torch and diffusers.

Weights come from a local directory saved with `save_pretrained` or from the Hugging Face cache,
never from the network. On CUDA, attention uses PyTorch's scaled-dot-product kernels, which
diffusers selects by default on torch 2.
"""

from __future__ import annotations

import math
import numbers
import threading
from typing import TYPE_CHECKING

import torch
from PIL import Image

from resources.device import pick_device, pick_dtype
from resources.models import TINY_MODEL, model_not_found_message, record_load
from resources.tiny_models import build_tiny_sd_pipeline

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

# torch.Generator.manual_seed accepts seeds in [0, 2**64).
_SEED_LIMIT = 2**64


class LoadedPipeline:
    """A loaded text-to-image pipeline and the model name it came from."""

    def __init__(self, model: str, pipeline: DiffusionPipeline):
        self.model = model
        self.pipeline = pipeline
        # Read once: DiffusionPipeline.device walks every component's parameters (about 1 ms), and a
        # loaded pipeline never moves.
        self.device: torch.device = pipeline.device
        # Diffusers pipelines keep per-call state on the scheduler, so calls must not overlap.
        self._call_lock = threading.Lock()

    @property
    def native_size(self) -> tuple[int, int]:
        """(width, height) in pixels the model was trained at."""
        side = self.pipeline.unet.config.sample_size * self.pipeline.vae_scale_factor
        return side, side

    def free_memory(self) -> None:
        """Return cached CUDA blocks after an out-of-memory error, before retrying smaller."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def generate(
        self,
        prompts: list[str],
        negative_prompts: list[str],
        seeds: list[int],
        width: int,
        height: int,
        steps: int,
        guidance_scale: float,
    ) -> list[Image.Image]:
        """One image per prompt; image i depends only on its own prompt, negative prompt and seed."""
        _check_prompts_and_seeds(prompts, negative_prompts, seeds)
        _check_render_settings(width, height, steps, guidance_scale)
        # One generator per image: its starting noise is the same alone or in any micro-batch.
        generators = [torch.Generator(self.device).manual_seed(int(seed)) for seed in seeds]
        with self._call_lock, torch.inference_mode():
            return self.pipeline(
                prompt=list(prompts),
                negative_prompt=list(negative_prompts),
                generator=generators,
                width=width,
                height=height,
                num_inference_steps=steps,
                guidance_scale=guidance_scale,
                output_type="pil",
            ).images


def _check_prompts_and_seeds(prompts: list[str], negative_prompts: list[str], seeds: list[int]) -> None:
    """Raise ValueError naming the first of `LoadedPipeline.generate`'s per-image arguments that is unusable."""
    if not prompts:
        raise ValueError("`prompts` must contain at least one prompt but is empty.")
    if len(negative_prompts) != len(prompts) or len(seeds) != len(prompts):
        raise ValueError(
            f"`prompts`, `negative_prompts` and `seeds` must have equal lengths but have "
            f"{len(prompts)}, {len(negative_prompts)} and {len(seeds)}."
        )
    for name, texts in (("prompts", prompts), ("negative_prompts", negative_prompts)):
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None:
            raise ValueError(f"`{name}` must contain only strings but contains {bad!r} of type {type(bad)}.")
    bad_seed = next((s for s in seeds if not _is_int(s) or not 0 <= s < _SEED_LIMIT), None)
    if bad_seed is not None:
        raise ValueError(f"`seeds` must be integers in [0, 2**64) but contains {bad_seed!r}.")


def _check_render_settings(width: int, height: int, steps: int, guidance_scale: float) -> None:
    """Raise ValueError naming the first of `LoadedPipeline.generate`'s render settings that is unusable."""
    for name, side in (("width", width), ("height", height)):
        if not _is_int(side) or side <= 0 or side % 8 != 0:
            raise ValueError(f"`{name}` must be a positive multiple of 8 but is {side!r}.")
    if not _is_int(steps) or steps < 1:
        raise ValueError(f"`steps` must be an integer >= 1 but is {steps!r}.")
    if not isinstance(guidance_scale, (int, float)) or not (math.isfinite(guidance_scale) and guidance_scale >= 0):
        raise ValueError(f"`guidance_scale` must be a finite number >= 0 but is {guidance_scale!r}.")


def _is_int(value: object) -> bool:
    # Integral admits numpy integers (seeds often come from pandas); bool is an int but never meant as one.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


_PIPELINES: dict[tuple, LoadedPipeline] = {}
_PIPELINES_LOCK = threading.Lock()


def load_pipeline(
    model: str, device: str = "auto", dtype: str = "auto", enable_compile: bool = False, models_dir: str | None = None
) -> LoadedPipeline:
    """The pipeline for `model` on the requested device and dtype, loading it on first use in this process."""
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be {TINY_MODEL!r}, a hub id or a local directory but is {model!r}")
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    key = (model, str(torch_device), str(torch_dtype), enable_compile, models_dir)
    with _PIPELINES_LOCK:
        if key not in _PIPELINES:
            pipe = _build(model, torch_device, torch_dtype, enable_compile, models_dir)
            _PIPELINES[key] = LoadedPipeline(model, pipe)
            record_load("diffusers")
        return _PIPELINES[key]


def _build(
    model: str, device: torch.device, dtype: torch.dtype, enable_compile: bool, models_dir: str | None
) -> DiffusionPipeline:
    pipe = _tiny_pipeline(dtype) if model == TINY_MODEL else _from_pretrained(model, dtype, models_dir)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if enable_compile:
        pipe.unet.compile()
    return pipe


def _tiny_pipeline(dtype: torch.dtype) -> DiffusionPipeline:
    pipe = build_tiny_sd_pipeline()
    # Pretrained models load straight into their dtype; only this one, built in float32, is cast. Diffusers
    # warns on every cast, even a no-op one, hence the check.
    if pipe.dtype != dtype:
        pipe.to(dtype=dtype)
    return pipe


def _from_pretrained(model: str, dtype: torch.dtype, models_dir: str | None) -> DiffusionPipeline:
    # Imported here: the auto pipeline pulls in every pipeline family diffusers has (a second or
    # more), which only real weights need; the tiny model is built from its parts.
    from diffusers import AutoPipelineForText2Image

    try:
        return AutoPipelineForText2Image.from_pretrained(
            model, dtype=dtype, cache_dir=models_dir, local_files_only=True
        )
    except OSError as e:
        raise FileNotFoundError(f"{model_not_found_message(model, models_dir)}. Cause: {e}") from e
