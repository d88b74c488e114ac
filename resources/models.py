"""Names the model resources share, and how many models this process has loaded.

Nothing heavy is imported here: the resources' light halves (`generator`, `clip`) and the code
location use it without pulling in torch.
"""

from collections import Counter

# The built-in random-weight test models, for diffusers and for open_clip.
TINY_MODEL = "tiny"

_LOADS: Counter[str] = Counter()


def record_load(kind: str) -> None:
    """Count one model of `kind` ("diffusers", "open_clip") built in this process."""
    _LOADS[kind] += 1


def load_count(kind: str) -> int:
    """Models of `kind` built in this process so far; a step's difference is its `model_loads`."""
    return _LOADS[kind]
