"""The `assetql` command, run as a real separate process where crashes and concurrency matter."""

import json
import os
import re
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

from harness.batch_runs import catalog_beside

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


# --- An image's versions: `assetql versions`, `rollback`, `regenerate` and `more`, on the tiny models.


class BatchCli:
    """`assetql ...` in this process on a fresh local instance and storage under a test's tmp_path.

    As for `style_cli`, the code location's storage is read once per process, so the commands get
    `storage` directly and run their assets through a batch job bound to it.
    """

    def __init__(self, tmp_path: Path, monkeypatch):
        import dagster as dg

        from assetql_dagster.definitions import defs, with_io_manager
        from assetql_dagster.defs.jobs import batch_job
        from resources.clip import ClipEmbedder
        from resources.cms import CmsConnections
        from resources.translator import AwsTranslate
        from resources.generator import ImageGenerator
        from resources.vision_tagger import VisionTagger

        self.home, self.data = tmp_path / "home", tmp_path / "data"
        self.storage = LocalStorage(root=str(self.data))
        monkeypatch.setenv("DAGSTER_HOME", str(self.home))
        monkeypatch.setenv("ASSETQL_DATA_DIR", str(self.data))
        monkeypatch.setattr(cli, "storage_resource", lambda instance: self.storage)
        resources = with_io_manager({"storage": self.storage, "generator": ImageGenerator(), "clip": ClipEmbedder(),
                                     "catalog": catalog_beside(self.storage), "vision_tagger": VisionTagger(), "cms": CmsConnections(), "aws_translate": AwsTranslate()})
        job = dg.Definitions(assets=list(defs.assets), jobs=[batch_job], resources=resources).resolve_job_def("batch_job")
        monkeypatch.setattr(cli, "batch_job_definition", lambda: job)

    def __call__(self, *args: str) -> int:
        return main([*args, "--data-dir", str(self.data)])

    def run(self, folder: Path) -> str:
        from assetql_dagster.pipeline.versions import registered_batches

        assert self("run", str(folder), "--in-process") == 0
        [key] = registered_batches(self.storage)
        return key

    def record(self, key: str, stage: str):
        from assetql_dagster.pipeline.records import read_record

        return read_record(self.storage, key, stage)

    def histories(self, key: str) -> dict:
        from assetql_dagster.pipeline.regeneration import load_histories

        return load_histories(self.storage, key)

    def job(self, key: str, variant_id: str, variation: int = 1):
        return next(j for j in self.record(key, "prompts").jobs if (j.variant_id, j.variation) == (variant_id, variation))

    def exported(self, key: str) -> tuple[dict[str, dict], dict[str, bytes]]:
        """The package's manifest rows and image bytes, by file name."""
        import csv
        import io
        import zipfile

        with zipfile.ZipFile(self.storage.local_path(f"exports/{key}/{key}.zip")) as zf:
            rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode("utf-8"))))
            images = {n.removeprefix("images/"): zf.read(n) for n in zf.namelist() if n.startswith("images/")}
        return {row["file_name"]: row for row in rows}, images


@pytest.fixture
def batch_cli(tmp_path, monkeypatch) -> BatchCli:
    return BatchCli(tmp_path, monkeypatch)


