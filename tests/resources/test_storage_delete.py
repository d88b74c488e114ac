import pytest

from resources.s3 import DELETE_BATCH_SIZE, S3Connection
from resources.s3_storage import S3Storage
from resources.storage import LocalStorage


def test_local_delete_removes_files_and_emptied_folders_only(tmp_path):
    storage = LocalStorage(root=str(tmp_path / "data"))
    for key in ("raw/b1/a.png", "raw/b1/sub/b.png", "raw/b2/c.png", "exports/b1/x.zip"):
        storage.write_bytes(key, b"x")
    storage.delete(["raw/b1/a.png", "raw/b1/sub/b.png", "raw/b1/missing.png"])
    assert storage.list_keys("") == ["exports/b1/x.zip", "raw/b2/c.png"]
    # The emptied batch folder goes; the shared `raw` folder and the root stay.
    assert not (tmp_path / "data" / "raw" / "b1").exists()
    assert (tmp_path / "data" / "raw").is_dir()
    storage.delete(["raw/b2/c.png", "exports/b1/x.zip"])
    assert (tmp_path / "data").is_dir() and storage.list_keys("") == []


def test_local_delete_refuses_keys_outside_the_root(tmp_path):
    storage = LocalStorage(root=str(tmp_path / "data"))
    with pytest.raises(ValueError, match=r"storage key '\.\./x' must not contain '\.', '\.\.'"):
        storage.delete(["../x"])


def test_s3_delete_removes_objects_under_the_prefix_in_batches(s3_endpoint, s3_bucket, s3_client):
    storage = S3Storage(connection=S3Connection(endpoint_url=s3_endpoint, region_name="us-east-1"),
                        bucket=s3_bucket, prefix="team")
    keys = [f"raw/b1/{i:04d}.png" for i in range(DELETE_BATCH_SIZE + 3)]
    # Written straight through the client: 1,003 PUTs through the storage would check each first.
    for key in keys:
        s3_client.put_object(Bucket=s3_bucket, Key=f"team/{key}", Body=b"x")
    storage.write_bytes("exports/b1/x.zip", b"zip")
    storage.delete([*keys, "raw/b1/never-written.png"])
    assert storage.list_keys("") == ["exports/b1/x.zip"]
    assert [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]] == ["team/exports/b1/x.zip"]
