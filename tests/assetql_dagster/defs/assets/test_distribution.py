import json
import zipfile

import dagster as dg
import pytest

from harness.batch_runs import materialize_partition
from harness.cms_servers import StrapiStandIn

from assetql_dagster.definitions import defs
from assetql_dagster.pipeline.exporters.registry import installed_exporters
from assetql_dagster.pipeline.records import read_record
from assetql_dagster.pipeline.registration import register_batch
from resources.cms import CmsConnections
from resources.storage import LocalStorage


def registered(tmp_path, batch_factory, name, settings: str):
    folder = batch_factory(rows=2, name=name)
    with (folder / "batch.yaml").open("a") as fh:
        fh.write(settings)
    storage = LocalStorage(root=str(tmp_path / "data"))
    return storage, register_batch(storage, folder).key


def outcomes(result):
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    checks = {(c.asset_key.to_user_string(), c.check_name): c for c in result.get_asset_check_evaluations()}
    return materialized, checks


def test_every_installed_exporter_is_an_asset_with_a_check_downstream_of_tags():
    graph = defs.resolve_asset_graph()
    for name in installed_exporters():
        key = dg.AssetKey(f"{name}_export")
        node = graph.get(key)
        assert {p.to_user_string() for p in node.parent_keys} == {"batch_input", "prompts", "curated_images", "tags"}
        assert dg.AssetCheckKey(key, "package_valid") in node.check_keys


def test_exporters_that_may_load_a_model_are_written_by_a_model_step():
    from assetql_dagster.defs.assets.distribution import distribution_run_config
    from assetql_dagster.defs.gpu import GPU_POOL
    from gpu_executor import GPU_TAG

    ops = {a.node_def.name: a for a in defs.assets if isinstance(a, dg.AssetsDefinition)}
    device, cpu = ops["device_distribution"], ops["distribution"]
    # The print upscaler can be a diffusers pipeline: its step takes a device like generation does.
    assert {k.to_user_string() for k in device.keys} == {"print_export"}
    assert device.op.pool == GPU_POOL and device.op.tags[GPU_TAG] == "true"
    assert {k.to_user_string() for k in cpu.keys} == {f"{n}_export" for n in installed_exporters()} - {"print_export"}
    assert cpu.op.pool is None and GPU_TAG not in cpu.op.tags
    config = {"presets": ["print", "social"], "approved_only": True, "categories": []}
    assert distribution_run_config(installed_exporters(), config) == {
        "device_distribution": {"config": {**config, "presets": ["print"]}},
        "distribution": {"config": {**config, "presets": ["social"]}}}


def test_the_batch_run_writes_the_exporters_its_exports_list(tmp_path, batch_factory):
    storage, key = registered(tmp_path, batch_factory, "dl", "exports: [manifest, downloads]\n"
                                                           "export_options: {downloads: {compressed: true}}\n")
    result = materialize_partition(storage, key)
    assert result.success
    materialized, checks = outcomes(result)
    assert "downloads_export" in materialized
    # Exporters the batch does not list are not materialized, and their checks not evaluated.
    assert {m for m in materialized if m.endswith("_export")} == {"downloads_export"}
    assert checks[("downloads_export", "package_valid")].passed
    package = read_record(storage, key, "downloads_export")
    assert package.images == 2 and package.main == f"exports/{key}/downloads/index.json"
    for zip_key in (k for k in package.files if k.endswith(".zip")):
        with zipfile.ZipFile(storage.local_path(zip_key)) as archive:
            assert all(name.endswith(".jpg") for name in archive.namelist())


def test_one_exporter_is_re_exported_alone_with_filters(tmp_path, batch_factory):
    storage, key = registered(tmp_path, batch_factory, "again", "exports: [manifest]\n")
    assert materialize_partition(storage, key).success
    config = {"ops": {"distribution": {"config": {"presets": ["downloads"], "categories": ["weapons"]}}}}
    result = materialize_partition(storage, key, selection=["downloads_export"], run_config=config)
    materialized, checks = outcomes(result)
    assert materialized == {"downloads_export"}
    package = read_record(storage, key, "downloads_export")
    assert package.categories == ("weapons",)
    assert checks[("downloads_export", "package_valid")].passed


def test_a_preset_of_the_other_distribution_step_is_refused_naming_what_the_step_writes(tmp_path, batch_factory):
    storage, key = registered(tmp_path, batch_factory, "wrong", "exports: [manifest]\n")
    assert materialize_partition(storage, key).success
    config = {"ops": {"distribution": {"config": {"presets": ["print"]}}}}
    result = materialize_partition(storage, key, selection=["downloads_export"], run_config=config)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "distribution writes no exporter print; it writes contentful, downloads" in message


def test_an_uploading_cms_exporter_gets_the_deployments_client_and_the_others_do_not(tmp_path, batch_factory):
    storage, key = registered(tmp_path, batch_factory, "cms", "exports: [manifest]\n"
                                                            "export_options: {strapi: {upload: true}}\n")
    assert materialize_partition(storage, key).success

    def export(cms, name):
        config = {"ops": {"distribution": {"config": {"presets": [name]}}}}
        return materialize_partition(storage, key, cms=cms, selection=[f"{name}_export"], run_config=config)

    # A half-configured WordPress fails whoever asks for the clients: exporters that do not upload never ask.
    half = CmsConnections(wordpress_url="https://wp.example")
    with pytest.raises(ValueError, match="wordpress"):
        half.clients()
    assert export(half, "downloads").success
    assert not export(half, "strapi").success
    with StrapiStandIn() as server:
        cms = CmsConnections(strapi_url=server.url, strapi_token=server.token, backoff_s=0.0)
        result = export(cms, "strapi")
    assert result.success
    payloads = [json.loads(storage.read_text(k)) for k in storage.list_keys(f"exports/{key}/strapi/payloads")]
    assert sorted(f["name"] for f in server.files) == sorted(p["fileInfo"]["name"] for p in payloads)
    assert len(server.files) == 2
    _, checks = outcomes(result)
    assert checks[("strapi_export", "package_valid")].passed
    assert storage.exists(f"exports/{key}/strapi/uploaded.json")
