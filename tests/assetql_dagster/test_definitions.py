import csv
import io
import json
import zipfile

import dagster as dg
import numpy as np
from PIL import Image

from harness.batch_runs import catalog_beside, materialize_partition

from assetql_dagster.definitions import defs, with_io_manager
from assetql_dagster.pipeline.registration import register_batch
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.domain.records import StyleProfile
from assetql_dagster.pipeline.exporters.registry import installed_exporters
from assetql_dagster.pipeline.records import read_record
from resources.clip import ClipEmbedder
from resources.cms import CmsConnections
from resources.translator import AwsTranslate
from resources.generator import ImageGenerator
from resources.storage import LocalStorage
from resources.vision_tagger import VisionTagger

STAGES = [
    "batch_input", "style_profile", "prompts", "images", "scores", "curated_images", "tags", "exports", "catalog_entry"
]


def run_batch(tmp_path, folder):
    storage = LocalStorage(root=str(tmp_path / "data"))
    key = register_batch(storage, folder).key
    result = materialize_partition(storage, key)
    materializations = {
        e.asset_key.to_user_string(): e.step_materialization_data.materialization
        for e in result.get_asset_materialization_events()
    }
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    return storage, key, result, materializations, checks


def pixels(storage, key):
    """Stored pixels keyed by (variant_id, variation), which unlike file names do not embed a timestamp."""
    return {
        (j.variant_id, j.variation): np.asarray(Image.open(storage.local_path(f"raw/{key}/{j.image_id}.png")))
        for j in read_record(storage, key, "prompts").jobs
    }


def test_asset_graph_is_the_batch_pipeline():
    graph = defs.resolve_asset_graph()
    # Plus one asset per installed exporter (tests/assetql_dagster/defs/assets/test_distribution.py).
    distribution = {f"{name}_export" for name in installed_exporters()}
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == set(STAGES) | distribution
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()}
    # Lineage is the data flow: each asset's parents are the records it takes as parameters.
    assert parents["style_profile"] == {"batch_input"}
    assert parents["prompts"] == {"batch_input", "style_profile"}
    assert parents["images"] == {"batch_input", "prompts", "style_profile"}
    assert parents["scores"] == {"batch_input", "images", "style_profile"}
    assert parents["curated_images"] == {"batch_input", "prompts", "images", "scores", "style_profile"}
    assert parents["tags"] == {"batch_input", "curated_images", "prompts"}
    assert parents["exports"] == {"batch_input", "prompts", "curated_images", "tags", "style_profile"}
    assert parents["catalog_entry"] == {"batch_input", "prompts", "curated_images", "tags", "exports"}
    for key in graph.get_all_asset_keys():
        assert graph.get(key).partitions_def == batches_partitions


def test_batch_runs_end_to_end_on_tiny_models(tmp_path, batch_factory):
    folder = batch_factory(rows=4, variations=2)
    storage, key, result, materializations, checks = run_batch(tmp_path, folder)
    assert result.success
    assert set(materializations) == set(STAGES)

    images = read_record(storage, key, "images").stored
    assert len(images) == 8
    for record in images:
        with Image.open(storage.local_path(record.raw_key)) as img:
            assert img.size == (record.width, record.height) == (64, 64)
        assert storage.exists(record.thumb_key)

    scores = read_record(storage, key, "scores").images
    assert all(0.0 <= s.style_score <= 1.0 for s in scores)
    assert {s.verdict for s in scores} <= {"pass", "review"}

    tags = read_record(storage, key, "tags").images
    assert all(len(t.tags) >= 5 for t in tags)
    assert all(0.0 <= tag.confidence <= 1.0 for t in tags for tag in t.tags)

    zip_path = storage.local_path(f"exports/{key}/{key}.zip")
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        manifest = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode("utf-8"))))
        manifest_json = json.loads(zf.read("manifest.json"))
        assert all(not n.startswith("/") and ".." not in n for n in names)
    assert names == {"manifest.csv", "manifest.json", "index.html"} | {f"images/{r.file_name}" for r in images}
    assert len(manifest) == 8
    assert {(m["variant_id"], m["variation"]) for m in manifest} == {
        (v, str(i)) for v in ["sword-01", "sword-02", "shield-01", "helmet-01"] for i in (1, 2)
    }
    first = manifest[0]
    assert first["batch"] == key and first["model"] == "tiny" and first["seed"].isdigit()
    assert "painterly fantasy style" in first["prompt"]
    # The sample's prompts fit the text encoder: it read them whole.
    assert (first["model_prompt"], first["prompt_tokens_dropped"]) == (first["prompt"], "0")
    assert first["negative_prompt"] == "blurry, text, watermark"
    assert json.loads(first["extra"])["material"] == "steel"
    assert len(manifest_json["images"]) == 8

    assert "data:image" in materializations["images"].metadata["contact_sheet"].value
    assert "data:image" in materializations["scores"].metadata["contact_sheet"].value
    assert materializations["prompts"].metadata["images_planned"].value == 8
    assert set(checks) == {"style_pass_rate", "style_spread", "style_drift", "completion_rate"}
    assert checks["completion_rate"].passed


