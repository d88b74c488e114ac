"""How a model step asks for a device: the executor's GPU tag plus the instance-wide `gpu` pool."""

from gpu_executor import GPU_TAG

# The `gpu` concurrency pool spans runs (sized to the device count in dagster.yaml), while the
# executor's tag places each step on one device within its run.
GPU_POOL = "gpu"
GPU_OP_TAGS = {GPU_TAG: "true"}
