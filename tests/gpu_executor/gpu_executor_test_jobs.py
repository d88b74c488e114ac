"""Jobs run by the gpu_executor tests; step processes import this module through PYTHONPATH."""

import json
import os
import threading
import time
from pathlib import Path

import dagster as dg

from gpu_executor import DEVICE_ENV_VAR, GPU_TAG, gpu_executor

GPU_TAGS = {GPU_TAG: "true"}
LINGER_S = 120


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


def run_probe(name: str, config: ProbeConfig) -> None:
    """Record the step's device environment and the span of time it ran."""
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


@dg.op(tags=GPU_TAGS)
def linger(config: ProbeConfig) -> None:
    """Report success, but keep the process alive afterwards with a non-daemon thread."""
    run_probe("linger", config)
    threading.Thread(target=time.sleep, args=(LINGER_S,)).start()


@dg.op(tags=GPU_TAGS, ins={"upstream": dg.In(dg.Nothing)})
def after_linger(config: ProbeConfig) -> None:
    run_probe("after_linger", config)


@dg.op(tags=GPU_TAGS)
def crash() -> None:
    """Die the way a crashing CUDA kernel takes a process down: no result, no cleanup."""
    os._exit(3)


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


@dg.job(executor_def=gpu_executor)
def lingering_job():
    after_linger(linger())


@dg.job(executor_def=gpu_executor)
def crashing_job():
    crash()


def mixed_asset_job() -> dg.JobDefinition:
    """Two GPU assets and a CPU asset, none depending on another."""
    assets = [
        probe_asset("gpu_asset_a", gpu=True),
        probe_asset("gpu_asset_b", gpu=True),
        probe_asset("cpu_asset", gpu=False),
    ]
    job = dg.define_asset_job("mixed_asset_job", executor_def=gpu_executor)
    return dg.Definitions(assets=assets, jobs=[job]).resolve_job_def("mixed_asset_job")
