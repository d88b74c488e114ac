"""How a model step asks for a device: the executor's GPU tag, the instance-wide `gpu` pool and,
under Kubernetes, a GPU node for its step pod."""

import json

from gpu_executor import GPU_TAG

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
# of this pool instead, across runs, so the calls in flight stay within what the endpoint serves (size
# it with `dagster instance concurrency set remote N`; unset, it has the instance's default_limit).
REMOTE_POOL = "remote"
