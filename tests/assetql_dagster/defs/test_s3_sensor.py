import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import RUN_KEY_TAG
from harness.batch_runs import finished_run

from assetql_dagster.definitions import build_definitions
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.defs.sensors import (
    DROP_BUCKET_ENV,
    DROP_PREFIX_ENV,
    Drop,
    DropCursor,
    build_s3_drop_sensor,
    drop_sensors,
    find_drops,
)
from resources.s3 import S3Connection, S3Object
from resources.s3_storage import S3Storage

EXTRA_ROW = "extra-01,a lantern,item,SKU-9,brass,a mine,en\n"


@pytest.fixture
def drops(s3_endpoint, s3_bucket, s3_client):
    """Uploads batch folders under drops/ and evaluates the drop sensor like the daemon would."""
    return DropBox(s3_client, s3_bucket, s3_endpoint)


class DropBox:
    def __init__(self, client, bucket, endpoint):
        self.client, self.bucket = client, bucket
        self.sensor = build_s3_drop_sensor(bucket, "drops")
        s3 = S3Connection(endpoint_url=endpoint)
        self.resources = {"storage": S3Storage(connection=s3, bucket=bucket, prefix="assets"), "s3": s3}

    def upload(self, folder: Path, under: str) -> None:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            self.put(f"{under}/{path.relative_to(folder).as_posix()}", path.read_bytes())

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def evaluate(self, instance, cursor=None) -> dg.SensorResult:
        # A context manager, as the daemon uses it: storage's nested S3 connection is set up in it.
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources=self.resources) as context:
            result = self.sensor(context)
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        return result

    def report(self, key: str) -> dict:
        return json.loads(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())


def test_a_drop_requests_exactly_one_run_and_a_reset_cursor_none_after_it_ran(drops, batch_factory):
    drops.upload(batch_factory(rows=2), "drops/demo")
    with dg.instance_for_test() as instance:
        first = drops.evaluate(instance)
        [request] = first.run_requests
        key = request.partition_key
        assert key.startswith("demo-")
        assert instance.get_dynamic_partitions(batches_partitions.name) == [key]
        assert request.run_key.startswith(f"s3://{drops.bucket}/drops/demo/batch.csv@")
        assert request.tags == {"assetql/batch": key, "assetql/origin": f"s3://{drops.bucket}/drops/demo/batch.csv",
                                "dagster/priority": "0"}
        storage = drops.resources["storage"]
        assert storage.exists(f"batches/{key}/source.json")
        assert len(storage.list_keys(f"style-references/{key}")) == 2

        again = drops.evaluate(instance, cursor=first.cursor)
        assert again.run_requests == [] and again.dynamic_partitions_requests == []

        # Before the run exists a reset cursor repeats the same run key, which Dagster drops.
        assert [r.run_key for r in drops.evaluate(instance).run_requests] == [request.run_key]
        # A run with the run key, as the sensor daemon tags each run it launches.
        finished_run(instance, {RUN_KEY_TAG: request.run_key})
        reset = drops.evaluate(instance)
        assert reset.run_requests == [] and reset.dynamic_partitions_requests == []


def test_an_empty_prefix_requests_nothing_tick_after_tick(drops):
    with dg.instance_for_test() as instance:
        first = drops.evaluate(instance)
        second = drops.evaluate(instance, cursor=first.cursor)
    assert first.run_requests == second.run_requests == []
    assert second.cursor == first.cursor


def test_a_changed_object_starts_one_new_batch(drops, batch_factory):
    folder = batch_factory(rows=2)
    drops.upload(folder, "drops/demo")
    with dg.instance_for_test() as instance:
        first = drops.evaluate(instance)
        drops.put("drops/demo/batch.csv", (folder / "batch.csv").read_bytes() + EXTRA_ROW.encode())
        second = drops.evaluate(instance, cursor=first.cursor)
        [request] = second.run_requests
        assert request.partition_key != first.run_requests[0].partition_key
        assert request.run_key != first.run_requests[0].run_key
        assert len(instance.get_dynamic_partitions(batches_partitions.name)) == 2
        assert drops.evaluate(instance, cursor=second.cursor).run_requests == []


def test_a_changed_batch_yaml_alone_starts_a_new_batch(drops, batch_factory):
    folder = batch_factory(rows=2)
    drops.upload(folder, "drops/demo")
    with dg.instance_for_test() as instance:
        first = drops.evaluate(instance)
        drops.put("drops/demo/batch.yaml", (folder / "batch.yaml").read_text().replace("seed: 42", "seed: 43").encode())
        [request] = drops.evaluate(instance, cursor=first.cursor).run_requests
        assert request.run_key.split("@")[0] == first.run_requests[0].run_key.split("@")[0]
        assert request.run_key != first.run_requests[0].run_key
        assert request.partition_key != first.run_requests[0].partition_key


