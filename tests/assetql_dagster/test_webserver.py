"""The real Dagster webserver, on loopback, serving this code location from workspace.yaml."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from assetql_dagster.pipeline.registration import register_batch
from assetql_dagster.defs.partitions import batches_partitions
from resources.storage import LocalStorage

ROOT = Path(__file__).resolve().parents[2]
QUERY = """
{
  assetNodes {
    assetKey { path }
    dependencyKeys { path }
    partitionKeys
    partitionDefinition { name type }
  }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def webserver(tmp_path, batch_factory):
    home = tmp_path / "dagster_home"
    home.mkdir()
    data = tmp_path / "data"
    key = register_batch(LocalStorage(root=str(data)), batch_factory(rows=2)).key
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(batches_partitions.name, [key])
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "ASSETQL_DATA_DIR": str(data)}
    log = (tmp_path / "webserver.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", str(ROOT / "workspace.yaml"),
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("webserver did not start:\n" + (tmp_path / "webserver.log").read_text())
                time.sleep(1)
        yield url, key
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_webserver_serves_the_asset_graph_and_the_batch_partition(webserver):
    url, key = webserver
    deadline = time.monotonic() + 120
    while True:  # the code location loads in the background after the server answers
        data = graphql(f"{url}/graphql", QUERY)
        nodes = data.get("data", {}) and data["data"]["assetNodes"]
        if nodes or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert "errors" not in data, data
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert set(by_key) == {
        "batch_input", "style_profile", "prompts", "images", "scores", "curated_images", "tags", "exports",
        "catalog_entry",
    }
    assert {"/".join(d["path"]) for d in by_key["scores"]["dependencyKeys"]} == {"batch_input", "images", "style_profile"}
    for node in by_key.values():
        assert node["partitionDefinition"]["name"] == "batches"
        assert node["partitionKeys"] == [key]
