import json
import os

import dagster as dg
import pytest

from assetql_dagster.defs import sensors
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.defs.sensors import (
    INBOX_ENV,
    SETTLE_ENV,
    change_times,
    inbox_entries,
    inbox_sensor,
    settle_seconds_left,
)
from assetql_dagster.pipeline.registration import registered_batch
from resources.storage import LocalStorage

CSV = "variant_id,prompt\nshoe-01,a red running shoe\nshoe-02,a leather boot\n"


@pytest.fixture(autouse=True)
def no_settle_window(monkeypatch):
    """Register entries at once; the settle tests set their own window."""
    monkeypatch.setenv(SETTLE_ENV, "0")


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
        assert request.run_key == f"inbox:{key}"
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
        assert result.run_requests[0].run_key == f"inbox:{result.run_requests[0].partition_key}"
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


def test_an_entry_settles_after_the_window_or_once_its_marker_follows_its_last_change():
    assert settle_seconds_left(changed=100.0, ready=None, now=105.0, window=20.0) == 15.0
    assert settle_seconds_left(changed=100.0, ready=None, now=120.0, window=20.0) == 0.0
    assert settle_seconds_left(changed=100.0, ready=101.0, now=100.5, window=20.0) == 0.0
    # A marker older than the last change was left by an earlier drop: the new copy still waits.
    assert settle_seconds_left(changed=100.0, ready=90.0, now=105.0, window=20.0) == 15.0
    # A change stamped ahead of this clock waits the whole window, not longer.
    assert settle_seconds_left(changed=200.0, ready=None, now=105.0, window=20.0) == 20.0
    assert settle_seconds_left(changed=200.0, ready=None, now=105.0, window=0.0) == 0.0


def test_a_copy_that_keeps_old_mtimes_still_counts_as_changed_now(tmp_path):
    folder = tmp_path / "shoes"
    (folder / "references").mkdir(parents=True)
    (folder / "batch.csv").write_text(CSV)
    (folder / "references" / "style.png").write_bytes(b"png")
    for path in [folder / "batch.csv", folder / "references" / "style.png", folder / "references"]:
        os.utime(path, (0, 0))  # what `cp -p` and `rsync -a` do
    changed, ready = change_times(folder)
    newest_ctime = max(p.lstat().st_ctime for p in [folder / "batch.csv", folder / "references" / "style.png"])
    assert changed >= newest_ctime > 1e9 and ready is None

    (folder / ".ready").touch()
    changed_after, ready = change_times(folder)
    assert changed_after == changed and ready >= changed


def test_a_half_copied_folder_waits_then_starts_one_run_with_its_final_content(tmp_path, monkeypatch):
    inbox, storage = tmp_path / "inbox", LocalStorage(root=str(tmp_path / "data"))
    folder = inbox / "shoes"
    folder.mkdir(parents=True)
    monkeypatch.setenv(INBOX_ENV, str(inbox))
    monkeypatch.setenv(SETTLE_ENV, "20")
    (folder / "batch.csv").write_text(CSV)
    with dg.instance_for_test() as instance:
        first = evaluate(instance, storage)
        assert first.run_requests == [] and first.dynamic_partitions_requests == []
        reason = first.skip_reason.skip_message
        assert reason.startswith("shoes: waiting for the drop to settle") and " s left" in reason
        assert 0 < int(reason.split("settle, ")[1].split(" s left")[0]) <= 20
        assert json.loads(first.cursor) == {} and storage.list_keys("batches") == []

        (folder / "batch.yaml").write_text("seed: 7\n")  # the rest of the copy, seconds later
        second = evaluate(instance, storage, cursor=first.cursor)
        assert second.run_requests == [] and "shoes: waiting" in second.skip_reason.skip_message

        monkeypatch.setenv(SETTLE_ENV, "0")  # as if the window had passed
        settled = evaluate(instance, storage, cursor=second.cursor)
        assert len(settled.run_requests) == 1
        key = settled.run_requests[0].partition_key
        assert registered_batch(storage, key).settings.seed == 7
        assert instance.get_dynamic_partitions(batches_partitions.name) == [key]
        assert list(json.loads(settled.cursor)) == [str(folder)]
        assert evaluate(instance, storage, cursor=settled.cursor).run_requests == []


