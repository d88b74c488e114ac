import argparse
import shutil

import boto3
import pytest
import yaml

from assetql_dagster.cli import add_catalog_parsers
from assetql_dagster.domain.campaigns import PALETTE_LOCK
from assetql_dagster.domain.errors import BatchValidationError
from assetql_dagster.pipeline.campaigns import CAMPAIGNS_ENV
from assetql_dagster.pipeline.cataloguing import catalog_records
from assetql_dagster.pipeline.library_state import LibraryState
from assetql_dagster.pipeline.registration import check_batch, register_batch, registered_batch
from assetql_dagster.pipeline.s3_batches import download_s3_batch
from harness.cloudfront import CDN_URL, KEY_PAIR_ID, private_pem
from harness.sample_batches import EXAMPLE

from resources.catalog import AssetCatalog, dispose_engine, sqlite_url_beside
from resources.catalog_models import AssetEntry
from resources.s3 import S3Bucket, S3Connection
from resources.s3_storage import S3Storage
from resources.storage import LocalStorage


def test_overrides_and_references_are_part_of_the_snapshot(tmp_path, batch_factory):
    folder = batch_factory(rows=2)
    original = (folder / "batch.yaml").read_text()
    other = batch_factory(rows=2, name="other") / "references"
    (other / sorted(p.name for p in other.iterdir())[0]).unlink()
    storage = LocalStorage(root=str(tmp_path / "data"))

    registration = register_batch(storage, folder, overrides={"seed": 9, "name": "winter"},
                                  references=other, partition_key=lambda s: f"custom-{s.content_hash[:6]}")
    assert registration.created and registration.key == f"custom-{registration.source.content_hash[:6]}"
    batch = registered_batch(storage, registration.key)
    assert (batch.name, batch.settings.seed, batch.settings.steps) == ("winter", 9, 2)
    assert [k.rsplit("/", 1)[-1] for k in batch.references] == sorted(p.name for p in other.iterdir())
    assert batch.content_hash == registration.source.content_hash
    assert batch.origin == str(folder.resolve())
    assert (folder / "batch.yaml").read_text() == original
    stored = yaml.safe_load(storage.read_text(f"batches/{registration.key}/source/batch.yaml"))
    assert stored["seed"] == 9 and stored["template"] == yaml.safe_load(original)["template"]

    again = register_batch(storage, folder, overrides={"seed": 9, "name": "winter"}, references=other,
                           partition_key=lambda s: f"custom-{s.content_hash[:6]}")
    assert (again.key, again.created) == (registration.key, False)


def test_a_model_missing_from_this_machine_is_rejected_before_anything_is_stored(tmp_path, batch_factory):
    storage = LocalStorage(root=str(tmp_path / "data"))
    folder = batch_factory(rows=2)
    with pytest.raises(BatchValidationError) as raised:
        register_batch(storage, folder, overrides={"model": str(tmp_path / "no-model")})
    [problem] = raised.value.problems
    assert (problem.file, problem.column) == ("batch.yaml", "model")
    assert storage.list_keys("batches") == []


@pytest.mark.parametrize(
    ("expiry", "message"),
    [("30d", "link expiry 2592000s is out of range for S3 presigned URLs: SigV4 allows at most 604800s (7 days)"),
     ("permanent", "permanent links need a CDN")],
)
@pytest.mark.parametrize("overridden", [True, False])
def test_a_link_expiry_the_storage_cannot_sign_is_refused_before_anything_is_stored(
    batch_factory, s3_endpoint, s3_bucket, expiry, message, overridden
):
    storage = S3Storage(connection=S3Connection(endpoint_url=s3_endpoint), bucket=s3_bucket)
    folder = batch_factory(rows=2)
    if not overridden:
        with (folder / "batch.yaml").open("a") as fh:
            fh.write(f"link_expiry: {expiry}\n")
    with pytest.raises(BatchValidationError) as raised:
        register_batch(storage, folder, overrides={"link_expiry": expiry} if overridden else None)
    [problem] = raised.value.problems
    assert (problem.file, problem.column) == ("batch.yaml", "link_expiry")
    assert problem.message.startswith(f"{expiry!r} cannot be served by this storage: {message}")
    assert storage.list_keys("") == []


