"""Bulk rename on a real tiny batch (2 rows × 2 variations): the dry plan, the rename of files,
records, package and catalog together, refused collisions, aliases, and names that outlive a
catalog rebuild and later runs."""

import csv
import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from harness.batch_runs import catalog_beside, materialize_partition
from harness.sample_batches import make_batch

from assetql_dagster.pipeline.cataloguing import rebuild
from assetql_dagster.pipeline.names import load_names
from assetql_dagster.pipeline.records import read_record
from assetql_dagster.pipeline.regeneration import load_histories
from assetql_dagster.pipeline.registration import register_batch
from assetql_dagster.pipeline.renaming import NameCollision, plan_rename, rename, select_by_query
from resources.catalog import dispose_engine
from resources.storage import LocalStorage

PATTERN = "{sku}_{variation}"
NEW_NAMES = {"SKU-1001_1.png", "SKU-1001_2.png", "SKU-1002_1.png", "SKU-1002_2.png"}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, str]:
    """One tiny batch run through the whole graph; each test works on its own copy of its storage."""

    tmp = tmp_path_factory.mktemp("renaming")
    storage = LocalStorage(root=str(tmp / "data"))
    key = register_batch(storage, make_batch(tmp / "inbox", rows=2, variations=2)).key
    assert materialize_partition(storage, key).success
    return tmp / "data", key


@pytest.fixture
def batch(made, tmp_path):
    """(storage, key, catalog): a copy of the made batch, catalogued from storage."""
    data, key = made
    shutil.copytree(data, tmp_path / "data")
    storage = LocalStorage(root=str(tmp_path / "data"))
    catalog = catalog_beside(storage)
    rebuild(catalog, storage)
    yield storage, key, catalog
    dispose_engine(catalog.url)


def stored_files(storage) -> dict[str, str]:
    return {key: hashlib.sha256(storage.read_bytes(key)).hexdigest() for key in storage.list_keys("")}


def catalog_names(catalog, key: str) -> dict[str, str]:
    return {row["image_id"]: row["file_name"] for row in catalog.search(batch=key, limit=100)}


def package(storage, key: str) -> dict:
    """What the exports hold: names in the ZIP, the manifests and the links, and the gallery page."""
    with zipfile.ZipFile(storage.local_path(f"exports/{key}/{key}.zip")) as zf:
        zipped = {n.removeprefix("images/") for n in zf.namelist() if n.startswith("images/")}
        zipped_manifest = [r["file_name"] for r in csv.DictReader(io.StringIO(zf.read("manifest.csv").decode()))]
    manifest = json.loads(storage.read_text(f"exports/{key}/manifest.json"))
    links = list(csv.DictReader(io.StringIO(storage.read_text(f"exports/{key}/links.csv"))))
    return {
        "zip": zipped,
        "zip_manifest": set(zipped_manifest),
        "manifest": {row["file_name"]: row["raw_key"] for row in manifest["images"]},
        "links": {row["file_name"] for row in links},
        "gallery": storage.read_text(f"exports/{key}/gallery.html"),
    }


def test_a_dry_run_plans_every_image_and_changes_nothing(batch):
    storage, key, catalog = batch
    before, names_before = stored_files(storage), catalog_names(catalog, key)
    jobs = read_record(storage, key, "prompts").jobs

    plan = plan_rename(storage, key, PATTERN)

    assert [(r.image_id, r.label, r.old) for r in plan.renames] == [
        (j.image_id, f"{j.variant_id}#{j.variation}", j.file_name) for j in jobs
    ]
    assert {r.new for r in plan.renames} == NEW_NAMES and plan.changed == plan.renames
    by_label = {r.label: r.new for r in plan.renames}
    assert by_label["sword-01#2"] == "SKU-1001_2.png" and by_label["sword-02#1"] == "SKU-1002_1.png"
    assert stored_files(storage) == before and catalog_names(catalog, key) == names_before


def test_every_field_renders_as_the_image_has_it(batch):
    storage, key, _ = batch
    job = read_record(storage, key, "prompts").jobs[1]
    history = load_histories(storage, key).get(job.image_id)
    version = history.current if history else 1
    fields = "{batch}.{row}.{category}.{sku}.{variant_id}.{variation}.{version}.{material}.{seq}"
    [only] = plan_rename(storage, key, fields, [job.image_id]).renames
    assert only.new == f"demo.{job.row}.weapon.SKU-1001.sword-01.2.{version}.steel.0002.png"
    # {timestamp} and {hash} are those of the batch's own naming pattern, so it gives the names back.
    [only] = plan_rename(storage, key, "{batch}_{variant_id}_{timestamp}_{hash}", [job.image_id]).renames
    assert only.new == only.old == job.file_name
    [only] = plan_rename(storage, key, "old-{name}", [job.image_id]).renames
    assert only.new == f"old-{job.image_id}.png" and plan_rename(storage, key, "{image_id}").changed == ()


