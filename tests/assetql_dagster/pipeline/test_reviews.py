"""The asset library's reviews, ownership, activity log, download history and deletion, on a real
tiny batch run that exports only approved images; and the `assetql review` command."""

import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from harness.batch_runs import catalog_beside, materialize_partition
from harness.sample_batches import make_batch
from sqlalchemy import select

from assetql_dagster import cli
from assetql_dagster.pipeline.cataloguing import catalog_batch, rebuild
from assetql_dagster.pipeline.library_state import Review, load_reviews
from assetql_dagster.pipeline.records import read_record
from assetql_dagster.pipeline.registration import register_batch
from assetql_dagster.pipeline.reviews import (
    activity,
    delete_batch,
    downloads,
    export_approved,
    export_preset,
    owner_of,
    record_activity,
    record_download,
    set_review,
    transfer_ownership,
)
from resources.catalog import dispose_engine
from resources.catalog_models import Batch
from resources.storage import LocalStorage


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """One tiny batch (3 rows × 1 variation, `export_only: approved`, created by ana) run through the
    whole graph, catalog included; its image ids and the images of the package its run wrote."""
    tmp = tmp_path_factory.mktemp("reviews")
    storage = LocalStorage(root=str(tmp / "data"))
    folder = make_batch(tmp / "inbox", rows=3)
    with (folder / "batch.yaml").open("a") as settings:
        settings.write("export_only: approved\n")
    key = register_batch(storage, folder, creator="ana").key
    assert materialize_partition(storage, key).success
    ids = [f"{key}/{i.image_id}" for i in read_record(storage, key, "curated_images").images.stored]
    return storage, key, catalog_beside(storage), ids, packaged(storage, key)


@pytest.fixture
def reviews_cleared(library):
    """Every decision of the batch cleared again after the test."""
    storage, _, catalog, ids, _ = library
    yield library
    set_review(storage, catalog, ids, None, "tester")


def packaged(storage, key) -> list[str]:
    """File names of the images in the batch's ZIP, which must agree with its manifest."""
    with zipfile.ZipFile(io.BytesIO(storage.read_bytes(f"exports/{key}/{key}.zip"))) as zipped:
        images = sorted(n.removeprefix("images/") for n in zipped.namelist() if n.startswith("images/"))
        manifest = json.loads(zipped.read("manifest.json"))["images"]
    assert sorted(r["file_name"] for r in manifest) == images
    return images


def file_name(storage, aid: str) -> str:
    key, image_id = aid.split("/")
    return next(i.file_name for i in read_record(storage, key, "curated_images").images.stored if i.image_id == image_id)


def reviews_in_catalog(catalog, ids) -> list[str]:
    return [catalog.get_asset(aid)["review"] for aid in ids]


def forget_catalog_file(catalog) -> None:
    database = Path(catalog.engine.url.database)
    dispose_engine(catalog.url)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)


def test_export_only_approved_packages_the_approved_images_and_export_approved_follows_decisions(reviews_cleared):
    storage, key, catalog, ids, first = reviews_cleared
    assert len(ids) == 3 and first == []  # nobody had approved anything when the run exported

    assert set_review(storage, catalog, ids[:2], "approved", "ana") == 2
    rerun = materialize_partition(storage, key, selection=["exports", "catalog_entry"], catalog=catalog)
    assert rerun.success
    assert read_record(storage, key, "exports").images == 2
    assert packaged(storage, key) == sorted(file_name(storage, aid) for aid in ids[:2])
    assert reviews_in_catalog(catalog, ids) == ["approved", "approved", ""]  # the re-catalogued rows keep them

    set_review(storage, catalog, ids[1:2], "rejected", "bo")
    summary = export_approved(storage, key)
    assert summary.images == 1 and read_record(storage, key, "exports") == summary
    assert packaged(storage, key) == [file_name(storage, ids[0])]


