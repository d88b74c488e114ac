"""The asset catalog filled from a real tiny batch run: the `catalog_entry` asset, `catalog_batch`
(idempotent), `rebuild` from storage alone, search, and the `assetql catalog` / `search` commands."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness.batch_runs import catalog_beside, materialize_partition
from sqlalchemy import select

from assetql_dagster.pipeline.cataloguing import catalog_batch, rebuild
from assetql_dagster.pipeline.records import read_record
from assetql_dagster.pipeline.registration import register_batch
from resources.catalog import dispose_engine
from resources.catalog_models import Base
from resources.storage import LocalStorage

ROOT = Path(__file__).resolve().parents[3]
# Columns that record when a row was last written, not what it says.
VOLATILE = {"updated_at", "id"}


def snapshot(catalog) -> dict[str, list[tuple]]:
    """Every catalog row, table by table, without write times or surrogate ids, in a fixed order."""
    tables = {}
    with catalog.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.c if c.name not in VOLATILE or c.primary_key and c.name != "id"]
            rows = conn.execute(select(*columns)).all()
            tables[table.name] = sorted((tuple(map(repr, r)) for r in rows))
    return tables


@pytest.fixture(scope="module")
def catalogued(tmp_path_factory):
    """One tiny batch (3 rows × 1 variation) run through the whole graph, catalog included."""
    tmp = tmp_path_factory.mktemp("catalogued")
    from conftest import make_batch  # tests/assetql_dagster/conftest.py

    storage = LocalStorage(root=str(tmp / "data"))
    key = register_batch(storage, make_batch(tmp / "inbox", rows=3)).key
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

        sources = dict(conn.execute(select(Tag.group, Tag.source).distinct()).all())
    assert sources["category"] == "csv" and sources["color"] == "pixels" and sources["object"] == "clip"


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


def test_cli_rebuilds_the_catalog_and_searches_it(catalogued, tmp_path):
    storage, key, _, _ = catalogued
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "ASSETQL_CATALOG_URL": f"sqlite:///{tmp_path}/cli.sqlite3"}
    env.pop("ASSETQL_STORAGE", None)

    def assetql(*args):
        return subprocess.run([sys.executable, "-m", "assetql_dagster.cli", *args, "--data-dir", storage.root],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

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
