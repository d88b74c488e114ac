"""Long-lived step workers: the orchestrator's handle on one, and the loop the worker runs.

A worker is a spawned Python process that serves the steps of one run, one at a time and
in-process, the way `dagster api execute_step` runs a single one. Whatever a step leaves at module
level (a loaded model, an imported torch) is still there for the next step the worker runs.

A worker outlives its orchestrator by moments only: if the orchestrator dies (even by SIGKILL),
the worker marks the run failed, as nothing else would end it, and kills its own process group.
"""

import functools
import importlib
import multiprocessing
import multiprocessing.util
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.synchronize import Lock

from dagster._cli.api import _execute_step_command_body
from dagster._cli.utils import get_instance_for_cli
from dagster._core.events import JobFailureData, RunFailureReason
from dagster._core.instance import DagsterInstance, InstanceRef
from dagster._core.origin import JobPythonOrigin
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._grpc.types import ExecuteStepArgs
from dagster._serdes import deserialize_value, serialize_value
from dagster._utils.interrupts import capture_interrupts

from gpu_executor.device_pool import CPU_DEVICE

# The orchestrating process runs threads (event log watchers, the run's own), and forking a
# threaded process can copy a held lock into the child; a spawned worker starts a fresh interpreter.
_SPAWN = multiprocessing.get_context("spawn")
# How often the orchestrator's watcher checks the exit status of a worker that has gone quiet.
_EXIT_POLL_S = 0.2
# How long a worker whose orchestrator died may take to mark the run failed before it kills its
# process group anyway: a locked or unreachable instance must not keep a model's memory held.
_FAIL_ORPHANED_RUN_S = 2.0
# The statuses of a run that its dead orchestrator can no longer end.
_UNFINISHED = (DagsterRunStatus.STARTING, DagsterRunStatus.STARTED)


@dataclass(frozen=True)
class RunStep:
    """Orchestrator to worker: run the step these serialized `ExecuteStepArgs` name."""

    number: int
    args_json: str


@dataclass(frozen=True)
class Stop:
    """Orchestrator to worker: exit once the step in hand, if any, is finished."""


@dataclass(frozen=True)
class StepFinished:
    """Worker to orchestrator: every event of step `number` is stored; `error` if it raised."""

    number: int
    error: str | None


@dataclass(frozen=True)
class Ready:
    """Worker to orchestrator: the code location and the preload modules are imported."""


@dataclass(frozen=True)
class Exiting:
    """Worker to orchestrator: why it exits of its own accord, e.g. "could not start (…)"."""

    reason: str


