"""Typed stage records in storage, under `batches/{batch}/`: what the IO manager and the CLI read and write."""

from __future__ import annotations

import json
from typing import Any

from assetql_dagster.domain.layout import record_key
from assetql_dagster.domain.records import from_json, to_json
from resources.storage import AssetStorage


def write_record(storage: AssetStorage, key: str, record: Any) -> str:
    return storage.write_text(key, json.dumps(to_json(record), ensure_ascii=False), "application/json")


def read_record(storage: AssetStorage, batch: str, stage: str) -> Any:
    """The record stage `stage` (an asset name) stored for `batch`."""
    return read_record_at(storage, record_key(batch, stage), f"materialize {stage} for batch {batch!r} first")


def read_record_at(storage: AssetStorage, key: str, hint: str) -> Any:
    if not storage.exists(key):
        raise FileNotFoundError(f"no stored record at {key!r}: {hint}")
    return from_json(json.loads(storage.read_text(key)))
