"""The `assetql` command, run as a real separate process where crashes and concurrency matter."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from PIL import Image

from assetql_dagster.cli import main

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


def test_validate_accepts_the_sample_batch(capsys):
    assert main(["validate", str(ROOT / "examples" / "fantasy-items")]) == 0
    assert "12 rows × 2 variation(s)" in capsys.readouterr().out


def test_run_resumes_after_sigkill_without_regenerating_finished_images(tmp_path, batch_factory):
    folder = batch_factory(rows=12, variations=4)
    (folder / "batch.yaml").write_text((folder / "batch.yaml").read_text() + "width: 128\nheight: 128\n")
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