def test_an_invalid_drop_starts_nothing_and_reports_once(drops, batch_factory):
    folder = batch_factory(rows=2)
    (folder / "batch.csv").write_text("variant_id,subject\nsword-01,a sword\nsword-01,another sword\n")
    drops.upload(folder, "drops/demo")
    with dg.instance_for_test() as instance:
        result = drops.evaluate(instance)
        assert result.run_requests == [] and result.dynamic_partitions_requests == []
        assert instance.get_dynamic_partitions(batches_partitions.name) == []
        assert drops.resources["storage"].list_keys("batches") == []
        assert "batch.csv, row 3, column 'variant_id'" in result.skip_reason.skip_message

        report_key = "drops/demo/rejected/batch.json"
        report = drops.report(report_key)
        assert report["drop"] == f"s3://{drops.bucket}/drops/demo/batch.csv"
        [duplicate] = [e for e in report["errors"] if e["column"] == "variant_id"]
        assert (duplicate["file"], duplicate["row"]) == ("batch.csv", 3) and "duplicate" in duplicate["message"]
        written = drops.client.head_object(Bucket=drops.bucket, Key=report_key)["ETag"]

        # A reset cursor finds the report for this very version and neither rewrites nor runs it.
        assert drops.evaluate(instance).run_requests == []
        assert drops.report(report_key) == report
        assert drops.client.head_object(Bucket=drops.bucket, Key=report_key)["ETag"] == written

        # The fixed CSV is a new version: it runs.
        drops.put("drops/demo/batch.csv", (batch_factory(rows=2, name="fixed") / "batch.csv").read_bytes())
        assert len(drops.evaluate(instance, cursor=result.cursor).run_requests) == 1


def test_a_loose_csv_is_a_batch_named_after_it(drops):
    drops.put("drops/winter-items.csv", b"variant_id,prompt\nlamp-01,a brass lamp\n")
    drops.put("drops/notes.txt", b"not a drop")
    with dg.instance_for_test() as instance:
        [request] = drops.evaluate(instance).run_requests
    assert request.partition_key.startswith("winter-items-")


def test_an_object_key_escaping_the_folder_is_rejected(drops, batch_factory):
    drops.upload(batch_factory(rows=2, references=False), "drops/demo")
    drops.put("drops/demo/references/../../x.png", b"png")
    with dg.instance_for_test() as instance:
        result = drops.evaluate(instance)
    assert result.run_requests == []
    [error] = drops.report("drops/demo/rejected/batch.json")["errors"]
    assert error["file"] == "drops/demo/references/../../x.png" and ".." in error["message"]


def _listed(key, etag, second):
    return S3Object(key, etag, datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=second), 0)


def test_find_drops_groups_folder_files_with_their_csvs():
    objects = [
        _listed("drops/a/batch.csv", "e1", 1),
        _listed("drops/a/batch.yaml", "e2", 5),
        _listed("drops/a/references/r.png", "e3", 2),
        _listed("drops/a/references/", "e4", 9),
        _listed("drops/a/rejected/batch.json", "e5", 9),
        _listed("drops/b.csv", "e6", 3),
        _listed("drops/a/rejected/old.csv", "e7", 9),
    ]
    b, a = find_drops("bkt", objects)
    assert (a.key, a.etag, a.changed) == ("drops/a/batch.csv", "e1", objects[1].last_modified)
    assert a.siblings == (("drops/a/batch.yaml", "e2"), ("drops/a/references/r.png", "e3"))
    assert (b.key, b.siblings, b.report_key) == ("drops/b.csv", (), "drops/rejected/b.json")
    assert b.run_key == "s3://bkt/drops/b.csv@e6"
    assert a.run_key.startswith("s3://bkt/drops/a/batch.csv@e1+")


def test_cursor_tells_apart_drops_changed_in_the_same_second():
    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    first, second = (Drop("bkt", f"drops/{n}.csv", "e", moment) for n in ("b", "a"))
    cursor = DropCursor.parse(DropCursor().advanced([first]).dump())
    assert not cursor.is_new(first) and cursor.is_new(second)
    assert cursor.advanced([]) == cursor
    assert not cursor.is_new(Drop("bkt", "drops/c.csv", "e", moment - timedelta(seconds=1)))


def test_drop_sensor_only_when_a_bucket_is_configured(monkeypatch):
    monkeypatch.delenv(DROP_BUCKET_ENV, raising=False)
    assert drop_sensors() == []
    assert "s3_drop_sensor" not in [s.name for s in build_definitions().sensors]
    monkeypatch.setenv(DROP_BUCKET_ENV, "incoming")
    monkeypatch.setenv(DROP_PREFIX_ENV, "csv/drops")
    [sensor] = drop_sensors()
    assert sensor.name == "s3_drop_sensor" and "s3://incoming/csv/drops/" in sensor.description
    assert "s3_drop_sensor" in [s.name for s in build_definitions().sensors]
