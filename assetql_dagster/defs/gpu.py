"""How a model step asks for a device: the executor's GPU tag, the instance-wide `gpu` pool and,
under Kubernetes, a GPU node for its step pod; and the pools remote models' steps claim instead."""

import json
import os
import re
from collections.abc import Mapping

from gpu_executor import GPU_TAG
from resources.models import missing_remote_model

# The `gpu` concurrency pool spans runs (sized to the device count in dagster.yaml), while the
# executor's tag places each step on one device within its run.
GPU_POOL = "gpu"

# dagster-k8s reads a step's pod settings from this op tag (dagster_k8s.job.USER_DEFINED_K8S_CONFIG_KEY);
# spelled here so the code location imports without dagster-k8s, which only the k8s deployment installs.
K8S_CONFIG_TAG = "dagster-k8s/config"
# The label NVIDIA's GPU operator (GPU feature discovery) puts on every node with a GPU.
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
# GPU node pools are tainted so CPU pods stay off them (EKS, GKE and AKS GPU pools use this key).
GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
# Under k8s_job_executor every model step is its own pod holding one whole GPU; CPU steps carry no
# such tag and land on any node.
GPU_K8S_CONFIG = {
    "container_config": {
        "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}},
    },
    "pod_spec_config": {"node_selector": GPU_NODE_SELECTOR, "tolerations": GPU_TOLERATIONS},
}
# Under celery_executor, dagster-celery sends a step to the queue its op tag names
# (dagster_celery.tags.DAGSTER_CELERY_QUEUE_TAG): model steps to the GPU workers' queue, the rest to
# the default one.
CELERY_QUEUE_TAG = "dagster-celery/queue"
CELERY_GPU_QUEUE = "gpu"
GPU_OP_TAGS = {GPU_TAG: "true", K8S_CONFIG_TAG: json.dumps(GPU_K8S_CONFIG, sort_keys=True),
               CELERY_QUEUE_TAG: CELERY_GPU_QUEUE}

# Shards of a remote model (`sagemaker:ENDPOINT`, `bedrock:MODEL_ID`) take no device: they claim a slot
# of a pool instead, across runs, so the calls in flight stay within what the endpoint serves. A model
# the deployment declares in $ASSETQL_REMOTE_POOLS has a pool of its own (`remote:{model}`, sized by
# `assetql pools --apply`); any other remote model shares this one (size it with
# `dagster instance concurrency set remote N`; unset, it has the instance's default_limit).
REMOTE_POOL = "remote"
REMOTE_POOLS_ENV = "ASSETQL_REMOTE_POOLS"
MAX_REMOTE_SLOTS = 1000


def endpoint_pool(model: str) -> str:
    """The pool of a remote model declared in $ASSETQL_REMOTE_POOLS, e.g. `remote:sagemaker:sdxl-prod`."""
    return f"{REMOTE_POOL}:{model}"


def endpoint_slug(model: str) -> str:
    """`model` as part of a Dagster name (op, output): each character but letters and digits becomes `_`."""
    return re.sub(r"[^A-Za-z0-9]", "_", model)


def remote_pools_from_env(env: Mapping[str, str] = os.environ) -> dict[str, int]:
    """The remote models $ASSETQL_REMOTE_POOLS declares, in its order, each with its pool's slots.

    The value is comma-separated `MODEL=SLOTS` entries, e.g.
    `sagemaker:sdxl-prod=4,bedrock:stability.sd3-5-large-v1:0=2`; a model id may hold ':', so only the
    last '=' of an entry separates the slots. Unset or empty, no model has a pool of its own.
    """
    pools: dict[str, int] = {}
    for entry in (e.strip() for e in env.get(REMOTE_POOLS_ENV, "").split(",")):
        if not entry:
            continue
        model, sep, slots = (part.strip() for part in entry.rpartition("="))
        if not sep or not model:
            raise ValueError(f"{REMOTE_POOLS_ENV} entry {entry!r} must be MODEL=SLOTS, e.g. 'sagemaker:sdxl-prod=4'")
        problem = missing_remote_model(model)
        if problem:
            raise ValueError(f"{REMOTE_POOLS_ENV} entry {entry!r}: {problem}")
        if not (slots.isascii() and slots.isdigit() and 1 <= int(slots) <= MAX_REMOTE_SLOTS):
            raise ValueError(f"{REMOTE_POOLS_ENV} entry {entry!r}: SLOTS must be a whole number from 1 to "
                             f"{MAX_REMOTE_SLOTS} (the calls the endpoint serves at once) but is {slots!r}")
        # Each model's shards run in an op named after it: two models of one name would share it.
        same = next((m for m in pools if endpoint_slug(m) == endpoint_slug(model)), None)
        if same == model:
            raise ValueError(f"{REMOTE_POOLS_ENV} entry {entry!r}: {model!r} is declared twice; keep one entry")
        if same is not None:
            raise ValueError(f"{REMOTE_POOLS_ENV} entry {entry!r}: {model!r} and {same!r} would share the op "
                             f"generate_remote_shard_{endpoint_slug(model)}; declare one of them")
        pools[model] = int(slots)
    return pools
