from datetime import datetime, timezone

import dagster as dg

from harness.aged_batches import aged_batch
from harness.batch_runs import catalog_beside

from assetql_dagster.definitions import build_definitions
from assetql_dagster.defs.retention import retention_job, retention_schedule
from assetql_dagster.domain.layout import export_key, raw_image_key, thumbnail_key
from resources.storage import LocalStorage


def test_the_nightly_job_deletes_working_files_past_the_retention(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSETQL_RETENTION_DAYS", "30")
    storage = LocalStorage(root=str(tmp_path / "data"))
    old = aged_batch(storage, tmp_path / "a", "old", "2020-01-01T00:00:00Z")
    new = aged_batch(storage, tmp_path / "b", "new", "2999-01-01T00:00:00Z")
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