@pytest.mark.parametrize("pattern, message", [
    ("{sku}/{variation}", "has '/' outside its placeholders"),
    ("{sku}_{colour}", r"unknown placeholder '\{colour\}' in naming pattern"),
    ("{sku}_{variation}" * 9, "of 90 characters; names are at most 80"),
    ("{0.__class__}", "invalid placeholder"),
])
def test_bad_patterns_are_refused_before_anything_changes(batch, pattern, message):
    storage, key, _ = batch
    before = stored_files(storage)
    with pytest.raises(ValueError, match=message):
        plan_rename(storage, key, pattern)
    assert stored_files(storage) == before


def test_rename_renames_stored_files_records_package_and_catalog_together(batch):
    storage, key, catalog = batch
    old = {r.image_id: r for r in read_record(storage, key, "images").stored}
    plan = plan_rename(storage, key, PATTERN)

    summary, counts = rename(storage, catalog, plan)

    new = {r.image_id: r.new for r in plan.renames}
    for record in read_record(storage, key, "images").stored:
        image_id = record.image_id
        assert record.file_name == new[image_id]
        assert record.raw_key == f"raw/{key}/{new[image_id]}"
        assert record.thumb_key == f"thumbnails/{key}/{new[image_id].removesuffix('.png')}_thumb.jpg"
        # The files under the new name are the image's; those under the old name stay for old links.
        assert storage.read_bytes(record.raw_key) == storage.read_bytes(old[image_id].raw_key)
        assert storage.read_bytes(record.thumb_key) == storage.read_bytes(old[image_id].thumb_key)
    assert {j.file_name for j in read_record(storage, key, "prompts").jobs} == NEW_NAMES
    assert {t.file_name for t in read_record(storage, key, "tags").images} == NEW_NAMES
    curation = read_record(storage, key, "curated_images")
    assert {s.file_name for s in curation.scores.images} == {i.file_name for i in curation.images.stored} == NEW_NAMES
    assert {s.file_name for s in read_record(storage, key, "scores").images} == NEW_NAMES
    assert all(v.score.file_name == new[h.image_id] for h in load_histories(storage, key).values() for v in h.versions)

    exported = package(storage, key)
    assert exported["zip"] == exported["zip_manifest"] == set(exported["manifest"]) == exported["links"] == NEW_NAMES
    assert all(raw == f"raw/{key}/{name}" for name, raw in exported["manifest"].items())
    assert all(name in exported["gallery"] for name in NEW_NAMES)
    assert not any(r.file_name in exported["gallery"] for r in old.values())
    assert summary.images == 4 and read_record(storage, key, "exports") == summary

    assert counts.aliases == 4 and catalog_names(catalog, key) == new
    for image_id, record in old.items():
        assert catalog.resolve_file_name(record.file_name) == [f"{key}/{image_id}"]
        assert catalog.resolve_file_name(new[image_id], batch=key) == [f"{key}/{image_id}"]
        assert catalog.get_asset(f"{key}/{image_id}")["raw_key"] == f"raw/{key}/{new[image_id]}"
    assert {i: n.aliases for i, n in load_names(storage, key).items()} == {i: (i,) for i in old}


def test_collisions_are_refused_listing_every_name_and_nothing_changes(batch):
    storage, key, catalog = batch
    before, names_before = stored_files(storage), catalog_names(catalog, key)

    with pytest.raises(NameCollision) as refused:
        plan_rename(storage, key, "{sku}")
    assert refused.value.lines == ["SKU-1001.png for sword-01#1, sword-01#2", "SKU-1002.png for sword-02#1, sword-02#2"]
    assert "2 name(s) would each refer to more than one image" in str(refused.value)
    assert stored_files(storage) == before and catalog_names(catalog, key) == names_before

    rename(storage, catalog, plan_rename(storage, key, PATTERN))
    jobs = {(j.variant_id, j.variation): j for j in read_record(storage, key, "prompts").jobs}
    one, other = jobs["sword-01", 1], jobs["sword-02", 1]
    before = stored_files(storage)
    # The name another image has now, and the name it had before (its alias), are both taken.
    with pytest.raises(NameCollision) as refused:
        plan_rename(storage, key, "{sku}_2", [one.image_id])
    assert refused.value.lines == ["SKU-1001_2.png for sword-01#1, but it is the name of sword-01#2"]
    with pytest.raises(NameCollision) as refused:
        plan_rename(storage, key, other.image_id, [one.image_id])
    assert refused.value.lines == [f"{other.image_id}.png for sword-01#1, but it is an old name of sword-02#1"]
    assert stored_files(storage) == before