@pytest.mark.parametrize("expiry", ["30d", "365d", "permanent"])
def test_a_cdn_storage_registers_long_and_permanent_link_lifetimes(batch_factory, s3_endpoint, s3_bucket, expiry):
    storage = S3Storage(connection=S3Connection(endpoint_url=s3_endpoint), bucket=s3_bucket, cdn_base_url=CDN_URL,
                        cloudfront_key_pair_id=KEY_PAIR_ID, cloudfront_private_key=private_pem())
    registration = register_batch(storage, batch_factory(rows=2), overrides={"link_expiry": expiry})
    assert registered_batch(storage, registration.key).settings.link_expiry == expiry


def test_plain_registration_keys_by_name_and_hash(tmp_path, batch_factory):
    storage = LocalStorage(root=str(tmp_path / "data"))
    registration = register_batch(storage, batch_factory(rows=2))
    assert registration.key == f"demo-{registration.source.content_hash[:8]}"


def test_download_a_folder_source_skipping_folder_markers(tmp_path, batch_factory, s3_client, s3_bucket):
    folder = batch_factory(rows=2)
    for path in (p for p in folder.rglob("*") if p.is_file()):
        s3_client.put_object(Bucket=s3_bucket, Key=f"in/demo/{path.relative_to(folder).as_posix()}",
                             Body=path.read_bytes())
    s3_client.put_object(Bucket=s3_bucket, Key="in/demo/references/", Body=b"")
    local = download_s3_batch(S3Bucket(s3_client, s3_bucket), "in/demo/", tmp_path / "download")
    assert local == tmp_path / "download" / "demo"
    assert sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file()) == sorted(
        p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


def test_download_of_listed_batch_files_lists_nothing_more(tmp_path, batch_factory, s3_endpoint, s3_bucket):
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    folder = batch_factory(rows=2)
    files = {f"in/demo/{p.relative_to(folder).as_posix()}": p for p in folder.rglob("*") if p.is_file()}
    for key, path in files.items():
        client.put_object(Bucket=s3_bucket, Key=key, Body=path.read_bytes())
    client.put_object(Bucket=s3_bucket, Key="in/demo/references/unlisted.png", Body=b"png")
    listed = sorted(key for key in files if key != "in/demo/batch.csv")
    listings = []
    client.meta.events.register("before-call.s3.ListObjectsV2", lambda **_: listings.append(1))

    local = download_s3_batch(S3Bucket(client, s3_bucket), "in/demo/batch.csv", tmp_path / "download", listed)

    assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()) == sorted(
        p.relative_to(folder).as_posix() for p in files.values())
    assert listings == []


def test_download_a_loose_csv_whose_folder_has_no_batch_files(tmp_path, s3_client, s3_bucket):
    s3_client.put_object(Bucket=s3_bucket, Key="in/rows.csv", Body=b"variant_id,prompt\nlamp-01,a lamp\n")
    local = download_s3_batch(S3Bucket(s3_client, s3_bucket), "in/rows.csv", tmp_path)
    assert local == tmp_path / "in" / "rows.csv"
    assert [p.name for p in (tmp_path / "in").iterdir()] == ["rows.csv"]


# Campaign profiles named by a batch's `campaign` setting.

BRAND = ["#c8102e", "#ffffff"]


