import hashlib
import math
from datetime import datetime

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from resources.s3 import SIGV4_MAX_EXPIRY_S, S3Bucket, S3Connection, S3Object


@pytest.fixture
def connection(s3_endpoint) -> S3Connection:
    return S3Connection(endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(connection, s3_bucket) -> S3Bucket:
    return connection.bucket(s3_bucket)


def test_the_client_signs_with_sigv4_and_retries_in_standard_mode(connection):
    config = connection.client.meta.config
    assert config.signature_version == "s3v4" and config.retries["mode"] == "standard"
    assert connection.bucket("a").client is connection.bucket("b").client


def test_list_follows_every_page_and_describes_each_object(bucket):
    keys = [f"in/{i:02d}.csv" for i in range(5)]
    for key in [*keys, "other/x.csv"]:
        bucket.put(key, key.encode())
    calls = []
    bucket.client.meta.events.register("before-call.s3.ListObjectsV2", lambda **_: calls.append(1))
    page_size = 2

    listed = list(bucket.list("in/", page_size=page_size))

    assert len(calls) == math.ceil(len(keys) / page_size)
    assert [obj.key for obj in listed] == keys
    first = listed[0]
    assert isinstance(first, S3Object) and isinstance(first.last_modified, datetime)
    # A single-part upload's ETag is the MD5 of its bytes, here without S3's quotes.
    assert (first.etag, first.size) == (hashlib.md5(keys[0].encode()).hexdigest(), len(keys[0]))
    assert list(bucket.list("none/")) == []


def test_head_describes_an_object_and_is_none_for_a_missing_key(bucket):
    bucket.put("a/x.json", b"{}", ContentType="application/json", Metadata={"sha256": "abc"})
    head = bucket.head("a/x.json")
    assert (head["ContentType"], head["ContentLength"], head["Metadata"]) == ("application/json", 2, {"sha256": "abc"})
    assert bucket.head("a/missing.json") is None


def test_read_of_a_missing_key_raises_file_not_found_naming_it(bucket, s3_bucket):
    bucket.put("a/x.txt", b"text")
    assert bucket.read("a/x.txt") == b"text"
    with pytest.raises(FileNotFoundError, match=f"^s3://{s3_bucket}/a/missing.txt does not exist$"):
        bucket.read("a/missing.txt")


@pytest.mark.parametrize("call", ["head", "read"])
def test_errors_other_than_not_found_are_raised(bucket, call):
    with Stubber(bucket.client) as stub:
        method = "head_object" if call == "head" else "get_object"
        stub.add_client_error(method, service_error_code="AccessDenied", http_status_code=403)
        with pytest.raises(ClientError, match="AccessDenied"):
            getattr(bucket, call)("a/x.txt")


def test_upload_and_download_round_trip_with_put_arguments(bucket, tmp_path):
    source = tmp_path / "pack.zip"
    source.write_bytes(bytes(range(256)) * 16)
    bucket.upload("exports/pack.zip", source, ContentType="application/zip", ServerSideEncryption="AES256")
    head = bucket.head("exports/pack.zip")
    assert head["ContentType"] == "application/zip" and head["ServerSideEncryption"] == "AES256"
    target = tmp_path / "copy.zip"
    bucket.download("exports/pack.zip", target)
    assert target.read_bytes() == source.read_bytes()


@pytest.mark.parametrize("seconds", [0, -1, SIGV4_MAX_EXPIRY_S + 1])
def test_presigned_get_refuses_lifetimes_sigv4_cannot_sign(bucket, seconds):
    with pytest.raises(ValueError, match=rf"^presigned URL expiry {seconds}s is out of range: SigV4 "
                                         rf"signatures allow 1s to {SIGV4_MAX_EXPIRY_S}s \(7 days\)$"):
        bucket.presigned_get("a/x.png", seconds)

