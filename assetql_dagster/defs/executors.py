"""Which executor runs a batch's steps, chosen by the deployment through `ASSETQL_EXECUTOR`."""

from __future__ import annotations

import os

import dagster as dg

from gpu_executor import gpu_executor

EXECUTOR_ENV = "ASSETQL_EXECUTOR"
# What model steps import: torch, diffusers and open_clip, behind the resources' light halves.
MODEL_MODULES = ["resources.diffusion", "resources.open_clip_model"]


def _gpu() -> dg.ExecutorDefinition:
    # Model steps run in one warm worker per device (on the CPU when there is no GPU), which
    # imports the model libraries while the first CPU steps run and keeps loaded models between
    # steps. `dagster dev` and `assetql run` use it; execute_in_process (tests) does not, nor
    # register_batch, which has no model steps.
    return gpu_executor.configured({"preload_modules": MODEL_MODULES})


def _k8s() -> dg.ExecutorDefinition:
    # Every step is a Kubernetes Job; the GPU steps' op tags (defs/gpu.py) give their pods one GPU
    # on a GPU node. Image, namespace and volumes come from the Helm chart's run launcher.
    from dagster_k8s import k8s_job_executor  # the `k8s` extra; only this deployment installs it

    return k8s_job_executor


CELERY_BROKER_ENV = "ASSETQL_CELERY_BROKER"
CELERY_BACKEND_ENV = "ASSETQL_CELERY_BACKEND"
CELERY_VISIBILITY_ENV = "ASSETQL_CELERY_VISIBILITY_TIMEOUT"
DEFAULT_CELERY_BROKER = "redis://localhost:6379/0"
# Redis hands an unacknowledged step to another worker after this many seconds, so it must exceed
# the longest step (a shard with its model load); an hour is kombu's own default.
DEFAULT_VISIBILITY_TIMEOUT_S = 3600


def celery_config() -> dict:
    """The celery_executor config the environment names; the workers' app (defs/celery_app.py) uses the same."""
    from dagster_celery.defaults import broker_transport_options  # the `celery` extra

    broker = os.environ.get(CELERY_BROKER_ENV, DEFAULT_CELERY_BROKER)
    raw_timeout = os.environ.get(CELERY_VISIBILITY_ENV, str(DEFAULT_VISIBILITY_TIMEOUT_S))
    if not raw_timeout.isdigit() or int(raw_timeout) < 1:
        raise ValueError(f"{CELERY_VISIBILITY_ENV}={raw_timeout!r} is not a whole number of seconds of at least 1")
    timeout = int(raw_timeout)
    return {
        "broker": broker,
        "backend": os.environ.get(CELERY_BACKEND_ENV, broker),
        "config_source": {
            # A step is acknowledged only once it finished, so the step of a worker that died (SIGKILL,
            # lost node) stays in Redis and comes back to the next worker instead of being lost; that
            # worker reports it lost and the executor gives it to the step's RetryPolicy
            # (defs/celery_executor.py). Shards skip the images already stored intact, so the retry
            # duplicates nothing.
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            # One step at a time per worker process: a GPU worker must not hold a second shard back.
            "worker_prefetch_multiplier": 1,
            # Sweep for abandoned steps every 5 s instead of every 100 s.
            "broker_transport_options": {**broker_transport_options, "visibility_timeout": timeout,
                                         "unacked_restore_interval": 5, "unacked_restore_throttle": 1},
        },
    }


def _celery() -> dg.ExecutorDefinition:
    # Every step is a Celery task: GPU steps on the `gpu` queue, whose workers (one per device, own
    # CUDA_VISIBLE_DEVICES, one step at a time) keep their loaded models; the rest on the default
    # queue. The RetryPolicy's retries, a lost worker's step's included, are new tasks, so they may
    # land on another worker.
    from assetql_dagster.defs.celery_executor import celery_executor  # needs the `celery` extra

    return celery_executor.configured(celery_config())


EXECUTORS = {"gpu": _gpu, "k8s": _k8s, "celery": _celery}


def executor_from_env() -> dg.ExecutorDefinition:
    """The executor `ASSETQL_EXECUTOR` names (`gpu` when unset)."""
    name = os.environ.get(EXECUTOR_ENV, "gpu")
    if name not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={name!r} is not an executor; expected one of {', '.join(EXECUTORS)}")
    return EXECUTORS[name]()