def test_old_names_stay_aliases_through_renames_and_taking_one_back(batch):
    storage, key, catalog = batch
    job = read_record(storage, key, "prompts").jobs[0]
    first = f"{job.image_id}.png"
    rename(storage, catalog, plan_rename(storage, key, PATTERN))
    rename(storage, catalog, plan_rename(storage, key, "item-{seq}"))
    asset = f"{key}/{job.image_id}"

    assert load_names(storage, key)[job.image_id].held() == ("item-0001", job.image_id, "SKU-1001_1")
    for name in (first, "SKU-1001_1.png", "item-0001.png"):
        assert catalog.resolve_file_name(name) == [asset]
        assert storage.exists(f"raw/{key}/{name}")
    assert catalog.resolve_file_name("no-such-name.png") == []

    # Back to its first name: an old name of its own is free to take again.
    rename(storage, catalog, plan_rename(storage, key, job.image_id, [job.image_id]))
    assert load_names(storage, key)[job.image_id].held() == (job.image_id, "SKU-1001_1", "item-0001")
    assert catalog.resolve_file_name(first) == [asset] and catalog_names(catalog, key)[job.image_id] == first


def test_images_found_by_a_catalog_query_are_the_ones_renamed(batch):
    storage, key, catalog = batch
    selection = select_by_query(catalog, "scimitar")
    jobs = read_record(storage, key, "prompts").jobs
    assert {k: sorted(v) for k, v in selection.items()} == {
        key: sorted(j.image_id for j in jobs if j.variant_id == "sword-02")}

    rename(storage, catalog, plan_rename(storage, key, "scimitar-{variation}", selection[key]))

    names = catalog_names(catalog, key)
    assert sorted(n for n in names.values() if n.startswith("scimitar")) == ["scimitar-1.png", "scimitar-2.png"]
    assert sum(n == f"{i}.png" for i, n in names.items()) == 2  # the longswords keep theirs
    with pytest.raises(LookupError, match="no catalogued image matches 'unicorn'"):
        select_by_query(catalog, "unicorn")
    with pytest.raises(ValueError, match="--query needs words"):
        select_by_query(catalog, "  ")


def test_a_catalog_rebuilt_from_storage_keeps_the_new_names_and_aliases(batch):
    storage, key, catalog = batch
    old = {j.image_id: j.file_name for j in read_record(storage, key, "prompts").jobs}
    rename(storage, catalog, plan_rename(storage, key, PATTERN))
    named = catalog_names(catalog, key)

    database = Path(catalog.engine.url.database)
    dispose_engine(catalog.url)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    [counts] = rebuild(catalog, storage)

    assert counts.aliases == 4 and catalog_names(catalog, key) == named
    assert all(catalog.resolve_file_name(name) == [f"{key}/{image_id}"] for image_id, name in old.items())


def test_later_runs_and_reexports_keep_the_new_names(batch):
    storage, key, catalog = batch
    rename(storage, catalog, plan_rename(storage, key, PATTERN))
    raw_before = storage.list_keys(f"raw/{key}")

    # The whole graph again, as `assetql run` of the same folder or `assetql more` runs it.
    assert materialize_partition(storage, key, catalog=catalog).success

    assert storage.list_keys(f"raw/{key}") == raw_before  # nothing generated, nothing under a third name
    assert {j.file_name for j in read_record(storage, key, "prompts").jobs} == NEW_NAMES
    exported = package(storage, key)
    assert exported["zip"] == set(exported["manifest"]) == exported["links"] == NEW_NAMES
    assert set(catalog_names(catalog, key).values()) == NEW_NAMES
    assert all(len(catalog.resolve_file_name(f"{image_id}.png")) == 1 for image_id in load_names(storage, key))
