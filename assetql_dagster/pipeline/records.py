"""JSON and array records each stage keeps under `batches/{batch}/` in storage."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from assetql_dagster.domain.layout import record_key
from assetql_dagster.domain.settings import BatchSettings, settings_from_dict
from resources.storage import AssetStorage


def write_record(storage: AssetStorage, batch: str, stage: str, data: Any) -> str:
    return storage.write_text(
        record_key(batch, stage), json.dumps(data, indent=1, ensure_ascii=False), "application/json"
    )


def read_record(storage: AssetStorage, batch: str, stage: str) -> Any:
    key = record_key(batch, stage)
    if not storage.exists(key):
        raise FileNotFoundError(
            f"batch {batch!r} has no {stage!r} record at {key!r}: materialize the {stage} asset "
            "for this partition first"
        )
    return json.loads(storage.read_text(key))


def write_array(storage: AssetStorage, batch: str, stage: str, array: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return storage.write_bytes(record_key(batch, stage, "npy"), buf.getvalue())


def read_array(storage: AssetStorage, batch: str, stage: str) -> np.ndarray:
    return np.load(io.BytesIO(storage.read_bytes(record_key(batch, stage, "npy"))), allow_pickle=False)


def read_settings(storage: AssetStorage, batch: str) -> BatchSettings:
    """The settings snapshot `batch_input` stored for `batch`."""
    return settings_from_dict(read_record(storage, batch, "batch_input")["settings"])
