"""The asset catalog filled from a real tiny batch run: the `catalog_entry` asset, `catalog_batch`
(idempotent), `rebuild` from storage alone, search, and the `assetql catalog` / `search` commands."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from harness.batch_runs import catalog_beside, materialize_partition
from harness.sample_batches import make_batch
from PIL import Image, ImageEnhance
from sqlalchemy import select

from assetql_dagster.pipeline.cataloguing import catalog_batch, categorize, rebuild
from assetql_dagster.pipeline.records import read_record
from assetql_dagster.pipeline.registration import register_batch
from assetql_dagster.pipeline.searching import find
from resources.catalog import dispose_engine
from resources.catalog_models import Base, embedding_from_bytes
from resources.clip import ClipEmbedder
from resources.storage import LocalStorage

ROOT = Path(__file__).resolve().parents[3]
# Columns that record when a row was last written, not what it says.
VOLATILE = {"updated_at", "id"}


def snapshot(catalog) -> dict[str, list[tuple]]:
    """Every catalog row, table by table, without write times or surrogate ids, in a fixed order."""
    tables = {}
    with catalog.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name == "catalog_changes":  # counts writes, not what they wrote
                continue
            columns = [c for c in table.c if c.name not in VOLATILE or c.primary_key and c.name != "id"]
            rows = conn.execute(select(*columns)).all()
            tables[table.name] = sorted((tuple(map(repr, r)) for r in rows))
    return tables


@pytest.fixture(scope="module")
def catalogued(tmp_path_factory):
    """One tiny batch (3 rows × 1 variation) run through the whole graph, catalog included."""
    tmp = tmp_path_factory.mktemp("catalogued")

    storage = LocalStorage(root=str(tmp / "data"))
    key = register_batch(storage, make_batch(tmp / "inbox", rows=3), creator="ana").key
    result = materialize_partition(storage, key)
    assert result.success
    return storage, key, catalog_beside(storage), result


def test_catalog_entry_asset_catalogues_the_batch(catalogued):
    storage, key, catalog, result = catalogued
    events = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    metadata = events["catalog_entry"].step_materialization_data.materialization.metadata
    curation = read_record(storage, key, "curated_images")
    stored = curation.images.stored
    assert metadata["assets"].value == len(stored) == 3
    assert metadata["versions"].value >= 3
    assert metadata["catalog_url"].value == catalog.url
    counts = catalog.row_counts()
    assert counts["batches"] == 1 and counts["assets"] == 3 and counts["exports"] >= 1
    assert metadata["rows_upserted"].value == 1 + counts["assets"] + counts["asset_versions"] + counts["tags"] + counts["exports"]

    jobs = {j.image_id: j for j in read_record(storage, key, "prompts").jobs}
    scores = {s.image_id: s for s in curation.scores.images}
    for image in stored:
        row = catalog.get_asset(f"{key}/{image.image_id}")
        job, score = jobs[image.image_id], scores[image.image_id]
        assert (row["category"], row["prompt"], row["sku"], row["extra"]) == (job.category, job.prompt, job.sku, job.extra)
        assert (row["raw_key"], row["thumb_key"], row["width"], row["height"]) == (
            image.raw_key, image.thumb_key, image.width, image.height)
        assert row["style_score"] == pytest.approx(score.style_score)
        assert row["palette_score"] == pytest.approx(score.palette_score)
        assert row["verdict"] == score.verdict and row["current_version"] >= 1
    with catalog.engine.connect() as conn:
        from resources.catalog_models import Tag

        sources = set(conn.execute(select(Tag.group, Tag.source).distinct()).all())
    # Each tag's own source; the tiny CLIP's zero-shot labels are all under their thresholds.
    assert {("category", "csv+keywords"), ("color", "pixels"), ("mood", "pixels"), ("composition", "pixels")} <= sources
    assert {source for _, source in sources} <= {"csv", "csv+keywords", "keywords", "pixels"}


def test_rebuild_catalogues_a_batch_registered_but_not_run_yet(tmp_path):
    storage = LocalStorage(root=str(tmp_path / "data"))
    key = register_batch(storage, make_batch(tmp_path / "inbox", rows=2, references=False), creator="ana").key
    catalog = catalog_beside(storage)
    [counts] = rebuild(catalog, storage)
    assert (counts.batch, counts.assets) == (key, 0)
    assert (catalog.get_batch(key)["status"], catalog.get_batch(key)["creator"]) == ("registered", "ana")


def test_catalog_batch_is_idempotent_and_rebuild_restores_the_rows(catalogued):
    storage, key, catalog, _ = catalogued
    before = snapshot(catalog)
    counts = catalog_batch(catalog, storage, key)
    assert counts.assets == 3 and counts.removed == 0
    assert snapshot(catalog) == before

    database = Path(catalog.engine.url.database)
    dispose_engine(catalog.url)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    assert [c.batch for c in rebuild(catalog, storage)] == [key]
    assert snapshot(catalog) == before


def test_search_by_text_verdict_batch_and_category(catalogued):
    storage, key, catalog, _ = catalogued
    everything = catalog.search()
    assert len(everything) == 3
    scores = [r["style_score"] for r in everything]
    assert scores == sorted(scores, reverse=True)
    assert all(r["tags"] and "embedding" not in r for r in everything)

    jobs = read_record(storage, key, "prompts").jobs
    word = jobs[0].sku or jobs[0].category
    found = catalog.search(word)
    assert f"{key}/{jobs[0].image_id}" in {r["id"] for r in found}
    assert catalog.search("nosuchwordanywhere") == []
    assert len(catalog.search(batch=key)) == 3 and catalog.search(batch="other-00000000") == []
    for verdict in ("pass", "review"):
        assert {r["verdict"] for r in catalog.search(verdict=verdict)} <= {verdict}
    assert len(catalog.search(verdict="pass")) + len(catalog.search(verdict="review")) == 3
    category = jobs[0].category
    assert {r["category"] for r in catalog.search(category=category)} == {category}
    assert [r["id"] for r in catalog.search(limit=1, offset=1)] == [everything[1]["id"]]


def cli(storage, tmp_path):
    """`assetql ARGS --data-dir {storage}` with its own Dagster home and catalog file."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "ASSETQL_CATALOG_URL": f"sqlite:///{tmp_path}/cli.sqlite3"}
    env.pop("ASSETQL_STORAGE", None)

    def assetql(*args):
        return subprocess.run([sys.executable, "-m", "assetql_dagster.cli", *args, "--data-dir", storage.root],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    return assetql


def test_cli_rebuilds_the_catalog_and_searches_it(catalogued, tmp_path):
    storage, key, _, _ = catalogued
    assetql = cli(storage, tmp_path)
    built = assetql("catalog", "rebuild")
    assert built.returncode == 0, built.stderr
    assert f"{key}: 3 image(s)" in built.stdout and "catalogued 1 batch(es)" in built.stdout
    found = assetql("search", "--batch", key, "--format", "json", "--limit", "2")
    assert found.returncode == 0, found.stderr
    rows = json.loads(found.stdout)
    assert len(rows) == 2 and all(r["batch_key"] == key for r in rows)
    table = assetql("search", "--category", rows[0]["category"])
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["id", "verdict", "style_score"]
    assert rows[0]["id"] in table.stdout or len(lines) > 1
    nothing = assetql("search", "nosuchwordanywhere")
    assert nothing.returncode == 0 and nothing.stdout == "" and "no matching images" in nothing.stderr


def test_images_are_catalogued_with_embeddings_file_facts_and_who_registered(catalogued):
    storage, key, catalog, _ = catalogued
    tag_set = read_record(storage, key, "tags")
    assert tag_set.embedding_model == "tiny"
    for tagged in tag_set.images:
        row = catalog.get_asset(f"{key}/{tagged.image_id}")
        assert row["embedding_model"] == "tiny" and row["format"] == "png"
        assert embedding_from_bytes(row["embedding"]) == pytest.approx(np.asarray(tagged.embedding), abs=1e-6)
        assert row["file_size"] == storage.local_path(row["raw_key"]).stat().st_size > 0
    batch = read_record(storage, key, "batch_input")
    with catalog.engine.connect() as conn:
        from resources.catalog_models import Batch

        assert conn.execute(select(Batch.creator).where(Batch.key == key)).scalar_one() == batch.creator


def test_a_near_copy_of_an_image_finds_it_first_and_a_description_ranks_everything(catalogued, tmp_path):
    storage, key, catalog, _ = catalogued
    clip = ClipEmbedder().load
    target = catalog.search(sort="name")[1]
    near_copy = tmp_path / "near-copy.png"
    original = Image.open(storage.local_path(target["raw_key"])).convert("RGB")
    ImageEnhance.Brightness(original).enhance(1.03).save(near_copy)
    ranked = find(catalog, clip, like=str(near_copy))
    assert ranked[0]["id"] == target["id"] and ranked[0]["similarity"] > ranked[1]["similarity"]
    assert len(ranked) == 3

    by_id = find(catalog, clip, like=target["id"])
    assert target["id"] not in [r["id"] for r in by_id] and len(by_id) == 2
    described = find(catalog, clip, describe="a red sword on a table")
    sims = [r["similarity"] for r in described]
    assert len(described) == 3 and sims == sorted(sims, reverse=True)
    with pytest.raises(ValueError, match="neither a catalogued asset id"):
        find(catalog, clip, like=str(tmp_path / "missing.png"))
    with pytest.raises(ValueError, match="1 to 500 characters"):
        find(catalog, clip, describe="x" * 501)
    with pytest.raises(ValueError, match="no catalogued image has embeddings of CLIP model 'ViT-B-32:openai'"):
        find(catalog, lambda: FakeModel("ViT-B-32:openai"), describe="a sword")


class FakeModel:
    """A CLIP model of another embedding space, which must never be asked to embed."""

    def __init__(self, embedding_model: str):
        self.embedding_model = embedding_model


def test_cli_search_filters_ranks_by_similarity_and_writes_csv_and_a_contact_sheet(catalogued, tmp_path):
    storage, key, _, _ = catalogued
    assetql = cli(storage, tmp_path)
    assert assetql("catalog", "rebuild").returncode == 0
    first = json.loads(assetql("search", "--sort", "name", "--format", "json").stdout)
    similar = assetql("search", "--like", first[0]["id"], "--format", "csv", "--min-width", "1")
    assert similar.returncode == 0, similar.stderr
    table = list(csv.DictReader(io.StringIO(similar.stdout)))
    assert len(table) == 2 and first[0]["id"] not in [r["id"] for r in table]
    assert float(table[0]["similarity"]) >= float(table[1]["similarity"])
    sheet = tmp_path / "sheet.html"
    written = assetql("search", "--describe", "a glowing potion", "--contact-sheet", str(sheet))
    assert written.returncode == 0, written.stderr
    page = sheet.read_text()
    assert page.count("data:image/jpeg;base64,") == 3 and "similarity" in page
    assert "Search: described as “a glowing potion”</title>" in page
    empty = assetql("search", "--min-width", "100000", "--format", "csv")
    assert empty.returncode == 0 and empty.stdout.splitlines()[0].startswith("id,batch_key")
    bad = assetql("search", "--max-file-size", "huge")
    assert bad.returncode == 1 and "file size 'huge' is not a size" in bad.stderr


def category_rows(catalog, aid: str) -> tuple:
    """What the catalog says of an asset's category: its row, its category tags, its override row."""
    from resources.catalog_models import CategoryOverride, Tag

    row = catalog.get_asset(aid)
    with catalog.engine.connect() as conn:
        tags = set(conn.execute(select(Tag.label, Tag.source).where(Tag.asset_id == aid, Tag.group == "category")))
        override = conn.execute(select(CategoryOverride.category).where(CategoryOverride.asset_id == aid)).scalar()
    return (row["category"], row["subcategory"], row["category_source"]), tags, override


def test_a_hand_set_category_survives_recataloguing_a_rerun_and_a_rebuild_from_storage(catalogued):
    storage, key, catalog, _ = catalogued
    image_id = read_record(storage, key, "curated_images").images.stored[0].image_id
    aid = f"{key}/{image_id}"
    # The CSV says weapon, the prompt "a longsword ...": the found path is weapon/sword.
    found = (("weapon", "sword", "csv+keywords"), {("weapon", "csv+keywords"), ("sword", "csv+keywords")}, None)
    set_by_hand = (("weapon", "bow", "override"), {("weapon", "override"), ("bow", "override")}, "weapon/bow")
    assert category_rows(catalog, aid) == found
    try:
        assert categorize(catalog, storage, aid, "Bows").path == "weapon/bow"
        assert category_rows(catalog, aid) == set_by_hand
        catalog_batch(catalog, storage, key)
        assert category_rows(catalog, aid) == set_by_hand
        rerun = materialize_partition(storage, key, selection=["tags", "exports", "catalog_entry"], catalog=catalog)
        assert rerun.success
        # The tags record keeps what was found; cataloguing and exports apply the override from storage.
        tagged = {t.image_id: t for t in read_record(storage, key, "tags").images}[image_id]
        assert (tagged.category, tagged.category_source) == ("weapon/sword", "csv+keywords")
        assert category_rows(catalog, aid) == set_by_hand
        manifest = json.loads(storage.read_text(f"exports/{key}/manifest.json"))["images"]
        row = next(r for r in manifest if r["file_name"] == tagged.file_name)
        assert (row["category"], row["category_source"]) == ("weapon/bow", "override")
        assert {r["category_source"] for r in manifest if r is not row} == {"csv+keywords"}

        database = Path(catalog.engine.url.database)
        dispose_engine(catalog.url)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        rebuild(catalog, storage)
        assert category_rows(catalog, aid) == set_by_hand
    finally:
        assert categorize(catalog, storage, aid, None) is None
    assert category_rows(catalog, aid) == found


@pytest.mark.parametrize(
    ("asset", "path", "error", "message"),
    [
        ("{key}/{image}", "weapon//bow", ValueError, "'primary' or 'primary/sub'.*got 'weapon//bow'"),
        ("{key}/{image}", "a/b/c", ValueError, "got 'a/b/c'"),
        ("{key}", "weapon", ValueError, "must be '{{batch}}/{{image_id}}'"),
        ("{key}/no_such_image", "weapon", LookupError, "has no image 'no_such_image'; its images: "),
        ("other-00000000/{image}", "weapon", LookupError, "no batch 'other-00000000'"),
    ],
)
def test_categorize_rejects_bad_paths_and_unknown_images_before_writing(catalogued, asset, path, error, message):
    storage, key, catalog, _ = catalogued
    image = read_record(storage, key, "curated_images").images.stored[0].image_id
    overrides = f"batches/{key}/category_overrides.json"

    def stored_overrides():
        return storage.read_text(overrides) if storage.exists(overrides) else None

    before = stored_overrides()
    with pytest.raises(error, match=message.format(key=key)):
        categorize(catalog, storage, asset.format(key=key, image=image), path)
    assert stored_overrides() == before


def test_cli_categorize_sets_and_clears_a_category(catalogued, tmp_path):
    storage, key, _, _ = catalogued
    assetql = cli(storage, tmp_path)
    aid = f"{key}/{read_record(storage, key, 'curated_images').images.stored[1].image_id}"
    try:
        done = assetql("categorize", aid, "--set", "gadgets/widget")
        assert done.returncode == 0, done.stderr
        assert f"{aid}: category gadgets/widget (not in the hierarchy" in done.stdout
        found = json.loads(assetql("search", "--batch", key, "--format", "json").stdout)
        assert {r["id"]: r["category"] for r in found}[aid] == "gadgets"
    finally:
        cleared = assetql("categorize", aid, "--clear")
    assert cleared.returncode == 0 and "hand-set category cleared" in cleared.stdout
    bad = assetql("categorize", aid, "--set", "weapon/bow/long")
    assert bad.returncode == 1 and "assetql: error: expected a category path" in bad.stderr
    neither = assetql("categorize", aid)
    assert neither.returncode == 2 and "one of the arguments --set --clear is required" in neither.stderr
