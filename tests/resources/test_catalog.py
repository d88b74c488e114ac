"""The asset catalog on SQLite (a file per test) and PostgreSQL (a database per test)."""

from __future__ import annotations

import json
import multiprocessing
import threading
from datetime import datetime, timedelta, timezone

import dagster as dg
import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from harness.catalog_writers import VERSIONS, WRITER_TAGS, WRITER_WORDS, image_ids, write_batch, write_batch_together
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from resources.catalog import (
    CATALOG_URL_ENV,
    DEFAULT_CATALOG_URL,
    AssetCatalog,
    asset_id,
    dispose_engine,
    engine_for,
    sqlite_url_beside,
)
from resources.catalog_models import (
    ActivityEntry,
    AliasEntry,
    AssetEntry,
    Base,
    BatchEntry,
    CategoryOverride,
    DownloadEntry,
    Export,
    Tag,
    TagEntry,
    VersionEntry,
    embedding_from_bytes,
    is_search_object,
)

TABLES = {"catalog_changes", "batches", "assets", "asset_versions", "tags", "style_profiles", "exports", "category_overrides",
          "asset_aliases", "activity", "downloads"}
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def _batch(catalog: AssetCatalog, key: str = "demo-1", **fields) -> None:
    catalog.upsert_batch(BatchEntry(key=key, name=fields.pop("name", "Demo"), **fields))


def _catalog_everything(catalog: AssetCatalog, newer: bool) -> None:
    """One batch with 3 assets, 2 versions each, 3 tags each, 2 exports, a profile, an override and an
    old file name."""
    _batch(catalog, name="Demo v2" if newer else "Demo", status="exported" if newer else "registered",
           images_planned=3, images_stored=3, images_passed=2 if newer else 1, settings={"steps": 30 if newer else 20},
           style_profile="brand-x@2", campaign="spring", registered_at="2026-05-01T12:00:00Z",
           owner="bo" if newer else "ana")
    catalog.upsert_assets("demo-1", [
        AssetEntry(image_id=f"img-{i}", file_name=f"img-{i}.png", raw_key=f"raw/demo-1/img-{i}.png",
                   category="weapons", subcategory="swords", style_score=0.9 if newer else 0.5,
                   palette_score=0.8, verdict="pass" if newer else "review", width=512, height=512,
                   file_size=1000 + i, prompt=f"{'golden' if newer else 'silver'} sword number {i}",
                   language="en", sku=f"SKU-{i}", extra={"material": "gold" if newer else "steel"},
                   current_version=2 if newer else 1, review="approved" if newer else "")
        for i in range(3)
    ])
    catalog.upsert_versions("demo-1", [
        VersionEntry(image_id=f"img-{i}", version=v, seed=100 * i + v, prompt="p",
                     verdict="pass" if newer else "review", reason="initial" if v == 1 else "auto-regenerate",
                     storage_key=f"versions/demo-1/img-{i}/v{v}.png", created_at=T0 + timedelta(minutes=v))
        for i in range(3) for v in (1, 2)
    ])
    for i in range(3):
        catalog.replace_tags(asset_id("demo-1", f"img-{i}"), [
            TagEntry("gold", "colour", 0.9 if newer else 0.4), TagEntry("sword", "object", 0.8),
            TagEntry("calm", "mood", 0.7),
        ])
    catalog.upsert_exports("demo-1", {"zip": "exports/demo-1/demo-1.zip" if newer else "old.zip",
                                      "manifest": "exports/demo-1/manifest.csv"})
    catalog.upsert_style_profile("brand-x", 2, {"threshold": 0.9 if newer else 0.8})
    catalog.set_category_override("demo-1/img-0", "weapons/daggers" if newer else "weapons/knives")
    catalog.replace_aliases("demo-1", [AliasEntry("img-1", "sword-1.png", "raw/demo-1/sword-1.png" if newer else "")])


# The activity log and download history are appended to, not upserted: nothing here writes them.
EVERYTHING = {"batches": 1, "assets": 3, "asset_versions": 6, "tags": 9, "exports": 2, "style_profiles": 1,
              "category_overrides": 1, "asset_aliases": 1, "catalog_changes": 1, "activity": 0, "downloads": 0}


