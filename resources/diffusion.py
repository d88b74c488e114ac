"""Diffusers text-to-image pipelines, each loaded once per process; imports torch and diffusers.

Weights come from a local directory saved with `save_pretrained` or from the Hugging Face cache,
never from the network. On CUDA, attention uses PyTorch's scaled-dot-product kernels, which
diffusers selects by default on torch 2.

Style locks act in generation in three ways:

- prompt weighting: prompts may carry compel syntax, `a sword, (crimson and teal palette)1.3`
  (see `resources.prompt_weighting`); a prompt without it gives the same image as before;
- an IP-Adapter (`load_pipeline(..., ip_adapter=...)`, layout in `resources.models`) conditions each
  image on reference images, `generate(..., style_images=..., style_scale=...)`, with InstantStyle's
  style-only block scales (`style_block_scales`);
- brand LoRAs (`load_pipeline(..., loras=((path, scale), ...))`) apply to every image the pipeline makes.
"""

from __future__ import annotations

import math
import numbers
import reprlib
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from resources.device import pick_device, pick_dtype
from resources.models import (
    IMAGE_ENCODER_FOLDER,
    TINY_MODEL,
    locate_ip_adapter,
    locate_lora,
    model_not_found_message,
    record_load,
)
from resources.tiny_models import build_tiny_sd_pipeline

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline, UNet2DConditionModel

    from resources.prompt_weighting import WeightedPromptEncoder

# Reference images for the IP-Adapter: one list shared by every prompt, or one list per prompt.
StyleImages = Sequence[Image.Image] | Sequence[Sequence[Image.Image]]

# torch.Generator.manual_seed accepts seeds in [0, 2**64).
_SEED_LIMIT = 2**64


