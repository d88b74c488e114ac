import csv
import io
import json
import urllib.request
from pathlib import Path

import pytest

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
    for link, row in zip(document["links"], rows):
        assert "X-Amz-Expires=129600" in link["url"] and link["expires_at"].endswith("Z")
        with urllib.request.urlopen(link["url"], timeout=10) as response:
            assert response.read() == storage.read_bytes(row["raw_key"])
    assert [r["local"] for r in table] == ["False", "False"]


def test_an_over_long_expiry_cannot_reach_the_export():
    # Settings are validated where they enter (batch.yaml, campaign settings), before any export.
    with pytest.raises(BatchValidationError, match="link_expiry.*SigV4"):
        parse_settings({"link_expiry": "8d"}, "batch.yaml")
