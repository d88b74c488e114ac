from datetime import datetime, timedelta, timezone

import pytest

from assetql_dagster.domain.layout import export_key, raw_image_key, thumbnail_key, version_key
from assetql_dagster.pipeline import retention
from assetql_dagster.pipeline.registration import register_batch, registered_batch
from assetql_dagster.pipeline.versions import registered_batches
from resources.storage import LocalStorage

from harness.aged_batches import aged_batch
from harness.batch_runs import catalog_beside, materialize_partition
from harness.sample_batches import make_batch

from assetql_dagster.pipeline.cataloguing import rebuild
from assetql_dagster.pipeline.searching import find


@pytest.fixture
def storage(tmp_path):
    return LocalStorage(root=str(tmp_path / "data"))


def test_gc_deletes_working_files_of_batches_past_the_retention_only(storage, tmp_path):
    # Registered one second apart, the smallest step registration times have.
    old_at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    old, new = (aged_batch(storage, tmp_path / name, name, at.strftime(retention.REGISTERED_AT_FORMAT))
                for name, at in (("old", old_at), ("new", old_at + timedelta(seconds=1))))
    for key in (old, new):
        storage.write_bytes(version_key(key, "a", 1), b"12345")
    assert registered_batches(storage) == sorted([old, new])
    # Half a second after `old` turned 30 days old, `new` has not yet.
    now = old_at + timedelta(days=30, seconds=0.5)
    working = sorted([raw_image_key(old, "a"), thumbnail_key(old, "a"), version_key(old, "a", 1)])

    [dry] = retention.collect_garbage(storage, 30, dry_run=True, now=now)
    assert (dry.key, dry.registered_at, sorted(dry.sizes), dry.bytes) == (old, old_at, working, 15)
    assert all(storage.exists(key) for key in working)  # a dry run deletes nothing

    assert retention.collect_garbage(storage, 31, now=now) == []
    [done] = retention.collect_garbage(storage, 30, now=now)
    assert done.key == old and not any(storage.exists(key) for key in working)
    # Records, sources and exports stay: the catalog and the delivered packages outlive the working files.
    assert storage.exists(export_key(old, "p.zip")) and storage.exists(f"batches/{old}/source.json")
    assert storage.exists(raw_image_key(new, "a")) and storage.exists(version_key(new, "a", 1))
    # Nothing left to collect for `old`: a second pass finds no files.
    assert retention.collect_garbage(storage, 30, now=now) == []


@pytest.mark.parametrize("deleted_by", ["gc", "s3-lifecycle"])
def test_gc_takes_expired_images_out_of_the_catalog_and_keeps_the_batch_with_its_package(tmp_path, storage, deleted_by):
    key = register_batch(storage, make_batch(tmp_path / "inbox", rows=2), creator="ana").key
    assert materialize_partition(storage, key).success
    catalog = catalog_beside(storage)
    assert catalog.row_counts()["assets"] == 2 and catalog.get_batch(key)["status"] == "exported"
    registered_at = datetime.strptime(registered_batch(storage, key).registered_at, retention.REGISTERED_AT_FORMAT)
    if deleted_by == "s3-lifecycle":  # the bucket's rule expired the working files; gc finds none left
        storage.delete([k for folder in retention.EXPIRING_FOLDERS for k in storage.list_keys(f"{folder}/{key}/")])

    done = retention.collect_garbage(storage, 30, now=registered_at.replace(tzinfo=timezone.utc) + timedelta(days=31),
                                     catalog=catalog)

    assert [b.key for b in done] == ([key] if deleted_by == "gc" else [])
    # The library can neither show nor serve the deleted images, so they are no longer found; the batch
    # stays, marked expired, with the package it delivered. A catalog rebuilt from storage agrees.
    for _ in range(2):
        batch = catalog.get_batch(key)
        assert catalog.row_counts()["assets"] == 0 and find(catalog, None) == []
        assert (batch["status"], batch["images_stored"]) == ("expired", 2)
        assert catalog.batch_exports(key) and all(storage.exists(k) for k in catalog.batch_exports(key).values())
        rebuild(catalog, storage)


@pytest.mark.parametrize(("env", "expected"), [({}, 30), ({"ASSETQL_RETENTION_DAYS": ""}, 30),
                                               ({"ASSETQL_RETENTION_DAYS": "365"}, 365)])
def test_retention_days_come_from_the_environment(env, expected):
    assert retention.retention_days(env) == expected


@pytest.mark.parametrize("text", ["0", "-3", "thirty", "1.5"])
def test_invalid_retention_is_refused_naming_the_value(text):
    with pytest.raises(ValueError, match=rf"ASSETQL_RETENTION_DAYS={text!r}.* must be a whole number of days, at least 1"):
        retention.retention_days({"ASSETQL_RETENTION_DAYS": text})


def test_lifecycle_expires_working_files_and_archives_exports():
    rules = {rule["ID"]: rule for rule in retention.lifecycle_rules(30, prefix="/team/")}
    assert set(rules) == {"assetql-expire-raw", "assetql-expire-thumbnails", "assetql-expire-versions",
                          "assetql-archive-exports"}
    raw = rules["assetql-expire-raw"]
    assert raw["Filter"] == {"Prefix": "team/raw/"} and raw["Expiration"] == {"Days": 30}
    # A 30-day retention ends before the 90-day archive: S3 refuses a transition on or after expiry.
    assert "Transitions" not in raw
    assert rules["assetql-archive-exports"]["Transitions"] == [{"Days": 90, "StorageClass": "GLACIER"}]
    assert "Expiration" not in rules["assetql-archive-exports"]
    long = {rule["ID"]: rule for rule in retention.lifecycle_rules(365)}["assetql-expire-versions"]
    assert long["Filter"] == {"Prefix": "versions/"}
    assert long["Transitions"] == [{"Days": 90, "StorageClass": "GLACIER"}] and long["Expiration"] == {"Days": 365}


def test_merging_keeps_rules_others_set():
    theirs = {"ID": "logs-expire", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 7}}
    stale = {"ID": "assetql-expire-raw", "Filter": {"Prefix": "raw/"}, "Status": "Enabled", "Expiration": {"Days": 9}}
    ours = retention.lifecycle_rules(30)
    assert retention.merged_rules([theirs, stale], ours) == [theirs, *ours]