class LoadedPipeline:
    """A loaded text-to-image pipeline, the model name it came from and the adapters loaded into it.

    `ip_adapter` is the IP-Adapter as named to `load_pipeline` (None: none loaded); `loras` the
    (path, scale) pairs of the LoRAs applied to every image.
    """

    def __init__(
        self,
        model: str,
        pipeline: DiffusionPipeline,
        ip_adapter: str | None = None,
        loras: tuple[tuple[str, float], ...] = (),
    ):
        self.model = model
        self.pipeline = pipeline
        self.ip_adapter = ip_adapter
        self.loras = tuple(loras)
        # Read once: DiffusionPipeline.device walks every component's parameters (about 1 ms), and a
        # loaded pipeline never moves.
        self.device: torch.device = pipeline.device
        # Diffusers pipelines keep per-call state on the scheduler, so calls must not overlap.
        self._call_lock = threading.Lock()
        # Built on first use, under the call lock: compel and the IP-Adapter's empty image embedding.
        self._prompt_encoder: WeightedPromptEncoder | None | bool = False
        self._blank_image_embeds: torch.Tensor | None = None

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
        *,
        style_images: StyleImages | None = None,
        style_scale: float | None = None,
    ) -> list[Image.Image]:
        """One image per prompt; image i depends only on its own prompt, negative prompt, seed and style images.

        Prompts may carry compel weighting syntax (`resources.prompt_weighting`). `style_images`, only
        for a pipeline loaded with an IP-Adapter, are the references each image is conditioned on: one
        list for every prompt, or one list per prompt; `style_scale` (default 1.0, 0 turns the adapter
        off) scales their influence through InstantStyle's style-only blocks (`style_block_scales`).
        Without style images an IP-Adapter pipeline draws exactly as the same model without it.

        With style images, an image made alone and in a micro-batch agree to within one grey level,
        not bit for bit: the UNet projects the batch's image embeddings in one matrix product, which
        rounds differently per batch size.
        """
        _check_prompts_and_seeds(prompts, negative_prompts, seeds)
        _check_render_settings(width, height, steps, guidance_scale)
        styles = _check_style(style_images, style_scale, len(prompts), self.ip_adapter)
        # One generator per image: its starting noise is the same alone or in any micro-batch.
        generators = [torch.Generator(self.device).manual_seed(int(seed)) for seed in seeds]
        guidance = self._uses_guidance(guidance_scale)
        with self._call_lock, torch.inference_mode():
            calls = self._conditionings(list(prompts), list(negative_prompts), guidance)
            if self.ip_adapter is not None:
                self._add_image_embeds(calls, styles)
                scale = 1.0 if style_scale is None else float(style_scale)
                self.pipeline.set_ip_adapter_scale(style_block_scales(self.pipeline.unet, scale if styles else 0.0))
            images: list[Image.Image | None] = [None] * len(prompts)
            # Images whose conditionings have one length run together (compel's `.and()` lengthens one).
            for indices in _groups_by_length(calls):
                kwargs = _batched([calls[i] for i in indices], guidance)
                out = self.pipeline(
                    **kwargs,
                    generator=[generators[i] for i in indices],
                    width=width,
                    height=height,
                    num_inference_steps=steps,
                    guidance_scale=guidance_scale,
                    output_type="pil",
                ).images
                for i, image in zip(indices, out):
                    images[i] = image
            return images

    def _uses_guidance(self, guidance_scale: float) -> bool:
        """Whether the pipeline runs classifier-free guidance (diffusers' own test)."""
        unet = getattr(self.pipeline, "unet", None)
        distilled = unet is not None and getattr(unet.config, "time_cond_proj_dim", None) is not None
        return guidance_scale > 1 and not distilled

    def _conditionings(self, prompts: list[str], negative_prompts: list[str], guidance: bool) -> list[dict]:
        """Pipeline keyword arguments per image: compel embeddings, or the text where compel does not apply."""
        if self._prompt_encoder is False:
            from resources.prompt_weighting import weighted_prompt_encoder

            self._prompt_encoder = weighted_prompt_encoder(self.pipeline)
        if self._prompt_encoder is None:
            return [{"prompt": p, "negative_prompt": n} for p, n in zip(prompts, negative_prompts)]
        return [c.kwargs for c in self._prompt_encoder(prompts, negative_prompts, guidance)]

    def _add_image_embeds(self, calls: list[dict], styles: list[list[Image.Image]] | None) -> None:
        """Give each image's call its IP-Adapter image embeddings as (negative, positive) [1, n, ...]."""
        encoded: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        for i, call in enumerate(calls):
            if styles is None:
                blank = self._blank_embeds()
                call["_ip"] = (blank, blank)
                continue
            # Each list goes through the image encoder on its own (a shared list once), so an image's
            # embedding never depends on the other images of the call.
            key = tuple(id(image) for image in styles[i])
            if key not in encoded:
                (both,) = self.pipeline.prepare_ip_adapter_image_embeds(
                    ip_adapter_image=[list(styles[i])],
                    ip_adapter_image_embeds=None,
                    device=self.device,
                    num_images_per_prompt=1,
                    do_classifier_free_guidance=True,
                )
                negative, positive = both.chunk(2)
                encoded[key] = (negative, positive)
            call["_ip"] = encoded[key]

    def _blank_embeds(self) -> torch.Tensor:
        """Zero image embeddings of the adapter's shape [1, 1, ...]: the UNet needs some, scale 0 ignores them."""
        if self._blank_image_embeds is None:
            (both,) = self.pipeline.prepare_ip_adapter_image_embeds(
                ip_adapter_image=[[Image.new("RGB", (64, 64))]],
                ip_adapter_image_embeds=None,
                device=self.device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=True,
            )
            self._blank_image_embeds = torch.zeros_like(both.chunk(2)[1])
        return self._blank_image_embeds


def style_block_scales(unet: UNet2DConditionModel, scale: float) -> float | dict:
    """The IP-Adapter scale for InstantStyle's style-only conditioning: `scale` on the style block, 0 elsewhere.

    InstantStyle (Wang et al., 2024) found that in SDXL the second transformer of the first up block
    (`{"up": {"block_0": [0.0, scale, 0.0]}}`) carries style and little layout. The rule here is that
    block's: the lowest-resolution up block with attention, its second attention (its only one if it
    has one). For SDXL that is up block 0, [0, scale, 0]; for SD 1.5, whose up block 0 has no
    attention (diffusers would silently ignore a scale for it), up block 1, [0, scale, 0]; for the tiny
    UNet, up block 0 with two attentions, [0, scale]. A UNet without such a block gets `scale`
    everywhere (plain IP-Adapter).
    """
    up_blocks = [i for i, block in enumerate(getattr(unet, "up_blocks", ())) if hasattr(block, "attentions")]
    layers = unet.config.layers_per_block
    if not up_blocks or not isinstance(layers, int):
        return float(scale)
    per_block = [0.0] * (layers + 1)  # diffusers' count of attentions per up block
    per_block[min(1, len(per_block) - 1)] = float(scale)
    return {"up": {f"block_{up_blocks[0]}": per_block}}


