import json

import dagster as dg
import pytest

from assetql_dagster.defs import sensors
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.defs.sensors import INBOX_ENV, inbox_entries, inbox_sensor
from resources.storage import LocalStorage


def evaluate(instance, storage, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"storage": storage})
    result = inbox_sensor(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


@pytest.fixture
def inbox(tmp_path, batch_factory, monkeypatch):
    """A two-row batch folder in the watched inbox, and an empty storage."""
    folder = batch_factory(rows=2)
    monkeypatch.setenv(INBOX_ENV, str(folder.parent))
    return folder, LocalStorage(root=str(tmp_path / "data"))


def test_new_batch_adds_its_partition_and_requests_exactly_one_run(inbox):
    folder, storage = inbox
    with dg.instance_for_test() as instance:
        first = evaluate(instance, storage)
        assert len(first.run_requests) == 1
        request = first.run_requests[0]
        key = request.partition_key
        assert key.startswith("demo-") and instance.get_dynamic_partitions(batches_partitions.name) == [key]
        assert request.run_key.startswith(str(folder))
        assert storage.exists(f"batches/{key}/source.json")

        again = evaluate(instance, storage, cursor=first.cursor)
        assert again.run_requests == [] and again.dynamic_partitions_requests == []

        # A reset cursor re-reads the folder but yields the same run_key, which Dagster deduplicates,
        # and re-adding the existing partition is skipped.
        reset = evaluate(instance, storage, cursor=None)
        assert [r.run_key for r in reset.run_requests] == [request.run_key]
        assert reset.dynamic_partitions_requests == []
        assert instance.get_dynamic_partitions(batches_partitions.name) == [key]


def test_changed_batch_starts_a_new_partition(inbox):
    folder, storage = inbox
    with dg.instance_for_test() as instance:
        first = evaluate(instance, storage)
        with (folder / "batch.csv").open("a") as fh:
            fh.write("extra-01,a lantern,item,SKU-9,brass,a mine,en\n")
        second = evaluate(instance, storage, cursor=first.cursor)
        assert len(second.run_requests) == 1
        assert second.run_requests[0].partition_key != first.run_requests[0].partition_key
        assert second.run_requests[0].run_key != first.run_requests[0].run_key
        assert len(instance.get_dynamic_partitions(batches_partitions.name)) == 2


def test_invalid_batch_starts_nothing_and_says_why(inbox):
    folder, storage = inbox
    (folder / "batch.csv").write_text("variant_id,subject\nsword-01,a sword\nsword-01,another sword\n")
    with dg.instance_for_test() as instance:
        result = evaluate(instance, storage)
        assert result.run_requests == [] and result.dynamic_partitions_requests == []
        assert instance.get_dynamic_partitions(batches_partitions.name) == []
        assert storage.list_keys("batches") == []
    reason = result.skip_reason.skip_message
    assert "batch.csv, row 3, column 'variant_id'" in reason and "duplicate" in reason


def test_a_poisoned_entry_does_not_block_the_valid_batch_beside_it(inbox, batch_factory, monkeypatch):
    folder, storage = inbox
    poisoned = batch_factory(rows=2, name="poisoned")
    real_register = sensors.register_batch

    def register(storage, entry, *args, **kwargs):
        if entry.name == "poisoned":
            raise OSError("weird name " + "x" * 5000)
        return real_register(storage, entry, *args, **kwargs)

    monkeypatch.setattr(sensors, "register_batch", register)
    with dg.instance_for_test() as instance:
        result = evaluate(instance, storage)
        assert [r.partition_key.startswith("demo-") for r in result.run_requests] == [True]
        assert result.run_requests[0].run_key.startswith(str(folder))
        report = json.loads((folder.parent / "rejected" / "poisoned.json").read_text())
        assert report["entry"] == str(poisoned) and "OSError" in report["errors"][0]["message"]
        assert len(report["errors"][0]["message"]) <= sensors.MAX_LOGGED_CHARS

        # The failure was not a validation problem, so the entry is retried next tick, and
        # rejected (not fatal) again while nothing else runs; the report is not rewritten.
        written = (folder.parent / "rejected" / "poisoned.json").stat().st_mtime_ns
        again = evaluate(instance, storage, cursor=result.cursor)
        assert again.run_requests == []
        assert "poisoned" in again.skip_reason.skip_message and "OSError" in again.skip_reason.skip_message
        assert (folder.parent / "rejected" / "poisoned.json").stat().st_mtime_ns == written

        monkeypatch.setattr(sensors, "register_batch", real_register)
        fixed = evaluate(instance, storage, cursor=again.cursor)
        assert [r.partition_key for r in fixed.run_requests] != [] and not (folder.parent / "rejected" / "poisoned.json").exists()


def test_an_unexpected_error_of_every_entry_only_skips_the_tick(inbox, monkeypatch):
    folder, storage = inbox

    def broken(*args, **kwargs):
        raise ValueError("storage key 'a/../b' must not contain '.', '..' or control characters")

    monkeypatch.setattr(sensors, "register_batch", broken)
    with dg.instance_for_test() as instance:
        result = evaluate(instance, storage)
    assert result.run_requests == []
    assert "demo" in result.skip_reason.skip_message and "ValueError" in result.skip_reason.skip_message


def test_a_rejected_entry_gets_one_report_per_version_beside_it(inbox):
    folder, storage = inbox
    (folder / "batch.csv").write_text("variant_id,subject\nsword-01,a sword\nsword-01,another sword\n")
    report_path = folder.parent / "rejected" / "demo.json"
    with dg.instance_for_test() as instance:
        first = evaluate(instance, storage)
        report = json.loads(report_path.read_text())
        assert report["entry"] == str(folder) and report["rejected_at"]
        duplicate = [e for e in report["errors"] if e["row"] == 3 and e["column"] == "variant_id"]
        assert duplicate and duplicate[0]["file"] == "batch.csv" and "duplicate" in duplicate[0]["message"]
        assert set(report["errors"][0]) == {"file", "row", "column", "message"}
        assert str(report_path) in first.skip_reason.skip_message

        # The rejected/ folder is never an inbox entry, even holding a CSV.
        (report_path.parent / "batch.csv").write_text("variant_id\n")
        assert inbox_entries(folder.parent) == [folder]

        # Unchanged: not re-read, no new report. A reset cursor re-reads it but keeps the report.
        report_path.write_text(report_path.read_text().replace(report["rejected_at"], "earlier"))
        assert evaluate(instance, storage, cursor=first.cursor).skip_reason is None
        evaluate(instance, storage, cursor=None)
        assert json.loads(report_path.read_text())["rejected_at"] == "earlier"

        # A new version of the entry that is still invalid gets a new report.
        (folder / "batch.csv").write_text("variant_id,subject\nsword-01,a sword\nsword-01,a third sword\n")
        evaluate(instance, storage, cursor=first.cursor)
        assert json.loads(report_path.read_text())["rejected_at"] != "earlier"


def test_a_rejected_loose_csv_is_reported_under_its_file_name(tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "items.csv").write_text("variant_id,subject\nsword-01,a sword\nsword-01,another sword\n")
    monkeypatch.setenv(INBOX_ENV, str(inbox))
    with dg.instance_for_test() as instance:
        result = evaluate(instance, LocalStorage(root=str(tmp_path / "data")))
    assert result.run_requests == []
    assert (inbox / "rejected" / "items.csv.json").is_file()
