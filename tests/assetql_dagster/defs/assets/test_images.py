import json
import logging
import shutil
import zipfile
from collections import Counter

import dagster as dg
from PIL import Image

from harness.batch_runs import catalog_beside, materialize_partition

from assetql_dagster.pipeline.registration import register_batch
from assetql_dagster.pipeline.records import read_record
from resources.generator import ImageGenerator
from resources.storage import LocalStorage
from resources.vision_tagger import VisionTagger

ATTEMPTS: Counter = Counter()


class FlakyPipeline:
    """Wraps the real tiny pipeline; images of the listed variants raise on every call."""

    def __init__(self, pipe, fail_variants, error):
        self.pipe, self.fail_variants, self.error = pipe, set(fail_variants), error
        self.device, self.native_size = pipe.device, pipe.native_size

    def free_memory(self):
        self.pipe.free_memory()

    def generate(self, prompts, negative_prompts, seeds, *args):
        failing = [p for p in prompts if any(v in p for v in self.fail_variants)]
        if failing:
            ATTEMPTS.update(failing)
            raise TimeoutError("generation timed out") if self.error == "transient" else ValueError("prompt rejected")
        return self.pipe.generate(prompts, negative_prompts, seeds, *args)


class FlakyGenerator(ImageGenerator):
    fail_variants: list[str] = []
    error: str = "transient"

    def load(self, model: str, ip_adapter=None, loras=()):
        return FlakyPipeline(super().load(model, ip_adapter, loras), self.fail_variants, self.error)


def materialize(storage, key, generator, selection=None):
    result = materialize_partition(storage, key, generator, selection)
    return result, [e.event_type_value for e in result.all_events], result.asset_materializations_for_node("images")


def test_images_fan_out_into_shards(tmp_path, batch_factory):
    folder = batch_factory(rows=5)
    (folder / "batch.yaml").write_text((folder / "batch.yaml").read_text() + "shard_size: 2\n")
    storage = LocalStorage(root=str(tmp_path / "data"))
    key = register_batch(storage, folder).key
    result, _, _ = materialize(storage, key, ImageGenerator())
    assert result.success
    shard_steps = sorted(s for s in (e.step_key for e in result.all_events if e.step_key) if "generate_shard" in s)
    assert set(shard_steps) == {f"images.generate_shard[shard_{i:04d}]" for i in range(3)}
    assert len(read_record(storage, key, "images").stored) == 5


def test_rows_failing_after_all_retries_are_reported_and_the_rest_exported(tmp_path, batch_factory):
    ATTEMPTS.clear()
    folder = batch_factory(rows=3)
    storage = LocalStorage(root=str(tmp_path / "data"))
    key = register_batch(storage, folder).key
    result, events, _ = materialize(storage, key, FlakyGenerator(fail_variants=["a curved scimitar"]))
    assert result.success
    # RetryPolicy(max_retries=3): four attempts of the shard, the last of which records the failure.
    assert events.count("STEP_UP_FOR_RETRY") == 3
    assert sum(ATTEMPTS.values()) >= 4
    failed = read_record(storage, key, "images").failed
    assert [(f.variant_id, f.variation, f.attempts, f.kind) for f in failed] == [("sword-02", 1, 4, "transient")]
    assert "TimeoutError" in failed[0].reason
    [completion] = [c for c in result.get_asset_check_evaluations() if c.check_name == "completion_rate"]
    assert not completion.passed and completion.metadata["stored"].value == 2

    with zipfile.ZipFile(storage.local_path(f"exports/{key}/{key}.zip")) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert sorted(r["variant_id"] for r in manifest["images"]) == ["shield-01", "sword-01"]
    assert [f["variant_id"] for f in manifest["batch"]["failed_rows"]] == ["sword-02"]

    # The one-command re-run generates only the failed row and re-exports the whole batch.
    images_before = {r.raw_key: storage.local_path(r.raw_key).stat().st_mtime_ns for r in read_record(storage, key, "images").stored}
    result, _, meta = materialize(storage, key, ImageGenerator(), selection=[dg.AssetKey(k) for k in ("images", "scores", "curated_images", "tags", "exports")])
    assert result.success
    assert meta[0].metadata["generated"].value == 1 and meta[0].metadata["already_stored"].value == 2
    assert read_record(storage, key, "images").failed == ()
    assert all(storage.local_path(k).stat().st_mtime_ns == t for k, t in images_before.items())
    with zipfile.ZipFile(storage.local_path(f"exports/{key}/{key}.zip")) as zf:
        assert len(json.loads(zf.read("manifest.json"))["images"]) == 3


def test_permanent_failures_are_not_retried(tmp_path, batch_factory):
    folder = batch_factory(rows=2)
    storage = LocalStorage(root=str(tmp_path / "data"))
    key = register_batch(storage, folder).key
    result, events, _ = materialize(storage, key, FlakyGenerator(fail_variants=["a longsword"], error="permanent"))
    assert result.success
    assert "STEP_UP_FOR_RETRY" not in events
    assert [(f.variant_id, f.attempts, f.kind) for f in read_record(storage, key, "images").failed] == [("sword-01", 1, "permanent")]


