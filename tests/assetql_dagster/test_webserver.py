"""The real Dagster webserver, on loopback, serving this code location from workspace.yaml."""

import dagster as dg
import pytest
from harness.webserver import graphql, running_webserver, wait_for_code_location

from assetql_dagster.pipeline.registration import register_batch
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.pipeline.exporters.registry import installed_exporters
from resources.storage import LocalStorage

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


@pytest.fixture
def webserver(tmp_path, batch_factory):
    home = tmp_path / "dagster_home"
    home.mkdir()
    data = tmp_path / "data"
    key = register_batch(LocalStorage(root=str(data)), batch_factory(rows=2)).key
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(batches_partitions.name, [key])
    with running_webserver(home, data, tmp_path / "webserver.log") as url:
        yield url, key


def test_webserver_serves_the_asset_graph_and_the_batch_partition(webserver):
    url, key = webserver
    wait_for_code_location(url)  # it loads in the background after the server answers
    data = graphql(url, QUERY)
    assert "errors" not in data, data
    nodes = data["data"]["assetNodes"]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert set(by_key) == {
        "batch_input", "style_profile", "prompts", "images", "scores", "curated_images", "tags", "exports",
        "catalog_entry", *(f"{name}_export" for name in installed_exporters()),
    }
    assert {"/".join(d["path"]) for d in by_key["scores"]["dependencyKeys"]} == {"batch_input", "images", "style_profile"}
    for node in by_key.values():
        assert node["partitionDefinition"]["name"] == "batches"
        assert node["partitionKeys"] == [key]
