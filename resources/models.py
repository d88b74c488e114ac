"""Names the model resources share, where models are found, and how many this process has loaded.

Nothing heavy is imported here: the resources' light halves (`generator`, `clip`) and the code
location use it without pulling in torch.
"""

import re
from collections import Counter
from pathlib import Path

# The built-in random-weight test models, for diffusers and for open_clip.
TINY_MODEL = "tiny"

_LOADS: Counter[str] = Counter()


def record_load(kind: str) -> None:
    """Count one model of `kind` ("diffusers", "open_clip") built in this process."""
    _LOADS[kind] += 1


def load_count(kind: str) -> int:
    """Models of `kind` built in this process so far; a step's difference is its `model_loads`."""
    return _LOADS[kind]


def missing_model(model: str, models_dir: str | None) -> str | None:
    """Why `model` is neither the tiny model, a remote model, a local pipeline folder nor a cached hub id; None if it is one.

    Only files are looked at (no torch, no download), so batches are checked before any model loads.
    """
    if model == TINY_MODEL:
        return None
    if remote_model(model) is not None:  # a remote name is checked by its form alone: no file, no call
        return missing_remote_model(model)
    folder = Path(model).expanduser()
    try:
        is_folder = folder.is_dir()
    except OSError:  # a name no file system holds (too long, say) is no folder
        is_folder = False
    if is_folder:
        if (folder / "model_index.json").is_file():
            return None
        return f"model folder {model!r} holds no model_index.json; save the pipeline with save_pretrained() there"
    # Imported here: only batches naming a hub model need it.
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        if isinstance(try_to_load_from_cache(model, "model_index.json", cache_dir=models_dir), str):
            return None
    except HFValidationError:
        pass  # not a hub id either: said below
    return model_not_found_message(model, models_dir)


def model_not_found_message(model: str, models_dir: str | None) -> str:
    # Bounded: the name comes from a batch file and is quoted twice.
    model = model if len(model) <= 200 else model[:199] + "…"
    cache = f"models_dir {models_dir!r}" if models_dir else "the default Hugging Face cache"
    download = f"hf download {model}" + (f" --cache-dir {models_dir}" if models_dir else "")
    return (
        f"model {model!r} is neither {TINY_MODEL!r}, a local directory holding a diffusers pipeline "
        f"(model_index.json) nor a hub id downloaded to {cache}; download it first (`{download}`) or set "
        "the model to a local directory"
    )


# Remote models (`resources.remote_models`): `sagemaker:ENDPOINT` and `bedrock:MODEL_ID`.
SAGEMAKER = "sagemaker"
BEDROCK = "bedrock"
# SageMaker's rule for endpoint names.
_ENDPOINT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
# Bedrock's Stability image models (`stability.stable-diffusion-xl-v1`, `stability.sd3-5-large-v1:0`, …).
_STABILITY_MODEL_ID = re.compile(r"stability\.[a-z0-9-]+(-v\d+)?(:\d+)?")


def remote_model(model: str) -> tuple[str, str] | None:
    """(provider, endpoint or model id) of a remote model name such as `sagemaker:sd-endpoint`; None for a local one."""
    provider, sep, target = model.partition(":")
    return (provider, target) if sep and provider in (SAGEMAKER, BEDROCK) else None


def missing_remote_model(model: str) -> str | None:
    """Why `model` is not a usable remote model name; None when it is one. Nothing is called."""
    remote = remote_model(model)
    if remote is None:
        return f"model {clipped_name(model)!r} is not a remote model: expected 'sagemaker:ENDPOINT' or 'bedrock:MODEL_ID'"
    provider, target = remote
    if provider == SAGEMAKER and not _ENDPOINT_NAME.fullmatch(target):
        return (f"model {clipped_name(model)!r} names no SageMaker endpoint: an endpoint name is 1 to 63 letters, "
                "digits and hyphens, starting and ending with a letter or digit")
    if provider == BEDROCK and not _STABILITY_MODEL_ID.fullmatch(target):
        return (f"model {clipped_name(model)!r} names no Bedrock Stability image model: expected a model id like "
                "'stability.stable-diffusion-xl-v1' or 'stability.sd3-5-large-v1:0'")
    return None


# Adapters: the IP-Adapter and brand LoRAs a pipeline can be loaded with (see `resources.diffusion`).
#
# An IP-Adapter is a folder holding its weights, `ip_adapter.safetensors` (or `ip_adapter.bin`), in
# diffusers' layout (`image_proj.*` and `ip_adapter.*` keys, as in h94/IP-Adapter), and the image
# encoder beside them in `image_encoder/` (a CLIPVisionModelWithProjection saved with
# `save_pretrained`: config.json and model.safetensors). It may also be named by its weights file (any
# name), whose folder then holds `image_encoder/`, or by a hub id already in the cache: `owner/name`
# with that layout at the repository's root, or `owner/name/sub/folder[/weights.safetensors]`, e.g.
# `h94/IP-Adapter/models/ip-adapter_sd15.safetensors`.
IP_ADAPTER_WEIGHT_NAMES = ("ip_adapter.safetensors", "ip_adapter.bin")
IMAGE_ENCODER_FOLDER = "image_encoder"
_IMAGE_ENCODER_WEIGHT_NAMES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
# A LoRA is a .safetensors file (diffusers' or kohya's key layout) or a folder holding
# `pytorch_lora_weights.safetensors` (what `save_lora_weights` writes) or exactly one .safetensors file.
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
ADAPTER_KINDS = ("ip_adapter", "lora")


def clipped_name(name: str) -> str:
    """`name` cut to 200 characters for a message (a path may be any length)."""
    return name if len(name) <= 200 else name[:199] + "…"


