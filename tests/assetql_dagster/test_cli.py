"""The `assetql` command, run as a real separate process where crashes and concurrency matter."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.utils import make_new_run_id
from PIL import Image

from assetql_dagster import cli
from assetql_dagster.cli import main
from resources.storage import LocalStorage

ROOT = Path(__file__).resolve().parents[2]


def assetql(*args: str, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "assetql_dagster.cli", *args],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs,
    )


def stored_pngs(data: Path) -> list[Path]:
    return sorted(p for p in (data / "raw").rglob("*.png"))


def latest_images_metadata(home: Path) -> dict:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("images"))
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_validate_prints_every_problem_and_exits_non_zero(batch_factory, capsys):
    folder = batch_factory(rows=3)
    (folder / "batch.csv").write_text("variant_id,subject,material\nsword-01,a sword,\nsword-01,,steel\n")
    assert main(["validate", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "batch.csv, row 1, column 'environment'" in err
    assert "batch.csv, row 3, column 'variant_id'" in err and "duplicate" in err


def test_validate_rejects_a_model_that_is_not_on_this_machine(batch_factory, capsys):
    folder = batch_factory(rows=2)
    settings = (folder / "batch.yaml").read_text()
    (folder / "batch.yaml").write_text(settings.replace("model: tiny", "model: no-org/no-such-model"))
    assert main(["validate", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "batch.yaml, column 'model': model 'no-org/no-such-model' is neither 'tiny'" in err
    assert "hf download no-org/no-such-model" in err


def test_validate_warns_about_a_prompt_longer_than_the_text_encoder_reads(batch_factory, capsys):
    folder = batch_factory(rows=3)
    lines = (folder / "batch.csv").read_text().splitlines()
    lines[2] = lines[2].replace("a curved scimitar", "a curved scimitar" + " with glowing golden runes" * 12, 1)
    (folder / "batch.csv").write_text("\n".join(lines) + "\n")
    assert main(["validate", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out
    assert "warning: batch.csv, row 3: variant 'sword-02': the prompt is " in out


def test_validate_accepts_the_sample_batch(capsys):
    assert main(["validate", str(ROOT / "examples" / "fantasy-items")]) == 0
    assert "12 rows × 2 variation(s)" in capsys.readouterr().out


def test_run_resumes_after_sigkill_without_regenerating_finished_images(tmp_path, batch_factory):
    folder = batch_factory(rows=12, variations=4)
    # The style loop off: it would replace low-scoring images on purpose, which this test is not about.
    (folder / "batch.yaml").write_text((folder / "batch.yaml").read_text() + "width: 128\nheight: 128\nmax_attempts: 1\n")
    data, home = tmp_path / "data", tmp_path / "home"
    env = {"DAGSTER_HOME": str(home), "ASSETQL_DATA_DIR": str(data)}

    proc = assetql("run", str(folder), "--in-process", env=env, start_new_session=True)
    deadline = time.monotonic() + 240
    while len(stored_pngs(data)) < 6:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no images appeared"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    survivors = {p: p.stat().st_mtime_ns for p in stored_pngs(data)}
    assert 6 <= len(survivors) < 48, "the kill must land mid-generation"

    rerun = assetql("run", str(folder), "--in-process", env=env)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    # Killed with its whole process group, the first run was left going; the re-run failed it first.
    assert "marked 1 run(s) failed whose assetql process on this host is gone" in out
    # The progress bar counts the images already stored before the kill too, and ends at the total.
    assert "images: 100%" in out and "48/48" in out
    pngs = stored_pngs(data)
    assert len(pngs) == 48 and len({p.name for p in pngs}) == 48
    assert all(p.stat().st_mtime_ns == t for p, t in survivors.items()), "finished images were regenerated"
    meta = latest_images_metadata(home)
    assert meta["images"] == 48
    # A PNG is only renamed into place after its thumbnail, so every survivor is complete and skipped.
    assert meta["already_stored"] == len(survivors)
    assert meta["generated"] == 48 - meta["already_stored"]
    for p in pngs:
        with Image.open(p) as img:
            img.verify()


def step_workers(pid: int) -> set[int]:
    """The live processes that `pid` started with multiprocessing's spawn: its step workers."""
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            # The fields after the parenthesised command name: state, then the parent's pid.
            state, ppid = (proc / "stat").read_text().rpartition(")")[2].split()[:2]
            spawned = b"spawn_main" in (proc / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue  # Exited meanwhile.
        if int(ppid) == pid and state != "Z" and spawned:
            found.add(int(proc.name))
    return found


def is_running(pid: int) -> bool:
    """Whether `pid` is a live process; a zombie nobody has reaped yet counts as gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_killing_the_run_process_alone_stops_its_workers_and_fails_the_run(tmp_path, batch_factory):
    folder = batch_factory(rows=12, variations=4)
    (folder / "batch.yaml").write_text((folder / "batch.yaml").read_text() + "width: 128\nheight: 128\n")
    data, home = tmp_path / "data", tmp_path / "home"
    env = {"DAGSTER_HOME": str(home), "ASSETQL_DATA_DIR": str(data)}

    proc = assetql("run", str(folder), env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while len(stored_pngs(data)) < 2:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no images appeared"
            time.sleep(0.05)
        workers = step_workers(proc.pid)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    # Only the command's own process: the workers are left to notice.
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert workers, "the run's step workers were not found"

    deadline = time.monotonic() + 10
    while any(is_running(pid) for pid in workers):
        assert time.monotonic() < deadline, f"workers still running: {[p for p in workers if is_running(p)]}"
        time.sleep(0.05)
    images = len(stored_pngs(data))
    assert images < 48, "the kill must land mid-generation"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        failures = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    assert run.status == dg.DagsterRunStatus.FAILURE
    [failure] = failures
    assert f"The process that launched this run (pid {proc.pid}) died" in failure.event_log_entry.dagster_event.message


def test_a_run_left_going_by_a_killed_command_on_this_host_is_marked_failed_at_the_next_start(
    tmp_path, monkeypatch, capsys
):
    from dagster._core.events import DagsterEvent

    from assetql_dagster.defs import run_tags

    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid, live_pid = int(exited.stdout), os.getpid()

    def started_run(instance, tag_pid: int, started_by: int, host: str) -> str:
        run = instance.add_run(dg.DagsterRun(job_name="batch_job", run_id=make_new_run_id(),
                                             tags={run_tags.HOST: host, run_tags.PID: str(tag_pid)}))
        start = DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name="batch_job", pid=started_by)
        instance.report_dagster_event(start, run.run_id)
        return run.run_id

    home.mkdir()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        here = socket.gethostname()
        abandoned = started_run(instance, dead_pid, dead_pid, here)
        running = started_run(instance, live_pid, live_pid, here)
        # A re-execution carries the tags of the run it re-executes, but another process executes it.
        reexecution = started_run(instance, dead_pid, live_pid, here)
        elsewhere = started_run(instance, dead_pid, dead_pid, "another-host")

    assert main(["retry-failed", "no-such-batch", "--data-dir", str(tmp_path / "data")]) == 1

    with dg.DagsterInstance.from_config(str(home)) as instance:
        status = {run_id: instance.get_run_by_id(run_id).status for run_id in (abandoned, running, reexecution, elsewhere)}
        [failure] = instance.get_records_for_run(abandoned, of_type=dg.DagsterEventType.RUN_FAILURE).records
    assert status == {
        abandoned: dg.DagsterRunStatus.FAILURE,
        running: dg.DagsterRunStatus.STARTED,
        reexecution: dg.DagsterRunStatus.STARTED,
        elsewhere: dg.DagsterRunStatus.STARTED,
    }
    assert f"(pid {dead_pid} on {socket.gethostname()}) is gone" in failure.event_log_entry.dagster_event.message
    assert capsys.readouterr().out.splitlines() == [
        f"marked 1 run(s) failed whose assetql process on this host is gone: {abandoned}"
    ]


def test_two_runs_of_one_partition_at_once_leave_one_object_per_image(tmp_path, batch_factory):
    folder = batch_factory(rows=6, variations=2)
    data = tmp_path / "data"
    runs = [
        assetql("run", str(folder), "--in-process", env={"DAGSTER_HOME": str(tmp_path / f"home{i}"), "ASSETQL_DATA_DIR": str(data)})
        for i in range(2)
    ]
    for run in runs:
        out, _ = run.communicate(timeout=600)
        assert run.returncode == 0, out
    pngs = stored_pngs(data)
    assert len(pngs) == 12 and len({p.name for p in pngs}) == 12
    assert len(list((data / "thumbnails").rglob("*.jpg"))) == 12
    assert not [p for p in data.rglob("*") if p.name.endswith(".part")]


@pytest.mark.parametrize("key", ["no-such-batch", "..", "../etc", "a/b", "a\\b", "bad\x00key"])
def test_retry_failed_on_an_unknown_or_invalid_key_prints_one_line_and_exits_1(key, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ASSETQL_DATA_DIR", str(tmp_path / "data"))
    assert main(["retry-failed", key, "--data-dir", str(tmp_path / "data")]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("assetql: error:"), captured.err
    assert "Traceback" not in captured.err + captured.out


REFS = ROOT / "examples" / "fantasy-items" / "references"


@pytest.fixture
def style_cli(tmp_path, monkeypatch):
    """`assetql style ...` in this process, on a fresh local instance and storage under tmp_path.

    The code location reads its storage root once, when its definitions are first imported, so in
    one test process the storage is given directly; `test_style_commands_use_the_run_storage`
    checks the real wiring in separate processes.
    """
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ASSETQL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(cli, "storage_resource", lambda instance: LocalStorage(root=str(tmp_path / "data")))
    return lambda *args: main(["style", *args, "--data-dir", str(tmp_path / "data")])


def test_style_commands_use_the_run_storage(tmp_path):
    data, env = tmp_path / "data", {"DAGSTER_HOME": str(tmp_path / "home")}
    create = assetql("style", "create", "brand-x", "--refs", str(REFS), "--data-dir", str(data), env=env)
    out, _ = create.communicate(timeout=120)
    assert create.returncode == 0, out
    assert (data / "style-profiles" / "brand-x" / "v1" / "references" / "style-1.png").is_file()
    show = assetql("style", "show", "brand-x", "--json", "--data-dir", str(data), env=env)
    out, _ = show.communicate(timeout=120)
    assert show.returncode == 0, out
    assert json.loads(out)["references"][0]["key"] == "style-profiles/brand-x/v1/references/style-1.png"


def test_style_create_list_show_and_diff(tmp_path, style_cli, capsys):
    assert style_cli("create", "brand-x", "--refs", str(REFS), "--lock", "palette=80", "--lock", "lighting=50",
                     "--threshold", "0.85", "--notes", "spring launch") == 0
    assert "created style profile brand-x@1 with 2 reference(s) in file://" in capsys.readouterr().out
    one = tmp_path / "one"
    one.mkdir()
    (one / "style-1.png").write_bytes((REFS / "style-1.png").read_bytes())
    assert style_cli("create", "brand-x", "--refs", str(one), "--preset", "watercolor") == 0
    assert (tmp_path / "data" / "style-profiles" / "brand-x" / "v2" / "profile.json").is_file()
    capsys.readouterr()

    assert style_cli("list") == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("brand-x@2") and "1 reference(s), no locks, preset:watercolor" in listed[0]
    assert listed[1] == ("presets: preset:cartoon, preset:watercolor, preset:realistic, preset:anime, "
                         "preset:storybook, preset:3d_render")

    assert style_cli("show", "brand-x@1", "--json") == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["name"], record["version"], record["threshold"], record["notes"]) == ("brand-x", 1, 0.85, "spring launch")
    assert record["locks"] == {"palette": 80, "lighting": 50}
    assert [r["key"] for r in record["references"]] == [
        "style-profiles/brand-x/v1/references/style-1.png", "style-profiles/brand-x/v1/references/style-2.png"]

    assert style_cli("show", "brand-x") == 0
    shown = capsys.readouterr().out
    assert shown.startswith("brand-x@2 (created ") and "  preset: watercolor" in shown and "  locks: none" in shown

    assert style_cli("show", "preset:watercolor", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "preset": "watercolor", "modifiers": "watercolor painting, soft washes, paper texture",
        "negative_prompt": "photo, 3d render"}

    assert style_cli("diff", "brand-x@1", "brand-x@2") == 0
    assert capsys.readouterr().out.splitlines() == [
        f"reference removed: style-2.png (sha256 {record['references'][1]['sha256'][:12]})",
        "lock lighting: 50 -> none",
        "lock palette: 80 -> none",
        "threshold: 0.85 -> the batch's own",
        "preset: none -> watercolor",
        "notes: 'spring launch' -> ''",
    ]
    assert style_cli("diff", "brand-x@2", "brand-x") == 0
    assert capsys.readouterr().out == "brand-x@2 and brand-x@2 do not differ\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (("show", "brand-y"), "no style profile 'brand-y' in storage; existing profiles: none"),
        (("show", "brand-x@0"), "version '0' of profile 'brand-x' must be a whole number from 1"),
        (("show", "preset:oil"), "unknown preset 'oil'; expected one of preset:cartoon"),
        (("diff", "brand-x", "preset:anime"), "no style profile 'brand-x' in storage"),
        (("create", "brand-x", "--refs", "/no/such/refs"), "reference folder '/no/such/refs' does not exist"),
        (("create", "brand-x", "--refs", str(REFS), "--lock", "palette"), "--lock 'palette' must be PARAMETER=WEIGHT"),
        (("create", "brand-x", "--refs", str(REFS), "--lock", "shine=3"), "unknown parameter(s) ['shine'] in locks"),
        (("create", "brand-x", "--refs", str(REFS), "--threshold", "2"), "threshold must be a number in [0, 1], got 2.0"),
        (("create", "bad name", "--refs", str(REFS)), "profile name 'bad name' must be 1-64 letters"),
    ],
)
def test_style_errors_print_one_line_and_exit_1(style_cli, capsys, args, message):
    assert style_cli(*args) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("assetql: error: "), captured.err
    assert message in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_style_create_lists_every_problem_of_the_reference_folder(tmp_path, style_cli, capsys):
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "notes.txt").write_text("not an image")
    (refs / "broken.png").write_bytes(b"not a png")
    assert style_cli("create", "brand-x", "--refs", str(refs)) == 1
    err = capsys.readouterr().err
    assert f"{refs}: 2 problem(s)" in err
    assert "refs/notes.txt: unsupported file type '.txt'" in err
    assert "refs/broken.png: cannot be read as an image" in err
    assert not (tmp_path / "data" / "style-profiles").exists()
