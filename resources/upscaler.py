"""The diffusers 4× upscaler for print files: a StableDiffusionUpscalePipeline saved with `save_pretrained`
in a local folder (e.g. stabilityai/stable-diffusion-x4-upscaler), loaded once per process, never
downloaded.

`locate_upscaler` looks at files only, so batches are checked without torch; torch and diffusers are
imported when a model loads.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from resources.models import clipped_name, safe_is_dir, safe_is_file, record_load

if TYPE_CHECKING:
    from diffusers import StableDiffusionUpscalePipeline

UPSCALE_PIPELINE = "StableDiffusionUpscalePipeline"
UPSCALE_FACTOR = 4
# The sub-folders save_pretrained writes for the pipeline's required components.
UPSCALE_COMPONENTS = ("low_res_scheduler", "scheduler", "text_encoder", "tokenizer", "unet", "vae")


def locate_upscaler(folder: str) -> Path:
    """The folder of an upscale pipeline saved with save_pretrained; FileNotFoundError saying what is missing."""
    # Files only, no torch: the code location checks batches' options with it.
    shown = clipped_name(folder)
    path = Path(folder).expanduser()
    save = f"save a {UPSCALE_PIPELINE} there with save_pretrained() (it is never downloaded)"
    if not safe_is_dir(path):
        what = "is a file, not a folder" if safe_is_file(path) else f"does not exist (resolved to {str(path.absolute())!r})"
        raise FileNotFoundError(f"upscaler folder {shown!r} {what}; {save}")
    index = path / "model_index.json"
    if not safe_is_file(index):
        raise FileNotFoundError(f"upscaler folder {shown!r} holds no model_index.json; {save}")
    try:
        found = json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    except (ValueError, AttributeError) as error:
        raise FileNotFoundError(f"upscaler folder {shown!r} has an unreadable model_index.json: {error}") from error
    if found != UPSCALE_PIPELINE:
        raise FileNotFoundError(
            f"upscaler folder {shown!r} holds a {found!r} pipeline, expected {UPSCALE_PIPELINE!r}"
        )
    missing = [name for name in UPSCALE_COMPONENTS if not safe_is_dir(path / name)]
    if missing:
        raise FileNotFoundError(
            f"upscaler folder {shown!r} misses the component folder(s) {', '.join(missing)}; {save}"
        )
    return path


class DiffusersUpscaler:
    """A loaded 4× upscale pipeline; calls are serialised, since a pipeline keeps per-call state on its scheduler."""

    factor = UPSCALE_FACTOR

    def __init__(self, folder: Path, pipeline: StableDiffusionUpscalePipeline):
        self.folder = folder
        self.pipeline = pipeline
        self._lock = threading.Lock()

    def upscale(self, image: Image.Image, prompt: str, seed: int, *, steps: int = 20, noise_level: int = 20,
                guidance_scale: float = 9.0) -> Image.Image:
        """`image` (RGB) four times larger, the detail the model adds guided by `prompt` and `seed`."""
        import torch

        if image.mode != "RGB":
            raise ValueError(f"image must be RGB, got mode {image.mode}")
        # A CPU generator draws the same noise whatever device the pipeline runs on; diffusers moves it.
        generator = torch.Generator("cpu").manual_seed(seed)
        with self._lock, torch.inference_mode():
            result = self.pipeline(
                prompt=prompt, image=image, num_inference_steps=steps, noise_level=noise_level,
                guidance_scale=guidance_scale, generator=generator,
            )
        return result.images[0]


_UPSCALERS: dict[tuple[str, str, str], DiffusersUpscaler] = {}
_UPSCALERS_LOCK = threading.Lock()


def load_upscaler(folder: str, device: str = "auto", dtype: str = "auto") -> DiffusersUpscaler:
    """The upscale pipeline saved in `folder`, loaded from local files on first use in this process."""
    path = locate_upscaler(folder)
    # Imported here: the code location checks folders without loading torch.
    from diffusers import StableDiffusionUpscalePipeline

    from resources.device import pick_device, pick_dtype

    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    key = (str(path.resolve()), str(torch_device), str(torch_dtype))
    with _UPSCALERS_LOCK:
        if key not in _UPSCALERS:
            try:
                pipeline = StableDiffusionUpscalePipeline.from_pretrained(
                    path, dtype=torch_dtype, local_files_only=True
                )
            except OSError as error:
                raise FileNotFoundError(f"upscaler folder {clipped_name(folder)!r} cannot be loaded: {error}") from error
            pipeline.to(torch_device)
            pipeline.set_progress_bar_config(disable=True)
            _UPSCALERS[key] = DiffusersUpscaler(path, pipeline)
            record_load("diffusers")
        return _UPSCALERS[key]