class StepWorker:
    """The orchestrator's handle on one worker process.

    `lock` guards the handle's state and is notified whenever that changes (the worker is ready, a
    step finishes, the worker exits); `on_step_done(worker, step_key)` runs under it when the
    worker is done with a step, whether it finished it or died.
    """

    def __init__(
        self,
        device: str | None,
        env: dict[str, str],
        job_origin: JobPythonOrigin,
        instance_ref: InstanceRef,
        preload_modules: Sequence[str],
        lock: threading.Condition,
        on_step_done: Callable[["StepWorker", str], None],
    ) -> None:
        self.device = device
        self._lock = lock
        self._on_step_done = on_step_done
        self._conn, child_conn = _SPAWN.Pipe()
        self._process = _SPAWN.Process(
            target=serve,
            args=(
                child_conn,
                env,
                serialize_value(job_origin),
                serialize_value(instance_ref),
                list(preload_modules),
                _orphaned_run_lock(),
            ),
            name=f"assetql-step-worker-{device or 'cpu-steps'}",
        )
        self._process.start()
        # Only the worker may hold its end, so that the worker's death reads as EOF here.
        child_conn.close()
        self.pid: int = self._process.pid
        self._steps_given = 0
        self._steps_finished = 0
        self._errors: dict[int, str] = {}
        self.running_step: str | None = None
        self.ready = False
        # How the worker ended, in words, e.g. "was killed by SIGKILL"; None while it runs.
        self.exit_description: str | None = None
        # Why the worker exited of its own accord, in its words, if it said.
        self.exit_reason: str | None = None
        watcher = threading.Thread(target=self._watch, name=f"watch-{self.pid}", daemon=True)
        watcher.start()

    @property
    def alive(self) -> bool:
        return self.exit_description is None

    @property
    def usable(self) -> bool:
        """Alive, and not about to quit of its own accord."""
        return self.alive and self.exit_reason is None

    @property
    def idle(self) -> bool:
        return self.usable and self.running_step is None

    @property
    def description(self) -> str:
        if self.device is None:
            return f"CPU worker process {self.pid}"
        if self.device == CPU_DEVICE:
            return f"model worker on the CPU (process {self.pid})"
        return f"GPU worker for device {self.device} (process {self.pid})"

    def assign(self, step_key: str) -> int:
        """Under the lock, reserve the idle worker for `step_key`; the step's number here."""
        if not self.idle:
            state = f"runs {self.running_step!r}" if self.usable else "has quit"
            raise ValueError(f"The {self.description} cannot take step {step_key!r}: it {state}")
        self.running_step = step_key
        self._steps_given += 1
        return self._steps_given - 1

    def send_step(self, number: int, args: ExecuteStepArgs) -> None:
        """Hand the assigned step to the worker; outside the lock, as a full pipe blocks."""
        try:
            self._conn.send(RunStep(number, serialize_value(args)))
        except OSError:
            # The worker died meanwhile; the watcher records the exit, which ends the step.
            pass

    def reported(self, number: int) -> bool:
        """Under the lock: whether the worker has reported step `number` finished."""
        return number < self._steps_finished

    def finished(self, number: int) -> bool:
        """Under the lock: whether the worker reported step `number` back or exited."""
        return self.reported(number) or not self.alive

    def error(self, number: int) -> str | None:
        """Under the lock: what step `number` raised outside of Dagster's own error handling."""
        return self._errors.get(number)

    def stop(self, grace_s: float) -> None:
        """Ask the worker to exit, interrupting its step; kill its process group after grace_s."""
        try:
            self._conn.send(Stop())
        except OSError:
            pass  # Already gone.
        with self._lock:
            if not self.alive:
                # Reaped: its pid may already belong to another process.
                return
            busy, ready = self.running_step is not None, self.ready
        if busy:
            # Dagster turns SIGTERM into an interrupt of the running step, which reports its
            # failure; the worker then reads Stop and exits.
            _signal_worker(self.pid, signal.SIGTERM)
        elif not ready:
            # Still importing (torch, say): it would read Stop only once done, and has nothing
            # to clean up.
            _signal_worker(self.pid, signal.SIGKILL)
        if not self.wait_exit(grace_s):
            _signal_worker(self.pid, signal.SIGKILL)
            self.wait_exit(None)

    def wait_exit(self, timeout: float | None) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: not self.alive, timeout)

    def _watch(self) -> None:
        """Read the worker's reports until it exits, then record the exit."""
        readable = True
        while True:
            # The sentinel wakes this up as the worker exits. Exiting is confirmed by the exit
            # status only: a process a step forked may still hold the worker's pipe ends open.
            sources = [self._conn, self._process.sentinel] if readable else [self._process.sentinel]
            if self._conn in wait(sources, timeout=_EXIT_POLL_S):
                try:
                    self._handle(self._conn.recv())
                    continue
                except (EOFError, OSError):
                    # The worker closed its end: it is exiting.
                    readable = False
            exitcode = self._process.exitcode
            if exitcode is not None:
                break
        self._conn.close()
        self._process.close()
        with self._lock:
            self.exit_description = _describe_exit(exitcode)
            if self.running_step is not None:
                self._on_step_done(self, self.running_step)
            self._lock.notify_all()

    def _handle(self, message: Ready | Exiting | StepFinished) -> None:
        with self._lock:
            if isinstance(message, Ready):
                self.ready = True
            elif isinstance(message, Exiting):
                self.exit_reason = message.reason
            else:
                if message.error is not None:
                    self._errors[message.number] = message.error
                self._steps_finished = message.number + 1
                step_key, self.running_step = self.running_step, None
                self._on_step_done(self, step_key)
            self._lock.notify_all()


def _describe_exit(exitcode: int) -> str:
    # multiprocessing reports death by signal as the negated signal number.
    if exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with code {exitcode}"


def _signal_worker(pid: int, signum: int) -> None:
    """Signal the worker's process group, or just the worker before it has made that group."""
    for send in (os.killpg, os.kill):
        try:
            send(pid, signum)
            return
        except ProcessLookupError:
            continue


@functools.cache
def _orphaned_run_lock() -> Lock:
    """One lock for all the workers an orchestrator starts. When it dies they all notice at once;
    under the lock they check and fail the run one at a time, so the run is failed once."""
    return _SPAWN.Lock()


@dataclass
class _Serving:
    """What a worker's parent watch needs to fail the runs whose steps the worker was given."""

    orphaned_run_lock: Lock
    # Set once the worker has opened the instance.
    instance: DagsterInstance | None = None
    run_ids: set[str] = field(default_factory=set)


