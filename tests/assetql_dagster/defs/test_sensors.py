import dagster as dg
import pytest

from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.defs.sensors import INBOX_ENV, inbox_sensor
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
