"""Starting a batch from the UI alone: the register_batch job and the sensor that runs what it registered."""

import boto3
import dagster as dg
import pytest

from harness.batch_runs import materialize_partition

from assetql_dagster.definitions import build_definitions, with_io_manager
from assetql_dagster.defs import run_tags
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.defs.registration import register_batch_job, registered_batch_sensor
from assetql_dagster.pipeline.registration import registered_batch
from resources.s3 import S3Connection
from resources.storage import LocalStorage

DUPLICATE_IDS = "variant_id,subject\nsword-01,a sword\nsword-01,another sword\n"


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    return LocalStorage(root=str(tmp_path / "data"))


def register(instance, storage, source, s3=None, **overrides) -> dg.ExecuteInProcessResult:
    """Run register_batch as the Launchpad would, with the deployment's IO manager bound."""
    return register_batch_job.execute_in_process(
        run_config={"ops": {"register_batch_op": {"config": {"source": str(source), **overrides}}}},
        instance=instance,
        resources=with_io_manager({"storage": storage, "s3": s3 or S3Connection()}),
        raise_on_error=False,
    )


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    return result.failure_data_for_node("register_batch_op").error.message


def output_metadata(result: dg.ExecuteInProcessResult) -> dict:
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return {name: value.value for name, value in output.event_specific_data.metadata.items()}


def registered_key(instance, result) -> str:
    assert result.success
    return instance.get_run_by_id(result.run_id).tags[run_tags.REGISTERED]


def sensor_request(instance, result) -> dg.RunRequest:
    """What registered_batch_sensor returns for the register run's success, as the daemon sees it."""
    # The daemon reads the run from storage, which holds the tags the op added while running.
    context = dg.build_run_status_sensor_context(
        sensor_name=registered_batch_sensor.name,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
        dagster_event=result.get_run_success_event(),
    )
    return registered_batch_sensor(context)


def test_a_registered_batch_gets_its_partition_and_the_sensor_starts_its_run(storage, batch_factory):
    folder = batch_factory(rows=2)
    with dg.instance_for_test() as instance:
        result = register(instance, storage, folder)
        key = registered_key(instance, result)
        assert key.startswith("demo-")
        assert instance.get_dynamic_partitions(batches_partitions.name) == [key]
        assert instance.get_run_by_id(result.run_id).tags[run_tags.ORIGIN] == str(folder)
        batch = registered_batch(storage, key)
        assert batch.origin == str(folder) and len(batch.rows) == 2 and len(batch.references) == 2
        assert batch.creator == "launchpad" and batch.campaign == ""
        metadata = output_metadata(result)
        assert (metadata["partition_key"], metadata["rows"], metadata["origin"]) == (key, 2, str(folder))
        assert metadata["newly_registered"] is True

        request = sensor_request(instance, result)
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == key and request.run_key == result.run_id
    assert request.tags == run_tags.batch_run_tags(key, str(folder))


def test_registering_the_same_batch_again_keeps_one_partition_and_starts_another_run(storage, batch_factory):
    folder = batch_factory(rows=2)
    with dg.instance_for_test() as instance:
        first = register(instance, storage, folder)
        again = register(instance, storage, folder)
        key = registered_key(instance, again)
        assert key == registered_key(instance, first)
        assert instance.get_dynamic_partitions(batches_partitions.name) == [key]
        assert output_metadata(again)["newly_registered"] is False
        # Launching it again asks for a run again (resuming skips images already stored).
        assert sensor_request(instance, again).run_key == again.run_id != first.run_id


def test_overrides_change_the_registered_settings(storage, batch_factory):
    folder = batch_factory(rows=2, variations=1)
    with dg.instance_for_test() as instance:
        key = registered_key(instance, register(instance, storage, folder, name="spring", variations=3, seed=7))
        assert key.startswith("spring-")
        assert instance.get_dynamic_partitions(batches_partitions.name) == [key]
    settings = registered_batch(storage, key).settings
    assert (settings.name, settings.variations, settings.seed) == ("spring", 3, 7)
    assert settings.steps == 2  # batch.yaml's own, not overridden


