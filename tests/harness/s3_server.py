"""moto's S3-compatible server, run as its own process on loopback."""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import IO

from harness.postgres import HarnessUnavailable, free_port

# moto accepts any credentials; real-looking ones keep botocore from searching the machine for some.
CREDENTIALS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
START_TIMEOUT_S = 30


def _answers_http(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True  # an error status is still an answer
    except OSError:
        return False
    return True


def _wait_until_answering(url: str, proc: subprocess.Popen, log: IO[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers_http(url):
        exited = proc.poll() is not None
        if exited or time.monotonic() > deadline:
            log.seek(0)
            output = log.read().decode(errors="replace")
            state = (f"exited with status {proc.returncode}" if exited
                     else f"did not answer within {START_TIMEOUT_S}s")
            raise HarnessUnavailable(f"moto S3 server at {url} {state}; its output:\n{output}")
        time.sleep(0.1)


@contextlib.contextmanager
def running_s3_server() -> Iterator[str]:
    """Start `python -m moto.server` on a free loopback port and yield its endpoint URL."""
    missing = [m for m in ("moto", "flask", "flask_cors") if importlib.util.find_spec(m) is None]
    if missing:
        raise HarnessUnavailable(
            f"Python modules {missing} not installed in {sys.executable}: "
            "install the test extra, e.g. pip install 'moto[server]'"
        )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_answering(url, proc, log)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
