import importlib
import itertools
import json
import os
from pathlib import Path

import dagster as dg
import pytest

from gpu_executor import CPU_DEVICE, GPU_TAG
from gpu_executor.executor import tag_concurrency_limits

JOBS_DIR = Path(__file__).resolve().parent
REPO_ROOT = JOBS_DIR.parents[1]


@pytest.fixture
def jobs(monkeypatch):
    """The test jobs module, importable here and in the step processes the executor launches."""
    monkeypatch.syspath_prepend(str(JOBS_DIR))
    paths = [str(REPO_ROOT), str(JOBS_DIR), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    return importlib.import_module("gpu_executor_test_jobs")


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def execute(job_fn, instance, devices, step_configs, **executor_config):
    """Execute the job under gpu_executor with `devices`, each step configured from step_configs."""
    run_config = {
        "execution": {
            "config": {
                "devices": devices,
                "max_concurrent": 4,
                "step_poll_interval_s": 0.1,
                **executor_config,
            }
        },
        "ops": {step: {"config": config} for step, config in step_configs.items()},
    }
    return dg.execute_job(dg.reconstructable(job_fn), instance=instance, run_config=run_config)


def records(out_dir: Path, names):
    return {name: json.loads((out_dir / f"{name}.json").read_text()) for name in names}


def overlap(a, b) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def events_of(instance, run_id, event_type):
    return [
        r.event_log_entry.dagster_event
        for r in instance.get_records_for_run(run_id, of_type=event_type).records
    ]


def test_gpu_steps_run_side_by_side_on_different_devices(jobs, instance, tmp_path):
    configs = {
        "gpu_a": {"out_dir": str(tmp_path), "wait_for": ["gpu_b"]},
        "gpu_b": {"out_dir": str(tmp_path), "wait_for": ["gpu_a"]},
    }
    result = execute(jobs.two_gpu_job, instance, ["0", "1"], configs)

    assert result.success
    recorded = records(tmp_path, configs)
    a, b = recorded.values()
    assert {a["cuda_visible_devices"], b["cuda_visible_devices"]} == {"0", "1"}
    assert [a["device"], b["device"]] == [a["cuda_visible_devices"], b["cuda_visible_devices"]]
    assert overlap(a, b)
    launches = events_of(instance, result.run_id, dg.DagsterEventType.STEP_WORKER_STARTING)
    assert {e.step_key: e.engine_event_data.metadata["device"].value for e in launches} == {
        name: record["device"] for name, record in recorded.items()
    }


def test_one_device_runs_gpu_steps_one_at_a_time(jobs, instance, tmp_path):
    configs = {name: {"out_dir": str(tmp_path)} for name in ("gpu_a", "gpu_b", "gpu_c")}
    result = execute(jobs.three_gpu_job, instance, ["0"], configs)

    assert result.success
    recorded = records(tmp_path, configs)
    assert {r["cuda_visible_devices"] for r in recorded.values()} == {"0"}
    assert not any(overlap(a, b) for a, b in itertools.combinations(recorded.values(), 2))


def test_without_devices_gpu_steps_share_one_cpu_slot_beside_cpu_steps(jobs, instance, tmp_path):
    gpu_assets = ["gpu_asset_a", "gpu_asset_b"]
    configs = {
        **{name: {"out_dir": str(tmp_path)} for name in gpu_assets},
        "cpu_asset": {"out_dir": str(tmp_path), "wait_for": gpu_assets},
    }
    result = execute(jobs.mixed_asset_job, instance, [], configs)

    assert result.success
    recorded = records(tmp_path, configs)
    gpu_a, gpu_b = (recorded[name] for name in gpu_assets)
    assert {r["cuda_visible_devices"] for r in recorded.values()} == {""}
    assert {r["device"] for r in recorded.values()} == {CPU_DEVICE}
    assert not overlap(gpu_a, gpu_b)
    assert overlap(recorded["cpu_asset"], gpu_a) or overlap(recorded["cpu_asset"], gpu_b)


def test_retry_policy_reruns_a_failing_gpu_step(jobs, instance, tmp_path):
    result = execute(
        jobs.retried_job, instance, ["0"], {"retried": {"out_dir": str(tmp_path), "failures": 2}}
    )

    assert result.success
    assert (tmp_path / "retried.attempts").read_text().splitlines() == ["0"] * 3
    retries = events_of(instance, result.run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert [e.step_key for e in retries] == ["retried"] * 2


def test_exhausted_retries_fail_the_run(jobs, instance, tmp_path):
    config = {"exhausted": {"out_dir": str(tmp_path), "failures": 5}}
    result = execute(jobs.exhausted_job, instance, ["0"], config)

    assert not result.success
    max_retries = jobs.exhausted.retry_policy.max_retries
    assert len((tmp_path / "exhausted.attempts").read_text().splitlines()) == max_retries + 1
    failures = events_of(instance, result.run_id, dg.DagsterEventType.STEP_FAILURE)
    assert [e.step_key for e in failures] == ["exhausted"]


def test_process_lingering_after_its_result_is_stopped_before_its_device_is_reused(
    jobs, instance, tmp_path
):
    configs = {name: {"out_dir": str(tmp_path)} for name in ("linger", "after_linger")}
    result = execute(
        jobs.lingering_job, instance, ["0"], configs, device_release_timeout_s=0.5
    )

    assert result.success
    linger, after = records(tmp_path, configs).values()
    assert after["start"] > linger["end"]
    with pytest.raises(ProcessLookupError):
        os.kill(linger["pid"], 0)
    engine_messages = [
        e.message for e in events_of(instance, result.run_id, dg.DagsterEventType.ENGINE_EVENT)
    ]
    assert any(f"Stopping process {linger['pid']}" in m for m in engine_messages)


def test_step_process_dying_without_a_result_fails_the_step(jobs, instance):
    result = execute(jobs.crashing_job, instance, ["0"], {})

    assert not result.success
    failures = events_of(instance, result.run_id, dg.DagsterEventType.STEP_FAILURE)
    assert [e.step_key for e in failures] == ["crash"]
    assert "exited with code 3 without reporting a result" in (
        failures[0].step_failure_data.error.message
    )


def test_gpu_limit_follows_pool_size_and_keeps_other_limits():
    other = {"key": "team", "value": "vision", "limit": 1}

    limits = tag_concurrency_limits([other], gpu_slots=3)

    assert limits == [other, {"key": GPU_TAG, "value": "true", "limit": 3}]


def test_gpu_tag_may_not_be_limited_by_hand():
    with pytest.raises(ValueError, match="number of devices"):
        tag_concurrency_limits([{"key": GPU_TAG, "limit": 5}], gpu_slots=2)