@pytest.fixture
def campaigns(tmp_path, monkeypatch):
    """A campaigns file named by $ASSETQL_CAMPAIGNS: the profile winter-sale (one reference image of
    its own) and the schedule-less spring; returns the file."""
    refs = tmp_path / "campaign-refs"
    refs.mkdir()
    shutil.copy(EXAMPLE / "references" / "style-1.png", refs)
    path = tmp_path / "campaigns.yaml"
    path.write_text(yaml.safe_dump({"campaigns": [
        {"name": "winter-sale", "brand_colors": BRAND, "theme": "winter holiday", "audience": "young families",
         "tone": "playful and warm", "modifiers": "snow", "style_profile": "campaign-refs",
         "exports": ["zip", "links"], "settings": {"seed": 7, "link_expiry": "3d"}},
        {"name": "spring", "theme": "spring meadow"},
    ]}))
    monkeypatch.setenv(CAMPAIGNS_ENV, str(path))
    return path


def _name_campaign(folder, name: str, extra: str = "") -> None:
    with (folder / "batch.yaml").open("a") as fh:
        fh.write(f"campaign: {name}\n{extra}")


def test_a_campaign_named_in_batch_yaml_is_applied_at_registration(tmp_path, batch_factory, campaigns):
    folder = batch_factory(rows=2, references=False)
    _name_campaign(folder, "winter-sale", "modifiers: painterly\n")
    storage = LocalStorage(root=str(tmp_path / "data"))

    registration = register_batch(storage, folder, creator="ana")
    batch = registered_batch(storage, registration.key)
    settings = batch.settings
    assert (batch.campaign, settings.campaign, batch.creator, batch.name) == ("winter-sale", "winter-sale", "ana", "demo")
    assert list(settings.palette) == BRAND and settings.lock_weights == {"palette": PALETTE_LOCK}
    assert settings.modifiers == "painterly, snow, winter holiday theme, for young families, playful and warm tone"
    assert settings.exports == ("zip", "links") and settings.link_expiry == "3d"
    # batch.yaml's own seed wins over the campaign's.
    assert settings.seed == 42
    # The batch has no references of its own: the campaign's style_profile gives them.
    assert [key.rsplit("/", 1)[-1] for key in batch.references] == ["style-1.png"]
    stored = yaml.safe_load(storage.read_text(f"batches/{registration.key}/source/batch.yaml"))
    assert stored["palette"] == BRAND and stored["campaign"] == "winter-sale"

    again = register_batch(storage, folder)
    assert (again.key, again.created) == (registration.key, False)


def test_a_batch_keeps_its_own_references_and_overrides_count_as_its_own(tmp_path, batch_factory, campaigns):
    folder = batch_factory(rows=2)
    _name_campaign(folder, "winter-sale")
    storage = LocalStorage(root=str(tmp_path / "data"))
    batch = registered_batch(storage, register_batch(storage, folder, overrides={"link_expiry": "1d"}).key)
    assert [key.rsplit("/", 1)[-1] for key in batch.references] == ["style-1.png", "style-2.png"]
    assert (batch.settings.link_expiry, batch.campaign) == ("1d", "winter-sale")


@pytest.mark.parametrize("validate", [True, False])
def test_an_unknown_campaign_is_refused_naming_batch_yaml_and_the_known_ones(
    tmp_path, batch_factory, campaigns, validate
):
    folder = batch_factory(rows=2)
    _name_campaign(folder, "autumn")
    storage = LocalStorage(root=str(tmp_path / "data"))
    with pytest.raises(BatchValidationError) as raised:
        check_batch(folder) if validate else register_batch(storage, folder)
    [problem] = raised.value.problems
    assert (problem.file, problem.column) == ("batch.yaml", "campaign")
    assert problem.message == f"unknown campaign 'autumn'; campaigns in {campaigns}: winter-sale, spring"
    assert storage.list_keys("") == []