def test_migrations_go_up_to_head_and_down_to_base(catalog_url):
    catalog = AssetCatalog(url=catalog_url)
    assert catalog.current_revision() is None
    catalog.migrate()
    assert catalog.current_revision() == AssetCatalog.head_revision()
    inspector = inspect(catalog.engine)
    assert TABLES <= set(inspector.get_table_names())
    if catalog.dialect == "sqlite":
        with catalog.engine.connect() as conn:
            objects = dict(conn.execute(text("SELECT name, type FROM sqlite_master WHERE name LIKE 'assets_%'")).all())
            fts_sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'assets_fts'")).scalar_one()
        assert "fts5" in fts_sql.lower()
        assert {n for n, t in objects.items() if t == "trigger"} == {
            "assets_search_ai", "assets_search_ad", "assets_search_au",
            "assets_search_from_assets_ai", "assets_search_from_assets_au"}
    else:
        columns = {c["name"]: str(c["type"]) for c in inspector.get_columns("assets")}
        assert columns["search_vector"] == "TSVECTOR"
        with catalog.engine.connect() as conn:
            indexdef = conn.execute(text(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_assets_search_vector'")).scalar_one()
            generated = conn.execute(text(
                "SELECT is_generated FROM information_schema.columns "
                "WHERE table_name = 'assets' AND column_name = 'search_vector'")).scalar_one()
        assert "USING gin (search_vector)" in indexdef and generated == "ALWAYS"
    expected_indexes = {"ix_assets_batch_key", "ix_assets_category_subcategory", "ix_assets_verdict",
                        "ix_assets_style_score", "ix_assets_created_at", "ix_assets_language",
                        "ix_assets_file_name", "ix_assets_embedding_model_updated_at", "ix_assets_review"}
    assert expected_indexes <= {i["name"] for i in inspector.get_indexes("assets")}
    assert "ix_tags_label" in {i["name"] for i in inspector.get_indexes("tags")}
    for table in ("activity", "downloads"):
        assert {f"ix_{table}_{c}" for c in ("at", "user", "target")} <= {i["name"] for i in inspector.get_indexes(table)}

    _catalog_everything(catalog, newer=False)
    catalog.migrate()  # at head already: changes nothing
    assert catalog.row_counts() == EVERYTHING

    catalog.downgrade("base")
    assert catalog.current_revision() is None
    assert set(inspect(catalog.engine).get_table_names()) == {"alembic_version"}
    if catalog.dialect == "sqlite":
        with catalog.engine.connect() as conn:
            left = conn.execute(text("SELECT name FROM sqlite_master WHERE name NOT LIKE '%alembic%'")).scalars().all()
        assert left == []
    else:
        with catalog.engine.connect() as conn:
            sequences = conn.execute(text("SELECT relname FROM pg_class WHERE relkind = 'S'")).scalars().all()
        assert sequences == []

    catalog.migrate()  # and up again from base
    assert catalog.current_revision() == AssetCatalog.head_revision()
    assert catalog.row_counts() == dict.fromkeys(EVERYTHING, 0)


def _rows_as_0001_wrote_them(catalog: AssetCatalog, file_name: str = "a.png") -> None:
    """Batch demo-1 (by ana) with image a, written in SQL: the models describe the newest schema, so
    a test of an older revision cannot write or read through them."""
    with catalog.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO batches (\"key\", name, description, creator, status, images_planned, images_stored,"
            " images_failed, images_passed, images_review, settings, registered_at, updated_at) VALUES ('demo-1',"
            " 'Demo', '', 'ana', 'exported', 1, 1, 0, 1, 0, '{}', '2026-11-26 00:00:00', '2026-11-26 00:00:00')"))
        conn.execute(text(
            "INSERT INTO assets (id, batch_key, image_id, file_name, current_version, raw_key, thumb_key, category,"
            " subcategory, category_source, verdict, width, height, format, prompt, negative_prompt, language, sku,"
            " extra, created_at, updated_at, tags_text, metadata_text) VALUES ('demo-1/a', 'demo-1', 'a', :name,"
            " 1, 'raw/a.png', 'thumb/a.jpg', 'weapon', '', 'csv', 'pass', 64, 64, 'png', 'a lantern', '', 'en', '',"
            " '{}', '2026-11-26 00:00:00', '2026-11-26 00:00:00', '', 'a a.png')"), {"name": file_name})


def _value(catalog: AssetCatalog, sql: str):
    with catalog.engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


def test_0002_adds_the_embedding_model_and_going_down_keeps_every_other_value(catalog_url):
    catalog = AssetCatalog(url=catalog_url)
    catalog.migrate("0001")
    _rows_as_0001_wrote_them(catalog)
    catalog.migrate("0002")
    assert _value(catalog, "SELECT embedding_model FROM assets") is None
    assert catalog.search_ids("lantern") == ["demo-1/a"]
    with catalog.engine.begin() as conn:
        conn.execute(text("UPDATE assets SET embedding_model = 'tiny'"))
    catalog.downgrade("0001")
    assert "embedding_model" not in {c["name"] for c in inspect(catalog.engine).get_columns("assets")}
    assert catalog.search_ids("lantern") == ["demo-1/a"]  # full text survives the way down
    catalog.migrate()
    assert catalog.get_asset("demo-1/a")["embedding_model"] is None


def test_the_models_describe_exactly_the_migrated_schema(catalog):
    with catalog.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True, "include_object": lambda o, name, *_: not is_search_object(name)})
        diffs = compare_metadata(context, Base.metadata)
    assert diffs == []


