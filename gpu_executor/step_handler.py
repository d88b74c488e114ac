"""Step handler that runs each step in a local process, each GPU step on a device of its own."""

import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.context.system import IStepContext
from dagster._core.executor.step_delegating import (
    CheckStepHealthResult,
    StepHandler,
    StepHandlerContext,
)
from dagster._core.origin import get_python_environment_entry_point
from dagster._grpc.types import ExecuteStepArgs

from gpu_executor.device_pool import CPU_DEVICE, DevicePool
from gpu_executor.tags import is_gpu_step

DEVICE_ENV_VAR = "ASSETQL_DEVICE"
# How long a stopped step process gets to shut down cleanly before it is killed.
TERMINATE_GRACE_S = 5.0
# Each attempt of a step ends with exactly one of these, whoever emits it.
_ATTEMPT_END_EVENTS = {
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.STEP_UP_FOR_RETRY,
}


def step_env(device: str | None) -> dict[str, str]:
    """Environment overrides for a step process that holds `device`, or None for a CPU step."""
    placed = device or CPU_DEVICE
    # CPU steps hide every GPU too, so they cannot quietly grab a device a GPU step holds.
    return {
        "CUDA_VISIBLE_DEVICES": "" if placed == CPU_DEVICE else placed,
        DEVICE_ENV_VAR: placed,
    }


@dataclass(frozen=True)
class _StepProcess:
    """One launched attempt of a step."""

    step_context: IStepContext
    popen: subprocess.Popen
    device: str | None
    ended_attempts_at_launch: int
    # Exits once the process has exited and its device is back in the pool.
    watcher: threading.Thread

    @property
    def step_key(self) -> str:
        return self.step_context.step.key

    @property
    def placed(self) -> str:
        """The device the process runs on, as its `DEVICE_ENV_VAR` names it."""
        return self.device or CPU_DEVICE

    @property
    def running(self) -> bool:
        return self.watcher.is_alive()

    def attempt_ended(self) -> bool:
        """Whether this attempt's success, failure or retry has reached the event log."""
        return self.ended_attempts_at_launch < _ended_attempts(self.step_context)


