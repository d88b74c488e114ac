"""Step handler that runs steps in long-lived worker processes: one per device, some for CPU."""

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.context.system import IStepContext
from dagster._core.executor.step_delegating import (
    CheckStepHealthResult,
    StepHandler,
    StepHandlerContext,
)
from dagster._core.instance import InstanceRef
from dagster._core.origin import JobPythonOrigin

from gpu_executor.device_pool import CPU_DEVICE, DevicePool
from gpu_executor.tags import is_gpu_step
from gpu_executor.worker import StepWorker

DEVICE_ENV_VAR = "ASSETQL_DEVICE"
# How long a stopped worker gets to interrupt its step and exit before it is killed.
TERMINATE_GRACE_S = 5.0
# Each attempt of a step ends with exactly one of these, whoever emits it.
_ATTEMPT_END_EVENTS = {
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.STEP_UP_FOR_RETRY,
}


def step_env(device: str | None) -> dict[str, str]:
    """Environment overrides for a worker that holds `device`, or None for a CPU worker."""
    placed = device or CPU_DEVICE
    # CPU steps hide every GPU too, so they cannot quietly grab a device a GPU step holds.
    return {
        "CUDA_VISIBLE_DEVICES": "" if placed == CPU_DEVICE else placed,
        DEVICE_ENV_VAR: placed,
    }


@dataclass(frozen=True)
class _Attempt:
    """One launched attempt of a step: which worker runs it, as its `number`-th step."""

    step_context: IStepContext
    worker: StepWorker
    number: int
    ended_attempts_at_launch: int

    @property
    def step_key(self) -> str:
        return self.step_context.step.key

    def ended(self) -> bool:
        """Whether this attempt's success, failure or retry has reached the event log."""
        return self.ended_attempts_at_launch < _ended_attempts(self.step_context)