def test_an_invalid_override_fails_naming_the_setting_and_adds_nothing(storage, batch_factory):
    folder = batch_factory(rows=2)
    with dg.instance_for_test() as instance:
        message = failure_message(register(instance, storage, folder, variations=20))
        assert instance.get_dynamic_partitions(batches_partitions.name) == []
    assert "register_batch config, column 'variations': must be an integer from 1 to 8, got 20" in message
    assert storage.list_keys("batches") == []


def test_an_invalid_batch_fails_listing_its_problems_and_adds_no_partition(storage, batch_factory):
    folder = batch_factory(rows=2)
    (folder / "batch.csv").write_text(DUPLICATE_IDS)
    with dg.instance_for_test() as instance:
        result = register(instance, storage, folder)
        message = failure_message(result)
        assert instance.get_dynamic_partitions(batches_partitions.name) == []
        assert run_tags.REGISTERED not in instance.get_run_by_id(result.run_id).tags
        problems = result.failure_data_for_node("register_batch_op").user_failure_data.metadata["problems"].value
    assert f"{folder} was not registered and no partition was added" in message
    assert "batch.csv, row 3, column 'variant_id'" in message and "duplicate" in message
    assert any(p["file"] == "batch.csv" and p["row"] == 3 and p["column"] == "variant_id" for p in problems)
    assert storage.list_keys("batches") == []


def test_a_missing_local_source_is_named_in_the_failure(storage, tmp_path):
    missing = tmp_path / "no-such-batch"
    with dg.instance_for_test() as instance:
        message = failure_message(register(instance, storage, missing))
        assert instance.get_dynamic_partitions(batches_partitions.name) == []
    assert f"{missing} does not exist; expected a batch folder containing batch.csv" in message


def test_an_s3_source_is_downloaded_with_its_folder_and_registered(
    storage, batch_factory, s3_endpoint, s3_bucket, s3_client
):
    folder = batch_factory(rows=3, name="spring")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        s3_client.put_object(Bucket=s3_bucket, Key=f"drops/spring/{path.relative_to(folder).as_posix()}",
                             Body=path.read_bytes())
    uri = f"s3://{s3_bucket}/drops/spring/batch.csv"
    with dg.instance_for_test() as instance:
        result = register(instance, storage, uri, s3=S3Connection(endpoint_url=s3_endpoint))
        key = registered_key(instance, result)
        assert instance.get_dynamic_partitions(batches_partitions.name) == [key]
        assert sensor_request(instance, result).tags == run_tags.batch_run_tags(key, uri)
    batch = registered_batch(storage, key)
    assert key.startswith("spring-") and batch.origin == uri
    assert len(batch.rows) == 3 and len(batch.references) == 2


def test_an_s3_source_without_credentials_fails_saying_how_to_configure_s3(storage, tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    # No shared files and no instance metadata: boto3's whole default chain finds nothing.
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # boto3's default session caches the credentials an earlier test found in the environment.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    with dg.instance_for_test() as instance:
        message = failure_message(register(instance, storage, "s3://drops/spring/batch.csv",
                                           s3=S3Connection(endpoint_url="http://127.0.0.1:9")))
        assert instance.get_dynamic_partitions(batches_partitions.name) == []
    assert "could not download s3://drops/spring/batch.csv (NoCredentialsError" in message
    assert "ASSETQL_S3_ENDPOINT_URL" in message and "AWS_ACCESS_KEY_ID" in message


def test_an_s3_uri_without_a_key_is_refused(storage):
    with dg.instance_for_test() as instance:
        message = failure_message(register(instance, storage, "s3://drops"))
    assert "source 's3://drops' must look like s3://bucket/key.csv" in message


def test_a_partition_never_registered_fails_in_batch_input_naming_the_register_job(storage):
    result = materialize_partition(storage, "ghost-0000abcd", selection=["batch_input"])
    assert not result.success
    message = result.failure_data_for_node("batch_input").error.cause.message
    assert "batch partition 'ghost-0000abcd' has no registered source" in message
    assert "register_batch job from the Launchpad" in message


def test_the_code_location_has_the_register_job_and_its_sensor():
    defs = build_definitions()
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("register_batch")
    # No model steps: the plain in-process executor, not the code location's GPU executor.
    assert job.executor_def is dg.in_process_executor
    assert defs.resolve_job_def("batch_job").executor_def.name == "gpu_executor"
    sensor = defs.resolve_sensor_def(registered_batch_sensor.name)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "batch_job"
