import hashlib
import math
import re
import time
import urllib.request
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pytest
from harness.cloudfront import CDN_URL, KEY_PAIR_ID, private_pem, verify_signed_url

from resources.s3 import SIGV4_MAX_EXPIRY_S, S3Connection
from resources.s3_storage import S3Storage
from resources.storage import CDN_PUBLIC, CLOUDFRONT_SIGNED, S3_PRESIGNED

PREFIX = "assetql/test"


@pytest.fixture
def connection(s3_endpoint) -> S3Connection:
    return S3Connection(endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def storage(connection, s3_bucket) -> S3Storage:
    return S3Storage(connection=connection, bucket=s3_bucket, prefix=PREFIX)


def _versions(s3_client, bucket: str, key: str) -> list[dict]:
    return s3_client.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])


def test_round_trip_under_the_prefix(storage, s3_client, s3_bucket):
    payload = b"\x89PNG fake image bytes"
    uri = storage.write_bytes("raw/b1/0001.png", payload, "image/png")
    assert uri == f"s3://{s3_bucket}/{PREFIX}/raw/b1/0001.png"
    assert storage.uri("raw/b1/0001.png") == uri
    assert storage.read_bytes("raw/b1/0001.png") == payload
    assert storage.exists("raw/b1/0001.png") and not storage.exists("raw/b1/0002.png")
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"{PREFIX}/raw/b1/0001.png")
    assert head["ContentType"] == "image/png"
    assert head["Metadata"]["sha256"] == hashlib.sha256(payload).hexdigest()


def test_text_round_trip(storage):
    storage.write_text("batches/b1/status.json", '{"stage": "généré"}')
    assert storage.read_text("batches/b1/status.json") == '{"stage": "généré"}'


def test_reading_a_missing_key_raises_file_not_found(storage, s3_bucket):
    with pytest.raises(FileNotFoundError, match=f"s3://{s3_bucket}/{PREFIX}/raw/none.png"):
        storage.read_bytes("raw/none.png")


def test_list_keys_pages_through_a_folder_only(storage, s3_endpoint, s3_bucket):
    wanted = [f"raw/b1/{i:04d}.png" for i in (3, 1, 4, 0, 2)]
    for key in [*wanted, "raw/b10/0000.png", "thumbnails/b1/0000.png"]:
        storage.write_bytes(key, key.encode())
    page_size = 2
    paged = storage.model_copy(update={"list_page_size": page_size})
    calls = []
    paged.connection.client.meta.events.register("before-call.s3.ListObjectsV2", lambda **_: calls.append(1))
    assert paged.list_keys("raw/b1") == sorted(wanted)
    assert len(calls) == math.ceil(len(wanted) / page_size)
    assert storage.list_keys("raw/b1/") == sorted(wanted)
    assert len(storage.list_keys("")) == len(wanted) + 2
    assert storage.list_keys("exports/b1") == []
    assert storage.sizes("raw/b1") == {key: len(key) for key in sorted(wanted)}  # sizes come with the listing


def test_list_keys_without_prefix_returns_whole_keys(connection, s3_bucket):
    storage = S3Storage(connection=connection, bucket=s3_bucket)
    storage.write_bytes("raw/b1/a.png", b"a")
    assert storage.list_keys("") == ["raw/b1/a.png"]
    assert storage.uri("raw/b1/a.png") == f"s3://{s3_bucket}/raw/b1/a.png"


def test_identical_rewrite_creates_no_new_version(storage, s3_client, s3_bucket):
    s3_client.put_bucket_versioning(
        Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    key = f"{PREFIX}/raw/b1/0001.png"
    storage.write_bytes("raw/b1/0001.png", b"first render")
    storage.write_bytes("raw/b1/0001.png", b"first render")
    assert len(_versions(s3_client, s3_bucket, key)) == 1
    storage.write_bytes("raw/b1/0001.png", b"second render")
    assert len(_versions(s3_client, s3_bucket, key)) == 2
    assert storage.read_bytes("raw/b1/0001.png") == b"second render"


@pytest.mark.parametrize("mode", ["AES256", None])
def test_server_side_encryption_header(connection, s3_bucket, s3_client, mode):
    storage = S3Storage(connection=connection, bucket=s3_bucket, server_side_encryption=mode)
    storage.write_bytes("exports/b1/pack.zip", b"zip")
    head = s3_client.head_object(Bucket=s3_bucket, Key="exports/b1/pack.zip")
    assert head.get("ServerSideEncryption") == mode


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"server_side_encryption": "aws:des"}, "'aws:des' must be one of"),
        ({"sse_kms_key_id": "alias/assetql"}, "sse_kms_key_id is set but .* 'AES256'"),
    ],
)
def test_invalid_encryption_settings_are_rejected(storage, update, message):
    with pytest.raises(ValueError, match=message):
        storage.model_copy(update=update).write_bytes("raw/b1/x.png", b"x")


def test_presigned_link_downloads_the_exact_bytes(storage):
    payload = bytes(range(256)) * 8
    storage.write_bytes("raw/b1/0007.png", payload, "image/png")
    url = storage.link("raw/b1/0007.png", 3600)
    assert urlsplit(url).scheme == "http" and "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == payload
    assert storage.links_are_local is False


