"""`assetql gc` and `assetql s3-lifecycle`, run as the separate process a user starts."""

import json
import os
import subprocess
import sys
from pathlib import Path

from assetql_dagster.domain.layout import export_key, raw_image_key, thumbnail_key
from resources.storage import LocalStorage

from harness.aged_batches import aged_batch

ROOT = Path(__file__).resolve().parents[2]


def assetql(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assetql_dagster.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def test_gc_lists_then_deletes_expired_working_files(tmp_path):
    storage = LocalStorage(root=str(tmp_path / "data"))
    old = aged_batch(storage, tmp_path / "in", "old", "2020-01-01T00:00:00Z")
    new = aged_batch(storage, tmp_path / "in2", "new", "2999-01-01T00:00:00Z")
    env = {"DAGSTER_HOME": str(tmp_path / "home"), "ASSETQL_RETENTION_DAYS": "30", "ASSETQL_STORAGE": "local"}

    dry = assetql("gc", "--dry-run", "--data-dir", str(tmp_path / "data"), env=env, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert f"{old} (registered 2020-01-01): would delete 2 file(s), 10 bytes" in dry.stdout
    assert "retention 30 days: would delete 2 file(s) of 1 batch(es), 10 bytes" in dry.stdout
    assert storage.exists(raw_image_key(old, "a"))

    done = assetql("gc", "--data-dir", str(tmp_path / "data"), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "retention 30 days: deleted 2 file(s) of 1 batch(es), 10 bytes" in done.stdout
    assert not storage.exists(raw_image_key(old, "a")) and not storage.exists(thumbnail_key(old, "a"))
    assert storage.exists(export_key(old, "p.zip")) and storage.exists(raw_image_key(new, "a"))


def test_gc_refuses_an_invalid_retention(tmp_path):
    env = {"DAGSTER_HOME": str(tmp_path / "home"), "ASSETQL_RETENTION_DAYS": "a month", "ASSETQL_STORAGE": "local"}
    result = assetql("gc", "--data-dir", str(tmp_path / "data"), env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "ASSETQL_RETENTION_DAYS='a month' must be a whole number of days, at least 1" in result.stderr


def test_s3_lifecycle_is_applied_to_the_storage_bucket(tmp_path, s3_endpoint, s3_bucket, s3_client):
    theirs = {"ID": "logs-expire", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 7}}
    s3_client.put_bucket_lifecycle_configuration(Bucket=s3_bucket, LifecycleConfiguration={"Rules": [theirs]})
    env = {"DAGSTER_HOME": str(tmp_path / "home"), "ASSETQL_STORAGE": "s3", "ASSETQL_S3_BUCKET": s3_bucket,
           "ASSETQL_S3_PREFIX": "team", "ASSETQL_S3_ENDPOINT_URL": s3_endpoint, "ASSETQL_S3_REGION": "us-east-1",
           "ASSETQL_RETENTION_DAYS": "120"}

    printed = assetql("s3-lifecycle", env=env, cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert len(json.loads(printed.stdout)["Rules"]) == 4
    assert s3_client.get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"] == [theirs]  # not applied

    for _ in range(2):  # applying again replaces our rules instead of adding them twice
        applied = assetql("s3-lifecycle", "--apply", env=env, cwd=tmp_path)
        assert applied.returncode == 0, applied.stderr
        assert f"applied 4 lifecycle rule(s) to bucket {s3_bucket}" in applied.stdout
    rules = {r["ID"]: r for r in s3_client.get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"]}
    assert set(rules) == {"logs-expire", "assetql-expire-raw", "assetql-expire-thumbnails", "assetql-expire-versions",
                          "assetql-archive-exports"}
    raw = rules["assetql-expire-raw"]
    assert raw["Filter"] == {"Prefix": "team/raw/"} and raw["Expiration"] == {"Days": 120}
    assert raw["Transitions"] == [{"Days": 90, "StorageClass": "GLACIER"}]
    assert rules["assetql-archive-exports"]["Transitions"] == [{"Days": 90, "StorageClass": "GLACIER"}]


def test_s3_lifecycle_needs_s3_storage(tmp_path):
    env = {"DAGSTER_HOME": str(tmp_path / "home"), "ASSETQL_STORAGE": "local"}
    result = assetql("s3-lifecycle", "--apply", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "the storage is LocalStorage, not S3Storage; set ASSETQL_STORAGE=s3" in result.stderr