def test_export_preset_writes_only_the_chosen_formats_of_the_images_it_takes(reviews_cleared):
    storage, key, catalog, ids, _ = reviews_cleared
    set_review(storage, catalog, ids[:1], "approved", "ana")
    summary = export_preset(storage, key, ["manifest"], "approved")
    assert (summary.images, summary.exports, set(summary.files)) == (1, ("manifest",), {"manifest"})
    assert [r["file_name"] for r in json.loads(storage.read_bytes(summary.files["manifest"]))["images"]] == [
        file_name(storage, ids[0])]
    # The catalog follows the stored record, even rebuilt: the formats left out are no longer listed.
    catalog_batch(catalog, storage, key)
    assert set(catalog.batch_exports(key)) == {"manifest"}
    every = export_preset(storage, key, ["zip"], "all")  # the batch's own export_only is approved
    assert every.images == 3 and len(packaged(storage, key)) == 3 and read_record(storage, key, "exports") == every
    for exports, only, problem in ((["pdf"], "all", "'pdf' is not a format of the package"), ([], "all", "non-empty list"),
                                   ("zip", "all", "non-empty list"), (["zip", "zip"], "all", "more than once"),
                                   (["zip"], "some", "export_only must be one of all, approved")):
        with pytest.raises(ValueError, match=re.escape(problem)):
            export_preset(storage, key, exports, only)
    assert export_preset(storage, key, None, "approved").exports == ("zip", "manifest", "gallery", "links")
    catalog_batch(catalog, storage, key)


def test_decisions_persist_across_recataloguing_and_a_rebuild_from_storage(reviews_cleared):
    storage, key, catalog, ids, _ = reviews_cleared
    assert set_review(storage, catalog, [ids[0], ids[0], ids[2]], "approved", "ana") == 2  # duplicates once
    assert set_review(storage, catalog, ids[1:2], "rejected", "bo") == 1
    stored = load_reviews(storage, key)
    image_ids = [aid.split("/")[1] for aid in ids]
    assert stored[image_ids[1]] == Review(ids[1], "rejected", "bo", stored[image_ids[1]].at)
    assert stored[image_ids[1]].at.endswith("Z") and stored[image_ids[0]].user == "ana"
    expected = ["approved", "rejected", "approved"]
    assert reviews_in_catalog(catalog, ids) == expected

    catalog_batch(catalog, storage, key)
    assert reviews_in_catalog(catalog, ids) == expected
    forget_catalog_file(catalog)
    assert [c.batch for c in rebuild(catalog, storage)] == [key]
    assert reviews_in_catalog(catalog, ids) == expected
    assert [r["id"] for r in catalog.search(review="rejected")] == [ids[1]]

    assert set_review(storage, catalog, ids[2:], None, "ana") == 1
    assert image_ids[2] not in load_reviews(storage, key)
    assert [r["id"] for r in catalog.search(review="pending")] == [ids[2]]
    assert [r["id"] for r in catalog.search(batch=key, review="approved")] == [ids[0]]


@pytest.mark.parametrize(
    ("asset", "decision", "user", "error", "message"),
    [
        ("{key}/{image}", "maybe", "ana", ValueError, "review decision 'maybe' must be one of approved, rejected"),
        ("{key}/{image}", "approved", "", ValueError, "user must be 1 to 320 characters"),
        ("{key}/{image}", "approved", "ana\nbo", ValueError, "user must be 1 to 320 characters"),
        ("{key}", "approved", "ana", ValueError, "must be '{{batch}}/{{image_id}}'"),
        ("{key}/no_such_image", "approved", "ana", LookupError, "has no stored image 'no_such_image'; its images: "),
        ("other-00000000/{image}", "rejected", "ana", LookupError, "no batch 'other-00000000'"),
    ],
)
def test_bad_reviews_are_refused_before_anything_is_written(library, asset, decision, user, error, message):
    storage, key, catalog, ids, _ = library
    image = ids[0].split("/")[1]
    def state() -> tuple:
        return load_reviews(storage, key), reviews_in_catalog(catalog, ids), len(activity(catalog, limit=10_000))

    before = state()
    # The good id goes first: nothing of it may be written either.
    with pytest.raises(error, match=message.format(key=key)):
        set_review(storage, catalog, [ids[1], asset.format(key=key, image=image)], decision, user)
    assert state() == before
    with pytest.raises(TypeError, match="a list of asset ids"):
        set_review(storage, catalog, ids[0], "approved", "ana")


