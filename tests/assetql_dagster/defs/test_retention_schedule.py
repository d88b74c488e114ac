import dataclasses
from datetime import datetime, timezone

import dagster as dg

from harness.batch_runs import catalog_beside
from harness.sample_batches import make_batch

from assetql_dagster.definitions import build_definitions
from assetql_dagster.defs.retention import retention_job, retention_schedule
from assetql_dagster.domain.layout import export_key, raw_image_key, record_key, thumbnail_key
from assetql_dagster.pipeline.records import write_record
from assetql_dagster.pipeline.registration import register_batch, registered_batch
from resources.storage import LocalStorage


def batch_registered_at(storage, root, name: str, registered_at: str) -> str:
    """A batch `name` with a raw image, a thumbnail and a package, restamped as registered at `registered_at`."""
    key = register_batch(storage, make_batch(root, rows=1, name=name, references=False), creator="test").key
    write_record(storage, record_key(key, "source"),
                 dataclasses.replace(registered_batch(storage, key), registered_at=registered_at))
    for stored in (raw_image_key(key, "a"), thumbnail_key(key, "a"), export_key(key, "p.zip")):
        storage.write_bytes(stored, b"12345")
    return key


def test_the_nightly_job_deletes_working_files_past_the_retention(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSETQL_RETENTION_DAYS", "30")
    storage = LocalStorage(root=str(tmp_path / "data"))
    old = batch_registered_at(storage, tmp_path / "a", "old", "2020-01-01T00:00:00Z")
    new = batch_registered_at(storage, tmp_path / "b", "new", "2999-01-01T00:00:00Z")
    catalog = catalog_beside(storage)

    result = retention_job.execute_in_process(resources={"storage": storage, "catalog": catalog})

    assert result.success
    assert not storage.exists(raw_image_key(old, "a")) and not storage.exists(thumbnail_key(old, "a"))
    assert storage.exists(export_key(old, "p.zip")) and storage.exists(raw_image_key(new, "a"))


def test_the_schedule_ticks_nightly_and_starts_by_itself_only_where_the_retention_is_set():
    assert retention_schedule({}).default_status == dg.DefaultScheduleStatus.STOPPED
    schedule = retention_schedule({"ASSETQL_RETENTION_DAYS": "30"})
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 3 * * *", "UTC")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance,
                                            scheduled_execution_time=datetime(2026, 11, 26, 3, tzinfo=timezone.utc))
        [request] = schedule.evaluate_tick(context).run_requests
    assert request.job_name in (None, "retention_job")
    defs = build_definitions()
    assert defs.resolve_schedule_def("retention_schedule").job_name == "retention_job"
    assert {"storage", "catalog"} <= set(defs.resolve_job_def("retention_job").resource_defs)