def test_a_ready_marker_registers_at_once_even_with_a_long_window(tmp_path, monkeypatch):
    inbox, storage = tmp_path / "inbox", LocalStorage(root=str(tmp_path / "data"))
    (inbox / "boots").mkdir(parents=True)
    (inbox / "boots" / "batch.csv").write_text(CSV)
    (inbox / "hats.csv").write_text(CSV.replace("shoe", "hat"))
    (inbox / "waiting.csv").write_text(CSV.replace("shoe", "sock"))
    monkeypatch.setenv(INBOX_ENV, str(inbox))
    monkeypatch.setenv(SETTLE_ENV, "30")
    (inbox / "boots" / ".ready").touch()
    (inbox / "hats.csv.ready").touch()
    assert inbox_entries(inbox) == [inbox / "boots", inbox / "hats.csv", inbox / "waiting.csv"]
    with dg.instance_for_test() as instance:
        result = evaluate(instance, storage)
    assert sorted(r.partition_key.rsplit("-", 1)[0] for r in result.run_requests) == ["boots", "hats"]
    assert set(json.loads(result.cursor)) == {str(inbox / "boots"), str(inbox / "hats.csv")}


def test_a_folder_and_a_loose_csv_with_the_same_bytes_start_one_run(tmp_path, monkeypatch, capfd):
    inbox, storage = tmp_path / "inbox", LocalStorage(root=str(tmp_path / "data"))
    (inbox / "shoes").mkdir(parents=True)
    (inbox / "shoes" / "batch.csv").write_text(CSV)
    (inbox / "shoes.csv").write_text(CSV)
    monkeypatch.setenv(INBOX_ENV, str(inbox))
    with dg.instance_for_test() as instance:
        first = evaluate(instance, storage)
        assert len(first.run_requests) == 1
        key = first.run_requests[0].partition_key
        assert key.startswith("shoes-") and first.run_requests[0].run_key == f"inbox:{key}"
        assert set(json.loads(first.cursor)) == {str(inbox / "shoes"), str(inbox / "shoes.csv")}
        assert f"batch shoes.csv duplicates shoes: same partition {key}" in capfd.readouterr().err

        # Dropped again later under the same name: the same run key, which Dagster runs only once.
        (inbox / "shoes.csv").unlink()
        (inbox / "shoes" / "batch.csv").unlink()
        (inbox / "shoes" / "batch.csv").write_text(CSV)
        again = evaluate(instance, storage, cursor=first.cursor)
        assert [r.run_key for r in again.run_requests] == [f"inbox:{key}"]


@pytest.mark.parametrize("value", ["soon", "-1", "31", "nan", "inf", "9" * 500])
def test_an_invalid_settle_window_is_a_clear_error(inbox, monkeypatch, value):
    monkeypatch.setenv(SETTLE_ENV, value)
    with dg.instance_for_test() as instance, pytest.raises(ValueError) as raised:
        evaluate(instance, inbox[1])
    message = str(raised.value)
    assert message.startswith(f"${SETTLE_ENV} must be a number of seconds from 0 to 30, got '")
    assert value[:20] in message and len(message) < 200


def test_the_settle_window_defaults_to_20_seconds(monkeypatch):
    monkeypatch.delenv(SETTLE_ENV)
    assert sensors.settle_window() == 20.0
    monkeypatch.setenv(SETTLE_ENV, " 7.5 ")
    assert sensors.settle_window() == 7.5


def test_an_inbox_batch_queued_while_the_budget_is_spent_is_held(inbox, monkeypatch):
    from assetql_dagster.defs import run_tags

    folder, storage = inbox
    monkeypatch.setenv("ASSETQL_DAILY_BUDGET_USD", "0.000001")
    with dg.instance_for_test() as instance:
        # Today's spend, as an `images` materialization records it.
        instance.report_runless_asset_event(dg.AssetMaterialization("images", metadata={"cost_usd": 1.0}))
        [request] = evaluate(instance, storage).run_requests
    assert request.tags[run_tags.BUDGET] == run_tags.HELD and request.tags[run_tags.BATCH] == request.partition_key