def test_concurrent_migrations_end_at_head_once(catalog_url):
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def migrate() -> None:
        barrier.wait()
        try:
            AssetCatalog(url=catalog_url).migrate()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    catalog = AssetCatalog(url=catalog_url)
    assert catalog.current_revision() == AssetCatalog.head_revision()
    with catalog.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1


def test_upserts_are_idempotent_and_the_newer_values_win(catalog):
    _catalog_everything(catalog, newer=False)
    first = catalog.get_asset("demo-1/img-1")
    _catalog_everything(catalog, newer=False)
    assert catalog.row_counts() == EVERYTHING
    assert catalog.get_asset("demo-1/img-1")["created_at"] == first["created_at"]

    _catalog_everything(catalog, newer=True)
    assert catalog.row_counts() == EVERYTHING
    asset = catalog.get_asset("demo-1/img-1")
    assert (asset["style_score"], asset["verdict"], asset["current_version"]) == (0.9, "pass", 2)
    assert asset["prompt"] == "golden sword number 1" and asset["extra"] == {"material": "gold"}
    assert asset["palette_score"] == 0.8 and asset["file_size"] == 1001 and asset["batch_key"] == "demo-1"
    assert asset["review"] == "approved"
    # A created_at left None keeps the first one; updated_at moves on.
    assert asset["created_at"] == first["created_at"] and asset["updated_at"] > first["updated_at"]
    assert asset["created_at"].tzinfo is not None
    with catalog.engine.connect() as conn:
        batch = conn.execute(text(
            "SELECT name, status, images_passed, owner, registered_at FROM batches WHERE key = 'demo-1'")).one()
        versions = conn.execute(text("SELECT verdict, created_at FROM asset_versions ORDER BY asset_id, version")).all()
        confidences = conn.execute(select(Tag.confidence).where(Tag.label == "gold")).scalars().all()
        exports = dict(conn.execute(select(Export.kind, Export.storage_key)).all())
        override = conn.execute(select(CategoryOverride.category)).scalar_one()
        spec = conn.execute(text("SELECT spec FROM style_profiles")).scalar_one()
    assert batch[:4] == ("Demo v2", "exported", 2, "bo")
    assert {v for v, _ in versions} == {"pass"}
    assert confidences == [0.9] * 3
    assert exports == {"zip": "exports/demo-1/demo-1.zip", "manifest": "exports/demo-1/manifest.csv"}
    assert override == "weapons/daggers"
    assert (spec if isinstance(spec, dict) else json.loads(spec)) == {"threshold": 0.9}

    # An explicit created_at does win.
    catalog.upsert_assets("demo-1", [AssetEntry(image_id="img-1", file_name="img-1.png", created_at=T0)])
    assert catalog.get_asset("demo-1/img-1")["created_at"] == T0


def test_duplicates_within_one_call_collapse_to_the_last(catalog):
    _batch(catalog)
    assert catalog.upsert_assets("demo-1", [
        {"image_id": "a", "file_name": "a.png", "style_score": 0.1},
        {"image_id": "a", "file_name": "a.png", "style_score": 0.7},
    ]) == 1
    assert catalog.get_asset("demo-1/a")["style_score"] == 0.7
    assert catalog.replace_tags("demo-1/a", [TagEntry("red", "colour", 0.1), TagEntry("red", "colour", 0.6)]) == 1
    with catalog.engine.connect() as conn:
        assert conn.execute(select(Tag.confidence)).scalars().all() == [0.6]


def test_replace_tags_leaves_exactly_the_given_tags(catalog):
    _batch(catalog)
    catalog.upsert_assets("demo-1", [AssetEntry(image_id="a", file_name="a.png", prompt="a lantern")])
    catalog.replace_tags("demo-1/a", [TagEntry("amber", "colour"), TagEntry("glow", "mood"), TagEntry("amber", "object")])
    with catalog.engine.connect() as conn:
        kept_id = conn.execute(select(Tag.id).where(Tag.label == "glow")).scalar_one()
    catalog.replace_tags("demo-1/a", [{"label": "glow", "group": "mood", "confidence": 0.3}, TagEntry("teal", "colour")])
    with catalog.engine.connect() as conn:
        tags = conn.execute(select(Tag.id, Tag.label, Tag.group, Tag.confidence).order_by(Tag.label)).all()
    assert [(label, group, conf) for _, label, group, conf in tags] == [("glow", "mood", 0.3), ("teal", "colour", 1.0)]
    assert tags[0][0] == kept_id  # an unchanged key keeps its row
    assert catalog.search_ids("teal") == ["demo-1/a"] and catalog.search_ids("amber") == []
    assert catalog.replace_tags("demo-1/a", []) == 0
    assert catalog.row_counts()["tags"] == 0 and catalog.search_ids("glow") == []
    # Upserting the asset again keeps its tags searchable.
    catalog.replace_tags("demo-1/a", [TagEntry("teal", "colour")])
    catalog.upsert_assets("demo-1", [AssetEntry(image_id="a", file_name="a.png", prompt="a lantern, lit")])
    assert catalog.search_ids("teal") == ["demo-1/a"]
    with pytest.raises(LookupError, match="not in the catalog"):
        catalog.replace_tags("demo-1/missing", [TagEntry("red", "colour")])