def loop_batch(batch_factory, **settings) -> Path:
    """Two images the style loop regenerates once each: an unreachable threshold, budget for two more."""
    folder = batch_factory(rows=2, variations=1)
    text = (folder / "batch.yaml").read_text().replace("style_threshold: 0.85", "style_threshold: 1")
    settings = {"max_attempts": 3, "regeneration_budget": 1, **settings}
    (folder / "batch.yaml").write_text(text + "".join(f"{k}: {v}\n" for k, v in settings.items()))
    return folder


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("assetql: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_versions_lists_every_generation_of_an_image(batch_cli, batch_factory, capsys):
    from assetql_dagster.domain.scoring import PARAMETERS

    key = batch_cli.run(loop_batch(batch_factory))
    capsys.readouterr()
    assert batch_cli("versions", key, "sword-01", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    job = batch_cli.job(key, "sword-01")
    history = batch_cli.histories(key)[job.image_id]
    assert (doc["image_id"], doc["file_name"], doc["variant_id"], doc["variation"]) == (job.image_id, job.file_name, "sword-01", 1)
    assert (doc["current"], doc["pinned"], doc["manual_regenerations"]) == (history.current, False, {"used": 0, "max": 5})
    assert [v["version"] for v in doc["versions"]] == [1, 2]
    assert [v["reason"] for v in doc["versions"]] == ["initial", "auto-regenerate"]
    assert [v["current"] for v in doc["versions"]] == [v.version == history.current for v in history.versions]
    for entry, version in zip(doc["versions"], history.versions):
        assert (entry["seed"], entry["prompt"], entry["style_boost"]) == (version.seed, job.prompt, 0.0)
        assert (entry["style_score"], entry["verdict"]) == (version.score.style_score, "review")
        assert set(entry["scores"]) == set(PARAMETERS) and all(0 <= s <= 1 for s in entry["scores"].values())
        assert entry["created_at"].endswith("Z") and batch_cli.storage.exists(entry["key"])
    assert doc["versions"][0]["seed"] == job.seed != doc["versions"][1]["seed"]
    rows, _ = batch_cli.exported(key)
    assert rows[job.file_name]["version"] == str(history.current)
    assert float(rows[job.file_name]["style_score"]) == doc["versions"][history.current - 1]["style_score"]

    assert batch_cli("versions", key, "sword-01") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{job.file_name} — batch {key}, variant sword-01 #1")
    marked = [line for line in lines if line.startswith("* v")]
    assert len(marked) == 1 and marked[0].startswith(f"* v{history.current} ")
    assert any(line.startswith("  v") for line in lines) and lines[-1] == f"  prompt: {job.prompt}"

    for args, message in [
        ((key, "nope"), f"batch '{key}' has no variant 'nope'; its variants: sword-01, sword-02"),
        ((key, "sword-01", "--variation", "2"), "has variation(s) 1; there is no variation 2"),
        (("no-such-batch", "sword-01"), f"no batch 'no-such-batch' in {batch_cli.storage.uri('batches')}; registered batches: {key}"),
        (("../etc", "sword-01"), "invalid batch key '../etc'"),
    ]:
        assert batch_cli("versions", *args) == 1
        assert message in one_error_line(capsys)


def test_rollback_exports_the_chosen_version_and_survives_a_full_rerun(batch_cli, batch_factory, capsys):
    folder = loop_batch(batch_factory)
    key = batch_cli.run(folder)
    job = batch_cli.job(key, "sword-02")
    history = batch_cli.histories(key)[job.image_id]
    chosen = next(v for v in history.versions if v.version != history.current)
    raw_key = next(r.raw_key for r in batch_cli.record(key, "images").stored if r.image_id == job.image_id)
    capsys.readouterr()

    assert batch_cli("rollback", key, "sword-02", "--to", "9", "--in-process") == 1
    assert "has version(s) 1, 2; there is no version 9" in one_error_line(capsys)
    assert batch_cli("rollback", key, "sword-02", "--to", str(chosen.version), "--in-process") == 0
    assert f"{job.file_name}: v{chosen.version} is current and pinned" in capsys.readouterr().out

    def rolled_back() -> None:
        assert batch_cli.storage.read_bytes(raw_key) == batch_cli.storage.read_bytes(chosen.key)
        rows, images = batch_cli.exported(key)
        row = rows[job.file_name]
        assert (row["version"], row["attempts"], float(row["style_score"])) == (
            str(chosen.version), "2", chosen.score.style_score
        )
        assert images[job.file_name] == batch_cli.storage.read_bytes(chosen.key)
        after = batch_cli.histories(key)[job.image_id]
        assert (after.current, after.pinned, after.versions) == (chosen.version, True, history.versions)

    rolled_back()
    changes = json.loads(batch_cli.storage.read_text(f"batches/{key}/version-changes.json"))["changes"]
    assert [(c["action"], c["image_id"], c["from"], c["to"]) for c in changes] == [
        ("rollback", job.image_id, history.current, chosen.version)
    ]
    # The whole partition again, as `assetql run` of the same folder does it: the rollback stays.
    assert batch_cli.run(folder) == key
    rolled_back()


def test_regenerate_adds_a_manual_version_up_to_the_limit_and_the_compare_page_shows_it(
    tmp_path, batch_cli, batch_factory, capsys
):
    import html
    import io

    from assetql_dagster.pipeline.analysis import scorer
    from assetql_dagster.pipeline.registration import registered_batch
    from resources.clip import ClipEmbedder

    key = batch_cli.run(loop_batch(batch_factory, max_manual_regenerations=1))
    job = batch_cli.job(key, "sword-02")
    record = next(r for r in batch_cli.record(key, "images").stored if r.image_id == job.image_id)
    before = batch_cli.histories(key)[job.image_id]
    hostile = '<script>alert("x")</script> a "sword" & shield'
    capsys.readouterr()

    args = ("--seed", "1234", "--prompt", hostile, "--style-strength", "0.6", "--in-process")
    assert batch_cli("regenerate", key, "sword-02", *args) == 0
    assert f"{job.file_name}: v3 generated (seed 1234" in capsys.readouterr().out
    history = batch_cli.histories(key)[job.image_id]
    new = history.current_version
    assert (new.version, new.reason, new.seed, new.prompt, new.style_boost) == (3, "manual", 1234, hostile, 0.6)
    assert (history.pinned, history.versions[:2]) == (True, before.versions)
    # Scored as the loop scores: the batch's scorer on the stored file gives the stored score.
    _, score = scorer(batch_cli.record(key, "style_profile"), registered_batch(batch_cli.storage, key).settings,
                      ClipEmbedder().load())
    stored = Image.open(io.BytesIO(batch_cli.storage.read_bytes(new.key))).convert("RGB")
    assert score([record], [stored])[0].style_score == new.score.style_score
    rows, images = batch_cli.exported(key)
    assert (rows[job.file_name]["version"], rows[job.file_name]["attempts"]) == ("3", "3")
    assert images[job.file_name] == batch_cli.storage.read_bytes(new.key) == batch_cli.storage.read_bytes(record.raw_key)

    assert batch_cli("regenerate", key, "sword-02", "--in-process") == 1
    assert "has had 1 manual regeneration(s)" in one_error_line(capsys)
    assert batch_cli.histories(key)[job.image_id] == history

    # Defaults, on the other image: a fresh seed, the planned prompt, the batch's palette pull.
    other = batch_cli.job(key, "sword-01")
    assert batch_cli("regenerate", key, "sword-01", "--in-process") == 0
    manual = batch_cli.histories(key)[other.image_id].current_version
    earlier = {v.seed for v in batch_cli.histories(key)[other.image_id].versions[:-1]}
    assert (manual.reason, manual.prompt, manual.style_boost) == ("manual", other.prompt, 0.0)
    assert manual.seed not in earlier

    page_path = tmp_path / "compare.html"
    capsys.readouterr()
    assert batch_cli("versions", key, "sword-02", "--html", str(page_path)) == 0
    assert str(page_path) in capsys.readouterr().err
    page = page_path.read_text(encoding="utf-8")
    assert re.findall(r'<section class="([^"]*)" id="v(\d+)"', page) == [
        ("version", "1"), ("version", "2"), ("version current", "3")
    ]
    assert page.count('src="data:image/jpeg;base64,') == 3
    assert "<script" not in page and html.escape(hostile) in page
    for version in history.versions:
        assert f"{version.seed}" in page and f"{version.score.style_score:.2f}" in page


def test_more_generates_only_the_new_variations_and_leaves_existing_images_as_they_are(batch_cli, batch_factory, capsys):
    key = batch_cli.run(loop_batch(batch_factory, naming_pattern="'{batch}_{seq}_{variant_id}'"))
    data = batch_cli.data
    before = {p: p.read_bytes() for sub in ("raw", "thumbnails", "versions") for p in (data / sub).rglob("*") if p.is_file()}
    plan = batch_cli.record(key, "prompts").jobs
    histories = batch_cli.histories(key)
    assert [j.image_id for j in plan] == ["demo_0001_sword-01", "demo_0002_sword-02"]
    assert all(len(h.versions) == 2 for h in histories.values()), "the loop regenerated both once"
    rows_before, _ = batch_cli.exported(key)
    capsys.readouterr()

    assert batch_cli("more", key, "--variations", "8", "--in-process") == 1
    assert "has 1 variation(s) per row; adding 8 makes 9, but variations must be" in one_error_line(capsys)
    assert batch_cli("more", key, "--variations", "1", "--in-process") == 0
    assert f"batch {key}: 1 -> 2 variation(s) per row, 2 new image(s)" in capsys.readouterr().out

    # Same batch, same partition: its stored input has the new variation count.
    batch = batch_cli.record(key, "batch_input")
    assert (batch.batch, batch.settings.variations, batch.added_variations) == (key, 2, (1,))
    after = batch_cli.record(key, "prompts").jobs
    assert after[:2] == plan
    assert [(j.image_id, j.variation) for j in after[2:]] == [("demo_0003_sword-01", 2), ("demo_0004_sword-02", 2)]
    # Every file the batch had is there, byte for byte; only the new images' files were added.
    assert all(path.read_bytes() == content for path, content in before.items())
    raw = sorted(p.name for p in (data / "raw" / key).iterdir())
    assert raw == sorted(f"{j.image_id}.png" for j in after)
    meta = latest_images_metadata(batch_cli.home)
    assert (meta["images"], meta["already_stored"], meta["generated"]) == (4, 2, 2)
    # The existing images keep their versions; they are frozen, so the budget the new images
    # brought went to the new images only.
    again = batch_cli.histories(key)
    for image_id, history in histories.items():
        assert (again[image_id].versions, again[image_id].current, again[image_id].pinned) == (
            history.versions, history.current, True
        )
    assert all(len(again[j.image_id].versions) == 2 and not again[j.image_id].pinned for j in after[2:])
    rows, images = batch_cli.exported(key)
    assert sorted(rows) == sorted(j.file_name for j in after)
    for name, row in rows_before.items():
        assert (rows[name]["version"], rows[name]["style_score"]) == (row["version"], row["style_score"])
        assert images[name] == (data / "raw" / key / name).read_bytes()


def test_an_image_the_loop_never_touched_has_one_version_and_rolls_back_only_to_it(batch_cli, batch_factory, capsys):
    folder = batch_factory(rows=2, variations=1)
    (folder / "batch.yaml").write_text((folder / "batch.yaml").read_text() + "max_attempts: 1\n")
    key = batch_cli.run(folder)
    job = batch_cli.job(key, "sword-01")
    record = next(r for r in batch_cli.record(key, "images").stored if r.image_id == job.image_id)
    score = next(s for s in batch_cli.record(key, "scores").images if s.image_id == job.image_id)
    assert batch_cli.histories(key) == {}

    # A separate process, as a person runs it: the storage comes from --data-dir.
    proc = assetql("versions", key, "sword-01", "--json", "--data-dir", str(batch_cli.data), env={"DAGSTER_HOME": str(batch_cli.home)})
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    doc = json.loads(out)
    [only] = doc["versions"]
    assert (only["version"], only["current"], only["reason"], only["seed"]) == (1, True, "initial", job.seed)
    assert (only["key"], only["style_score"], only["created_at"]) == (record.raw_key, score.style_score, None)
    assert (doc["current"], doc["pinned"]) == (1, False)
    capsys.readouterr()

    assert batch_cli("rollback", key, "sword-01", "--to", "2", "--in-process") == 1
    assert "has version(s) 1; there is no version 2" in one_error_line(capsys)
    assert batch_cli("rollback", key, "sword-01", "--to", "1", "--in-process") == 0
    history = batch_cli.histories(key)[job.image_id]
    assert (history.current, history.pinned, [v.reason for v in history.versions]) == (1, True, ["initial"])
    assert batch_cli.storage.read_bytes(history.versions[0].key) == batch_cli.storage.read_bytes(record.raw_key)


@pytest.mark.parametrize(
    "args", [("rollback", "demo-12345678", "sword-01", "--to", "1"), ("regenerate", "demo-12345678", "sword-01"),
             ("more", "demo-12345678", "--variations", "1")],
)
def test_versions_and_input_are_not_changed_while_a_run_of_the_batch_is_going(batch_cli, capsys, args):
    from dagster._core.events import DagsterEvent

    from assetql_dagster.defs import run_tags

    batch_cli.home.mkdir()
    with dg.DagsterInstance.from_config(str(batch_cli.home)) as instance:
        # Going, in this very process (so not an abandoned one the command would mark failed).
        tags = {**run_tags.batch_run_tags("demo-12345678", "x"), run_tags.HOST: socket.gethostname(), run_tags.PID: str(os.getpid())}
        run = instance.add_run(dg.DagsterRun(job_name="batch_job", run_id=make_new_run_id(), tags=tags))
        instance.report_dagster_event(DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name="batch_job", pid=os.getpid()), run.run_id)
    assert batch_cli(*args, "--in-process") == 1
    assert f"batch demo-12345678 has run(s) queued or going: {run.run_id}; try again when they end" in one_error_line(capsys)
    assert not batch_cli.data.exists()


def test_rename_plans_refuses_collisions_renames_and_survives_a_rollback(batch_cli, batch_factory, capsys, monkeypatch):
    monkeypatch.setattr(cli, "catalog_resource", lambda instance: catalog_beside(batch_cli.storage))
    key = batch_cli.run(batch_factory(rows=2, variations=1))
    old = {j.variant_id: j.file_name for j in batch_cli.record(key, "prompts").jobs}
    files = {k: batch_cli.storage.read_bytes(k) for k in batch_cli.storage.list_keys("")}
    capsys.readouterr()

    assert batch_cli("rename", "--batch", key, "--pattern", "{sku}_{variation}", "--dry-run") == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"batch {key}: 2 of 2 image(s) renamed by '{{sku}}_{{variation}}'",
                   f"  {old['sword-01']} -> SKU-1001_1.png", f"  {old['sword-02']} -> SKU-1002_1.png",
                   "dry run: nothing was changed"]
    assert batch_cli("rename", "--batch", key, "--pattern", "{category}") == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"assetql: error: rename of batch {key} refused, nothing was changed: 1 name(s)")
    assert err[1:] == ["  weapon.png for sword-01#1, sword-02#1"]
    for args, message in [
        (("--pattern", "{sku}"), "rename needs --batch KEY, --query WORDS or both"),
        (("--batch", key, "--pattern", "{sku}/{row}"), "has '/' outside its placeholders"),
        (("--batch", "../etc", "--pattern", "{sku}"), "invalid batch key '../etc'"),
        (("--query", "unicorn", "--pattern", "{sku}"), "no catalogued image matches 'unicorn'"),
    ]:
        assert batch_cli("rename", *args) == 1
        assert message in one_error_line(capsys)
    assert {k: batch_cli.storage.read_bytes(k) for k in batch_cli.storage.list_keys("")} == files

    assert batch_cli("rename", "--query", "scimitar", "--batch", key, "--pattern", "{sku}_{variation}") == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"batch {key}: renamed, old names kept as aliases (1 in all); re-exported zip, manifest, gallery, links; "
        "catalog updated")
    rows, images = batch_cli.exported(key)
    assert set(rows) == set(images) == {old["sword-01"], "SKU-1002_1.png"}

    # A rollback re-exports through the batch's assets: the new name stays.
    assert batch_cli("rollback", key, "sword-02", "--to", "1", "--in-process") == 0
    assert capsys.readouterr().out.startswith("SKU-1002_1.png: v1 is current and pinned")
    rows, images = batch_cli.exported(key)
    assert set(rows) == set(images) == {old["sword-01"], "SKU-1002_1.png"}
    assert catalog_beside(batch_cli.storage).resolve_file_name(old["sword-02"]) == [
        f"{key}/{old['sword-02'].removesuffix('.png')}"]


