"""Batches stored in S3 (drops, campaign sources), downloaded into a local folder to be registered."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from assetql_dagster.domain.batch_loader import CSV_NAME, REFERENCES_DIR, SETTINGS_NAME
from assetql_dagster.domain.errors import BatchValidationError, Problem
from resources.s3 import S3Bucket
from resources.storage import check_key


def download_s3_batch(
    bucket: S3Bucket, key: str, target: Path, batch_files: Iterable[str] | None = None
) -> Path:
    """Download the batch at `key` in `bucket` into `target` and return the path to register.

    `key` is a CSV (the batch.yaml and references/ of its folder come with it) or a folder
    holding batch.csv; the local folder keeps the S3 folder's name, which names the batch.
    `batch_files` are the keys of that batch.yaml and references/ when the caller has listed
    them already; otherwise they are looked up.
    """
    csv_key = key if key.lower().endswith(".csv") else f"{key.rstrip('/')}/{CSV_NAME}"
    folder, _, csv_name = csv_key.rpartition("/")
    local = target / (PurePosixPath(folder).name or "batch")
    siblings = f"{folder}/" if folder else ""
    if batch_files is None:
        batch_files = _listed_batch_files(bucket, siblings)
    for file_key in (csv_key, *batch_files):
        _download(bucket, file_key, local, file_key[len(siblings):])
    return local if csv_name == CSV_NAME else local / csv_name


def _listed_batch_files(bucket: S3Bucket, siblings: str) -> list[str]:
    """Keys of the batch.yaml and references/ files under the folder `siblings`."""
    settings_key = siblings + SETTINGS_NAME
    settings = [settings_key] if bucket.head(settings_key) is not None else []
    # Keys ending in "/" are the empty folder markers consoles create. Nested keys become
    # sub-folders, which load_batch then reports as bad references.
    keys = (obj.key for obj in bucket.list(f"{siblings}{REFERENCES_DIR}/"))
    return settings + [key for key in keys if not key.endswith("/")]


def _download(bucket: S3Bucket, key: str, folder: Path, relative: str) -> None:
    """Download `key` to `folder/relative`, refusing names that would land outside `folder`."""
    try:
        path = folder / check_key(relative)
    except ValueError as exc:
        raise BatchValidationError([Problem(key, f"cannot be downloaded as a batch file: {exc}")]) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    bucket.download(key, path)