def safe_is_dir(path: Path) -> bool:
    """Path.is_dir, False for a name no file system can hold rather than OSError."""
    try:
        return path.is_dir()
    except OSError:  # a name no file system holds (too long, say)
        return False


def safe_is_file(path: Path) -> bool:
    """Path.is_file, False for a name no file system can hold rather than OSError."""
    try:
        return path.is_file()
    except OSError:
        return False


def locate_ip_adapter(ip_adapter: str, models_dir: str | None = None) -> tuple[Path, str]:
    """(folder, weights file name in it) of an IP-Adapter laid out as described above.

    Raises FileNotFoundError saying what was expected where. Only files are looked at.
    """
    shown = clipped_name(ip_adapter)
    path = Path(ip_adapter).expanduser()
    if safe_is_file(path):
        if path.suffix not in _WEIGHT_SUFFIXES:
            raise FileNotFoundError(
                f"IP-Adapter {shown!r} is a file but not a .safetensors or .bin weights file"
            )
        folder, weight_name = path.parent, path.name
    elif safe_is_dir(path):
        folder = path
        weight_name = next((n for n in IP_ADAPTER_WEIGHT_NAMES if safe_is_file(folder / n)), None)
        if weight_name is None:
            raise FileNotFoundError(
                f"IP-Adapter folder {shown!r} holds neither {' nor '.join(IP_ADAPTER_WEIGHT_NAMES)}; "
                "save the weights (image_proj.* and ip_adapter.* keys) there, or name the weights file itself"
            )
    else:
        folder, weight_name = _cached_ip_adapter(ip_adapter, models_dir)
    encoder = folder / IMAGE_ENCODER_FOLDER
    if not safe_is_file(encoder / "config.json") or not any(safe_is_file(encoder / n) for n in _IMAGE_ENCODER_WEIGHT_NAMES):
        raise FileNotFoundError(
            f"IP-Adapter {shown!r} has no image encoder: expected {str(encoder)!r} to hold config.json and "
            f"{' or '.join(_IMAGE_ENCODER_WEIGHT_NAMES)} (a CLIPVisionModelWithProjection saved with save_pretrained)"
        )
    return folder, weight_name


def _cached_ip_adapter(ip_adapter: str, models_dir: str | None) -> tuple[Path, str]:
    """(snapshot folder, weights file name) of an IP-Adapter hub id in the cache."""
    cache = f"models_dir {models_dir!r}" if models_dir else "the default Hugging Face cache"
    not_found = FileNotFoundError(
        f"IP-Adapter {clipped_name(ip_adapter)!r} is neither a local folder, a local weights file nor a hub id "
        f"downloaded to {cache} (`owner/name[/subfolder][/weights.safetensors]` holding "
        f"{' or '.join(IP_ADAPTER_WEIGHT_NAMES)} and {IMAGE_ENCODER_FOLDER}/)"
    )
    parts = ip_adapter.split("/")
    # An absolute or relative path (or a Windows one) is never a hub id.
    if len(parts) < 2 or not all(parts) or ip_adapter.startswith((".", "~")) or "\\" in ip_adapter:
        raise not_found
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    repo, rest = "/".join(parts[:2]), parts[2:]
    if rest and rest[-1].endswith(_WEIGHT_SUFFIXES):
        candidates = ["/".join(rest)]
    else:
        candidates = ["/".join([*rest, name]) for name in IP_ADAPTER_WEIGHT_NAMES]
    for candidate in candidates:
        try:
            found = try_to_load_from_cache(repo, candidate, cache_dir=models_dir)
        except HFValidationError:
            raise not_found from None
        if isinstance(found, str):
            return Path(found).parent, Path(found).name
    raise not_found


def locate_lora(lora: str) -> Path:
    """The weights file of a LoRA given as a .safetensors file or a folder (see LORA_WEIGHT_NAME).

    Raises FileNotFoundError saying what was expected where. Only files are looked at.
    """
    shown = clipped_name(lora)
    path = Path(lora).expanduser()
    if safe_is_file(path):
        if path.suffix != ".safetensors":
            raise FileNotFoundError(f"LoRA {shown!r} is a file but not a .safetensors weights file")
        return path
    if safe_is_dir(path):
        if safe_is_file(path / LORA_WEIGHT_NAME):
            return path / LORA_WEIGHT_NAME
        files = sorted(p for p in path.glob("*.safetensors") if safe_is_file(p))
        if len(files) == 1:
            return files[0]
        held = f"{len(files)} .safetensors files" if files else "no .safetensors file"
        raise FileNotFoundError(
            f"LoRA folder {shown!r} holds no {LORA_WEIGHT_NAME} and {held}; "
            "name the weights file itself or keep one .safetensors file there"
        )
    raise FileNotFoundError(
        f"LoRA {shown!r} is neither a .safetensors file nor a folder holding {LORA_WEIGHT_NAME}: no such path"
    )


def missing_adapter(path: str, kind: str = "lora", models_dir: str | None = None) -> str | None:
    """Why the adapter `path` of `kind` ("ip_adapter" or "lora") cannot be loaded; None when it can.

    File checks only (no torch, no download), like `missing_model`.
    """
    if kind not in ADAPTER_KINDS:
        raise ValueError(f"kind must be one of {ADAPTER_KINDS} but is {kind!r}")
    if not isinstance(path, str) or not path.strip():
        return f"{'IP-Adapter' if kind == 'ip_adapter' else 'LoRA'} path must be a non-empty string but is {path!r}"
    try:
        if kind == "ip_adapter":
            locate_ip_adapter(path, models_dir)
        else:
            locate_lora(path)
    except FileNotFoundError as e:
        return str(e)
    return None