def test_ownership_moves_with_a_transfer_and_survives_a_rebuild(library):
    storage, key, catalog, _, _ = library

    def catalogued_owner() -> str:
        with catalog.engine.connect() as conn:
            return conn.execute(select(Batch.owner).where(Batch.key == key)).scalar_one()

    assert owner_of(storage, key) == catalogued_owner() == "ana"  # the creator until a transfer
    try:
        transfer_ownership(storage, catalog, key, "bo@example.com", "admin@example.com")
        assert owner_of(storage, key) == catalogued_owner() == "bo@example.com"
        entry = next(e for e in activity(catalog, target=key) if e["action"] == "owner.transfer")
        assert (entry["user"], entry["target"], entry["detail"]) == (
            "admin@example.com", key, "from ana to bo@example.com")
        forget_catalog_file(catalog)
        rebuild(catalog, storage)
        assert catalogued_owner() == "bo@example.com"
        with pytest.raises(ValueError, match="is owned by bo@example.com already"):
            transfer_ownership(storage, catalog, key, "bo@example.com", "admin@example.com")
        with pytest.raises(ValueError, match="new owner must be 1 to 320 characters"):
            transfer_ownership(storage, catalog, key, " ", "admin@example.com")
        with pytest.raises(LookupError, match="no batch 'other-00000000'"):
            transfer_ownership(storage, catalog, "other-00000000", "cy", "admin@example.com")
    finally:
        transfer_ownership(storage, catalog, key, "ana", "admin@example.com")
    assert owner_of(storage, key) == catalogued_owner() == "ana"
    transfers = json.loads(storage.read_text(f"batches/{key}/owner.json"))["transfers"]
    assert [(t["from"], t["to"], t["by"]) for t in transfers[-2:]] == [
        ("ana", "bo@example.com", "admin@example.com"), ("bo@example.com", "ana", "admin@example.com")]


def test_activity_and_downloads_are_recorded_and_listed(reviews_cleared):
    storage, key, catalog, ids, _ = reviews_cleared
    set_review(storage, catalog, ids[:2], "approved", "cy@example.com")
    record_activity(catalog, "cy@example.com", "export.approved", key, "2 images")
    mine = activity(catalog, user="cy@example.com")
    # Newest first: entries logged together come back in the reverse of their order.
    assert [(e["action"], e["target"]) for e in mine[:3]] == [
        ("export.approved", key), ("review.approved", ids[1]), ("review.approved", ids[0])]
    assert mine[0]["detail"] == "2 images" and mine[0]["at"].tzinfo is not None
    assert {e["target"] for e in activity(catalog, target=ids[0])} == {ids[0]}
    assert {e["target"] for e in activity(catalog, target=key, user="cy@example.com")} == {key, *ids[:2]}
    assert len(activity(catalog, user="cy@example.com", limit=1)) == 1

    record_download(catalog, "dee@example.com", ids[0], "original")
    record_download(catalog, "dee@example.com", key, "zip")
    record_download(catalog, "eve@example.com", ids[1], "compressed")
    assert [(d["target"], d["kind"]) for d in downloads(catalog, user="dee@example.com")] == [
        (key, "zip"), (ids[0], "original")]
    assert [d["user"] for d in downloads(catalog)[:3]] == ["eve@example.com", "dee@example.com", "dee@example.com"]
    with pytest.raises(ValueError, match="download kind must be 1 to 32 characters"):
        record_download(catalog, "dee@example.com", key, "")
    with pytest.raises(ValueError, match="action must be 1 to 64 characters"):
        record_activity(catalog, "dee@example.com", "x" * 65, key)
    with pytest.raises(ValueError, match="activity detail must be text of at most 2000 characters"):
        record_activity(catalog, "dee@example.com", "note", key, "x" * 2001)


