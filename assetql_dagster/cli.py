"""`assetql validate PATH` and `assetql run PATH` on the local embedded instance."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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


def cmd_run(path: Path, data_dir: str | None) -> int:
    if cmd_validate(path):
        return 1
    # The local instance and data folder are fixed before Dagster or the definitions are imported,
    # because both read their locations from the environment at import time.
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(LOCAL_DAGSTER_HOME).resolve())))
    home.mkdir(parents=True, exist_ok=True)
    if data_dir:
        os.environ["ASSETQL_DATA_DIR"] = data_dir

    import dagster as dg

    from assetql_dagster.definitions import defs
    from assetql_dagster.intake import register_batch
    from assetql_dagster.partitions import batches_partitions
    from assetql_dagster.records import read_record

    storage = defs.resources["storage"]
    registration = register_batch(storage, path)
    key = registration.key
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(batches_partitions.name, [key])
        print(f"batch {registration.source.name!r} -> partition {key} (instance {home})")
        result = defs.resolve_job_def("batch_job").execute_in_process(
            partition_key=key,
            instance=instance,
            tags={"assetql/batch": key, "assetql/origin": str(Path(path).resolve())},
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            raise_on_error=False,
        )
    if not result.success:
        print(f"run {result.run_id} failed; see the logs above or the Dagster UI", file=sys.stderr)
        return 1
    summary = read_record(storage, key, "exports")
    print(f"run {result.run_id} succeeded: {summary['images']} images")
    print(f"  package: {summary['zip']}")
    print(f"  gallery: {summary['gallery']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="assetql", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check a batch folder or CSV and print every problem")
    validate.add_argument("path", type=Path)
    run = sub.add_parser("run", help="add the batch as a partition and materialize its whole asset graph")
    run.add_argument("path", type=Path)
    run.add_argument("--data-dir", help="storage root for the local files (default ./data)")
    args = parser.parse_args(argv)
    if args.command == "validate":
        return cmd_validate(args.path)
    return cmd_run(args.path, args.data_dir)


if __name__ == "__main__":
    sys.exit(main())
