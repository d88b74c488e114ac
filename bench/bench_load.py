"""Load test: many batches through the production queue at once.

--batches batches of --images images each (tiny model, 2 steps) are registered and submitted to a
Dagster instance on PostgreSQL (a throwaway cluster, as the tests start one) with the repository's
dagster.yaml: the QueuedRunCoordinator with its limits (--concurrent batches at once), served by a
real `dagster-daemon`. Prints whether every batch completed with every image stored exactly once, the
throughput, and the queue latency (run created -> started) per run. Asserts nothing.

    .venv/bin/python bench/bench_load.py                       # 10 batches x 50 images, 2 at once
    .venv/bin/python bench/bench_load.py --batches 4 --images 20 --concurrent 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from bench_pipeline import write_batch

ROOT = Path(__file__).resolve().parents[1]
# The sources first (tests/ mirrors their package names), then the harness that starts PostgreSQL.
sys.path[:0] = [str(ROOT)]
sys.path.append(str(ROOT / "tests"))


def instance_yaml(home: Path, concurrent: int) -> None:
    """The repository's dagster.yaml with room for `concurrent` batch runs at once."""
    from assetql_dagster.defs import run_tags

    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    runs = config["concurrency"]["runs"]
    runs["max_concurrent_runs"] = max(runs["max_concurrent_runs"], concurrent)
    for limit in runs["tag_concurrency_limits"]:
        if limit.get("key") == run_tags.BATCH and "value" not in limit:  # batches at once, not per batch
            limit["limit"] = concurrent
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--images", type=int, default=50, help="images per batch (rows x 2 variations)")
    parser.add_argument("--concurrent", type=int, default=2, help="batches running at once (1-10)")
    args = parser.parse_args()

    import dagster as dg
    from harness.postgres import running_postgres

    with running_postgres() as url, tempfile.TemporaryDirectory(prefix="assetql-load-") as tmp:
        work = Path(tmp)
        home, data = work / "home", work / "data"
        home.mkdir()
        instance_yaml(home, args.concurrent)
        parts = urlsplit(url)
        env = {
            **os.environ, "DAGSTER_HOME": str(home), "ASSETQL_DATA_DIR": str(data),
            "ASSETQL_PG_USER": parts.username or "postgres", "ASSETQL_PG_PASSWORD": parts.password or "unused",
            "ASSETQL_PG_HOST": parts.hostname, "ASSETQL_PG_DB": parts.path.lstrip("/"),
            "ASSETQL_PG_PORT": str(parts.port),
        }
        os.environ.update(env)
        daemon = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", "workspace.yaml"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(work / "daemon.log").open("w"),
        )
        try:
            run(args, work, data, dg)
        finally:
            daemon.terminate()
            daemon.wait(30)


def run(args, work: Path, data: Path, dg) -> None:
    from assetql_dagster.defs.launching import InstanceLauncher
    from assetql_dagster.pipeline.records import read_record
    from assetql_dagster.defs import run_tags
    from assetql_dagster.pipeline.launching import submit_batch
    from resources.storage import LocalStorage

    storage = LocalStorage(root=str(data))
    rows = args.images // 2
    with dg.DagsterInstance.get() as instance, InstanceLauncher(instance, str(ROOT)) as launcher:
        deadline = time.monotonic() + 120
        while not launcher.queue_is_served():
            if time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not start serving the queue; see {work / 'daemon.log'}")
            time.sleep(1)
        keys = []
        started = time.time()
        for index in range(args.batches):
            folder = work / f"batch-{index}"
            write_batch(folder, rows, steps=2)
            text = (folder / "batch.yaml").read_text().replace(f"name: bench-{rows}", f"name: load-{index}")
            (folder / "batch.yaml").write_text(text + "variations: 2\nexports: [manifest]\n")
            keys.append(submit_batch(storage, folder, creator="bench", overrides=None, launcher=launcher))
        print(f"submitted {len(keys)} batches of {rows * 2} images in {time.time() - started:.1f} s; "
              f"{args.concurrent} at once")
        records = []
        while True:
            records = [launcher.instance.get_run_records(dg.RunsFilter(tags={run_tags.BATCH: k}), limit=1)[0]
                       for k in keys]
            if all(r.dagster_run.is_finished for r in records):
                break
            time.sleep(2)
        finished = time.time()
    succeeded = sum(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
    exact = 0
    for key in keys:
        stored = read_record(storage, key, "images").stored
        files = storage.list_keys(f"raw/{key}")
        exact += len(stored) == len({s.image_id for s in stored}) == len(files) == rows * 2
    latency = sorted(r.start_time - r.create_timestamp.timestamp() for r in records if r.start_time)
    images = len(keys) * rows * 2
    print(f"runs succeeded: {succeeded}/{len(keys)}; batches with every image stored exactly once: {exact}/{len(keys)}")
    print(f"{images} images in {finished - started:.1f} s: {images / (finished - started):.2f} images/s overall")
    print(f"queue latency (created -> started): p50 {statistics.median(latency):.1f} s, "
          f"max {latency[-1]:.1f} s, min {latency[0]:.1f} s")


if __name__ == "__main__":
    main()
