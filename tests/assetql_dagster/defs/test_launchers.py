"""Both launchers against real Dagster: a test instance whose run really executes, and the real
webserver on loopback, whose queue takes the run."""

import time

import dagster as dg
import pytest
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster._daemon.types import DaemonHeartbeat
from harness.webserver import running_webserver, wait_for_code_location

from assetql_dagster.defs import run_tags
from assetql_dagster.defs.launching import GraphQLLauncher, InstanceLauncher
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.pipeline.launching import GenerationSample, batch_progress, preview_upload, submit_batch
from assetql_dagster.pipeline.records import read_record
from assetql_dagster.pipeline.registration import register_batch
from resources.storage import LocalStorage

REEXPORT = ["curated_images", "tags", "exports"]


def finished(instance: dg.DagsterInstance, run_id: str, timeout_s: float = 300) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout_s
    while not (run := instance.get_run_by_id(run_id)).is_finished:
        assert time.monotonic() < deadline, f"run {run_id} still {run.status} after {timeout_s} s"
        time.sleep(0.5)
    return run


def test_a_batch_submitted_through_the_instance_runs_to_the_end(batch_factory, tmp_path, monkeypatch):
    data = tmp_path / "data"
    # The code server the launcher starts inherits this: the run stores where the test reads.
    monkeypatch.setenv("ASSETQL_DATA_DIR", str(data))
    storage = LocalStorage(root=str(data))
    folder = batch_factory(rows=2)
    # The test instance queues runs (QueuedRunCoordinator) and no daemon serves its queue, so the
    # launcher launches them itself.
    with dg.instance_for_test() as instance, InstanceLauncher(instance) as launcher:
        assert not launcher.queue_is_served()
        key = submit_batch(storage, folder, "ann@studio.example", {"variations": 2}, launcher)
        assert instance.has_dynamic_partition(batches_partitions.name, key)
        assert read_record(storage, key, "source").creator == "ann@studio.example"
        run = finished(instance, launcher.latest_run(key).run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags[run_tags.BATCH] == run.tags["dagster/partition"] == key
        assert run.tags[run_tags.ORIGIN] == str(folder.resolve())

        progress = batch_progress(launcher, storage, key)
        assert (progress.status, progress.done, progress.planned, progress.run_id) == ("succeeded", 4, 4, run.run_id)
        assert progress.pass_rate is not None and progress.eta_seconds is None

        # The finished run is what the next preview's estimate is measured from.
        [sample] = launcher.generation_samples()
        assert (sample.batch, sample.generated) == (key, 4) and sample.seconds > 0
        preview = preview_upload(batch_factory(rows=1, name="next"), storage, launcher)
        assert preview.estimate_basis.startswith("measured: 1 finished run(s) of model 'tiny'")

        # With a live daemon the run waits in the queue for it, as one launched from the UI.
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), QueuedRunCoordinatorDaemon.daemon_type(), None, None))
        assert instance.get_run_by_id(launcher.launch(key)).status == dg.DagsterRunStatus.QUEUED
        instance.wipe_daemon_heartbeats()

        # A re-export runs only the assets asked for.
        again = finished(instance, launcher.launch(key, REEXPORT))
        assert again.status == dg.DagsterRunStatus.SUCCESS
        assert again.asset_selection == {dg.AssetKey(name) for name in REEXPORT}
        assert again.tags[run_tags.ORIGIN] == key


def test_a_batch_submitted_through_the_webserver_waits_in_its_queue(batch_factory, tmp_path):
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    storage = LocalStorage(root=str(data))
    folder = batch_factory(rows=2)
    key = register_batch(storage, folder).key
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization("images", partition=key, metadata={"generated": 4, "generation_seconds": 2.0})
        )
    with running_webserver(home, data, tmp_path / "webserver.log") as url:
        wait_for_code_location(url)
        launcher = GraphQLLauncher(url)
        assert submit_batch(storage, folder, "ann@studio.example", None, launcher) == key
        launcher.add_partition(key)  # again: already there, which is fine
        queued = launcher.latest_run(key)
        progress = batch_progress(launcher, storage, key)
        assert (progress.status, progress.done, progress.planned, progress.run_id) == ("queued", 0, 2, queued.run_id)
        assert launcher.generation_samples() == [GenerationSample(key, 4, 2.0)]
        reexport = launcher.launch(key, REEXPORT)

    # The webserver's instance (the default QueuedRunCoordinator, no daemon here) holds both runs queued.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions(batches_partitions.name) == [key]
        run = instance.get_run_by_id(queued.run_id)
        assert run.status == dg.DagsterRunStatus.QUEUED
        assert run.tags[run_tags.BATCH] == run.tags["dagster/partition"] == key
        assert run.tags[run_tags.ORIGIN] == str(folder.resolve())
        assert instance.get_run_by_id(reexport).asset_selection == {dg.AssetKey(name) for name in REEXPORT}


@pytest.mark.parametrize("url", ["ftp://dagster.internal", "dagster.internal:3000", "http://"])
def test_a_webserver_url_must_be_http(url):
    with pytest.raises(ValueError, match="must be http"):
        GraphQLLauncher(url)