def _groups_by_length(calls: list[dict]) -> list[list[int]]:
    """Indices of the images that can share one pipeline call: equally long prompt embeddings and as
    many style images (the adapter stacks one set of image tokens per reference)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, call in enumerate(calls):
        embeds = call.get("prompt_embeds")
        tokens = 0 if embeds is None else embeds.shape[1]
        references = call["_ip"][1].shape[1] if "_ip" in call else 0
        groups.setdefault((tokens, references), []).append(i)
    return list(groups.values())


def _batched(calls: list[dict], guidance: bool) -> dict:
    """One pipeline call's keyword arguments from per-image ones: texts as lists, tensors concatenated."""
    kwargs: dict = {}
    for name in calls[0]:
        if name == "_ip":
            negatives = [c["_ip"][0] for c in calls]
            positives = [c["_ip"][1] for c in calls]
            # diffusers splits IP-Adapter embeddings into negative and positive halves under guidance.
            kwargs["ip_adapter_image_embeds"] = [torch.cat(negatives + positives if guidance else positives)]
        elif isinstance(calls[0][name], torch.Tensor):
            kwargs[name] = torch.cat([c[name] for c in calls])
        else:
            kwargs[name] = [c[name] for c in calls]
    return kwargs


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


def _check_style(
    style_images: StyleImages | None, style_scale: float | None, count: int, ip_adapter: str | None
) -> list[list[Image.Image]] | None:
    """Each of `count` images' style references (None for none); ValueError naming what is unusable."""
    if style_scale is not None and (
        isinstance(style_scale, bool)
        or not isinstance(style_scale, numbers.Real)
        or not (math.isfinite(style_scale) and style_scale >= 0)
    ):
        raise ValueError(f"`style_scale` must be a finite number >= 0 but is {style_scale!r}.")
    if style_images is None:
        if style_scale is not None and ip_adapter is None:
            raise ValueError(
                "`style_scale` needs a pipeline loaded with an IP-Adapter (`ip_adapter`) and `style_images`."
            )
        return None
    if ip_adapter is None:
        raise ValueError(
            "`style_images` need a pipeline loaded with an IP-Adapter (`ip_adapter`), but this one has none."
        )
    one_image = isinstance(style_images, (str, bytes, Image.Image))
    if one_image or not isinstance(style_images, Sequence) or not style_images:
        raise ValueError(
            "`style_images` must be a non-empty list of PIL images, or one such list per prompt, "
            f"but is {reprlib.repr(style_images)}."
        )
    if all(isinstance(image, Image.Image) for image in style_images):
        return [list(style_images)] * count
    if not all(isinstance(images, Sequence) and not isinstance(images, (str, bytes)) for images in style_images):
        raise ValueError("`style_images` must hold PIL images only, or lists of PIL images only (one per prompt).")
    if len(style_images) != count:
        raise ValueError(f"`style_images` holds {len(style_images)} lists but there are {count} prompts.")
    for i, images in enumerate(style_images):
        bad = next((image for image in images if not isinstance(image, Image.Image)), None)
        if not images or bad is not None:
            raise ValueError(
                f"`style_images[{i}]` must be a non-empty list of PIL images but "
                + ("is empty." if not images else f"contains {bad!r} of type {type(bad)}.")
            )
    return [list(images) for images in style_images]


def _is_int(value: object) -> bool:
    # Integral admits numpy integers (seeds often come from pandas); bool is an int but never meant as one.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


_PIPELINES: dict[tuple, LoadedPipeline] = {}
_PIPELINES_LOCK = threading.Lock()