def test_a_deleted_batch_leaves_the_catalog_for_good_and_keeps_its_files(library, tmp_path):
    source, key, _, ids, _ = library
    # A copy of the batch's storage, so the other tests keep theirs.
    shutil.copytree(source.root, tmp_path / "data")
    storage = LocalStorage(root=str(tmp_path / "data"))
    catalog = catalog_beside(storage)
    rebuild(catalog, storage)
    assert catalog.row_counts()["assets"] == 3
    files = sorted(storage.list_keys(f"raw/{key}")) + sorted(storage.list_keys(f"exports/{key}"))

    delete_batch(storage, catalog, key, "admin@example.com")
    counts = catalog.row_counts()
    assert (counts["batches"], counts["assets"], counts["asset_versions"], counts["tags"], counts["exports"]) == (
        0, 0, 0, 0, 0)
    deleted = json.loads(storage.read_text(f"batches/{key}/deleted.json"))
    assert deleted["by"] == "admin@example.com"
    assert sorted(storage.list_keys(f"raw/{key}")) + sorted(storage.list_keys(f"exports/{key}")) == files
    assert all(storage.exists(k) for k in files) and files
    [entry] = activity(catalog, target=key)
    assert (entry["action"], entry["user"], entry["detail"]) == ("batch.delete", "admin@example.com",
                                                                 "3 image(s) left out; files kept")

    # Neither a rebuild, nor cataloguing the batch, nor its run's catalog_entry brings it back.
    assert rebuild(catalog, storage) == []
    assert catalog_batch(catalog, storage, key).deleted
    assert materialize_partition(storage, key, selection=["catalog_entry"], catalog=catalog).success
    forget_catalog_file(catalog)
    assert rebuild(catalog, storage) == [] and catalog.row_counts()["batches"] == 0
    for act in (lambda: set_review(storage, catalog, ids[:1], "approved", "ana"),
                lambda: export_approved(storage, key),
                lambda: transfer_ownership(storage, catalog, key, "bo", "admin@example.com"),
                lambda: delete_batch(storage, catalog, key, "admin@example.com")):
        with pytest.raises(LookupError, match=f"batch '{key}' was deleted from the library by admin@example.com at "):
            act()


def test_cli_review_approves_rejects_and_clears(reviews_cleared, tmp_path, monkeypatch, capsys):
    storage, key, catalog, ids, _ = reviews_cleared
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ASSETQL_USER", "cy@example.com")
    monkeypatch.setattr(cli, "storage_resource", lambda instance: storage)
    monkeypatch.setattr(cli, "catalog_resource", lambda instance: catalog)

    def review(*args: str) -> int:
        return cli.main(["review", *args, "--data-dir", storage.root])

    assert review(*ids[:2], "--reject") == 0
    assert "2 image(s) rejected" in capsys.readouterr().out
    assert reviews_in_catalog(catalog, ids) == ["rejected", "rejected", ""]
    assert {r.user for r in load_reviews(storage, key).values()} == {"cy@example.com"}
    assert review(ids[1], "--approve") == 0 and reviews_in_catalog(catalog, ids)[1] == "approved"
    assert review(ids[0], "--clear") == 0
    assert "1 image(s) back to pending review" in capsys.readouterr().out
    assert reviews_in_catalog(catalog, ids) == ["", "approved", ""]

    assert review(f"{key}/nope", "--approve") == 1
    assert f"assetql: error: batch '{key}' has no stored image 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as neither:
        review(ids[0])
    assert neither.value.code == 2
    assert "one of the arguments --approve --reject --clear is required" in capsys.readouterr().err