# The 1 hour minimum is product policy, checked where links are made (domain.links); storage
# refuses only what SigV4 cannot sign: under 1 second or over 7 days.
@pytest.mark.parametrize("seconds", [0, 8 * 24 * 3600])
def test_link_rejects_expiry_outside_sigv4_range(storage, seconds):
    with pytest.raises(ValueError, match=f"{seconds}s is out of range.*SigV4"):
        storage.link("raw/b1/0007.png", seconds)


@pytest.mark.parametrize("seconds", [1, 60, SIGV4_MAX_EXPIRY_S])
def test_link_accepts_every_sigv4_expiry(storage, seconds):
    url = storage.link("raw/b1/0007.png", seconds)
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == [str(seconds)]


@pytest.mark.parametrize("key", ["", "/abs.png", "raw/../secret", "raw\\x.png", "raw/\x01.png"])
def test_bad_keys_are_rejected(storage, key):
    for call in (lambda: storage.write_bytes(key, b"x"), lambda: storage.read_bytes(key),
                 lambda: storage.exists(key), lambda: storage.link(key, 3600)):
        with pytest.raises(ValueError, match="storage key"):
            call()


def test_bad_prefix_is_rejected(connection, s3_bucket):
    storage = S3Storage(connection=connection, bucket=s3_bucket, prefix="../other")
    with pytest.raises(ValueError, match="'../other'"):
        storage.uri("raw/x.png")


def test_credentials_bound_from_env_vars_sign_links_in_a_run(s3_endpoint, s3_bucket, monkeypatch):
    monkeypatch.setenv("ASSETQL_TEST_S3_KEY", "envkeyid")
    monkeypatch.setenv("ASSETQL_TEST_S3_SECRET", "envsecret")

    @dg.asset
    def shared_link(storage: S3Storage) -> str:
        storage.write_bytes("raw/b1/run.png", b"from a run")
        return storage.link("raw/b1/run.png", 3600)

    storage = S3Storage(
        connection=S3Connection(
            endpoint_url=s3_endpoint,
            aws_access_key_id=dg.EnvVar("ASSETQL_TEST_S3_KEY"),
            aws_secret_access_key=dg.EnvVar("ASSETQL_TEST_S3_SECRET"),
        ),
        bucket=s3_bucket,
    )
    result = dg.materialize([shared_link], resources={"storage": storage})
    url = result.output_for_node("shared_link")
    assert "X-Amz-Credential=envkeyid%2F" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"from a run"