def load_pipeline(
    model: str,
    device: str = "auto",
    dtype: str = "auto",
    enable_compile: bool = False,
    models_dir: str | None = None,
    ip_adapter: str | None = None,
    loras: Sequence[tuple[str, float]] = (),
) -> LoadedPipeline:
    """The pipeline for `model` on the requested device and dtype with the given adapters, loading it on
    first use in this process.

    `ip_adapter`: a local folder, weights file or cached hub id holding an IP-Adapter in diffusers'
    layout (see `resources.models.locate_ip_adapter`). `loras`: (path, scale) pairs, each path a LoRA
    .safetensors file or a folder holding one (`resources.models.locate_lora`), applied to every image
    at its scale (0 is as if it were not loaded). Missing files raise FileNotFoundError before anything
    loads. Each combination of model and adapters is its own cached pipeline.
    """
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be {TINY_MODEL!r}, a hub id or a local directory but is {model!r}")
    if ip_adapter is not None and (not isinstance(ip_adapter, str) or not ip_adapter.strip()):
        raise ValueError(f"ip_adapter must be None or a local folder, weights file or hub id but is {ip_adapter!r}")
    loras = _check_loras(loras)
    ip_files = None if ip_adapter is None else locate_ip_adapter(ip_adapter, models_dir)
    lora_files = tuple((locate_lora(path), scale) for path, scale in loras)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    key = (
        model,
        str(torch_device),
        str(torch_dtype),
        enable_compile,
        models_dir,
        None if ip_files is None else (str(ip_files[0].resolve()), ip_files[1]),
        tuple((str(path.resolve()), scale) for path, scale in lora_files),
    )
    with _PIPELINES_LOCK:
        if key not in _PIPELINES:
            pipe = _build(model, torch_device, torch_dtype, enable_compile, models_dir, ip_files, lora_files)
            _PIPELINES[key] = LoadedPipeline(model, pipe, ip_adapter, loras)
            record_load("diffusers")
        return _PIPELINES[key]


def _check_loras(loras: Sequence[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    if isinstance(loras, (str, bytes)) or not isinstance(loras, Sequence):
        raise ValueError(f"loras must be a sequence of (path, scale) pairs but is {loras!r}")
    checked = []
    for entry in loras:
        ok = isinstance(entry, Sequence) and not isinstance(entry, (str, bytes)) and len(entry) == 2
        path, scale = entry if ok else (None, None)
        if (
            not isinstance(path, str)
            or not path.strip()
            or isinstance(scale, bool)
            or not isinstance(scale, numbers.Real)
            or not math.isfinite(scale)
        ):
            raise ValueError(f"each of loras must be a (path, finite scale) pair but one is {entry!r}")
        checked.append((path, float(scale)))
    return tuple(checked)


def _build(
    model: str,
    device: torch.device,
    dtype: torch.dtype,
    enable_compile: bool,
    models_dir: str | None,
    ip_files: tuple[Path, str] | None = None,
    lora_files: tuple[tuple[Path, float], ...] = (),
) -> DiffusionPipeline:
    pipe = _tiny_pipeline(dtype) if model == TINY_MODEL else _from_pretrained(model, dtype, models_dir)
    # Adapters load before the move: their weights then travel to the device with the rest.
    if ip_files is not None:
        _load_ip_adapter(pipe, model, *ip_files)
    if lora_files:
        _load_loras(pipe, model, lora_files)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if enable_compile:
        pipe.unet.compile()
    return pipe


def _load_ip_adapter(pipe: DiffusionPipeline, model: str, folder: Path, weight_name: str) -> None:
    if not hasattr(pipe, "load_ip_adapter"):
        raise ValueError(f"model {model!r} is a {type(pipe).__name__}, which takes no IP-Adapter")
    try:
        pipe.load_ip_adapter(
            str(folder), subfolder="", weight_name=weight_name, image_encoder_folder=IMAGE_ENCODER_FOLDER,
            local_files_only=True,
        )
    except (KeyError, RuntimeError, ValueError) as e:
        # Wrong key layout, or weights sized for another model's attention layers.
        raise ValueError(f"IP-Adapter {str(folder / weight_name)!r} does not fit model {model!r}: {e}") from e


def _load_loras(pipe: DiffusionPipeline, model: str, lora_files: tuple[tuple[Path, float], ...]) -> None:
    if not hasattr(pipe, "load_lora_weights"):
        raise ValueError(f"model {model!r} is a {type(pipe).__name__}, which takes no LoRA")
    names = [f"lora_{i}" for i in range(len(lora_files))]
    for name, (path, _) in zip(names, lora_files):
        try:
            with warnings.catch_warnings():
                # peft warns on every adapter after the first: several named adapters are what set_adapters mixes.
                warnings.filterwarnings("ignore", "Already found a `peft_config` attribute", UserWarning)
                pipe.load_lora_weights(str(path), adapter_name=name, local_files_only=True)
        except (KeyError, RuntimeError, ValueError) as e:
            raise ValueError(f"LoRA {str(path)!r} does not fit model {model!r}: {e}") from e
    pipe.set_adapters(names, adapter_weights=[scale for _, scale in lora_files])


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
