"""The real Dagster webserver on loopback, serving this code location from workspace.yaml."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120

LOCATION_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    """The answer of the webserver at `url` (its root) to `query`."""
    request = urllib.request.Request(
        f"{url}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def running_webserver(home: Path, data: Path, log: Path) -> Iterator[str]:
    """`dagster-webserver` for the instance in `home` with storage in `data`; yields its URL once it
    answers (the code location may still be loading: see `wait_for_code_location`)."""
    env = {**os.environ, "DAGSTER_HOME": str(home), "ASSETQL_DATA_DIR": str(data)}
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster_webserver", "-w", str(ROOT / "workspace.yaml"),
             "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("webserver did not start:\n" + log.read_text())
                    time.sleep(1)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def wait_for_code_location(url: str, name: str = "assetql") -> None:
    """Returns once the webserver at `url` has loaded code location `name`."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        entries = graphql(url, LOCATION_QUERY)["data"]["workspaceOrError"]["locationEntries"]
        status = {e["name"]: e["loadStatus"] for e in entries}.get(name)
        if status == "LOADED":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"code location {name!r} did not load in {START_TIMEOUT_S} s: {status}")
        time.sleep(1)