class WorkerPoolStepHandler(StepHandler):
    """Runs each step in a long-lived worker process of this run, in-process.

    GPU steps take a device from `pool` and run in that device's worker, so a model a step loads
    at module level stays loaded for the next step on the device. CPU steps run in up to
    `max_cpu_workers` CPU workers, reused from step to step.
    """

    def __init__(
        self,
        pool: DevicePool,
        max_cpu_workers: int,
        preload_modules: Sequence[str],
        device_release_timeout_s: float,
    ) -> None:
        self._pool = pool
        self._max_cpu_workers = max_cpu_workers
        self._preload_modules = tuple(preload_modules)
        self._release_timeout_s = device_release_timeout_s
        # Guards the workers' state; notified when a worker finishes a step or exits.
        self._changed = threading.Condition()
        # Every worker started for the run, and among them those that new steps may go to.
        self._workers: list[StepWorker] = []
        self._device_workers: dict[str, StepWorker] = {}
        self._cpu_workers: list[StepWorker] = []
        self._attempts: dict[str, _Attempt] = {}

    @property
    def name(self) -> str:
        return f"WorkerPoolStepHandler(devices={list(self._pool.devices)})"

    def start_workers(
        self, job_origin: JobPythonOrigin, instance_ref: InstanceRef, gpu: bool, cpu: bool
    ) -> None:
        """Start a worker per device (if `gpu` steps are to run) and a CPU worker (if `cpu`).

        They load the code location (and the preload modules) side by side, while the run starts.
        """
        with self._changed:
            if gpu:
                for device in self._pool.devices:
                    self._device_workers[device] = self._spawn(device, job_origin, instance_ref)
            if cpu:
                self._cpu_workers.append(self._spawn(None, job_origin, instance_ref))

    def shutdown(self) -> None:
        """Stop every worker of the run, side by side, as `StepWorker.stop` does."""
        with self._changed:
            workers, self._workers = self._workers, []
            self._device_workers.clear()
            self._cpu_workers.clear()
        stoppers = [
            threading.Thread(target=worker.stop, args=(TERMINATE_GRACE_S,)) for worker in workers
        ]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()

    def launch_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        step_key = _single_step_key(step_handler_context)
        gpu = is_gpu_step(step_key, step_handler_context.step_tags[step_key])
        previous = self._attempts.get(step_key)
        if previous is not None:
            # A retry: the earlier attempt has reported, but its worker may still be finishing it
            # (and, on a GPU, hold the device the retry needs).
            self._await_or_stop(previous)
        step_context = step_handler_context.get_step_context(step_key)
        # Counted before the step is sent, so its own result is the first one after this.
        ended_attempts = _ended_attempts(step_context)
        args = step_handler_context.execute_step_args
        take = self._take_device_worker if gpu else self._take_cpu_worker
        worker, number, replaced = take(step_key, args.job_origin, args.instance_ref)
        self._attempts[step_key] = _Attempt(step_context, worker, number, ended_attempts)
        worker.send_step(number, args)
        yield DagsterEvent.step_worker_starting(
            step_context,
            message=_launch_message(step_key, worker, replaced),
            metadata={"device": worker.device or CPU_DEVICE, "pid": str(worker.pid)},
        )

    def check_step_health(self, step_handler_context: StepHandlerContext) -> CheckStepHealthResult:
        step_key = _single_step_key(step_handler_context)
        attempt = self._attempts.get(step_key)
        if attempt is None:
            return CheckStepHealthResult.unhealthy(
                f"No worker was given step {step_key!r} by this executor"
            )
        # Read before the event log: a worker stores all of a step's events before it reports
        # back or exits, so an attempt without a result after that has none coming.
        with self._changed:
            reason = _no_result_reason(attempt)
        if reason is None or attempt.ended():
            return CheckStepHealthResult.healthy()
        return CheckStepHealthResult.unhealthy(reason)

    def terminate_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        attempt = self._attempts.get(_single_step_key(step_handler_context))
        if attempt is None:
            return
        with self._changed:
            finished = attempt.worker.finished(attempt.number)
        if finished:
            return
        yield DagsterEvent.engine_event(
            attempt.step_context,
            f"Stopping the {attempt.worker.description}, which runs step {attempt.step_key!r}.",
            EngineEventData(metadata={"pid": str(attempt.worker.pid)}),
        )
        attempt.worker.stop(TERMINATE_GRACE_S)

    def _spawn(
        self, device: str | None, job_origin: JobPythonOrigin, instance_ref: InstanceRef
    ) -> StepWorker:
        """Start a worker (under the lock)."""
        worker = StepWorker(
            device,
            step_env(device),
            job_origin,
            instance_ref,
            # Only model steps run on devices; the CPU workers stay light.
            self._preload_modules if device is not None else (),
            self._changed,
            self._step_done,
        )
        self._workers.append(worker)
        return worker

    def _step_done(self, worker: StepWorker, step_key: str) -> None:
        """Called under the lock when `worker` is done with `step_key`: its device is free again."""
        if worker.device is not None:
            self._pool.release(step_key)

    def _take_device_worker(
        self, step_key: str, job_origin: JobPythonOrigin, instance_ref: InstanceRef
    ) -> tuple[StepWorker, int, StepWorker | None]:
        """The worker of a free device, reserved for the step; and the one it replaces, if any."""
        device = self._acquire_device(step_key)
        try:
            with self._changed:
                worker = self._device_workers.get(device)
                replaced = None
                if worker is None or not worker.usable:
                    # Its predecessor died (perhaps with the step it ran) or quit, or the run's
                    # plan had no GPU step when the run started.
                    replaced = worker
                    worker = self._device_workers[device] = self._spawn(
                        device, job_origin, instance_ref
                    )
                return worker, worker.assign(step_key), replaced
        except BaseException:
            self._pool.release(step_key)
            raise

    def _take_cpu_worker(
        self, step_key: str, job_origin: JobPythonOrigin, instance_ref: InstanceRef
    ) -> tuple[StepWorker, int, None]:
        """An idle CPU worker, reserved for the step; a new one only if none is about to be idle."""
        with self._changed:
            self._cpu_workers = [w for w in self._cpu_workers if w.alive]
            busy = [w.running_step for w in self._cpu_workers if w.running_step is not None]
            at_limit = len(self._cpu_workers) >= self._max_cpu_workers
        # The executor counts a step as done once its result is in the event log, while its
        # worker may still be tearing down resources: that takes a moment, starting a new worker
        # takes seconds.
        finishing = [a for a in (self._attempts[key] for key in busy) if a.ended()]
        with self._changed:
            wait_s = self._release_timeout_s if finishing or at_limit else 0
            worker = self._changed.wait_for(self._idle_cpu_worker, wait_s)
            if worker is not None:
                return worker, worker.assign(step_key), None
        self._stop_lingering(finishing)
        with self._changed:
            worker = self._spawn(None, job_origin, instance_ref)
            self._cpu_workers.append(worker)
            return worker, worker.assign(step_key), None

    def _idle_cpu_worker(self) -> StepWorker | None:
        return next((w for w in self._cpu_workers if w.idle), None)

    def _acquire_device(self, step_key: str) -> str:
        """Wait for a free device; reclaim devices from workers whose step already reported."""
        try:
            return self._pool.acquire(step_key, timeout=self._release_timeout_s)
        except TimeoutError:
            holders = [self._attempts[holder] for holder in self._pool.held()]
            lingering = [attempt for attempt in holders if attempt.ended()]
            if not lingering:
                raise
        self._stop_lingering(lingering)
        return self._pool.acquire(step_key, timeout=self._release_timeout_s)

    def _await_or_stop(self, attempt: _Attempt) -> None:
        """Wait for the worker to be done with `attempt`; stop it if it outstays the timeout."""
        with self._changed:
            done = self._changed.wait_for(
                lambda: attempt.worker.finished(attempt.number), self._release_timeout_s
            )
        if not done:
            self._stop_lingering([attempt])

    def _stop_lingering(self, attempts: Sequence[_Attempt]) -> None:
        """Stop the workers of these attempts that are still busy with them."""
        with self._changed:
            attempts = [a for a in attempts if not a.worker.finished(a.number)]
        for attempt in attempts:
            DagsterEvent.engine_event(
                attempt.step_context,
                f"Stopping the {attempt.worker.description}: step {attempt.step_key!r} reported "
                f"its result, but the worker was still busy with it after a "
                f"{self._release_timeout_s} s wait.",
                EngineEventData(
                    metadata={
                        "pid": str(attempt.worker.pid),
                        "device": attempt.worker.device or CPU_DEVICE,
                    }
                ),
            )
            attempt.worker.stop(TERMINATE_GRACE_S)


