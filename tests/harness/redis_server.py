"""A Redis for Celery tests: the one on 127.0.0.1:6379 when it answers, else Debian's redis-server
started on a free loopback port."""

from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator

import redis

from harness.postgres import HarnessUnavailable, free_port

DEFAULT_URL = "redis://127.0.0.1:6379"
APT_HINT = "install Debian package 'redis-server'"
START_TIMEOUT_S = 20
# Redis's default database count; database 0 is left to whoever else uses a shared server.
DATABASES = range(1, 16)


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _empty_database(url: str) -> str:
    """`url` with an empty database of its server, so tests share no queue with anyone on it."""
    empty = [n for n in DATABASES if redis.Redis.from_url(f"{url}/{n}").dbsize() == 0]
    if not empty:
        raise HarnessUnavailable(f"every database {DATABASES.start}-{DATABASES.stop - 1} of the Redis at {url} holds keys")
    return f"{url}/{random.choice(empty)}"


@contextlib.contextmanager
def running_redis() -> Iterator[str]:
    """URL (with a database) of a Redis that answers: the local default one, else a throwaway server."""
    if _answers(DEFAULT_URL):
        yield _empty_database(DEFAULT_URL)
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise HarnessUnavailable(f"no Redis answers at {DEFAULT_URL} and redis-server is not on PATH: {APT_HINT}")
    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="assetql-redis-") as workdir:
        # No snapshots or append-only file: the server's data dies with the test session.
        server = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
             "--dir", workdir],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _answers(url):
                if server.poll() is not None:
                    raise HarnessUnavailable(f"redis-server exited with {server.returncode}: {server.stdout.read()}")
                if time.monotonic() > deadline:
                    raise HarnessUnavailable(f"redis-server did not answer on {url} within {START_TIMEOUT_S}s")
                time.sleep(0.1)
            yield f"{url}/0"
        finally:
            server.terminate()
            server.wait(timeout=10)
