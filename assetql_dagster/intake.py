"""Turning a batch folder into a registered, immutable batch.

Registration validates the batch (before any model loads), copies its files into storage under
`batches/{key}/source/` and only then writes `batches/{key}/source.json`, which marks the
snapshot complete. Everything downstream reads the snapshot, so editing or deleting the
original folder can never change a batch that has been registered.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from assetql_dagster.domain.batch_loader import BatchSource, load_batch
from assetql_dagster.domain.layout import batch_partition_key, record_key, source_key
from resources.storage import AssetStorage


@dataclasses.dataclass(frozen=True)
class Registration:
    key: str
    source: BatchSource
    created: bool


def register_batch(storage: AssetStorage, path: Path, origin: str | None = None) -> Registration:
    """Validate `path` and snapshot it into storage; registering the same content again is a no-op."""
    source = load_batch(path)
    key = batch_partition_key(source.name, source.content_hash)
    marker = record_key(key, "source")
    if storage.exists(marker):
        return Registration(key, source, created=False)
    storage.write_bytes(source_key(key, "batch.csv"), source.csv_path.read_bytes(), "text/csv")
    if source.settings_path is not None:
        storage.write_bytes(source_key(key, "batch.yaml"), source.settings_path.read_bytes())
    for ref in source.reference_paths:
        storage.write_bytes(source_key(key, f"references/{ref.name}"), ref.read_bytes())
    meta = {
        "key": key,
        "name": source.name,
        "origin": origin or str(Path(path).resolve()),
        "content_hash": source.content_hash,
        "registered_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    storage.write_text(marker, json.dumps(meta, indent=2))
    return Registration(key, source, created=True)


def registration_meta(storage: AssetStorage, key: str) -> dict:
    marker = record_key(key, "source")
    if not storage.exists(marker):
        raise FileNotFoundError(
            f"batch partition {key!r} has no registered source (expected {marker!r} in storage); "
            "add batches with `assetql run PATH`, the inbox sensor or the S3 sensor"
        )
    return json.loads(storage.read_text(marker))


@contextmanager
def restored_batch(storage: AssetStorage, key: str) -> Iterator[tuple[BatchSource, dict]]:
    """The registered snapshot of `key`, re-validated from a temporary folder."""
    meta = registration_meta(storage, key)
    prefix = source_key(key, "")
    with tempfile.TemporaryDirectory(prefix="assetql-batch-") as tmp:
        folder = Path(tmp) / "batch"
        for stored in storage.list_keys(prefix):
            target = folder / stored[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(storage.read_bytes(stored))
        source = dataclasses.replace(load_batch(folder), name=meta["name"])
        if source.content_hash != meta["content_hash"]:
            raise RuntimeError(
                f"stored snapshot of batch {key!r} hashes to {source.content_hash[:12]}, "
                f"expected {meta['content_hash'][:12]}: the snapshot under {prefix!r} was modified"
            )
        yield source, meta
