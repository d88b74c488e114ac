"""Names the model resources share, where models are found, and how many this process has loaded.

Nothing heavy is imported here: the resources' light halves (`generator`, `clip`) and the code
location use it without pulling in torch.
"""

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
    """Why `model` is neither the tiny model, a local pipeline folder nor a cached hub id; None if it is one.

    Only files are looked at (no torch, no download), so batches are checked before any model loads.
    """
    if model == TINY_MODEL:
        return None
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
