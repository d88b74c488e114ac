import contextlib
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import psycopg2
import pytest
import yaml
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

DAGSTER_YAML = Path(__file__).parents[1] / "dagster.yaml"


@pytest.fixture
def instance(postgres_url, tmp_path, monkeypatch):
    url = urlsplit(postgres_url)
    shutil.copy(DAGSTER_YAML, tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("ASSETQL_PG_USER", url.username)
    monkeypatch.setenv("ASSETQL_PG_PASSWORD", "unused-with-trust-auth")
    monkeypatch.setenv("ASSETQL_PG_HOST", url.hostname)
    monkeypatch.setenv("ASSETQL_PG_DB", url.path.lstrip("/"))
    monkeypatch.setenv("ASSETQL_PG_PORT", str(url.port))
    with dg.DagsterInstance.get() as instance:
        yield instance


def test_storages_are_postgres(instance):
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)


def test_runs_are_queued_with_batch_limits(instance):
    coordinator = instance.run_coordinator
    assert isinstance(coordinator, QueuedRunCoordinator)
    # The daemon dequeues by the instance-wide concurrency settings (`concurrency: runs:`).
    queue = instance.get_concurrency_config().run_queue_config
    configured = yaml.safe_load(DAGSTER_YAML.read_text())["concurrency"]["runs"]
    assert queue.max_concurrent_runs == configured["max_concurrent_runs"] == 4
    assert queue.tag_concurrency_limits == configured["tag_concurrency_limits"]
    batch_limits = [l for l in queue.tag_concurrency_limits if l["key"] == "assetql/batch"]
    assert {"key": "assetql/batch", "limit": 2} in batch_limits
    assert all(l["limit"] < queue.max_concurrent_runs for l in batch_limits)


def test_retries_monitoring_and_telemetry(instance):
    assert instance.run_retries_enabled
    assert instance.run_retries_max_retries == 2
    assert not instance.run_retries_retry_on_asset_or_op_failure
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_start_timeout_seconds > 0
    assert not instance.telemetry_enabled


def test_a_job_run_is_recorded_in_postgres(instance, postgres_url):
    @dg.op
    def answer() -> int:
        return 42

    @dg.job(tags={"assetql/batch": "smoke"})
    def tiny():
        answer()

    result = tiny.execute_in_process(instance=instance)
    assert result.success
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS
    with contextlib.closing(psycopg2.connect(postgres_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT pipeline_name, status FROM runs WHERE run_id = %s", (result.run_id,))
        assert cur.fetchone() == ("tiny", dg.DagsterRunStatus.SUCCESS.value)


def test_model_steps_share_one_gpu_pool_across_runs(instance):
    from assetql_dagster.defs.gpu import GPU_POOL
    from assetql_dagster.definitions import defs

    pools = instance.get_concurrency_config().pool_config
    assert pools.default_pool_limit == 1 and pools.pool_granularity.value == "op"
    job = defs.resolve_job_def("batch_job")
    gpu_ops = {node.name for node in job.graph.iterate_op_defs() if node.pool == GPU_POOL}
    # The model steps, and the exporters that may load a model (print's upscaler).
    assert gpu_ops == {"style_profile", "generate_shard", "scores", "curated_images", "tags", "device_distribution"}