def test_write_file_streams_with_encryption_and_checksum(storage, s3_client, s3_bucket, tmp_path):
    path = tmp_path / "pack.zip"
    path.write_bytes(bytes(range(256)) * 64)
    uri = storage.write_file("exports/b1/pack.zip", path, "application/zip")
    assert uri == f"s3://{s3_bucket}/{PREFIX}/exports/b1/pack.zip"
    assert storage.read_bytes("exports/b1/pack.zip") == path.read_bytes()
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"{PREFIX}/exports/b1/pack.zip")
    assert head["ContentType"] == "application/zip" and head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_write_file_is_idempotent_and_matches_write_bytes(storage, s3_client, s3_bucket, tmp_path):
    s3_client.put_bucket_versioning(
        Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    path = tmp_path / "pack.zip"
    path.write_bytes(b"zip bytes")
    storage.write_bytes("exports/b1/pack.zip", b"zip bytes")
    uploads = []
    storage.connection.client.meta.events.register("before-call.s3.PutObject", lambda **_: uploads.append(1))
    storage.write_file("exports/b1/pack.zip", path)
    assert uploads == []
    assert len(_versions(s3_client, s3_bucket, f"{PREFIX}/exports/b1/pack.zip")) == 1
    path.write_bytes(b"new zip bytes")
    storage.write_file("exports/b1/pack.zip", path)
    assert uploads == [1]
    assert storage.read_bytes("exports/b1/pack.zip") == b"new zip bytes"
    assert len(_versions(s3_client, s3_bucket, f"{PREFIX}/exports/b1/pack.zip")) == 2


def test_write_file_rejects_bad_keys(storage, tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="storage key"):
        storage.write_file("raw/../x.png", path)


DAY = 24 * 3600


def _cdn(storage: S3Storage, signed: bool = True, **update) -> S3Storage:
    """`storage` behind the test CDN, with the test CloudFront key pair when `signed`."""
    keys = {"cloudfront_key_pair_id": KEY_PAIR_ID, "cloudfront_private_key": private_pem()} if signed else {}
    return storage.model_copy(update={"cdn_base_url": f"{CDN_URL}/", **keys, **update})


@pytest.mark.parametrize("seconds", [3600, 30 * DAY, 365 * DAY])
def test_cdn_links_are_cloudfront_signed_urls_that_verify(storage, seconds):
    before = time.time()
    url = _cdn(storage).link("raw/b1/snow cabin.png", seconds)
    signed = verify_signed_url(url)
    # The bucket's key, prefix included, under the distribution; the trailing '/' of the base is not doubled.
    assert signed.resource == f"{CDN_URL}/{PREFIX}/raw/b1/snow%20cabin.png"
    assert signed.key_pair_id == KEY_PAIR_ID
    assert before + seconds - 1 <= signed.expires <= time.time() + seconds


def test_cloudfront_key_bound_from_env_vars_signs_links_in_a_run(storage, monkeypatch):
    monkeypatch.setenv("ASSETQL_TEST_CF_KEY_PAIR", KEY_PAIR_ID)
    # One line with escaped newlines, as environment files often hold a PEM.
    monkeypatch.setenv("ASSETQL_TEST_CF_KEY", private_pem().replace("\n", "\\n"))

    @dg.asset
    def cdn_link(storage: S3Storage) -> str:
        return storage.link("raw/b1/run.png", 30 * DAY)

    # Built anew, not with model_copy: Dagster configures a run's resource from its constructor arguments.
    bound = S3Storage(connection=storage.connection, bucket=storage.bucket, prefix=PREFIX, cdn_base_url=CDN_URL,
                      cloudfront_key_pair_id=dg.EnvVar("ASSETQL_TEST_CF_KEY_PAIR"),
                      cloudfront_private_key=dg.EnvVar("ASSETQL_TEST_CF_KEY"))
    result = dg.materialize([cdn_link], resources={"storage": bound})
    signed = verify_signed_url(result.output_for_node("cdn_link"))
    assert (signed.resource, signed.key_pair_id) == (f"{CDN_URL}/{PREFIX}/raw/b1/run.png", KEY_PAIR_ID)


@pytest.mark.parametrize("signed", [True, False])
def test_permanent_cdn_links_are_plain_urls(storage, signed):
    cdn = _cdn(storage, signed=signed)
    assert cdn.link_signing(None) == CDN_PUBLIC
    assert cdn.link("raw/b1/0007.png", None) == f"{CDN_URL}/{PREFIX}/raw/b1/0007.png"


def test_signing_follows_the_configuration_and_lifetime(storage):
    assert [storage.link_signing(s) for s in (3600, SIGV4_MAX_EXPIRY_S)] == [S3_PRESIGNED, S3_PRESIGNED]
    assert _cdn(storage).link_signing(3600) == CLOUDFRONT_SIGNED
    # A public CDN without a key pair cannot make expiring CDN links: S3 presigns them, honouring the lifetime.
    unsigned = _cdn(storage, signed=False)
    assert unsigned.link_signing(SIGV4_MAX_EXPIRY_S) == S3_PRESIGNED
    assert "X-Amz-Signature=" in unsigned.link("raw/b1/0007.png", 3600)


def test_permanent_links_without_a_cdn_are_refused(storage):
    for call in (lambda: storage.link_signing(None), lambda: storage.link("raw/b1/0007.png", None)):
        with pytest.raises(ValueError, match=r"permanent links need a CDN: S3 presigned URLs last at most "
                                             r"604800s \(7 days, the SigV4 limit\); set the storage's cdn_base_url"):
            call()


@pytest.mark.parametrize(
    ("signed", "advice"),
    [(None, "set cdn_base_url, cloudfront_key_pair_id and cloudfront_private_key"),
     (False, "cdn_base_url is set, so also set cloudfront_key_pair_id and cloudfront_private_key")],
)
def test_links_over_seven_days_need_cloudfront_signing(storage, signed, advice):
    configured = storage if signed is None else _cdn(storage, signed=signed)
    with pytest.raises(ValueError, match=rf"link expiry {30 * DAY}s is out of range for S3 presigned URLs: "
                                         rf"SigV4 allows at most 604800s \(7 days\); longer links need "
                                         rf"CloudFront signing: {advice}$"):
        configured.link("raw/b1/0007.png", 30 * DAY)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"cdn_base_url": "d111111abcdef8.cloudfront.net"},
         "cdn_base_url 'd111111abcdef8.cloudfront.net' must be an http(s) URL"),
        ({"cdn_base_url": f"{CDN_URL}/?v=1"}, "without query or fragment"),
        ({"cloudfront_private_key": None}, "needs both cloudfront_key_pair_id and cloudfront_private_key; "
                                           "cloudfront_private_key is not set"),
        ({"cloudfront_key_pair_id": ""}, "cloudfront_key_pair_id is not set"),
        ({"cdn_base_url": None}, "a CloudFront key pair is set but cdn_base_url is not"),
        ({"cloudfront_private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
         "cloudfront_private_key is not an unencrypted PEM private key"),
    ],
)
def test_invalid_cdn_settings_are_named(storage, update, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _cdn(storage, **update).link("raw/b1/0007.png", 3600)


@pytest.mark.parametrize("seconds", [0, -1, 1.5, True])
def test_cloudfront_signing_wants_a_positive_whole_lifetime(storage, seconds):
    with pytest.raises(ValueError, match=f"CloudFront signed link expiry {seconds!r} must be a whole number"):
        _cdn(storage).link_signing(seconds)
