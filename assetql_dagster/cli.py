"""`assetql validate PATH` and `assetql run PATH` on the local embedded instance."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from assetql_dagster.defs import run_tags
from assetql_dagster.domain.batch_loader import load_batch
from assetql_dagster.domain.errors import BatchValidationError

LOCAL_DAGSTER_HOME = ".dagster"


def cmd_validate(path: Path) -> int:
    try:
        source = load_batch(path)
    except BatchValidationError as err:
        print(f"{path}: {len(err.problems)} problem(s)", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(
        f"{path}: OK — batch {source.name!r}, {len(source.rows)} rows × {source.settings.variations} "
        f"variation(s), {len(source.reference_paths)} style reference(s), model {source.settings.model!r}"
    )
    return 0


def batch_job_definition():
    """The resolved batch job with the code location's executor; module-level so it is reconstructable."""
    from assetql_dagster.definitions import defs

    return defs.resolve_job_def("batch_job")


def use_local_instance(data_dir: str | None) -> Path:
    # Fixed before Dagster or the definitions are imported: both read locations from the environment.
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(LOCAL_DAGSTER_HOME).resolve())))
    home.mkdir(parents=True, exist_ok=True)
    if data_dir:
        os.environ["ASSETQL_DATA_DIR"] = str(Path(data_dir).resolve())
    return home


def execute(key: str, tags: dict, in_process: bool, asset_keys: list[str] | None = None):
    """Runs the batch job for one partition on the local instance, through the configured executor
    unless `in_process` (one process, no GPU pool: quickest for debugging)."""
    import dagster as dg

    run_config = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    selection = [dg.AssetKey(k) for k in asset_keys] if asset_keys else None
    instance = dg.DagsterInstance.get()
    if in_process:
        return batch_job_definition().execute_in_process(
            partition_key=key, instance=instance, tags=tags, run_config=run_config,
            raise_on_error=False, asset_selection=selection,
        )
    return dg.execute_job(
        dg.reconstructable(batch_job_definition),
        instance=instance,
        tags={**tags, "dagster/partition": key},
        run_config=run_config,
        asset_selection=selection,
    )


def storage_resource():
    """The code location's storage, with its config (e.g. secrets bound as EnvVars) resolved."""
    import dagster as dg

    from assetql_dagster.definitions import defs

    with dg.build_resources({"storage": defs.resources["storage"]}) as resources:
        return resources.storage


def report(result, key: str) -> int:
    from assetql_dagster.pipeline.records import read_record

    if not result.success:
        print(f"run {result.run_id} failed; see the logs above or the Dagster UI", file=sys.stderr)
        return 1
    storage = storage_resource()
    summary = read_record(storage, key, "exports")
    failed = read_record(storage, key, "failed_rows")
    print(f"run {result.run_id} succeeded: {summary['images']} images")
    for label, field in (("package", "zip"), ("gallery", "gallery"), ("manifest", "manifest"), ("links", "links_manifest")):
        if field in summary:
            print(f"  {label + ':':9} {summary[field]}")
    if failed:
        print(f"  {len(failed)} image(s) failed; re-run just those with: assetql retry-failed {key}")
    return 0


def cmd_run(path: Path, data_dir: str | None, in_process: bool) -> int:
    if cmd_validate(path):
        return 1
    home = use_local_instance(data_dir)
    import dagster as dg

    from assetql_dagster.pipeline.registration import register_batch
    from assetql_dagster.defs.partitions import batches_partitions

    registration = register_batch(storage_resource(), path)
    key = registration.key
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(batches_partitions.name, [key])
    print(f"batch {registration.source.name!r} -> partition {key} (instance {home})")
    tags = run_tags.batch_run_tags(key, str(Path(path).resolve()))
    return report(execute(key, tags, in_process), key)


def cmd_retry_failed(key: str, data_dir: str | None, in_process: bool) -> int:
    use_local_instance(data_dir)
    from assetql_dagster.pipeline.records import read_record

    failed = read_record(storage_resource(), key, "failed_rows")
    if not failed:
        print(f"batch {key} has no failed rows")
        return 0
    rows = ", ".join(f"{f['variant_id']}#{f['variation']}" for f in failed)
    print(f"batch {key}: re-running {len(failed)} failed image(s): {rows}")
    # Stored images are skipped by generation, so re-materializing from `images` down
    # regenerates exactly the failed rows and rebuilds scores, tags and exports around them.
    downstream = ["images", "scores", "tags", "exports"]
    return report(execute(key, run_tags.batch_run_tags(key, key, **{run_tags.RETRY: "failed-rows"}), in_process, downstream), key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="assetql", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check a batch folder or CSV and print every problem")
    validate.add_argument("path", type=Path)
    run = sub.add_parser("run", help="add the batch as a partition and materialize its whole asset graph")
    run.add_argument("path", type=Path)
    retry = sub.add_parser("retry-failed", help="re-generate only the failed rows of a batch, then re-export")
    retry.add_argument("batch", help="the batch's partition key")
    for command in (run, retry):
        command.add_argument("--data-dir", help="storage root for the local files (default ./data)")
        command.add_argument("--in-process", action="store_true", help="run every step in this process")
    args = parser.parse_args(argv)
    if args.command == "validate":
        return cmd_validate(args.path)
    if args.command == "retry-failed":
        return cmd_retry_failed(args.batch, args.data_dir, args.in_process)
    return cmd_run(args.path, args.data_dir, args.in_process)


if __name__ == "__main__":
    sys.exit(main())