def test_batch_without_references_is_explicitly_unscored(tmp_path, batch_factory):
    folder = batch_factory(rows=2, references=False, name="norefs")
    storage, key, result, _, checks = run_batch(tmp_path, folder)
    assert result.success
    assert read_record(storage, key, "style_profile") == StyleProfile(
        has_reference=False, reason="no style reference", references=()
    )
    scores = read_record(storage, key, "scores").images
    assert all(s.style_score is None and s.note == "no style reference" for s in scores)
    assert "not applicable" in checks["style_pass_rate"].description


def test_images_are_deterministic_and_resume_skips_stored(tmp_path, batch_factory):
    folder = batch_factory(rows=2)
    storage, key, _, first, _ = run_batch(tmp_path, folder)
    assert first["images"].metadata["generated"].value == 2
    before = pixels(storage, key)
    # Same batch, same storage: the registration is a no-op and every image is already stored.
    _, key2, result, second, _ = run_batch(tmp_path, folder)
    assert key2 == key and result.success
    assert second["images"].metadata["generated"].value == 0
    assert second["images"].metadata["already_stored"].value == 2
    # A fresh storage regenerates the same pixels from the same seeds.
    other, key3, _, third, _ = run_batch(tmp_path / "again", folder)
    assert third["images"].metadata["generated"].value == 2
    after = pixels(other, key3)
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_exports_writes_only_the_parts_the_batch_asks_for(tmp_path, batch_factory):
    folder = batch_factory(rows=1, name="linksonly")
    with (folder / "batch.yaml").open("a") as fh:
        fh.write("exports: [links, manifest]\n")
    storage, key, result, materializations, _ = run_batch(tmp_path, folder)
    assert result.success
    assert storage.list_keys(f"exports/{key}") == [
        f"exports/{key}/{name}" for name in ("links.csv", "links.json", "manifest.csv", "manifest.json")
    ]
    assert materializations["exports"].metadata["exports"].value == "links, manifest"


def test_checks_report_per_partition(tmp_path, batch_factory):
    storage = LocalStorage(root=str(tmp_path / "data"))
    styled = register_batch(storage, batch_factory(rows=2, name="styled")).key
    plain = register_batch(storage, batch_factory(rows=3, references=False, name="plain")).key
    evaluations = {}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(batches_partitions.name, [styled, plain])
        for key in (styled, plain):
            result = dg.materialize(list(defs.assets), partition_key=key, instance=instance,
                                    resources=with_io_manager({"storage": storage, "generator": ImageGenerator(),
                                                               "clip": ClipEmbedder(),
                                                               "catalog": catalog_beside(storage),
                                                               "vision_tagger": VisionTagger(), "cms": CmsConnections(), "aws_translate": AwsTranslate()}))
            evaluations.update({(e.partition, e.check_name): e for e in result.get_asset_check_evaluations()})
    checked = ("style_pass_rate", "style_spread", "style_drift", "completion_rate")
    assert set(evaluations) == {(k, c) for k in (styled, plain) for c in checked}
    assert evaluations[(styled, "completion_rate")].metadata["planned"].value == 2
    assert evaluations[(plain, "completion_rate")].metadata["planned"].value == 3
    assert "not applicable" in evaluations[(plain, "style_pass_rate")].description
    assert "pass the style threshold" in evaluations[(styled, "style_pass_rate")].description
