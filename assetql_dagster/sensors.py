"""Sensors that turn dropped batches into partitions and runs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import dagster as dg

from assetql_dagster.domain.errors import BatchValidationError
from assetql_dagster.intake import register_batch
from assetql_dagster.jobs import batch_job
from assetql_dagster.partitions import batches_partitions
from resources.storage import AssetStorage

INBOX_ENV = "ASSETQL_INBOX"
DEFAULT_INBOX = "inbox"


def inbox_entries(inbox: Path) -> list[Path]:
    """Batch folders (holding a batch.csv) and loose CSV files directly inside the inbox."""
    if not inbox.is_dir():
        return []
    entries = []
    for entry in sorted(inbox.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and (entry / "batch.csv").is_file():
            entries.append(entry)
        elif entry.is_file() and entry.suffix.lower() == ".csv":
            entries.append(entry)
    return entries


def fingerprint(entry: Path) -> str:
    """Cheap change detector (names, sizes, mtimes) so unchanged batches are not re-read every tick."""
    files = sorted(p for p in entry.rglob("*") if p.is_file()) if entry.is_dir() else [entry]
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(entry.parent)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


@dg.sensor(job=batch_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING)
def inbox_sensor(context: dg.SensorEvaluationContext, storage: AssetStorage) -> dg.SensorResult:
    """Starts one run per new or changed batch dropped into the inbox folder."""
    inbox = Path(os.environ.get(INBOX_ENV, DEFAULT_INBOX)).resolve()
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    current, run_requests, new_keys, rejected = {}, [], [], []
    for entry in inbox_entries(inbox):
        stamp = fingerprint(entry)
        current[str(entry)] = stamp
        if seen.get(str(entry)) == stamp:
            continue
        try:
            registration = register_batch(storage, entry)
        except BatchValidationError as err:
            context.log.warning(f"not starting {entry}: {err}")
            rejected.append(f"{entry.name}: {err}")
            continue
        key = registration.key
        if not context.instance.has_dynamic_partition(batches_partitions.name, key) and key not in new_keys:
            new_keys.append(key)
        run_requests.append(
            dg.RunRequest(
                run_key=f"{entry}:{registration.source.content_hash}",
                partition_key=key,
                tags={"assetql/batch": key, "assetql/origin": str(entry)},
            )
        )
        context.log.info(f"batch {entry.name} -> partition {key}")
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[batches_partitions.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps(current, sort_keys=True),
        skip_reason="; ".join(rejected) if rejected and not run_requests else None,
    )
