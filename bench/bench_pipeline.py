"""Batch pipeline benchmark: wall time per stage, images/s and peak RSS for a 100- and a 500-row batch.

Each batch size runs in its own child process so the peak RSS figure belongs to that batch alone.
Prints figures; asserts nothing.

    .venv/bin/python bench/bench_pipeline.py              # 100 and 500 rows, tiny model, CPU
    .venv/bin/python bench/bench_pipeline.py --rows 100 --steps 4
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Stage as printed -> the step (or steps, `images.*`) that computes it.
STAGES = {
    "batch_input": "batch_input",
    "style_profile": "style_profile",
    "prompts": "prompts",
    "images": "images",
    "scores": "scores",
    "curated_images": "curated_images",
    "tags": "tags",
    "exports": "exports",
}
SUBJECTS = ["sword", "shield", "potion", "helmet", "gem", "coin", "chest", "bow", "staff", "ring"]


def write_batch(folder: Path, rows: int, steps: int) -> None:
    folder.mkdir(parents=True)
    lines = ["variant_id,subject,category,material"]
    for i in range(rows):
        subject = SUBJECTS[i % len(SUBJECTS)]
        lines.append(f"{subject}-{i:04d},a {subject},item,material {i % 7}")
    (folder / "batch.csv").write_text("\n".join(lines) + "\n")
    (folder / "batch.yaml").write_text(
        f"name: bench-{rows}\ntemplate: '{{subject}} made of {{material}}, game item icon'\n"
        f"model: tiny\nsteps: {steps}\nmax_rows: {rows}\n"
    )
    shutil.copytree(ROOT / "examples" / "fantasy-items" / "references", folder / "references")


def stage_seconds(step_stats, step: str) -> float:
    """Wall time of a stage: a graph-backed stage such as `images` spans several steps (`images.*`)."""
    steps = [s for s in step_stats if s.step_key == step or s.step_key.startswith(f"{step}.")]
    return max(s.end_time for s in steps) - min(s.start_time for s in steps)


def run_one(rows: int, steps: int) -> dict:
    """Runs inside the child process: one batch, in process, on a throwaway instance and storage."""
    import dagster as dg

    from assetql_dagster.definitions import defs, with_io_manager
    from assetql_dagster.pipeline.registration import register_batch
    from assetql_dagster.defs.partitions import batches_partitions
    from resources.clip import ClipEmbedder
    from resources.generator import ImageGenerator
    from resources.storage import LocalStorage

    with tempfile.TemporaryDirectory(prefix="assetql-bench-") as tmp:
        write_batch(Path(tmp) / "batch", rows, steps)
        storage = LocalStorage(root=str(Path(tmp) / "data"))
        key = register_batch(storage, Path(tmp) / "batch").key
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions(batches_partitions.name, [key])
            started = time.perf_counter()
            result = defs.resolve_job_def("batch_job").execute_in_process(
                partition_key=key,
                instance=instance,
                resources=with_io_manager({"storage": storage, "generator": ImageGenerator(), "clip": ClipEmbedder()}),
            )
            wall = time.perf_counter() - started
            step_stats = instance.get_run_step_stats(result.run_id)
            images_meta = result.asset_materializations_for_node("images")[0].metadata
    return {
        "rows": rows,
        "success": result.success,
        "wall_s": wall,
        "stages": {stage: stage_seconds(step_stats, step) for stage, step in STAGES.items()},
        "images": images_meta["images"].value,
        "generation_s": images_meta["generation_seconds"].value,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.rows[0], args.steps)))
        return
    results = []
    for rows in args.rows:
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--rows", str(rows), "--steps", str(args.steps)],
            cwd=ROOT, check=True, capture_output=True, text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"tiny model, CPU, {args.steps} steps, 64x64, 1 variation per row")
    header = f"{'rows':>5} {'ok':>3} " + " ".join(f"{s:>13}" for s in STAGES) + f" {'total s':>8} {'img/s':>7} {'gen img/s':>9} {'peak RSS MB':>11}"
    print(header)
    for r in results:
        stages = " ".join(f"{r['stages'][s]:>13.2f}" for s in STAGES)
        print(
            f"{r['rows']:>5} {'yes' if r['success'] else 'NO':>3} {stages} {r['wall_s']:>8.1f} "
            f"{r['images'] / r['wall_s']:>7.2f} {r['images'] / r['generation_s']:>9.2f} {r['peak_rss_mb']:>11.0f}"
        )


if __name__ == "__main__":
    main()