def serve(
    conn: Connection,
    env: dict[str, str],
    job_origin_json: str,
    instance_ref_json: str,
    preload_modules: list[str],
    orphaned_run_lock: Lock,
) -> None:
    """The worker process: load the code location, then run steps as they come until stopped."""
    # Before the code location (and torch with it) is imported: CUDA reads CUDA_VISIBLE_DEVICES
    # once, when it initialises.
    os.environ.update(env)
    # A process group of its own, so that stopping the worker also stops whatever its steps start.
    os.setsid()
    serving = _Serving(orphaned_run_lock)
    parent_watch = _exit_with_parent(serving)
    instance_ref = deserialize_value(instance_ref_json, InstanceRef)
    with ExitStack() as stack:
        try:
            deserialize_value(job_origin_json, JobPythonOrigin).get_repo_pointer().load_target()
            for module in preload_modules:
                importlib.import_module(module)
            # The run's instance, which every step's args name: opened as `dagster api
            # execute_step` opens it (with the .env file beside it), but once for all the steps.
            instance = stack.enter_context(get_instance_for_cli(instance_ref=instance_ref))
            serving.instance = instance
        except Exception as error:
            conn.send(Exiting(f"could not start ({_describe_error(error)})"))
            raise
        conn.send(Ready())
        # As in `dagster api execute_step`: SIGINT and SIGTERM interrupt a step only where Dagster
        # can handle it.
        stack.enter_context(capture_interrupts())
        try:
            while True:
                message = conn.recv()
                if isinstance(message, Stop):
                    break
                args = deserialize_value(message.args_json, ExecuteStepArgs)
                serving.run_ids.add(args.run_id)
                error = None
                try:
                    _run_step(args, instance)
                except Exception as raised:
                    # A framework error, which Dagster has logged in full as an engine event; the
                    # health check reports it in a line, and the worker serves the next step.
                    error = _describe_error(raised)
                cuda_error = _cuda_error()
                if cuda_error is not None:
                    # A sticky CUDA error (an illegal memory access, say) fails every later CUDA
                    # call in this process, so the device's next step needs a fresh worker. Said
                    # before the step is reported finished, which frees the device.
                    conn.send(Exiting(f"quit as CUDA no longer worked in it ({cuda_error})"))
                conn.send(StepFinished(message.number, error))
                if cuda_error is not None:
                    break
        except (EOFError, BrokenPipeError):
            # The orchestrator is gone. Exiting now could cut short the parent watch, which fails
            # the run and then kills this process group: wait for it instead.
            parent_watch.join()
    sys.stdout.flush()
    sys.stderr.flush()
    # Finalizers still run: they unlink the semaphores libraries made here (tqdm's lock, say), which
    # the orchestrator's resource tracker would otherwise report as leaked when it exits.
    multiprocessing.util._run_finalizers()
    # Not a normal interpreter exit: that would wait for any non-daemon thread a step left behind.
    os._exit(0)


def _run_step(args: ExecuteStepArgs, instance: DagsterInstance) -> None:
    dagster_run = instance.get_run_by_id(args.run_id)
    if dagster_run is None:
        raise ValueError(
            f"Run {args.run_id!r} of steps {args.step_keys_to_execute} is not in the instance"
        )
    # Exactly what `dagster api execute_step` runs. Each event is stored as it is logged; the
    # orchestrator reads them from the event log.
    for _event in _execute_step_command_body(args, instance, dagster_run):
        pass


def _exit_with_parent(serving: _Serving) -> threading.Thread:
    """Kill the worker's process group as soon as the orchestrator has exited, however it died;
    first mark the run failed if the orchestrator left it going. Returns the watching thread."""
    parent = multiprocessing.parent_process()

    def watch() -> None:
        # The spawn pipe's other end closes when the orchestrator exits, crash or not.
        parent.join()
        # An orchestrator that ends its run stops its workers first; one that died cannot end it.
        reporter = threading.Thread(
            target=_fail_orphaned_runs,
            args=(serving, parent.pid),
            name="fail-orphaned-runs",
            daemon=True,
        )
        reporter.start()
        reporter.join(_FAIL_ORPHANED_RUN_S)
        os.killpg(0, signal.SIGKILL)

    watcher = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    watcher.start()
    return watcher


def _fail_orphaned_runs(serving: _Serving, parent_pid: int) -> None:
    """Mark the runs the worker was given steps of failed, if still going; never raises."""
    instance = serving.instance
    if instance is None or not serving.run_ids:
        return
    message = (
        f"The process that launched this run (pid {parent_pid}) died; step worker process "
        f"{os.getpid()} marked the run failed and stopped."
    )
    try:
        if not serving.orphaned_run_lock.acquire(timeout=_FAIL_ORPHANED_RUN_S):
            return  # Another worker has held it all this time: it fails the run, or cannot.
        try:
            for run_id in list(serving.run_ids):
                run = instance.get_run_by_id(run_id)
                if run is not None and run.status in _UNFINISHED:
                    # Not a step failure: auto-retries for crashed runs still apply to it.
                    failure = JobFailureData(
                        error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION
                    )
                    instance.report_run_failed(run, message, failure)
        finally:
            serving.orphaned_run_lock.release()
    except Exception as error:
        print(
            f"step worker {os.getpid()}: could not mark the runs {sorted(serving.run_ids)} failed "
            f"after their orchestrator (pid {parent_pid}) died: {_describe_error(error)}",
            file=sys.stderr,
        )


def _cuda_error() -> str | None:
    """The error CUDA reports in this process, if a step has left it unusable."""
    # Only a process that imported torch and initialised CUDA can have broken it.
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    try:
        torch.cuda.synchronize()
    except Exception as error:
        return _describe_error(error)
    return None


def _describe_error(error: Exception) -> str:
    return traceback.format_exception_only(error)[-1].strip()