@pytest.mark.parametrize("writers", ["threads", "processes"])
def test_concurrent_writers_leave_one_row_per_key(catalog, writers):
    images, rounds = 12, 4
    if writers == "threads":
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def run(writer: int) -> None:
            barrier.wait()
            try:
                write_batch(catalog.url, "shared", writer, rounds, images)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        workers = [threading.Thread(target=run, args=(w,)) for w in (0, 1)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(300)
        assert errors == []
    else:
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(2)
        procs = [ctx.Process(target=write_batch_together, args=(catalog.url, "shared", w, rounds, images, barrier))
                 for w in (0, 1)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(300)
        assert [p.exitcode for p in procs] == [0, 0]

    counts = catalog.row_counts()
    assert counts["batches"] == 1 and counts["assets"] == images and counts["asset_versions"] == images * VERSIONS
    with catalog.engine.connect() as conn:
        tag_rows = conn.execute(select(Tag.asset_id, Tag.label, Tag.group)).all()
        exports = conn.execute(select(Export.kind)).scalars().all()
    assert sorted(exports) == ["manifest", "zip"]
    by_asset: dict[str, set] = {}
    for aid, label, group in tag_rows:
        by_asset.setdefault(aid, set()).add((label, group))
    assert len(tag_rows) == sum(len(t) for t in by_asset.values())  # one row per (asset, label, group)
    writer_sets = [{(t.label, t.group) for t in tags} for tags in WRITER_TAGS]
    assert sorted(by_asset) == sorted(asset_id("shared", i) for i in image_ids(images))
    # Each asset has exactly one writer's tags (the later replacement wins whole), never a union.
    assert all(tags in writer_sets for tags in by_asset.values()), by_asset
    for i in image_ids(images):
        asset = catalog.get_asset(asset_id("shared", i))
        writer = int(embedding_from_bytes(asset["embedding"])[0])
        assert asset["prompt"] == f"{WRITER_WORDS[writer]} {i}" and asset["file_size"] // 1000 == writer


def test_full_text_search_finds_prompt_tag_and_metadata_words(catalog):
    _batch(catalog, "b1")
    _batch(catalog, "b2")
    catalog.upsert_assets("b1", [
        AssetEntry(image_id="c1", file_name="c1.png", prompt="A ruined Castle at dusk, oil painting"),
        AssetEntry(image_id="sword", file_name="sword.png", prompt="an elven sword on velvet", sku="SKU-42",
                   extra={"material": "mithril"}),
        AssetEntry(image_id="tower", file_name="t1.png", prompt="a tower in fog"),
        AssetEntry(image_id="hut", file_name="hut.png", prompt="a hut in fog", extra={"note": "tower"}),
    ])
    catalog.upsert_assets("b2", [AssetEntry(image_id="c1", file_name="c.png", prompt="castle in snow")])
    catalog.replace_tags("b1/sword", [TagEntry("silver", "colour", 0.9)])

    assert sorted(catalog.search_ids("castle")) == sorted(catalog.search_ids("CASTLE")) == ["b1/c1", "b2/c1"]
    assert catalog.search_ids("castle dusk") == ["b1/c1"]  # every word must match
    assert catalog.search_ids("castle", batch_key="b2") == ["b2/c1"]
    assert catalog.search_ids("silver") == ["b1/sword"]  # a tag
    # Metadata: extra values, SKU and file name, split at punctuation alike on both dialects.
    assert catalog.search_ids("mithril") == catalog.search_ids("sku 42") == catalog.search_ids("SKU-42") == ["b1/sword"]
    assert catalog.search_ids("t1") == ["b1/tower"] and catalog.search_ids("t1.png") == ["b1/tower"]
    assert catalog.search_ids("tower") == ["b1/tower", "b1/hut"]  # the prompt outranks metadata
    assert catalog.search_ids("dragon") == [] and catalog.search_ids("\"*'") == []
    assert catalog.search_ids("fog", limit=1) in (["b1/tower"], ["b1/hut"])

    catalog.upsert_assets("b1", [AssetEntry(image_id="c1", file_name="c1.png", prompt="a ruined keep at dawn")])
    assert catalog.search_ids("castle") == ["b2/c1"] and catalog.search_ids("keep") == ["b1/c1"]

    catalog.set_category_override("b1/c1", "buildings/keeps")
    assert catalog.delete_batch("b1") and not catalog.delete_batch("b1")
    assert catalog.search_ids("keep") == [] and catalog.search_ids("silver") == []
    counts = catalog.row_counts()
    assert (counts["assets"], counts["tags"], counts["category_overrides"]) == (1, 0, 1)
    if catalog.dialect == "sqlite":
        with catalog.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM assets_search")).scalar_one() == 1
            # The index agrees with its content table (FTS5's own consistency check).
            conn.execute(text("INSERT INTO assets_fts (assets_fts) VALUES ('integrity-check')"))


def test_embeddings_round_trip_as_float32_bytes(catalog):
    _batch(catalog)
    vector = np.random.default_rng(7).standard_normal(512)
    raw = np.linspace(-1, 1, 16, dtype="<f4").tobytes()
    catalog.upsert_assets("demo-1", [
        AssetEntry(image_id="list", file_name="l.png", embedding=vector.tolist()),
        AssetEntry(image_id="array", file_name="a.png", embedding=vector.astype(np.float32)),
        AssetEntry(image_id="bytes", file_name="b.png", embedding=raw),
        AssetEntry(image_id="none", file_name="n.png"),
    ])
    stored = catalog.get_asset("demo-1/list")["embedding"]
    assert isinstance(stored, bytes) and len(stored) == 512 * 4
    assert stored == vector.astype("<f4").tobytes() == catalog.get_asset("demo-1/array")["embedding"]
    decoded = embedding_from_bytes(stored)
    assert decoded.dtype == np.float32 and np.array_equal(decoded, vector.astype(np.float32))
    assert catalog.get_asset("demo-1/bytes")["embedding"] == raw
    assert catalog.get_asset("demo-1/none")["embedding"] is None
    with pytest.raises(ValueError, match="multiple of 4"):
        catalog.upsert_assets("demo-1", [AssetEntry(image_id="x", file_name="x.png", embedding=b"abc")])
    with pytest.raises(ValueError, match="one vector"):
        catalog.upsert_assets("demo-1", [AssetEntry(image_id="x", file_name="x.png", embedding=[[1.0], [2.0]])])
    with pytest.raises(ValueError, match="finite"):
        catalog.upsert_assets("demo-1", [AssetEntry(image_id="x", file_name="x.png", embedding=[float("nan")])])


def test_bad_input_is_refused_before_or_by_the_database(catalog):
    with pytest.raises(TypeError, match="no field"):
        catalog.upsert_batch({"key": "b", "colour": "red"})
    with pytest.raises(ValueError, match="batch key"):
        catalog.upsert_batch({"key": ""})
    _batch(catalog)
    with pytest.raises(ValueError, match="finite"):
        catalog.upsert_assets("demo-1", [AssetEntry(image_id="a", file_name="a.png", style_score=float("inf"))])
    with pytest.raises(ValueError, match="confidence"):
        TagEntry("red", "colour", 1.5)
    with pytest.raises(IntegrityError):  # the batch must be catalogued first
        catalog.upsert_assets("no-such-batch", [AssetEntry(image_id="a", file_name="a.png")])
    with pytest.raises(IntegrityError):  # and the asset before its versions
        catalog.upsert_versions("demo-1", [VersionEntry(image_id="ghost", version=1, seed=1)])
    assert catalog.row_counts()["assets"] == 0


def test_one_engine_per_process_and_url_with_wal_and_a_busy_timeout(tmp_path):
    url, other = sqlite_url_beside(tmp_path / "a"), sqlite_url_beside(tmp_path / "b")
    try:
        assert engine_for(url) is engine_for(url) is AssetCatalog(url=url).engine
        assert engine_for(other) is not engine_for(url)
        assert (tmp_path / "a").is_dir()  # the folder of the file is created
        with engine_for(url).connect() as conn:
            pragmas = {p: conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in ("journal_mode", "busy_timeout", "foreign_keys")}
        assert pragmas == {"journal_mode": "wal", "busy_timeout": 30000, "foreign_keys": 1}
        engine = engine_for(url)
        dispose_engine(url)
        assert engine_for(url) is not engine
    finally:
        dispose_engine(url)
        dispose_engine(other)


def test_the_default_url_is_a_file_beside_local_storage_and_env_vars_bind(tmp_path, monkeypatch):
    assert AssetCatalog().url == DEFAULT_CATALOG_URL == "sqlite:///data/catalog.sqlite3"
    assert sqlite_url_beside("data") == DEFAULT_CATALOG_URL
    monkeypatch.chdir(tmp_path)
    try:
        with dg.build_resources({"catalog": AssetCatalog()}) as resources:
            resources.catalog.migrate()
        assert (tmp_path / "data" / "catalog.sqlite3").is_file()
    finally:
        dispose_engine(DEFAULT_CATALOG_URL)
    url = sqlite_url_beside(tmp_path / "elsewhere")
    monkeypatch.setenv(CATALOG_URL_ENV, url)
    try:
        with dg.build_resources({"catalog": AssetCatalog(url=dg.EnvVar(CATALOG_URL_ENV))}) as resources:
            assert resources.catalog.url == url
            resources.catalog.migrate()
            assert resources.catalog.current_revision() == AssetCatalog.head_revision()
    finally:
        dispose_engine(url)


@pytest.mark.parametrize("url", ["mysql://u@localhost/db", "sqlite://", "sqlite:///:memory:"])
def test_urls_the_catalog_cannot_use_are_refused(url):
    with pytest.raises(ValueError, match="catalog"):
        AssetCatalog(url=url).engine


def test_search_filters_sorts_and_pages_the_same_on_both_dialects(catalog):
    _batch(catalog)
    _batch(catalog, key="other-2", name="Other")
    catalog.upsert_assets("demo-1", [
        AssetEntry(image_id="sword", file_name="sword.png", prompt="a crimson sword", verdict="pass",
                   style_score=0.9, category="weapon"),
        AssetEntry(image_id="shield", file_name="shield.png", prompt="a crimson shield", verdict="review",
                   style_score=0.4, category="armor"),
        AssetEntry(image_id="plain", file_name="plain.png", prompt="an oak table", category="furniture"),
    ])
    catalog.upsert_assets("other-2", [
        AssetEntry(image_id="axe", file_name="axe.png", prompt="a crimson axe", verdict="pass", style_score=0.7,
                   category="weapon"),
    ])
    catalog.replace_tags("demo-1/sword", [TagEntry("red", "colour", 0.9)])

    def ids(**filters) -> list[str]:
        return [row["id"] for row in catalog.search(**filters)]

    assert ids(query="crimson") == ["demo-1/sword", "other-2/axe", "demo-1/shield"]
    assert ids(query="crimson", batch="demo-1") == ["demo-1/sword", "demo-1/shield"]
    assert ids(verdict="pass") == ["demo-1/sword", "other-2/axe"]
    assert ids(category="weapon", batch="other-2") == ["other-2/axe"]
    assert ids(query="red") == ["demo-1/sword"]  # tag labels are searched too
    # Unscored images come last; paging walks the same order.
    assert ids() == ["demo-1/sword", "other-2/axe", "demo-1/shield", "demo-1/plain"]
    assert ids(limit=2, offset=1) == ["other-2/axe", "demo-1/shield"]
    assert ids(query="unicorn") == [] and ids(query="!!") == []
    [sword] = catalog.search(query="sword")
    assert sword["tags"] == ["red"] and "embedding" not in sword
    with pytest.raises(ValueError, match="must not be negative"):
        catalog.search(limit=-1)


def test_0003_adds_old_file_names_and_going_down_drops_only_them(catalog_url):
    catalog = AssetCatalog(url=catalog_url)
    catalog.migrate("0002")
    assert "asset_aliases" not in inspect(catalog.engine).get_table_names()
    _rows_as_0001_wrote_them(catalog, file_name="SKU-1_1.png")
    catalog.migrate("0003")
    assert catalog.current_revision() == "0003"
    indexes = {i["name"] for i in inspect(catalog.engine).get_indexes("asset_aliases")}
    assert {"ix_asset_aliases_asset_id", "ix_asset_aliases_file_name"} <= indexes
    catalog.replace_aliases("demo-1", [AliasEntry("a", "a.png", "raw/demo-1/a.png")])
    assert catalog.resolve_file_name("a.png") == ["demo-1/a"]

    catalog.downgrade("0002")
    assert "asset_aliases" not in inspect(catalog.engine).get_table_names()
    assert _value(catalog, "SELECT file_name FROM assets") == "SKU-1_1.png"
    assert catalog.search_ids("lantern") == ["demo-1/a"]
    catalog.migrate()
    assert catalog.resolve_file_name("a.png") == [] and catalog.resolve_file_name("SKU-1_1.png") == ["demo-1/a"]


def test_old_file_names_resolve_to_their_asset_until_it_is_removed(catalog):
    _batch(catalog)
    _batch(catalog, key="other-2", name="Other")
    catalog.upsert_assets("demo-1", [AssetEntry(image_id="a", file_name="SKU-1_1.png"),
                                     AssetEntry(image_id="b", file_name="b.png")])
    catalog.upsert_assets("other-2", [AssetEntry(image_id="x", file_name="a.png")])
    renamed = [AliasEntry("a", "a.png", "raw/demo-1/a.png"), AliasEntry("a", "first.png", "raw/demo-1/first.png")]
    assert catalog.replace_aliases("demo-1", renamed) == 2

    # Those named so now come first, then those that were, each by id.
    assert catalog.resolve_file_name("a.png") == ["other-2/x", "demo-1/a"]
    assert catalog.resolve_file_name("a.png", batch="demo-1") == ["demo-1/a"]
    assert catalog.resolve_file_name("SKU-1_1.png") == ["demo-1/a"]
    assert catalog.resolve_file_name("first.png", batch="other-2") == [] == catalog.resolve_file_name("A.PNG")

    assert catalog.replace_aliases("demo-1", renamed[:1]) == 1  # exactly the given ones stay
    assert catalog.resolve_file_name("first.png") == []
    with pytest.raises(IntegrityError):  # the asset must be catalogued first
        catalog.replace_aliases("demo-1", [AliasEntry("ghost", "ghost.png")])
    assert catalog.resolve_file_name("a.png") == ["other-2/x", "demo-1/a"]
    catalog.delete_assets_except("demo-1", ["b"])
    assert catalog.resolve_file_name("a.png") == ["other-2/x"] and catalog.row_counts()["asset_aliases"] == 0


def test_category_overrides_are_replaced_per_batch_and_a_key_is_no_pattern(catalog):
    catalog.replace_category_overrides("b_1", {"x": ("weapon/bow", T0), "y": ("potion", T0)})
    # As a LIKE pattern, "b_1/%" would match this batch's ids too.
    catalog.replace_category_overrides("bx1", {"z": ("ui", T0)})
    assert catalog.replace_category_overrides("b_1", {"y": ("potion/mana", T0 + timedelta(minutes=1))}) == 1
    with catalog.engine.connect() as conn:
        rows = sorted(conn.execute(select(CategoryOverride.asset_id, CategoryOverride.category,
                                          CategoryOverride.set_at)).all())
    assert rows == [("b_1/y", "potion/mana", T0 + timedelta(minutes=1)), ("bx1/z", "ui", T0)]
    assert catalog.replace_category_overrides("b_1", {}) == 0
    assert catalog.row_counts()["category_overrides"] == 1


def test_0004_adds_reviews_owners_activity_and_downloads_and_going_down_keeps_the_rest(catalog_url):
    catalog = AssetCatalog(url=catalog_url)
    catalog.migrate("0003")
    _rows_as_0001_wrote_them(catalog)
    catalog.migrate("0004")
    assert catalog.current_revision() == "0004"
    # Existing images are pending review; existing batches are owned by their creator.
    assert catalog.get_asset("demo-1/a")["review"] == "" and _value(catalog, "SELECT owner FROM batches") == "ana"
    assert catalog.set_reviews({"demo-1/a": "approved"}) == 1
    catalog.add_activity([ActivityEntry("ana", "review.approved", "demo-1/a")])
    catalog.add_download(DownloadEntry("ana", "demo-1/a", "original"))

    catalog.downgrade("0003")
    tables = set(inspect(catalog.engine).get_table_names())
    assert not {"activity", "downloads"} & tables and "asset_aliases" in tables
    assert "review" not in {c["name"] for c in inspect(catalog.engine).get_columns("assets")}
    assert "owner" not in {c["name"] for c in inspect(catalog.engine).get_columns("batches")}
    assert catalog.search_ids("lantern") == ["demo-1/a"]  # full text survives the way down
    catalog.migrate()
    assert catalog.get_asset("demo-1/a")["review"] == "" and catalog.activity() == []


def test_reviews_and_owners_are_set_on_catalogued_rows_only(catalog):
    _batch(catalog, creator="ana", owner="ana")
    catalog.upsert_assets("demo-1", [AssetEntry(image_id=i, file_name=f"{i}.png") for i in ("a", "b", "c")])
    changes = catalog.row_counts()["catalog_changes"], catalog.get_asset("demo-1/a")["updated_at"]
    assert catalog.set_reviews({"demo-1/a": "approved", "demo-1/b": "rejected", "demo-1/ghost": "approved"}) == 2
    assert catalog.set_reviews({}) == 0
    assert [catalog.get_asset(f"demo-1/{i}")["review"] for i in "abc"] == ["approved", "rejected", ""]
    assert {r["id"] for r in catalog.search(review="approved")} == {"demo-1/a"}
    assert {r["id"] for r in catalog.search(review="pending")} == {"demo-1/c"}
    # A decision moves no embedding: the similarity index has nothing to read again.
    assert (catalog.row_counts()["catalog_changes"], catalog.get_asset("demo-1/a")["updated_at"]) == changes
    assert catalog.set_reviews({"demo-1/b": ""}) == 1 and catalog.get_asset("demo-1/b")["review"] == ""

    assert catalog.set_batch_owner("demo-1", "bo") and not catalog.set_batch_owner("other-1", "bo")
    assert _value(catalog, "SELECT owner FROM batches") == "bo"
    with pytest.raises(ValueError, match="owner must be a non-empty string"):
        catalog.set_batch_owner("demo-1", "")


def test_activity_and_downloads_are_listed_newest_first_by_target_and_user(catalog):
    catalog.add_activity([
        ActivityEntry("ana", "review.approved", "b_1/x", at=T0),
        ActivityEntry("bo", "owner.transfer", "b_1", "from ana to bo", at=T0 + timedelta(minutes=2)),
        # As a LIKE pattern, "b_1/%" would match this batch's assets too.
        ActivityEntry("ana", "review.rejected", "bx1/y", at=T0 + timedelta(minutes=1)),
        {"user": "ana", "action": "batch.submit", "target": "b_10", "at": T0 + timedelta(minutes=3)},
    ])
    assert catalog.add_activity([]) == 0
    entries = catalog.activity()
    assert [e["target"] for e in entries] == ["b_10", "b_1", "bx1/y", "b_1/x"]
    assert entries[1] == {"id": entries[1]["id"], "at": T0 + timedelta(minutes=2), "user": "bo",
                          "action": "owner.transfer", "target": "b_1", "detail": "from ana to bo"}
    assert [e["target"] for e in catalog.activity(target="b_1")] == ["b_1", "b_1/x"]
    assert [e["target"] for e in catalog.activity(target="b_1", user="ana")] == ["b_1/x"]
    assert [e["action"] for e in catalog.activity(user="ana", limit=2)] == ["batch.submit", "review.rejected"]
    for limit in (0, 10_001, 1.5):
        with pytest.raises(ValueError, match="limit must be a whole number from 1 to 10000"):
            catalog.activity(limit=limit)
    with pytest.raises(ValueError, match="action must be a non-empty string"):
        catalog.add_activity([ActivityEntry("ana", "", "b_1")])

    catalog.add_download(DownloadEntry("ana", "b_1/x", "original", at=T0))
    catalog.add_download(DownloadEntry("bo", "b_1", "zip", at=T0 + timedelta(minutes=1)))
    catalog.add_download({"user": "ana", "target": "bx1/y", "kind": "compressed"})  # at: now
    assert [(d["user"], d["target"], d["kind"]) for d in catalog.downloads()] == [
        ("ana", "bx1/y", "compressed"), ("bo", "b_1", "zip"), ("ana", "b_1/x", "original")]
    assert [d["target"] for d in catalog.downloads(user="ana")] == ["bx1/y", "b_1/x"]
    assert [d["target"] for d in catalog.downloads(target="b_1")] == ["b_1", "b_1/x"]
    assert catalog.downloads(user="cy") == []
    # History outlives what it names.
    _batch(catalog, key="b_1")
    catalog.delete_batch("b_1")
    assert len(catalog.activity(target="b_1")) == 2 and len(catalog.downloads(target="b_1")) == 2


def test_library_reads_list_batches_tags_versions_exports_and_facets(catalog):
    _catalog_everything(catalog, newer=True)
    _batch(catalog, "older-1", name="Older", registered_at="2026-04-01T00:00:00Z")
    assert [b["key"] for b in catalog.list_batches()] == ["demo-1", "older-1"]  # newest registration first
    assert [b["key"] for b in catalog.list_batches(limit=1, offset=1)] == ["older-1"]
    assert catalog.get_batch("demo-1")["owner"] == "bo" and catalog.get_batch("nope") is None
    tags = catalog.asset_tags("demo-1/img-0")
    assert [(t["label"], t["group"], t["confidence"]) for t in tags] == [
        ("gold", "colour", 0.9), ("sword", "object", 0.8), ("calm", "mood", 0.7)]  # most confident first
    assert [(v["version"], v["reason"]) for v in catalog.asset_versions("demo-1/img-1")] == [
        (1, "initial"), (2, "auto-regenerate")]
    assert catalog.batch_exports("demo-1") == {"manifest": "exports/demo-1/manifest.csv", "zip": "exports/demo-1/demo-1.zip"}
    # A package written again in fewer formats: `replace` drops the kinds it no longer has.
    catalog.upsert_exports("demo-1", {"gallery": "exports/demo-1/gallery.html"})
    assert set(catalog.batch_exports("demo-1")) == {"gallery", "manifest", "zip"}
    assert catalog.upsert_exports("demo-1", {"zip": "exports/demo-1/demo-1.zip"}, replace=True) == 1
    assert catalog.batch_exports("demo-1") == {"zip": "exports/demo-1/demo-1.zip"}
    assert catalog.batch_facets("demo-1") == {"categories": ["weapons", "weapons/swords"], "tags": ["calm", "gold", "sword"]}
    assert catalog.batch_facets("older-1") == {"categories": [], "tags": []}


def test_known_files_are_exactly_the_catalogued_keys(catalog):
    _catalog_everything(catalog, newer=True)
    for key in ("raw/demo-1/img-0.png", "versions/demo-1/img-2/v2.png", "exports/demo-1/demo-1.zip",
                "raw/demo-1/sword-1.png"):  # an image, a version, an export, an old name's file
        assert catalog.known_file(key), key
    for key in ("raw/demo-1/img-9.png", "batches/demo-1/source.json", "exports/demo-1/old.zip", "raw/demo-1",
                "raw/other/img-0.png", "versions/demo-10/img-2/v2.png", ""):
        assert not catalog.known_file(key), key