class DevicePoolStepHandler(StepHandler):
    """Runs each step as a local `dagster api execute_step` process; GPU steps hold a device."""

    def __init__(self, pool: DevicePool, device_release_timeout_s: float) -> None:
        self._pool = pool
        self._release_timeout_s = device_release_timeout_s
        self._processes: dict[str, _StepProcess] = {}

    @property
    def name(self) -> str:
        return f"DevicePoolStepHandler(devices={list(self._pool.devices)})"

    def launch_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        step_key = _single_step_key(step_handler_context)
        previous = self._processes.get(step_key)
        if previous is not None:
            # A retry: the earlier attempt has reported, but its process may still hold a device.
            self._retire(previous)
        gpu = is_gpu_step(step_key, step_handler_context.step_tags[step_key])
        device = self._acquire_device(step_key) if gpu else None
        try:
            process = self._start(step_handler_context, step_key, device)
        except BaseException:
            if device is not None:
                self._pool.release(step_key)
            raise
        self._processes[step_key] = process
        yield DagsterEvent.step_worker_starting(
            process.step_context,
            message=(
                f"Launched {'GPU' if gpu else 'CPU'} step {step_key!r} in process "
                f"{process.popen.pid} on device {process.placed!r}."
            ),
            metadata={"device": process.placed, "pid": str(process.popen.pid)},
        )

    def check_step_health(self, step_handler_context: StepHandlerContext) -> CheckStepHealthResult:
        step_key = _single_step_key(step_handler_context)
        process = self._processes.get(step_key)
        if process is None:
            return CheckStepHealthResult.unhealthy(
                f"No process was launched for step {step_key!r} by this executor"
            )
        # An exited process is fine once its result is in the event log: the executor reads it next.
        if process.running or process.attempt_ended():
            return CheckStepHealthResult.healthy()
        return CheckStepHealthResult.unhealthy(
            f"Process {process.popen.pid} of step {step_key!r} "
            f"{_describe_exit(process.popen.returncode)} without reporting a result"
        )

    def terminate_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        process = self._processes.get(_single_step_key(step_handler_context))
        if process is None or not process.running:
            return
        yield DagsterEvent.engine_event(
            process.step_context,
            f"Stopping process {process.popen.pid} of step {process.step_key!r}.",
            EngineEventData(metadata={"pid": str(process.popen.pid)}),
        )
        self._stop(process)

    def _start(
        self, step_handler_context: StepHandlerContext, step_key: str, device: str | None
    ) -> _StepProcess:
        step_context = step_handler_context.get_step_context(step_key)
        # Counted before the process exists, so its own result is the first one after this.
        ended_attempts = _ended_attempts(step_context)
        args = step_handler_context.execute_step_args
        popen = subprocess.Popen(
            _step_command(args),
            env={**os.environ, **step_env(device), **_command_env(args.get_command_env())},
            # Own process group, so stopping a step also stops whatever it spawned.
            start_new_session=True,
        )
        watcher = threading.Thread(
            target=self._watch,
            args=(popen, step_key if device is not None else None),
            name=f"step-process-{step_key}",
            daemon=True,
        )
        watcher.start()
        return _StepProcess(step_context, popen, device, ended_attempts, watcher)

    def _watch(self, popen: subprocess.Popen, device_holder: str | None) -> None:
        """Wait for a step process to exit, then hand its device back."""
        popen.wait()
        if device_holder is not None:
            self._pool.release(device_holder)

    def _acquire_device(self, step_key: str) -> str:
        """Wait for a free device; reclaim devices held by processes that already reported."""
        try:
            return self._pool.acquire(step_key, timeout=self._release_timeout_s)
        except TimeoutError:
            lingering = [
                p
                for p in self._processes.values()
                if p.device is not None and p.running and p.attempt_ended()
            ]
            if not lingering:
                raise
        for process in lingering:
            self._stop_lingering(process)
        return self._pool.acquire(step_key, timeout=self._release_timeout_s)

    def _retire(self, process: _StepProcess) -> None:
        """Wait for a process that already reported to exit; stop it if it outstays the timeout."""
        process.watcher.join(self._release_timeout_s)
        if process.running:
            self._stop_lingering(process)

    def _stop_lingering(self, process: _StepProcess) -> None:
        DagsterEvent.engine_event(
            process.step_context,
            f"Stopping process {process.popen.pid} of step {process.step_key!r}: it reported its "
            f"result but was still running on device {process.placed!r} after a "
            f"{self._release_timeout_s} s wait.",
            EngineEventData(metadata={"pid": str(process.popen.pid), "device": process.placed}),
        )
        self._stop(process)

    def _stop(self, process: _StepProcess) -> None:
        """SIGTERM the step's process group, SIGKILL what is left after a grace period."""
        _signal_group(process.popen.pid, signal.SIGTERM)
        process.watcher.join(TERMINATE_GRACE_S)
        _signal_group(process.popen.pid, signal.SIGKILL)
        process.watcher.join()


def _single_step_key(step_handler_context: StepHandlerContext) -> str:
    step_keys = step_handler_context.execute_step_args.step_keys_to_execute or []
    if len(step_keys) != 1:
        raise ValueError(
            f"DevicePoolStepHandler runs exactly one step per process, got step keys {step_keys}"
        )
    return step_keys[0]


def _step_command(args: ExecuteStepArgs) -> list[str]:
    """`dagster api execute_step` under the code location's own interpreter."""
    # The origin's entry point is a bare `dagster` by default, which need not be on PATH.
    return [
        *get_python_environment_entry_point(args.job_origin.executable_path),
        "api",
        "execute_step",
    ]


def _ended_attempts(step_context: IStepContext) -> int:
    """How many attempts of the step have ended so far, per the run's event log."""
    records = step_context.instance.get_records_for_run(
        step_context.run_id, of_type=_ATTEMPT_END_EVENTS
    ).records
    return sum(1 for r in records if r.event_log_entry.step_key == step_context.step.key)


def _command_env(entries: Sequence[Mapping[str, str]]) -> dict[str, str]:
    return {entry["name"]: entry["value"] for entry in entries}


def _describe_exit(returncode: int) -> str:
    # Popen reports death by signal as the negated signal number.
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        # The whole group has already exited.
        pass