def test_a_campaign_without_a_campaigns_file_is_refused(tmp_path, batch_factory, monkeypatch):
    monkeypatch.delenv(CAMPAIGNS_ENV, raising=False)
    folder = batch_factory(rows=2)
    _name_campaign(folder, "winter-sale")
    with pytest.raises(BatchValidationError) as raised:
        register_batch(LocalStorage(root=str(tmp_path / "data")), folder)
    [problem] = raised.value.problems
    assert (problem.file, problem.column) == ("batch.yaml", "campaign")
    assert problem.message == ("names campaign 'winter-sale' but no campaigns file is configured; set "
                               "$ASSETQL_CAMPAIGNS to the campaigns file that declares it")


def test_an_invalid_campaigns_file_is_reported_at_the_campaign_setting(tmp_path, batch_factory, monkeypatch):
    path = tmp_path / "campaigns.yaml"
    path.write_text(yaml.safe_dump({"campaigns": [{"name": "winter-sale", "settings": {"stepz": 3}}]}))
    monkeypatch.setenv(CAMPAIGNS_ENV, str(path))
    folder = batch_factory(rows=2)
    _name_campaign(folder, "winter-sale")
    with pytest.raises(BatchValidationError) as raised:
        check_batch(folder)
    [problem] = raised.value.problems
    assert problem.column == "campaign"
    assert problem.message.startswith(f"names campaign 'winter-sale' but the campaigns file cannot be used: "
                                      f"1 problem(s) in campaigns file {path}:")
    assert "campaign 'winter-sale', field 'settings', setting 'stepz': unknown setting 'stepz'" in problem.message


def test_a_style_profile_naming_no_stored_batch_is_refused_at_the_campaign_setting(
    tmp_path, batch_factory, monkeypatch
):
    path = tmp_path / "campaigns.yaml"
    path.write_text(yaml.safe_dump({"campaigns": [{"name": "winter-sale", "style_profile": "autumn"}]}))
    monkeypatch.setenv(CAMPAIGNS_ENV, str(path))
    folder = batch_factory(rows=2, references=False)
    _name_campaign(folder, "winter-sale")
    with pytest.raises(BatchValidationError) as raised:
        register_batch(LocalStorage(root=str(tmp_path / "data")), folder)
    [problem] = raised.value.problems
    assert (problem.file, problem.column) == ("batch.yaml", "campaign")
    assert problem.message.startswith("campaign 'winter-sale': style_profile 'autumn' names no batch with stored")


def test_images_of_a_campaign_batch_are_found_by_the_campaign_filter(tmp_path, batch_factory, campaigns):
    folder = batch_factory(rows=2)
    _name_campaign(folder, "spring")
    storage = LocalStorage(root=str(tmp_path / "data"))
    key = register_batch(storage, folder).key
    catalog = AssetCatalog(url=sqlite_url_beside(tmp_path / "catalog"))
    catalog.migrate()
    try:
        # What the catalog_entry asset writes for the registered batch, before any image exists.
        catalog_records(catalog, registered_batch(storage, key), None, None, None, None, {}, {}, {}, {}, LibraryState())
        catalog.upsert_assets(key, [AssetEntry(image_id="sword", file_name="sword.png", prompt="a sword")])
        assert [row["id"] for row in catalog.search(campaign="spring")] == [f"{key}/sword"]
        assert catalog.search(campaign="winter-sale") == []
    finally:
        dispose_engine(catalog.url)


def test_the_search_command_offers_the_campaign_filter():
    parser = argparse.ArgumentParser()
    add_catalog_parsers(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["search", "--campaign", "spring"]).campaign == "spring"


def test_a_remote_model_with_an_adapter_is_refused_at_validation(batch_factory):
    folder = batch_factory(rows=1)
    settings = (folder / "batch.yaml").read_text().replace("model: tiny", "model: sagemaker:sd-endpoint")
    (folder / "batch.yaml").write_text(settings + "lora: [{path: brand.safetensors}]\n")
    with pytest.raises(BatchValidationError) as info:
        check_batch(folder)
    [problem] = info.value.problems
    assert (problem.file, problem.column) == ("batch.yaml", "lora")
    assert "remote model 'sagemaker:sd-endpoint' takes no lora; leave it out" in problem.message
