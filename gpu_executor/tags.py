"""The step tag that marks GPU work."""

from collections.abc import Mapping

GPU_TAG = "assetql/gpu"
_GPU_VALUES = {"true": True, "false": False}


def is_gpu_step(step_key: str, tags: Mapping[str, str]) -> bool:
    """Whether the step's tags mark it as GPU work."""
    value = tags.get(GPU_TAG, "false")
    if value not in _GPU_VALUES:
        # Only "true" counts towards the executor's GPU concurrency limit, so any other spelling
        # would let the step bypass it.
        raise ValueError(
            f"Step {step_key!r} has tag {GPU_TAG}={value!r}; expected one of {sorted(_GPU_VALUES)}"
        )
    return _GPU_VALUES[value]
