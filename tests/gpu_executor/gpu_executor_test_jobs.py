"""Jobs run by the gpu_executor tests; the executor's workers import this module by sys.path."""

import json
import os
import signal
import sys
import time
import types
from pathlib import Path

import dagster as dg

from gpu_executor import DEVICE_ENV_VAR, GPU_TAG, gpu_executor

GPU_TAGS = {GPU_TAG: "true"}
LINGER_S = 120
PRELOAD_PROBE = "gpu_executor_preload_probe"
# Stands in for a module-level cache of loaded models, e.g. diffusers pipelines by name.
_MODELS: dict[str, object] = {}


class ProbeConfig(dg.Config):
    """Where a probe records itself, and which probes must have started before it finishes."""

    out_dir: str
    hold_s: float = 0.3
    wait_for: list[str] = []
    wait_timeout_s: float = 30.0


class FlakyConfig(dg.Config):
    """Where attempts are counted, and how many attempts fail before one succeeds."""

    out_dir: str
    failures: int


def run_probe(name: str, config: ProbeConfig, **extra: object) -> None:
    """Record the step's device environment, its process, the span of time it ran and `extra`."""
    out_dir = Path(config.out_dir)
    start = time.time()
    (out_dir / f"{name}.started").touch()
    # A rendezvous rather than a long sleep: probes that run side by side meet here quickly,
    # probes that are serialised never meet and the recorded spans show it.
    deadline = start + config.wait_timeout_s
    while time.time() < deadline and not all(
        (out_dir / f"{other}.started").exists() for other in config.wait_for
    ):
        time.sleep(0.05)
    time.sleep(config.hold_s)
    record = {
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "device": os.environ.get(DEVICE_ENV_VAR),
        "pid": os.getpid(),
        "start": start,
        "end": time.time(),
        **extra,
    }
    (out_dir / f"{name}.json").write_text(json.dumps(record))


def probe_op(name: str, gpu: bool) -> dg.OpDefinition:
    """An op that runs `run_probe`, tagged as GPU work when `gpu`."""

    @dg.op(name=name, tags=GPU_TAGS if gpu else None)
    def _probe(config: ProbeConfig) -> None:
        run_probe(name, config)

    return _probe


def probe_asset(name: str, gpu: bool) -> dg.AssetsDefinition:
    """An asset that runs `run_probe`, its op tagged as GPU work when `gpu`."""

    @dg.asset(name=name, op_tags=GPU_TAGS if gpu else None)
    def _probe(config: ProbeConfig) -> None:
        run_probe(name, config)

    return _probe


def load_model(out_dir: str) -> object:
    """The "model", loaded on first use in a process; each load is counted in `model_loads`."""
    if "model" not in _MODELS:
        with (Path(out_dir) / "model_loads").open("a") as loads:
            loads.write(f"{os.getpid()}\n")
        _MODELS["model"] = object()
    return _MODELS["model"]


def model_op(name: str, upstream: bool) -> dg.OpDefinition:
    """A GPU op that uses the model, recording which model object it got."""

    @dg.op(name=name, tags=GPU_TAGS, ins={"upstream": dg.In(dg.Nothing)} if upstream else None)
    def _model(config: ProbeConfig) -> None:
        run_probe(name, config, model_id=id(load_model(config.out_dir)))

    return _model


def cpu_op(name: str, upstream: bool) -> dg.OpDefinition:
    """An untagged op that records whether the preload probe module is imported in its process."""

    @dg.op(name=name, ins={"upstream": dg.In(dg.Nothing)} if upstream else None)
    def _cpu(config: ProbeConfig) -> None:
        run_probe(name, config, preloaded=PRELOAD_PROBE in sys.modules)

    return _cpu


def flaky_op(name: str, max_retries: int) -> dg.OpDefinition:
    """A GPU op that fails its first `failures` attempts, retried up to `max_retries` times."""

    @dg.op(name=name, tags=GPU_TAGS, retry_policy=dg.RetryPolicy(max_retries=max_retries))
    def _flaky(config: FlakyConfig) -> None:
        attempts_file = Path(config.out_dir) / f"{name}.attempts"
        with attempts_file.open("a") as attempts:
            attempts.write(f"{os.environ.get(DEVICE_ENV_VAR)}\n")
        attempt = len(attempts_file.read_text().splitlines())
        if attempt <= config.failures:
            raise dg.Failure(f"{name} attempt {attempt} of {config.failures} failing ones")

    return _flaky


gpu_a, gpu_b, gpu_c = (probe_op(name, gpu=True) for name in ("gpu_a", "gpu_b", "gpu_c"))
retried = flaky_op("retried", max_retries=3)
exhausted = flaky_op("exhausted", max_retries=1)


