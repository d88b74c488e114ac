"""A batch's `priority` reaches Dagster's run priority, and the queue daemon starts higher ones first."""

from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.test_utils import create_run_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from assetql_dagster.defs import run_tags
from assetql_dagster.defs.registration import register_batch_job, registered_batch_sensor
from assetql_dagster.definitions import with_io_manager
from assetql_dagster.domain.errors import BatchValidationError
from assetql_dagster.domain.priority import run_priority
from assetql_dagster.domain.settings import parse_settings
from assetql_dagster.pipeline.launching import submit_batch
from resources.s3 import S3Connection
from resources.storage import LocalStorage


DAGSTER_YAML = Path(__file__).parents[3] / "dagster.yaml"


@pytest.mark.parametrize(("value", "expected"), [("low", -5), ("normal", 0), ("high", 5), ("urgent", 10),
                                                 (-10, -10), (7, 7), (10, 10)])
def test_priority_maps_to_a_run_priority(value, expected):
    assert run_priority(parse_settings({"priority": value}, "batch.yaml").priority) == expected


@pytest.mark.parametrize("value", ["asap", 11, -11, True, 2.5])
def test_an_invalid_priority_is_refused_naming_it(value):
    with pytest.raises(BatchValidationError, match=rf"must be one of low, normal, high, urgent or an integer from "
                                                   rf"-10 to 10 \(higher runs first\), got {value!r}"):
        parse_settings({"priority": value}, "batch.yaml")


def test_batch_run_tags_carry_dagsters_priority_tag():
    assert run_tags.PRIORITY == "dagster/priority"
    assert run_tags.batch_run_tags("b-1", "x")[run_tags.PRIORITY] == "0"
    assert run_tags.batch_run_tags("b-1", "x", 5, **{run_tags.RETRY: "failed-rows"}) == {
        run_tags.BATCH: "b-1", run_tags.ORIGIN: "x", run_tags.PRIORITY: "5", run_tags.RETRY: "failed-rows"}


class RecordingLauncher:
    """A `RunLauncher` that only records what it was asked to launch."""

    def __init__(self):
        self.launched: list[tuple[str, int]] = []

    def add_partition(self, key: str) -> None:
        pass

    def launch(self, key: str, assets=None, origin=None, priority: int = 0) -> str:
        self.launched.append((key, priority))
        return f"run-{len(self.launched)}"


def test_a_submitted_batch_is_launched_at_its_priority_and_reruns_keep_it(batch_factory, tmp_path):
    storage = LocalStorage(root=str(tmp_path / "data"))
    folder = batch_factory(rows=1)
    (folder / "batch.yaml").write_text((folder / "batch.yaml").read_text() + "priority: urgent\n")
    launcher = RecordingLauncher()
    key = submit_batch(storage, folder, "ann", None, launcher)
    assert launcher.launched == [(key, 10)]
    # Later runs of the batch (retry, more, export) read it back from the stored settings.
    assert run_tags.stored_priority(storage, key) == 10


def queue_config(batches: int) -> dict:
    """dagster.yaml's run queue, with room for `batches` batch runs at once."""
    config = yaml.safe_load(DAGSTER_YAML.read_text())
    runs = config["concurrency"]["runs"]
    runs["max_concurrent_runs"] = max(runs["max_concurrent_runs"], batches)
    runs["tag_concurrency_limits"] = [
        {**limit, "limit": batches} if limit == {"key": run_tags.BATCH, "limit": limit["limit"]} else limit
        for limit in runs["tag_concurrency_limits"]
    ]
    return {"run_coordinator": config["run_coordinator"], "concurrency": config["concurrency"]}


def dequeue_order(instance: dg.DagsterInstance) -> list[str]:
    """Batches of the queued runs the queue daemon would start now, in the order it starts them."""
    runs = QueuedRunCoordinatorDaemon(interval_seconds=1)._get_runs_to_dequeue(
        instance, instance.get_concurrency_config(), fixed_iteration_time=None)
    return [run.tags[run_tags.BATCH] for run in runs]


# Queued runs must name the code location they come from; the daemon only reads it when launching.
ORIGIN = RemoteJobOrigin(RemoteRepositoryOrigin(
    InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="assetql_dagster.definitions")), "__repository__",
), "batch_job")


def queue(instance: dg.DagsterInstance, priorities: dict[str, str]) -> None:
    """Queue one batch run per entry of `priorities`, in order, at the batch's priority."""
    for key, level in priorities.items():
        tags = run_tags.batch_run_tags(key, key, run_priority(level))
        create_run_for_test(instance, job_name="batch_job", status=dg.DagsterRunStatus.QUEUED, tags=tags,
                            remote_job_origin=ORIGIN)


PRIORITIES = {"a-low": "low", "b-normal": "normal", "c-urgent": "urgent", "d-high": "high", "e-normal": "normal"}


def test_the_queue_starts_urgent_batches_first_within_the_batch_limit():
    # dagster.yaml as shipped: two batches at once, so the two most urgent go first.
    with dg.instance_for_test(overrides=queue_config(batches=2)) as instance:
        queue(instance, PRIORITIES)
        assert dequeue_order(instance) == ["c-urgent", "d-high"]


@pytest.mark.parametrize("batches", [1, 10])
def test_the_queue_keeps_up_to_the_configured_batches_running_in_priority_order(batches):
    with dg.instance_for_test(overrides=queue_config(batches)) as instance:
        queue(instance, PRIORITIES)
        # Equal priorities keep their submission order.
        expected = ["c-urgent", "d-high", "b-normal", "e-normal", "a-low"][:batches]
        assert dequeue_order(instance) == expected


def test_the_register_job_hands_the_batch_priority_to_the_run_it_starts(batch_factory, tmp_path):
    storage = LocalStorage(root=str(tmp_path / "data"))
    folder = batch_factory(rows=1)
    (folder / "batch.yaml").write_text((folder / "batch.yaml").read_text() + "priority: -3\n")
    with dg.instance_for_test() as instance:
        result = register_batch_job.execute_in_process(
            run_config={"ops": {"register_batch_op": {"config": {"source": str(folder)}}}},
            instance=instance, resources=with_io_manager({"storage": storage, "s3": S3Connection()}),
        )
        run = instance.get_run_by_id(result.run_id)
        assert run.tags[run_tags.PRIORITY] == "-3"
        request = registered_batch_sensor(dg.build_run_status_sensor_context(
            sensor_name=registered_batch_sensor.name, dagster_instance=instance, dagster_run=run,
            dagster_event=result.get_run_success_event(),
        ))
    assert request.tags[run_tags.PRIORITY] == "-3"
    assert request.tags[run_tags.BATCH] == run.tags[run_tags.REGISTERED]