def test_a_model_gone_since_registration_fails_the_shard_at_once(tmp_path, batch_factory):
    folder = batch_factory(rows=2)
    model = tmp_path / "gone"
    model.mkdir()
    (model / "model_index.json").write_text("{}")
    (folder / "batch.yaml").write_text((folder / "batch.yaml").read_text().replace("model: tiny", f"model: {model}"))
    storage = LocalStorage(root=str(tmp_path / "data"))
    key = register_batch(storage, folder).key
    shutil.rmtree(model)  # registration checked it; removing it afterwards leaves only the run to notice
    result, events, _ = materialize(storage, key, ImageGenerator())
    assert not result.success
    assert "STEP_UP_FOR_RETRY" not in events


def test_a_multi_shard_run_on_the_gpu_executor_loads_each_model_once_per_device(tmp_path, batch_factory, monkeypatch):
    from assetql_dagster.cli import batch_job_definition
    from assetql_dagster.defs.partitions import batches_partitions

    folder = batch_factory(rows=6)
    (folder / "batch.yaml").write_text((folder / "batch.yaml").read_text() + "shard_size: 2\n")
    # Step workers import the code location themselves; its storage comes from the environment.
    monkeypatch.setenv("ASSETQL_DATA_DIR", str(tmp_path / "data"))
    storage = LocalStorage(root=str(tmp_path / "data"))
    key = register_batch(storage, folder).key
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(batches_partitions.name, [key])
        result = dg.execute_job(dg.reconstructable(batch_job_definition), instance=instance,
                                tags={"dagster/partition": key})
        assert result.success
        loads = {
            e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata["model_loads"].value
            for e in result.get_asset_materialization_events()
            if "model_loads" in e.step_materialization_data.materialization.metadata
        }
        shards = {e.step_key for e in result.all_events if e.step_key and "generate_shard" in e.step_key}
        progress = instance.get_run_by_id(result.run_id).tags["assetql/progress"]
    assert len(shards) == 3
    # One device (the CPU here): the diffusers pipeline once for three shards, CLIP once for two assets.
    assert loads == {"images": 1, "style_profile": 1, "scores": 0}
    assert progress.startswith("6/6 images") and progress.endswith("done")


def test_a_failed_quality_gate_flags_the_run(tmp_path, batch_factory):
    from assetql_dagster.definitions import defs, with_io_manager
    from assetql_dagster.defs.partitions import batches_partitions
    from resources.clip import ClipEmbedder
    from resources.cms import CmsConnections
    from resources.translator import AwsTranslate

    folder = batch_factory(rows=2)
    storage = LocalStorage(root=str(tmp_path / "data"))
    key = register_batch(storage, folder).key
    generator = FlakyGenerator(fail_variants=["a longsword"], error="permanent")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(batches_partitions.name, [key])
        result = dg.materialize(list(defs.assets), partition_key=key, instance=instance,
                                resources=with_io_manager({"storage": storage, "generator": generator,
                                                           "clip": ClipEmbedder(), "catalog": catalog_beside(storage),
                                                           "vision_tagger": VisionTagger(), "cms": CmsConnections(), "aws_translate": AwsTranslate()}))
        flagged = instance.get_run_by_id(result.run_id).tags["assetql/quality"]
        exports = result.asset_materializations_for_node("exports")[0].metadata
    assert "completion_rate failed: 1 of 2 planned images stored" in flagged
    # Results are one click away: the export's files as links (file URIs on local storage).
    assert exports["zip"].value == storage.uri(f"exports/{key}/{key}.zip")
    assert exports["gallery"].value == storage.uri(f"exports/{key}/gallery.html")


def test_a_stored_image_that_does_not_decode_is_generated_again_and_reported(tmp_path, batch_factory):
    from assetql_dagster.definitions import defs, with_io_manager
    from assetql_dagster.defs.partitions import batches_partitions
    from resources.clip import ClipEmbedder
    from resources.cms import CmsConnections
    from resources.translator import AwsTranslate

    folder = batch_factory(rows=2)
    storage = LocalStorage(root=str(tmp_path / "data"))
    key = register_batch(storage, folder).key
    resources = with_io_manager({"storage": storage, "generator": ImageGenerator(), "clip": ClipEmbedder(),
                                 "catalog": catalog_beside(storage), "vision_tagger": VisionTagger(), "cms": CmsConnections(), "aws_translate": AwsTranslate()})
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(batches_partitions.name, [key])

        def run(*assets):
            selection = [dg.AssetKey(a) for a in assets]
            result = dg.materialize(list(defs.assets), partition_key=key, instance=instance, resources=resources,
                                    selection=selection)
            [shard_output] = [e for e in result.all_events
                              if e.is_successful_output and "generate_shard" in (e.step_key or "")]
            return result, shard_output.step_output_data.metadata["corrupt_files"].value

        run("batch_input", "style_profile", "prompts", "images")
        [cut, intact] = [r.raw_key for r in read_record(storage, key, "images").stored]
        storage.local_path(cut).write_bytes(storage.read_bytes(cut)[:-20])
        intact_mtime = storage.local_path(intact).stat().st_mtime_ns

        result, corrupt_files = run("images")
        warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    meta = result.asset_materializations_for_node("images")[0].metadata
    assert corrupt_files == 1
    assert meta["generated"].value == 1 and meta["already_stored"].value == 1
    assert any(f"did not decode, so their images were generated again: {cut}" in w for w in warnings), warnings
    assert storage.local_path(intact).stat().st_mtime_ns == intact_mtime
    with Image.open(storage.local_path(cut)) as img:
        img.verify()