@dg.resource
def slow_teardown(_init_context):
    """A resource whose teardown, after its step has reported success, takes LINGER_S."""
    yield
    time.sleep(LINGER_S)


@dg.op(tags=GPU_TAGS, required_resource_keys={"slow_teardown"})
def linger(config: ProbeConfig) -> None:
    """Report success, but keep the worker busy afterwards tearing down its resource."""
    run_probe("linger", config)


@dg.op(tags=GPU_TAGS, ins={"upstream": dg.In(dg.Nothing)})
def after_linger(config: ProbeConfig) -> None:
    run_probe("after_linger", config)


@dg.op(tags=GPU_TAGS)
def crash() -> None:
    """Die the way a crashing CUDA kernel takes a process down: no result, no cleanup."""
    os._exit(3)


@dg.op(tags=GPU_TAGS, retry_policy=dg.RetryPolicy(max_retries=1))
def killed_once(config: ProbeConfig) -> None:
    """Die by SIGKILL (as the OOM killer does) on the first attempt, succeed on the next."""
    attempts_file = Path(config.out_dir) / "killed_once.attempts"
    with attempts_file.open("a") as attempts:
        attempts.write(f"{os.getpid()}\n")
    if len(attempts_file.read_text().splitlines()) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    run_probe("killed_once", config)


@dg.op(tags=GPU_TAGS, ins={"upstream": dg.In(dg.Nothing)})
def after_kill(config: ProbeConfig) -> None:
    run_probe("after_kill", config)


def broken_cuda_torch() -> types.SimpleNamespace:
    """Stands in for torch after a kernel's illegal memory access: every CUDA call fails."""

    def synchronize() -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    cuda = types.SimpleNamespace(is_initialized=lambda: True, synchronize=synchronize)
    return types.SimpleNamespace(cuda=cuda)


@dg.op(tags=GPU_TAGS)
def break_cuda(config: ProbeConfig) -> None:
    """Succeed, but leave CUDA unusable in the worker."""
    run_probe("break_cuda", config)
    sys.modules["torch"] = broken_cuda_torch()


@dg.op(tags=GPU_TAGS, ins={"upstream": dg.In(dg.Nothing)})
def after_break(config: ProbeConfig) -> None:
    run_probe("after_break", config)


@dg.op(tags=GPU_TAGS)
def preload_probe(config: ProbeConfig) -> None:
    run_probe("preload_probe", config, preloaded=PRELOAD_PROBE in sys.modules)


@dg.op(tags=GPU_TAGS)
def hang(config: ProbeConfig) -> None:
    """Record the worker, then run far longer than any test waits."""
    run_probe("hang", config)
    time.sleep(LINGER_S)


@dg.job(executor_def=gpu_executor)
def two_gpu_job():
    gpu_a()
    gpu_b()


@dg.job(executor_def=gpu_executor)
def three_gpu_job():
    gpu_a()
    gpu_b()
    gpu_c()


@dg.job(executor_def=gpu_executor)
def retried_job():
    retried()


@dg.job(executor_def=gpu_executor)
def exhausted_job():
    exhausted()


@dg.job(executor_def=gpu_executor, resource_defs={"slow_teardown": slow_teardown})
def lingering_job():
    after_linger(linger())


@dg.job(executor_def=gpu_executor)
def crashing_job():
    crash()


@dg.job(executor_def=gpu_executor)
def warm_job():
    model_op("model_b", upstream=True)(model_op("model_a", upstream=False)())
    cpu_op("cpu_b", upstream=True)(cpu_op("cpu_a", upstream=False)())


@dg.job(executor_def=gpu_executor)
def killed_job():
    after_kill(killed_once())


@dg.job(executor_def=gpu_executor)
def broken_cuda_job():
    after_break(break_cuda())


@dg.job(executor_def=gpu_executor)
def preload_job():
    preload_probe()
    cpu_op("cpu_a", upstream=False)()


@dg.job(executor_def=gpu_executor)
def hanging_job():
    hang()


def mixed_asset_job() -> dg.JobDefinition:
    """Two GPU assets and a CPU asset, none depending on another."""
    assets = [
        probe_asset("gpu_asset_a", gpu=True),
        probe_asset("gpu_asset_b", gpu=True),
        probe_asset("cpu_asset", gpu=False),
    ]
    job = dg.define_asset_job("mixed_asset_job", executor_def=gpu_executor)
    return dg.Definitions(assets=assets, jobs=[job]).resolve_job_def("mixed_asset_job")