def test_library_refuses_a_bad_config_and_serves_the_asset_library(tmp_path, capsys):
    import urllib.request

    bad = tmp_path / "library.yaml"
    bad.write_text("rate_limit_per_minute: 0\ncolour: blue\n")
    assert main(["library", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "rate_limit_per_minute: must be a whole number from 1 to 100000, got 0" in err and "'colour'" in err
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # No library.yaml where it runs: development mode, the local admin for loopback requests.
    server = assetql("library", "--port", str(port), "--data-dir", str(tmp_path / "data"),
                     env={"DAGSTER_HOME": str(tmp_path / "home"), "ASSETQL_LIBRARY_CONFIG": ""})
    try:
        deadline, me = time.monotonic() + 120, None
        while me is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/me", timeout=5) as answer:
                    me = json.load(answer)
            except OSError:
                time.sleep(0.5)
        assert me == {"user": "local-admin", "role": "admin", "via": "local"}, server.poll()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/batches", timeout=5) as answer:
            assert "Development mode" in answer.read().decode()
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "development mode (no library.yaml)" in output


def test_export_writes_one_exporter_again_of_chosen_categories_without_regenerating(batch_cli, batch_factory, capsys):
    folder = batch_factory(rows=4, variations=1)
    with (folder / "batch.yaml").open("a") as fh:
        fh.write("exports: [manifest, downloads]\n")
    key = batch_cli.run(folder)
    index = batch_cli.storage.uri(f"exports/{key}/downloads/index.json")
    assert f"  downloads:  {index}\n" in capsys.readouterr().out  # the run lists its packages
    generated = batch_cli.record(key, "images")
    # print is a model step (device_distribution), downloads a CPU one: both get the filter.
    assert batch_cli("export", key, "--preset", "downloads", "--preset", "print", "--category", "armor",
                     "--in-process") == 0
    out = capsys.readouterr().out
    assert f"downloads: 2 image(s), 3 file(s): {index}" in out
    package = batch_cli.record(key, "downloads_export")
    assert package.categories == ("armor",) and package.problems == ()
    printed = batch_cli.record(key, "print_export")
    assert (printed.images, printed.categories, printed.problems) == (2, ("armor",), ())
    index = json.loads(batch_cli.storage.read_text(package.main))
    # Categories below the one asked for are in; the weapons are not.
    assert {entry["category"] for entry in index["zips"].values()} == {"armor/shield", "armor/helmet"}
    assert batch_cli.record(key, "images") == generated


@pytest.mark.parametrize(("args", "message"), [
    (("--preset", "nosuch"), "no exporter 'nosuch'; installed: "),
    (("--preset", "downloads"), "has no tagged images"),
])
def test_export_refuses_an_unknown_exporter_or_an_unrun_batch(batch_cli, capsys, args, message):
    assert batch_cli("export", "never-run-12345678", *args) == 1
    assert message in one_error_line(capsys)


def test_validate_names_an_unknown_exporter_and_a_bad_exporter_option(batch_factory, capsys):
    folder = batch_factory(rows=1)
    with (folder / "batch.yaml").open("a") as fh:
        fh.write("exports: [zip, unityy]\nexport_options: {downloads: {quality: 7}}\n")
    assert main(["validate", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "batch.yaml, column 'exports': unknown export 'unityy'; expected among zip, manifest, gallery, links, " in err
    assert "column 'export_options': downloads: quality must be an integer from 40 to 100, got 7" in err


def test_preview_prints_the_first_prompts_per_language_and_where_each_came_from(batch_factory, capsys):
    folder = batch_factory(rows=3)
    lines = (folder / "batch.csv").read_text().splitlines()
    lines[2] = "sword-02,una espada,weapon,SKU-1002,acero,un mercado,es"
    (folder / "batch.csv").write_text("\n".join(lines) + "\n")
    with (folder / "batch.yaml").open("a") as fh:
        fh.write("season: halloween\ntranslator: glossary\nglossary: {es: {una espada: a sword, acero: steel}}\n")
    assert main(["preview", str(folder), "--rows", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("en: 2 row(s)\n  sword-01 (row 2)\n")
    assert "es: 1 row(s)\n  sword-02 (row 3)\n    row's text: una espada made of acero in un mercado" in out
    assert "    prompt:     a sword made of steel in un mercado" in out
    assert "translated; season halloween: " in out
    assert "shield-01" not in out  # one row per language
