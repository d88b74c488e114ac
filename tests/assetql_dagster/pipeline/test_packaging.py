import csv
import io
import json
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from harness.cloudfront import CDN_URL, KEY_PAIR_ID, private_pem, verify_signed_url

from assetql_dagster.domain.errors import BatchValidationError
from assetql_dagster.domain.settings import BatchSettings, parse_settings
from assetql_dagster.pipeline.packaging import LINK_COLUMNS, write_links
from resources.s3 import S3Connection
from resources.s3_storage import S3Storage
from resources.storage import LocalStorage

BATCH = "demo-1234abcd"


def stored_rows(storage, count=2) -> list[dict]:
    rows = []
    for i in range(count):
        key = f"raw/{BATCH}/img-{i}.png"
        storage.write_bytes(key, f"png {i}".encode(), "image/png")
        rows.append({"raw_key": key, "file_name": f"img-{i}.png", "width": 64, "height": 96,
                     "prompt": f'=a "lamp" {i}'})
    return rows


def read_links(storage) -> tuple[dict, list[dict]]:
    document = json.loads(storage.read_text(f"exports/{BATCH}/links.json"))
    table = list(csv.DictReader(io.StringIO(storage.read_text(f"exports/{BATCH}/links.csv"))))
    return document, table


def test_local_links_are_file_uris_and_say_so(tmp_path):
    storage = LocalStorage(root=str(tmp_path))
    rows = stored_rows(storage)
    summary = write_links(BATCH, storage, rows, BatchSettings())
    document, table = read_links(storage)
    assert summary == {"links": 2, "links_local": True, "link_expiry_s": 7 * 86400,
                       "links_manifest": storage.uri(f"exports/{BATCH}/links.json")}
    assert document["local"] is True and "file URIs" in document["note"]
    assert document["signing"] == "local"
    assert [link["url"] for link in document["links"]] == [storage.uri(r["raw_key"]) for r in rows]
    assert all(link["expires_at"] == "" for link in document["links"])
    assert all(Path(link["url"].removeprefix("file://")).read_bytes() == storage.read_bytes(r["raw_key"])
               for link, r in zip(document["links"], rows))
    assert list(table[0]) == LINK_COLUMNS
    assert [r["url"] for r in table] == [link["url"] for link in document["links"]]
    assert 'alt="=a &quot;lamp&quot; 0"' in document["links"][0]["embed_html"]


def test_presigned_links_download_the_image_bytes(s3_endpoint, s3_bucket):
    storage = S3Storage(connection=S3Connection(endpoint_url=s3_endpoint), bucket=s3_bucket)
    rows = stored_rows(storage)
    summary = write_links(BATCH, storage, rows, BatchSettings(link_expiry="36h"))
    document, table = read_links(storage)
    assert summary["links_local"] is False and summary["link_expiry_s"] == 36 * 3600
    assert document["local"] is False and document["expires_in_s"] == 36 * 3600
    assert document["signing"] == "s3-presigned" and "S3 presigned URLs, valid for 129600 s" in document["note"]
    for link, row in zip(document["links"], rows):
        assert "X-Amz-Expires=129600" in link["url"] and link["expires_at"].endswith("Z")
        with urllib.request.urlopen(link["url"], timeout=10) as response:
            assert response.read() == storage.read_bytes(row["raw_key"])
    assert [r["local"] for r in table] == ["False", "False"]


def cdn_storage(s3_endpoint, s3_bucket, signed=True) -> S3Storage:
    keys = {"cloudfront_key_pair_id": KEY_PAIR_ID, "cloudfront_private_key": private_pem()} if signed else {}
    return S3Storage(connection=S3Connection(endpoint_url=s3_endpoint), bucket=s3_bucket, cdn_base_url=CDN_URL, **keys)


def test_thirty_day_links_are_cloudfront_signed_through_the_cdn(s3_endpoint, s3_bucket):
    storage = cdn_storage(s3_endpoint, s3_bucket)
    rows = stored_rows(storage)
    summary = write_links(BATCH, storage, rows, BatchSettings(link_expiry="30d"))
    document, table = read_links(storage)
    assert summary["links_local"] is False and summary["link_expiry_s"] == 30 * 86400
    assert document["signing"] == "cloudfront-signed" and document["expires_in_s"] == 30 * 86400
    assert document["note"] == "CloudFront signed CDN URLs, valid for 2592000 s after the export was written"
    for link, row in zip(document["links"], rows):
        signed = verify_signed_url(link["url"])
        assert signed.resource == f"{CDN_URL}/{row['raw_key']}" and signed.key_pair_id == KEY_PAIR_ID
        # The manifest's expiry is the one signed into the URL (both taken in the same second or so).
        expires_at = datetime.fromisoformat(link["expires_at"].replace("Z", "+00:00")).timestamp()
        assert abs(expires_at - signed.expires) <= 1
    assert [r["url"] for r in table] == [link["url"] for link in document["links"]]


@pytest.mark.parametrize("signed", [True, False])
def test_permanent_links_are_public_cdn_urls_without_expiry(s3_endpoint, s3_bucket, signed):
    storage = cdn_storage(s3_endpoint, s3_bucket, signed)
    rows = stored_rows(storage)
    summary = write_links(BATCH, storage, rows, BatchSettings(link_expiry="permanent"))
    document, table = read_links(storage)
    assert summary["link_expiry_s"] == 0 and summary["links"] == 2
    assert document["signing"] == "cdn-public" and document["expires_in_s"] is None
    assert "do not expire" in document["note"] and "public reads" in document["note"]
    assert [link["url"] for link in document["links"]] == [f"{CDN_URL}/{r['raw_key']}" for r in rows]
    assert [link["expires_at"] for link in document["links"]] == ["", ""]
    assert [r["expires_at"] for r in table] == ["", ""]


@pytest.mark.parametrize(("expiry", "message"), [("30d", "out of range for S3 presigned URLs"),
                                                  ("permanent", "permanent links need a CDN")])
def test_a_lifetime_the_storage_cannot_sign_writes_no_links(s3_endpoint, s3_bucket, expiry, message):
    # Registration refuses such a batch; this is a batch registered before the CDN was configured away.
    storage = S3Storage(connection=S3Connection(endpoint_url=s3_endpoint), bucket=s3_bucket)
    rows = stored_rows(storage)
    with pytest.raises(ValueError, match=message):
        write_links(BATCH, storage, rows, BatchSettings(link_expiry=expiry))
    assert not storage.exists(f"exports/{BATCH}/links.json")


def test_an_over_long_expiry_cannot_reach_the_export():
    # Settings are validated where they enter (batch.yaml, campaign settings), before any export.
    with pytest.raises(BatchValidationError, match="link_expiry.*365 days"):
        parse_settings({"link_expiry": "366d"}, "batch.yaml")
