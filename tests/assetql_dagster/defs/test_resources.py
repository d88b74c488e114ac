import json
import urllib.request
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pytest
from dagster._core.storage.tags import RUN_KEY_TAG
from dagster_postgres import PostgresRunStorage

from assetql_dagster.definitions import defs, with_io_manager
from assetql_dagster.defs.resources import (
    BEDROCK_ENDPOINT_ENV,
    BEDROCK_REGION_ENV,
    CDN_BASE_URL_ENV,
    CLOUDFRONT_KEY_PAIR_ID_ENV,
    CLOUDFRONT_PRIVATE_KEY_ENV,
    S3_BUCKET_ENV,
    S3_ENDPOINT_ENV,
    S3_PREFIX_ENV,
    STORAGE_ENV,
    resources_from_env,
)
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.pipeline.records import read_record
from assetql_dagster.defs.sensors import build_s3_drop_sensor
from harness.cloudfront import CDN_URL, KEY_PAIR_ID, private_pem, verify_signed_url
from resources.s3_storage import S3Storage
from resources.storage import LocalStorage

PREFIX = "assetql"


@pytest.fixture
def production(s3_endpoint, s3_bucket, monkeypatch, tmp_path):
    """The resources an `ASSETQL_STORAGE=s3` deployment binds, on the test bucket (the catalog
    in a temporary SQLite file, bound through ASSETQL_CATALOG_URL)."""
    monkeypatch.setenv("ASSETQL_CATALOG_URL", f"sqlite:///{tmp_path}/catalog.sqlite3")
    monkeypatch.setenv(STORAGE_ENV, "s3")
    monkeypatch.setenv(S3_BUCKET_ENV, s3_bucket)
    monkeypatch.setenv(S3_PREFIX_ENV, PREFIX)
    monkeypatch.setenv(S3_ENDPOINT_ENV, s3_endpoint)
    return with_io_manager(resources_from_env())


def evaluate(sensor, instance, resources, cursor=None) -> dg.SensorResult:
    # A context manager, as the daemon uses it: storage's nested S3 connection is set up in it.
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        result = sensor(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def test_a_drop_runs_the_whole_graph_on_s3_storage_and_a_postgres_instance(
    postgres_instance, production, s3_client, s3_bucket, batch_factory
):
    assert isinstance(postgres_instance.run_storage, PostgresRunStorage)
    # Resolved as Dagster resolves it for a run: the credentials are bound as EnvVars.
    with dg.build_resources({"storage": production["storage"]}) as resolved:
        storage = resolved.storage
    folder = batch_factory(rows=2)
    with (folder / "batch.yaml").open("a") as fh:
        fh.write("link_expiry: 2h\n")
    for path in (p for p in folder.rglob("*") if p.is_file()):
        s3_client.put_object(Bucket=s3_bucket, Key=f"drops/demo/{path.relative_to(folder).as_posix()}",
                             Body=path.read_bytes())
    sensor = build_s3_drop_sensor(s3_bucket, "drops/")

    tick = evaluate(sensor, postgres_instance, production)
    [request] = tick.run_requests
    key = request.partition_key
    assert postgres_instance.has_dynamic_partition(batches_partitions.name, key)
    # The sensor daemon launches each request with its run key as a tag; so does this test.
    run = defs.resolve_job_def("batch_job").execute_in_process(
        partition_key=key, instance=postgres_instance, resources=production,
        tags={**request.tags, RUN_KEY_TAG: request.run_key},
    )
    assert run.success

    stored = set(storage.list_keys(""))
    images = read_record(storage, key, "images").stored
    assert len(images) == 2
    assert {i.raw_key for i in images} | {i.thumb_key for i in images} <= stored
    assert all(i.raw_key.startswith(f"raw/{key}/") and i.thumb_key.startswith(f"thumbnails/{key}/")
               for i in images)
    exports = {f"exports/{key}/{name}" for name in
               (f"{key}.zip", "manifest.csv", "manifest.json", "gallery.html", "links.csv", "links.json")}
    assert exports <= stored
    assert any(k.startswith(f"style-references/{key}/") for k in stored)
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"{PREFIX}/{images[0].raw_key}")
    assert head["ServerSideEncryption"] == "AES256"

    links = json.loads(storage.read_text(f"exports/{key}/links.json"))
    assert links["local"] is False and links["expires_in_s"] == 7200
    by_name = {i.file_name: i.raw_key for i in images}
    assert sorted(link["file_name"] for link in links["links"]) == sorted(by_name)
    for link in links["links"]:
        assert parse_qs(urlsplit(link["url"]).query)["X-Amz-Expires"] == ["7200"]
        expires = datetime.fromisoformat(link["expires_at"].replace("Z", "+00:00"))
        assert timedelta(hours=1) < expires - datetime.now(timezone.utc) <= timedelta(hours=2)
        with urllib.request.urlopen(link["url"], timeout=10) as response:
            assert response.read() == storage.read_bytes(by_name[link["file_name"]])

    [record] = postgres_instance.get_run_records(dg.RunsFilter(run_ids=[run.run_id]))
    assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    assert record.dagster_run.tags["assetql/batch"] == key
    assert record.dagster_run.tags[RUN_KEY_TAG] == request.run_key

    again = evaluate(sensor, postgres_instance, production, cursor=tick.cursor)
    reset = evaluate(sensor, postgres_instance, production, cursor=None)
    for result in (again, reset):
        assert result.run_requests == [] and result.dynamic_partitions_requests == []


