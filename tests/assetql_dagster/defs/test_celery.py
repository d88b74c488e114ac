"""The Celery deployment for real: Redis, a `gpu` queue worker and a default-queue worker."""

import os
import threading
import time
from collections import Counter

import dagster as dg
import pytest

from harness.celery_workers import REPO, celery_batch_job, celery_workers, start_worker

from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.pipeline.records import read_record, read_record_at
from assetql_dagster.pipeline.registration import register_batch
from resources.storage import LocalStorage

# Short enough that a killed worker's step comes back within the test, longer than any step here.
VISIBILITY_TIMEOUT_S = 15
KILL_WAIT_S = 90


@pytest.fixture
def deployment(tmp_path, redis_url, monkeypatch, batch_factory):
    """(environment, storage, batch key, instance) of a two-row, two-shard batch set up for celery_executor."""
    folder = batch_factory(rows=2)
    (folder / "batch.yaml").write_text((folder / "batch.yaml").read_text() + "shard_size: 1\n")
    env = {
        "ASSETQL_EXECUTOR": "celery", "ASSETQL_CELERY_BROKER": redis_url,
        "ASSETQL_CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT_S),
        "ASSETQL_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        # Workers import the code location and, for the job's pointer, the harness.
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
        # What a GPU worker gets from its unit file; the tests have no GPU, so the tiny model runs on the CPU.
        "CUDA_VISIBLE_DEVICES": "",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "dagster_home").mkdir()
    storage = LocalStorage(root=str(tmp_path / "data"))
    key = register_batch(storage, folder).key
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        instance.add_dynamic_partitions(batches_partitions.name, [key])
        yield dict(os.environ), storage, key, instance


def run_batch(instance, key):
    """The whole batch through the workers, orchestrated from this process."""
    return dg.execute_job(dg.reconstructable(celery_batch_job), instance=instance, tags={"dagster/partition": key})


def assert_each_image_stored_once(storage, key) -> None:
    """Both planned images are in the record and on disk, each exactly once, nothing else beside them."""
    stored = read_record(storage, key, "images").stored
    raw_keys = [r.raw_key for r in stored]
    assert len(raw_keys) == 2 and len(set(raw_keys)) == 2
    folder = storage.local_path(raw_keys[0]).parent
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == sorted(storage.local_path(k).name for k in raw_keys)


def worker_of(event) -> str:
    """The Celery worker named in a step's "Executing steps ... in celery worker" engine event."""
    return event.event_specific_data.metadata["Celery worker"].value


def test_a_batch_runs_through_a_gpu_worker_and_a_default_worker(deployment, tmp_path):
    env, storage, key, instance = deployment
    with celery_workers(env, tmp_path) as workers:
        result = run_batch(instance, key)
        assert result.success
        ran_on = {e.step_key: worker_of(e) for e in result.all_events
                  if e.is_engine_event and "in celery worker" in (e.message or "")}
    gpu_worker, default_worker = workers["gpu"][0].name.split("@")[0], workers["dagster"][0].name.split("@")[0]
    # Model steps (style profile, both shards, scores) on the GPU queue's worker, the rest on the default one.
    assert {s for s, w in ran_on.items() if w.startswith(gpu_worker)} >= {
        "images.generate_shard[shard_0000]", "images.generate_shard[shard_0001]", "style_profile"}
    assert {s for s, w in ran_on.items() if w.startswith(default_worker)} >= {"batch_input", "prompts", "exports"}
    assert_each_image_stored_once(storage, key)


def test_a_killed_gpu_worker_s_shard_is_retried_by_its_retry_policy(deployment, tmp_path):
    env, storage, key, instance = deployment
    with celery_workers(env, tmp_path) as workers:
        outcome = {}
        # A daemon, so a batch that never finishes fails this test instead of hanging the session.
        runner = threading.Thread(target=lambda: outcome.update(result=run_batch(instance, key)), daemon=True)
        runner.start()
        # Kill the GPU worker as soon as it starts the first shard (still loading the model).
        deadline = time.monotonic() + KILL_WAIT_S
        while not _started(instance, "images.generate_shard"):
            assert time.monotonic() < deadline, "no shard started within the wait"
            time.sleep(0.1)
        workers["gpu"][0].kill()
        workers["gpu"].append(start_worker("gpu", env, tmp_path))
        runner.join(timeout=KILL_WAIT_S + 60)
        assert not runner.is_alive(), "the batch did not finish after the GPU worker was replaced"
    result = outcome["result"]
    assert result.success
    logs = instance.all_logs(result.run_id)

    def steps(event_type) -> Counter:
        return Counter(e.step_key for e in logs if e.dagster_event and e.dagster_event_type == event_type)

    # The killed shard is the one step that went up for retry, once, with the lost worker as its error;
    # its second attempt is the RetryPolicy's (a restart, not a second first start).
    retried = steps(dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert len(retried) == 1 and set(retried.values()) == {1}
    [lost_step] = retried
    assert lost_step.startswith("images.generate_shard[")
    [retry] = [e for e in logs if e.dagster_event and e.dagster_event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert "StepWorkerLost" in retry.dagster_event.event_specific_data.error.to_string()
    assert steps(dg.DagsterEventType.STEP_RESTARTED) == Counter({lost_step: 1})
    # Every step started once and succeeded once; nothing failed.
    starts, successes = steps(dg.DagsterEventType.STEP_START), steps(dg.DagsterEventType.STEP_SUCCESS)
    assert set(starts.values()) == {1} and set(successes.values()) == {1} and set(successes) == set(starts)
    assert not steps(dg.DagsterEventType.STEP_FAILURE)
    # The retry ran as the shard's second attempt, on the replacement worker.
    shard = int(lost_step.split("shard_")[1].rstrip("]"))
    results = [read_record_at(storage, k, "shard result") for k in storage.list_keys(f"batches/{key}/steps/{result.run_id}/")
               if "generate_shard" in k]
    assert {r.index: r.attempt for r in results} == {shard: 2, 1 - shard: 1}
    assert_each_image_stored_once(storage, key)


def _started(instance, step_prefix: str) -> bool:
    """Whether a step whose key starts with `step_prefix` has started in the instance's one run."""
    runs = instance.get_runs()
    return bool(runs) and any((e.step_key or "").startswith(step_prefix)
                              for e in instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.STEP_START))
