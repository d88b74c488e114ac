import importlib
import itertools
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from gpu_executor import CPU_DEVICE, GPU_TAG, step_handler
from gpu_executor.executor import tag_concurrency_limits

JOBS_DIR = Path(__file__).resolve().parent
REPO_ROOT = JOBS_DIR.parents[1]


@pytest.fixture
def jobs(monkeypatch):
    """The test jobs module, importable here, in the workers and in a separate orchestrator."""
    monkeypatch.syspath_prepend(str(JOBS_DIR))
    paths = [str(REPO_ROOT), str(JOBS_DIR), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    return importlib.import_module("gpu_executor_test_jobs")


@pytest.fixture(scope="module")
def instance():
    """One instance for all the runs here: each test reads only its own run's events."""
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


def worker_pids(instance, run_id) -> set[int]:
    launches = events_of(instance, run_id, dg.DagsterEventType.STEP_WORKER_STARTING)
    return {int(e.engine_event_data.metadata["pid"].value) for e in launches}


def is_running(pid: int) -> bool:
    """Whether `pid` is a live process; a zombie nobody has reaped yet counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # The state follows the parenthesised command name, which may itself contain spaces.
    return stat.rpartition(")")[2].split()[0] != "Z"


def assert_no_worker_survives(instance, run_id):
    pids = worker_pids(instance, run_id)
    assert pids
    assert [pid for pid in pids if is_running(pid)] == []
    # Workers the run started but never gave a step to count too.
    assert multiprocessing.active_children() == []


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
    launch = events_of(instance, result.run_id, dg.DagsterEventType.STEP_WORKER_STARTING)[0]
    if launch.step_key in gpu_assets:
        assert "in the model worker on the CPU" in launch.message


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


def test_worker_busy_after_its_step_reported_is_stopped_before_its_device_is_reused(
    jobs, instance, tmp_path, monkeypatch
):
    # The teardown ignores SIGTERM, so the worker is killed once this grace period is over.
    monkeypatch.setattr(step_handler, "TERMINATE_GRACE_S", 0.5)
    configs = {name: {"out_dir": str(tmp_path)} for name in ("linger", "after_linger")}
    result = execute(
        jobs.lingering_job, instance, ["0"], configs, device_release_timeout_s=0.5
    )

    assert result.success
    linger, after = records(tmp_path, configs).values()
    assert after["start"] > linger["end"]
    assert after["pid"] != linger["pid"]
    assert not is_running(linger["pid"])
    engine_messages = [
        e.message for e in events_of(instance, result.run_id, dg.DagsterEventType.ENGINE_EVENT)
    ]
    stopping = f"Stopping the GPU worker for device 0 (process {linger['pid']})"
    assert any(m.startswith(stopping) for m in engine_messages)


def test_worker_dying_without_a_result_fails_the_step(jobs, instance):
    result = execute(jobs.crashing_job, instance, ["0"], {})

    assert not result.success
    failures = events_of(instance, result.run_id, dg.DagsterEventType.STEP_FAILURE)
    assert [e.step_key for e in failures] == ["crash"]
    (pid,) = worker_pids(instance, result.run_id)
    assert (
        f"The GPU worker for device 0 (process {pid}) exited with code 3 while running step "
        "'crash', without reporting a result"
    ) in failures[0].step_failure_data.error.message
    assert_no_worker_survives(instance, result.run_id)


def test_gpu_steps_share_a_warm_worker_and_cpu_steps_reuse_theirs(jobs, instance, tmp_path):
    names = ["model_a", "model_b", "cpu_a", "cpu_b"]
    result = execute(jobs.warm_job, instance, ["0"], {n: {"out_dir": str(tmp_path)} for n in names})

    assert result.success
    model_a, model_b, cpu_a, cpu_b = records(tmp_path, names).values()
    assert model_a["pid"] == model_b["pid"]
    assert model_a["model_id"] == model_b["model_id"]
    assert (tmp_path / "model_loads").read_text().splitlines() == [str(model_a["pid"])]
    assert cpu_a["pid"] == cpu_b["pid"] != model_a["pid"]
    assert [cpu_a["cuda_visible_devices"], cpu_a["device"]] == ["", CPU_DEVICE]
    launches = {
        e.step_key: e.message
        for e in events_of(instance, result.run_id, dg.DagsterEventType.STEP_WORKER_STARTING)
    }
    assert launches["model_b"] == (
        f"Running step 'model_b' in the GPU worker for device 0 (process {model_a['pid']})."
    )
    assert launches["cpu_b"] == f"Running step 'cpu_b' in CPU worker process {cpu_a['pid']}."
    assert_no_worker_survives(instance, result.run_id)


def test_a_killed_worker_fails_its_step_and_a_fresh_one_runs_the_next(jobs, instance, tmp_path):
    configs = {name: {"out_dir": str(tmp_path)} for name in ("killed_once", "after_kill")}
    result = execute(jobs.killed_job, instance, ["0"], configs)

    assert result.success
    killed_pid, retry_pid = map(int, (tmp_path / "killed_once.attempts").read_text().split())
    assert retry_pid != killed_pid
    assert records(tmp_path, ["after_kill"])["after_kill"]["pid"] == retry_pid
    (retry,) = events_of(instance, result.run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert (
        f"The GPU worker for device 0 (process {killed_pid}) was killed by SIGKILL while running "
        "step 'killed_once', without reporting a result"
    ) in retry.step_retry_data.error.message
    relaunch = events_of(instance, result.run_id, dg.DagsterEventType.STEP_WORKER_STARTING)[1]
    assert relaunch.message == (
        f"Running step 'killed_once' in the GPU worker for device 0 (process {retry_pid}). "
        "The worker was started for it: the previous one was killed by SIGKILL."
    )
    assert_no_worker_survives(instance, result.run_id)


def test_a_worker_whose_cuda_broke_quits_and_the_next_step_gets_a_fresh_one(
    jobs, instance, tmp_path
):
    configs = {name: {"out_dir": str(tmp_path)} for name in ("break_cuda", "after_break")}
    result = execute(jobs.broken_cuda_job, instance, ["0"], configs)

    assert result.success
    broke, after = records(tmp_path, configs).values()
    assert after["pid"] != broke["pid"]
    launch = events_of(instance, result.run_id, dg.DagsterEventType.STEP_WORKER_STARTING)[1]
    assert launch.message.startswith(
        f"Running step 'after_break' in the GPU worker for device 0 (process {after['pid']}). "
        "The worker was started for it: the previous one quit as CUDA no longer worked in it "
        "(RuntimeError: CUDA error: an illegal memory access was encountered)"
    )
    assert_no_worker_survives(instance, result.run_id)


def test_device_workers_import_the_preload_modules_first(jobs, instance, tmp_path, monkeypatch):
    probe_out = tmp_path / "preloaded.json"
    monkeypatch.setenv("GPU_EXECUTOR_PRELOAD_PROBE_OUT", str(probe_out))
    configs = {name: {"out_dir": str(tmp_path)} for name in ("preload_probe", "cpu_a")}
    result = execute(
        jobs.preload_job, instance, ["0"], configs, preload_modules=[jobs.PRELOAD_PROBE]
    )

    assert result.success
    gpu_step, cpu_step = records(tmp_path, configs).values()
    preloaded = json.loads(probe_out.read_text())
    assert preloaded == {"pid": gpu_step["pid"], "cuda_visible_devices": "0", "device": "0"}
    assert gpu_step["preloaded"]
    assert not cpu_step["preloaded"]


def test_a_preload_module_that_fails_to_import_fails_the_gpu_step(jobs, instance):
    result = execute(jobs.crashing_job, instance, [], {}, preload_modules=["no_such_module"])

    assert not result.success
    (failure,) = events_of(instance, result.run_id, dg.DagsterEventType.STEP_FAILURE)
    (pid,) = worker_pids(instance, result.run_id)
    assert (
        f"The model worker on the CPU (process {pid}) could not start (ModuleNotFoundError: "
        "No module named 'no_such_module') and exited with code 1, so step 'crash' never ran"
    ) in failure.step_failure_data.error.message


def test_preload_modules_must_be_module_names(jobs, instance):
    with pytest.raises(ValueError, match="module names .* got 'torch; rm'"):
        execute(jobs.crashing_job, instance, ["0"], {}, preload_modules=["torch; rm"])


def test_workers_fail_the_run_and_exit_when_the_orchestrator_dies(jobs, tmp_path):
    run_config = {
        "ops": {"hang": {"config": {"out_dir": str(tmp_path)}}},
        "execution": {"config": {"devices": ["0"]}},
    }
    home = tmp_path / "home"
    home.mkdir()
    orchestrator = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import json, sys, dagster as dg, gpu_executor_test_jobs as jobs\n"
            "with dg.instance_for_test(temp_dir=sys.argv[2]) as instance:\n"
            "    dg.execute_job(dg.reconstructable(jobs.hanging_job), instance=instance,\n"
            "                   run_config=json.loads(sys.argv[1]))\n",
            json.dumps(run_config),
            str(home),
        ]
    )
    try:
        hang_record = tmp_path / "hang.json"
        deadline = time.monotonic() + 30
        while not hang_record.exists() and time.monotonic() < deadline:
            assert orchestrator.poll() is None, "the orchestrator exited before the step started"
            time.sleep(0.1)
        worker_pid = json.loads(hang_record.read_text())["pid"]
    finally:
        orchestrator.kill()
        orchestrator.wait()

    deadline = time.monotonic() + 10
    while is_running(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not is_running(worker_pid)
    # Nothing else would end the run: the worker marked it failed before it went.
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        [run] = instance.get_runs()
        failures = events_of(instance, run.run_id, dg.DagsterEventType.RUN_FAILURE)
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert [e.message for e in failures] == [
        f"The process that launched this run (pid {orchestrator.pid}) died; step worker process "
        f"{worker_pid} marked the run failed and stopped."
    ]


def test_gpu_limit_follows_pool_size_and_keeps_other_limits():
    other = {"key": "team", "value": "vision", "limit": 1}

    limits = tag_concurrency_limits([other], gpu_slots=3)

    assert limits == [other, {"key": GPU_TAG, "value": "true", "limit": 3}]


def test_gpu_tag_may_not_be_limited_by_hand():
    with pytest.raises(ValueError, match="number of devices"):
        tag_concurrency_limits([{"key": GPU_TAG, "limit": 5}], gpu_slots=2)