def test_storage_is_chosen_by_the_environment(production, s3_bucket, s3_endpoint, monkeypatch):
    storage = production["storage"]
    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix, storage.connection.endpoint_url) == (s3_bucket, PREFIX, s3_endpoint)
    assert storage.server_side_encryption == "AES256"
    assert isinstance(storage.connection.aws_secret_access_key, dg.EnvVar)
    # One connection: the drop sensor and campaign sources use the client storage uses.
    assert production["s3"] is storage.connection
    monkeypatch.setenv("ASSETQL_S3_SSE", "none")
    assert resources_from_env()["storage"].server_side_encryption is None
    monkeypatch.setenv(STORAGE_ENV, "local")
    assert isinstance(resources_from_env()["storage"], LocalStorage)
    monkeypatch.setenv(STORAGE_ENV, "gcs")
    with pytest.raises(ValueError, match=r"ASSETQL_STORAGE='gcs' is not a storage kind; expected one of \('local', 's3'\)"):
        resources_from_env()
    monkeypatch.setenv(STORAGE_ENV, "s3")
    monkeypatch.delenv(S3_BUCKET_ENV)
    with pytest.raises(ValueError, match="needs the bucket name in ASSETQL_S3_BUCKET"):
        resources_from_env()


def test_cdn_links_are_configured_from_the_environment_with_the_key_as_env_vars(production, monkeypatch):
    assert production["storage"].cdn_base_url is None and production["storage"].cloudfront_private_key is None
    monkeypatch.setenv(CDN_BASE_URL_ENV, CDN_URL)
    monkeypatch.setenv(CLOUDFRONT_KEY_PAIR_ID_ENV, KEY_PAIR_ID)
    monkeypatch.setenv(CLOUDFRONT_PRIVATE_KEY_ENV, private_pem())
    storage = resources_from_env()["storage"]
    assert storage.cdn_base_url == CDN_URL
    # Bound as EnvVars, so the UI shows the variable names, never the private key.
    assert storage.cloudfront_private_key == dg.EnvVar(CLOUDFRONT_PRIVATE_KEY_ENV)
    assert storage.cloudfront_key_pair_id == dg.EnvVar(CLOUDFRONT_KEY_PAIR_ID_ENV)
    with dg.build_resources({"storage": storage}) as resolved:
        signed = verify_signed_url(resolved.storage.link("raw/b1/0001.png", 30 * 86400))
    assert (signed.resource, signed.key_pair_id) == (f"{CDN_URL}/{PREFIX}/raw/b1/0001.png", KEY_PAIR_ID)


def test_the_vision_tagger_is_configured_from_the_environment_with_credentials_as_env_vars(monkeypatch):
    monkeypatch.setenv(STORAGE_ENV, "local")
    monkeypatch.setenv(BEDROCK_REGION_ENV, "eu-central-1")
    monkeypatch.setenv(BEDROCK_ENDPOINT_ENV, "https://bedrock.example.internal")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    tagger = resources_from_env()["vision_tagger"]
    assert (tagger.region_name, tagger.endpoint_url) == ("eu-central-1", "https://bedrock.example.internal")
    assert tagger.aws_secret_access_key == dg.EnvVar("AWS_SECRET_ACCESS_KEY")
    for name in (BEDROCK_REGION_ENV, BEDROCK_ENDPOINT_ENV, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    tagger = resources_from_env()["vision_tagger"]
    assert (tagger.region_name, tagger.endpoint_url, tagger.aws_access_key_id) == (None, None, None)
