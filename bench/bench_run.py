"""`assetql run` of a 64-image batch as a user runs it, against a bare import of the libraries it needs.

Prints both wall times and their ratio (the orchestration target is <= 2.5x), then where the run's
time went: run start -> first image, first -> last image, last image -> run end, and every step.
It asserts nothing; figures go to docs/benchmarks.md with the command that produced them.

    .venv/bin/python bench/bench_run.py [--rows 32 --variations 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench_pipeline import write_batch

ROOT = Path(__file__).resolve().parents[1]
BARE_IMPORT = [sys.executable, "-c", "import dagster, torch, diffusers, open_clip"]
RATIO_TARGET = 2.5


def timed(command: list[str], env: dict | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def run_batch(rows: int, variations: int, work: Path) -> tuple[float, Path, Path]:
    """Seconds of `assetql run` on a fresh instance and storage under `work`, and where they are."""
    folder, home, data = work / "bench-64", work / "home", work / "data"
    write_batch(folder, rows, steps=4)
    settings = yaml.safe_load((folder / "batch.yaml").read_text())
    (folder / "batch.yaml").write_text(yaml.safe_dump({**settings, "variations": variations}))
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    seconds = timed([str(ROOT / ".venv" / "bin" / "assetql"), "run", str(folder), "--data-dir", str(data)], env)
    return seconds, home, data


def latest_metadata(instance, asset: str) -> dict:
    import dagster as dg

    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=1).records
    return records[0].asset_materialization.metadata


def breakdown(home: Path, data: Path) -> None:
    """Where the run's time went, read back from its instance and the stored images."""
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        [record] = instance.get_run_records(limit=1)
        start, end = record.start_time, record.end_time
        steps = sorted(instance.get_run_step_stats(record.dagster_run.run_id), key=lambda s: s.start_time)
        images, profile, scores = (latest_metadata(instance, a) for a in ("images", "style_profile", "scores"))
    clip_loads = profile["model_loads"].value + scores["model_loads"].value
    # Writes are atomic renames: a PNG's mtime is when that image was stored.
    stored = sorted(p.stat().st_mtime for p in (data / "raw").rglob("*.png"))
    print(f"    run start -> first image stored: {stored[0] - start:6.2f} s")
    print(f"    first -> last image stored:      {stored[-1] - stored[0]:6.2f} s")
    print(f"    last image stored -> run end:    {end - stored[-1]:6.2f} s")
    print(f"    run start -> run end:            {end - start:6.2f} s ({len(stored)} images)")
    print(f"    model loads: diffusers {images['model_loads'].value} over {images['shards'].value} shard(s), "
          f"open_clip {clip_loads} over style_profile + scores/tags")
    print(f"    {'step':<42} {'starts at':>9} {'lasts':>7}")
    for s in steps:
        print(f"    {s.step_key:<42} {s.start_time - start:>8.2f}s {s.end_time - s.start_time:>6.2f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--variations", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each side counts")
    args = parser.parse_args()
    imports, runs = [], []
    for _ in range(args.rounds):
        imports.append(timed(BARE_IMPORT))
        with tempfile.TemporaryDirectory(prefix="assetql-bench-run-") as tmp:
            seconds, home, data = run_batch(args.rows, args.variations, Path(tmp))
            runs.append(seconds)
            if seconds == min(runs):
                print(f"round {len(runs)}: assetql run {seconds:.2f} s")
                breakdown(home, data)
    bare, run = min(imports), min(runs)
    images = args.rows * args.variations
    print(f"bare `{' '.join(BARE_IMPORT[1:])}`: best {bare:.2f} s of {args.rounds}")
    print(f"`assetql run` of {images} images (tiny model, CPU, 4 steps, 64x64): best {run:.2f} s of {args.rounds}")
    print(f"ratio {run / bare:.2f} (target <= {RATIO_TARGET})")


if __name__ == "__main__":
    main()
