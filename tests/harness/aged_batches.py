"""Registered batches dated back, with working files and a package, for the retention tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.sample_batches import make_batch

from assetql_dagster.domain.layout import export_key, raw_image_key, record_key, thumbnail_key
from assetql_dagster.pipeline.records import write_record
from assetql_dagster.pipeline.registration import register_batch, registered_batch
from resources.storage import AssetStorage


def aged_batch(storage: AssetStorage, root: Path, name: str, registered_at: str) -> str:
    """A batch `name` with a raw image, a thumbnail and a package (5 bytes each), registered at
    `registered_at`; its key."""
    key = register_batch(storage, make_batch(root, rows=1, name=name, references=False), creator="test").key
    # Registration stamps the present; the record is restamped as a batch registered back then.
    write_record(storage, record_key(key, "source"),
                 dataclasses.replace(registered_batch(storage, key), registered_at=registered_at))
    for stored in (raw_image_key(key, "a"), thumbnail_key(key, "a"), export_key(key, "p.zip")):
        storage.write_bytes(stored, b"12345")
    return key