def _launch_message(step_key: str, worker: StepWorker, replaced: StepWorker | None) -> str:
    if worker.device is None:
        where = f"in CPU worker process {worker.pid}"
    elif worker.device == CPU_DEVICE:
        where = (
            f"in the model worker on the CPU, process {worker.pid} (no GPU configured or visible; "
            "model steps run here one at a time, models stay loaded)"
        )
    else:
        where = f"in the GPU worker for device {worker.device} (process {worker.pid})"
    message = f"Running step {step_key!r} {where}."
    if replaced is not None:
        message += f" The worker was started for it: the previous one {_how_it_ended(replaced)}."
    return message


def _no_result_reason(attempt: _Attempt) -> str | None:
    """Under the lock: how the worker came to be done with the attempt; None while it runs it."""
    worker, step_key = attempt.worker, attempt.step_key
    if not worker.finished(attempt.number):
        return None
    if worker.reported(attempt.number):
        error = worker.error(attempt.number)
        why = f": it raised {error}" if error else "; the run's engine events say why"
        return f"The {worker.description} finished step {step_key!r} without a result{why}"
    if worker.exit_reason is not None:
        # A worker quits of its own accord only before its first step or after reporting one.
        return f"The {worker.description} {_how_it_ended(worker)}, so step {step_key!r} never ran"
    return (
        f"The {worker.description} {worker.exit_description} while running step {step_key!r}, "
        "without reporting a result"
    )


def _how_it_ended(worker: StepWorker) -> str:
    # A worker that quit may not have exited yet.
    return " and ".join(filter(None, (worker.exit_reason, worker.exit_description)))


def _single_step_key(step_handler_context: StepHandlerContext) -> str:
    step_keys = step_handler_context.execute_step_args.step_keys_to_execute or []
    if len(step_keys) != 1:
        raise ValueError(
            f"WorkerPoolStepHandler runs exactly one step at a time, got step keys {step_keys}"
        )
    return step_keys[0]


def _ended_attempts(step_context: IStepContext) -> int:
    """How many attempts of the step have ended so far, per the run's event log."""
    records = step_context.instance.get_records_for_run(
        step_context.run_id, of_type=_ATTEMPT_END_EVENTS
    ).records
    return sum(1 for r in records if r.event_log_entry.step_key == step_context.step.key)
