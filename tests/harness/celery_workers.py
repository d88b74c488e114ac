"""Real Celery workers of the AssetQL app (defs/celery_app.py), started as the README's Celery
section says, and the batch job they run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from harness.postgres import HarnessUnavailable

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60


def celery_batch_job():
    """The batch job built from the environment at call time (ASSETQL_EXECUTOR=celery), for reconstructable()."""
    from assetql_dagster.definitions import build_definitions

    return build_definitions().resolve_job_def("batch_job")


class Worker:
    """One `celery worker` process group; `kill()` takes it down the way a lost machine does."""

    def __init__(self, queue: str, env: dict[str, str], log: Path):
        self.log = log
        self.name = f"{queue}-{uuid.uuid4().hex[:6]}@%h"
        # One step at a time in the worker's own process (solo pool): a GPU worker keeps its
        # loaded model across steps, and a kill takes the running step with it.
        cmd = [sys.executable, "-m", "celery", "-A", "assetql_dagster.defs.celery_app", "worker",
               "-Q", queue, "--pool", "solo", "--concurrency", "1", "-n", self.name, "--loglevel", "INFO",
               "--without-gossip", "--without-mingle", "--without-heartbeat"]
        with log.open("ab") as out:
            self.process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def wait_ready(self) -> None:
        """Return once the worker consumes its queue; fail with its log when it does not."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while " ready." not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise HarnessUnavailable(f"celery worker {self.name} did not start (exit {self.process.poll()}):\n"
                                         f"{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the worker and everything it started: no warm shutdown, no acknowledgement."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def celery_workers(env: dict[str, str], log_dir: Path) -> Iterator[dict[str, list[Worker]]]:
    """A `gpu` queue worker and a default-queue worker, ready; more can be added to the lists."""
    started: dict[str, list[Worker]] = {"gpu": [], "dagster": []}
    try:
        for queue in started:
            started[queue].append(start_worker(queue, env, log_dir))
        yield started
    finally:
        for workers in started.values():
            for worker in workers:
                worker.stop()


def start_worker(queue: str, env: dict[str, str], log_dir: Path) -> Worker:
    """A ready worker on `queue`, logging to `log_dir/{queue}-{n}.log` (n: how many started before)."""
    worker = Worker(queue, env, log_dir / f"{queue}-{len(list(log_dir.glob(f'{queue}-*.log')))}.log")
    worker.wait_ready()
    return worker
