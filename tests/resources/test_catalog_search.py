"""Catalog search: every filter, every sort, paging and visual similarity, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pytest

import resources.catalog as catalog_module
from resources.catalog import AssetCatalog
from resources.catalog_models import AssetEntry, BatchEntry, TagEntry
from resources.catalog_search import FILTERS, SORTS, EmbeddingIndex, parse_day, parse_size


def _unit(*values: float) -> list[float]:
    vector = np.asarray(values, dtype=np.float64)
    return list(vector / np.linalg.norm(vector))


@pytest.fixture
def filled(catalog: AssetCatalog) -> AssetCatalog:
    """Two batches, five images with every searchable field set, tags and embeddings."""
    catalog.upsert_batch(BatchEntry(key="spring-1", name="Spring", style_profile="brand-x@2", campaign="spring",
                                    creator="ana"))
    # winter-1 was transferred from its creator bo to cy; spring-1 was never transferred (owner "").
    catalog.upsert_batch(BatchEntry(key="winter-1", name="Winter", style_profile="preset:watercolor", creator="bo",
                                    owner="cy"))
    catalog.upsert_assets("spring-1", [
        AssetEntry(image_id="sword", file_name="sword.png", category="weapon", subcategory="sword",
                   style_score=0.91, verdict="pass", width=1024, height=1024, file_size=900_000, language="en",
                   prompt="a crimson sword", created_at="2026-03-01T10:00:00Z",
                   embedding=_unit(1, 0, 0, 0), embedding_model="tiny", review="approved"),
        AssetEntry(image_id="sword-copy", file_name="blade.png", category="weapon", subcategory="sword",
                   style_score=0.55, verdict="review", width=1024, height=1024, file_size=1_500_000, language="es",
                   prompt="una espada carmesí", created_at="2026-03-02T10:00:00Z",
                   embedding=_unit(0.98, 0.05, 0, 0), embedding_model="tiny", review="rejected"),
        AssetEntry(image_id="bow", file_name="bow.png", category="weapon", subcategory="bow",
                   width=512, height=768, file_size=300_000, language="en", prompt="a yew bow",
                   created_at="2026-03-03T10:00:00Z", embedding=_unit(0, 1, 0, 0), embedding_model="tiny"),
    ])
    catalog.upsert_assets("winter-1", [
        AssetEntry(image_id="potion", file_name="potion.png", category="potion", subcategory="health",
                   style_score=0.72, verdict="pass", width=512, height=512, file_size=200_000, language="en",
                   format="jpeg", prompt="a red potion", created_at="2026-12-24T10:00:00Z",
                   embedding=_unit(0.2, 0, 1, 0), embedding_model="tiny"),
        AssetEntry(image_id="other-model", file_name="shield.png", category="armor", style_score=0.3,
                   verdict="review", width=512, height=512, prompt="a shield", created_at="2026-12-25T10:00:00Z",
                   embedding=_unit(1, 0, 0, 0), embedding_model="ViT-B-32:openai"),
    ])
    catalog.replace_tags("spring-1/sword", [TagEntry("red", "color", 0.8), TagEntry("sword", "object", 0.7)])
    catalog.replace_tags("spring-1/sword-copy", [TagEntry("red", "color", 0.7)])
    catalog.replace_tags("spring-1/bow", [TagEntry("brown", "color", 0.6)])
    catalog.replace_tags("winter-1/potion", [TagEntry("red", "color", 0.9), TagEntry("glass", "object", 0.6)])
    return catalog


def ids(catalog: AssetCatalog, query: str | None = None, **kwargs) -> list[str]:
    return [row["id"] for row in catalog.search(query, **kwargs)]


def test_every_filter_narrows_the_results(filled):
    everything = {"spring-1/sword", "spring-1/sword-copy", "spring-1/bow", "winter-1/potion", "winter-1/other-model"}
    assert set(ids(filled)) == everything
    cases = {
        "batch": ("winter-1", {"winter-1/potion", "winter-1/other-model"}),
        "category": ("weapon", {"spring-1/sword", "spring-1/sword-copy", "spring-1/bow"}),
        "tag": (["red", "sword"], {"spring-1/sword"}),  # every tag
        "any_tag": (["glass", "brown"], {"spring-1/bow", "winter-1/potion"}),  # at least one
        "verdict": ("review", {"spring-1/sword-copy", "winter-1/other-model"}),
        "language": ("es", {"spring-1/sword-copy"}),
        "style_profile": ("brand-x@2", {"spring-1/sword", "spring-1/sword-copy", "spring-1/bow"}),
        "campaign": ("spring", {"spring-1/sword", "spring-1/sword-copy", "spring-1/bow"}),
        "owner": ("cy", {"winter-1/potion", "winter-1/other-model"}),
        "creator": ("bo", {"winter-1/potion", "winter-1/other-model"}),
        "since": ("2026-12-01", {"winter-1/potion", "winter-1/other-model"}),
        "until": ("2026-03-02", {"spring-1/sword", "spring-1/sword-copy"}),  # a bare date includes that day
        "min_score": (0.7, {"spring-1/sword", "winter-1/potion"}),
        "max_score": (0.6, {"spring-1/sword-copy", "winter-1/other-model"}),  # unscored never match a range
        "min_width": (1000, {"spring-1/sword", "spring-1/sword-copy"}),
        "max_width": (600, {"spring-1/bow", "winter-1/potion", "winter-1/other-model"}),
        "min_height": (700, {"spring-1/sword", "spring-1/sword-copy", "spring-1/bow"}),
        "max_height": (512, {"winter-1/potion", "winter-1/other-model"}),
        "min_file_size": ("1MB", {"spring-1/sword-copy"}),
        "max_file_size": ("300KB", {"spring-1/bow", "winter-1/potion"}),  # unknown sizes never match
        "file_format": ("jpeg", {"winter-1/potion"}),
        "review": ("approved", {"spring-1/sword"}),
    }
    assert set(cases) == {f.name for f in FILTERS}  # a case per filter
    for name, (value, expected) in cases.items():
        assert set(ids(filled, **{name: value})) == expected, name
    assert ids(filled, category="weapon/sword", tag=["red"], language="en") == ["spring-1/sword"]
    assert ids(filled, "red", since=date(2026, 12, 1)) == ["winter-1/potion"]  # full text with filters
    assert ids(filled, until=datetime(2026, 3, 2, 9, tzinfo=timezone.utc)) == ["spring-1/sword"]
    assert ids(filled, review="rejected") == ["spring-1/sword-copy"]
    # A batch that was never transferred is its creator's; a transferred one is no longer its creator's.
    assert set(ids(filled, owner="ana")) == {"spring-1/sword", "spring-1/sword-copy", "spring-1/bow"}
    assert ids(filled, owner="bo") == [] and ids(filled, creator="cy") == []
    assert [b["key"] for b in filled.list_batches(owner="ana")] == ["spring-1"]
    assert [b["key"] for b in filled.list_batches(owner="cy")] == ["winter-1"]
    assert set(ids(filled, review="pending")) == everything - {"spring-1/sword", "spring-1/sword-copy"}


def test_sorts_run_their_natural_way_and_reverse_and_page(filled):
    assert set(SORTS) == {"score", "date", "name", "category"}
    assert ids(filled, sort="score") == [
        "spring-1/sword", "winter-1/potion", "spring-1/sword-copy", "winter-1/other-model", "spring-1/bow"]
    assert ids(filled, sort="score", reverse=True)[:2] == ["winter-1/other-model", "spring-1/sword-copy"]
    assert ids(filled, sort="score", reverse=True)[-1] == "spring-1/bow"  # unscored stay last
    assert ids(filled, sort="date") == [
        "winter-1/other-model", "winter-1/potion", "spring-1/bow", "spring-1/sword-copy", "spring-1/sword"]
    assert ids(filled, sort="name") == [
        "spring-1/sword-copy", "spring-1/bow", "winter-1/potion", "winter-1/other-model", "spring-1/sword"]
    assert ids(filled, sort="category") == [
        "winter-1/other-model", "winter-1/potion", "spring-1/bow", "spring-1/sword-copy", "spring-1/sword"]
    assert ids(filled, sort="name", limit=2, offset=1) == ["spring-1/bow", "winter-1/potion"]
    with pytest.raises(ValueError, match="sort 'size' is not one of"):
        filled.search(sort="size")


def test_similarity_ranks_a_near_copy_first_within_one_model_and_the_filters(filled):
    vector, model = filled.embedding("spring-1/sword")
    results = filled.search(like=vector, like_model=model, exclude="spring-1/sword")
    assert [r["id"] for r in results] == ["spring-1/sword-copy", "winter-1/potion", "spring-1/bow"]
    assert results[0]["similarity"] > 0.99 > results[1]["similarity"] and results[-1]["similarity"] == pytest.approx(0)
    # Another model's embeddings never take part, even one identical in numbers.
    assert "winter-1/other-model" not in [r["id"] for r in results]
    assert ids(filled, like=vector, like_model=model, batch="winter-1") == ["winter-1/potion"]
    assert ids(filled, "crimson", like=vector, like_model=model) == ["spring-1/sword"]
    assert ids(filled, like=vector, like_model=model, limit=1, offset=1) == ["spring-1/sword-copy"]
    assert filled.embedding_models() == {"tiny": 4, "ViT-B-32:openai": 1}
    with pytest.raises(ValueError, match="needs `like_model`"):
        filled.search(like=vector)
    with pytest.raises(ValueError, match="has 3 values but model 'tiny'"):
        filled.search(like=[1.0, 0.0, 0.0], like_model="tiny")
    with pytest.raises(ValueError, match="non-zero vector"):
        filled.search(like=[0.0, 0.0, 0.0, 0.0], like_model="tiny")


def test_the_similarity_index_follows_inserts_updates_and_deletes(filled):
    query = np.asarray(_unit(0, 0, 0, 1), dtype=np.float32)
    assert ids(filled, like=query, like_model="tiny", limit=1) != ["winter-1/potion"]
    filled.upsert_assets("winter-1", [AssetEntry(image_id="potion", file_name="potion.png",
                                                 embedding=_unit(0, 0, 0, 1), embedding_model="tiny")])
    assert ids(filled, like=query, like_model="tiny", limit=1) == ["winter-1/potion"]
    filled.upsert_assets("winter-1", [AssetEntry(image_id="lamp", file_name="lamp.png",
                                                 embedding=_unit(0, 0, 0.1, 1), embedding_model="tiny")])
    assert ids(filled, like=query, like_model="tiny", limit=2) == ["winter-1/potion", "winter-1/lamp"]
    filled.delete_batch("winter-1")
    assert "winter-1/lamp" not in ids(filled, like=query, like_model="tiny")
    assert len(ids(filled, like=query, like_model="tiny")) == 3


def test_the_index_keeps_ties_in_id_order_and_masks_what_is_not_allowed():
    index = EmbeddingIndex("m")
    index._merge([("b", np.asarray([1, 0], "<f4").tobytes()), ("a", np.asarray([2, 0], "<f4").tobytes()),
                  ("c", np.asarray([0, 1], "<f4").tobytes())])
    query = np.asarray([1, 0], dtype=np.float32)
    assert index.top(query, 2) == [("a", 1.0), ("b", 1.0)]  # stored vectors are normalised
    assert index.top(query, 5, allowed={"c", "unknown"}) == [("c", 0.0)]
    assert index.top(query, 3, exclude="a")[0] == ("b", 1.0)


def test_filter_values_are_checked_with_the_value_named():
    assert parse_size("2048") == 2048 and parse_size("500KB") == 500_000
    assert parse_size("1.5MB") == 1_500_000 and parse_size("2MiB") == 2 * 2**20
    with pytest.raises(ValueError, match="file size 'big' is not a size"):
        parse_size("big")
    assert parse_day("2026-11-26") == datetime(2026, 11, 26, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="date 'yesterday' is not a date"):
        parse_day("yesterday")


def test_bad_search_input_is_refused_before_any_query(filled):
    with pytest.raises(TypeError, match="unknown search filter"):
        filled.search(colour="red")
    with pytest.raises(ValueError, match="category '/' must be a path"):
        filled.search(category="/")
    with pytest.raises(ValueError, match="at most 20 tags"):
        filled.search(tag=[f"t{i}" for i in range(21)])
    with pytest.raises(ValueError, match="review 'done' is not one of approved, rejected, pending"):
        filled.search(review="done")


def test_the_readme_names_every_filter_and_sort():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [f.option for f in FILTERS if f.option not in readme]
    missing += [f"--sort {name}" for name in SORTS if name != "score" and name not in readme]
    assert missing == []


def test_sqlite_statistics_are_taken_again_only_when_the_catalog_grew(catalog):
    catalog.upsert_batch(BatchEntry(key="b"))

    def add(n: int, start: int = 0) -> None:
        catalog.upsert_assets("b", [AssetEntry(image_id=f"i{i}", file_name=f"i{i}.png", category=f"c{i % 4}")
                                    for i in range(start, start + n)])

    add(50)
    if catalog.dialect != "sqlite":
        assert catalog.analyze() is False  # PostgreSQL's autovacuum analyzes by itself
        return
    assert catalog.analyze() is True
    assert catalog.analyze() is False
    add(5, 50)  # 10 % more: the statistics still hold
    assert catalog.analyze() is False
    add(20, 55)
    assert catalog.analyze() is True
    with catalog.engine.connect() as conn:
        stat = conn.exec_driver_sql(
            "SELECT stat FROM sqlite_stat1 WHERE idx = 'ix_assets_category_subcategory'").scalar_one()
    assert stat.split()[:2] == ["75", "19"]  # 75 images, about 19 per category


@pytest.mark.parametrize("postfilter_max", [0, 4, 4096])
def test_filtered_similarity_is_the_same_whether_filters_check_candidates_or_read_ids(filled, monkeypatch,
                                                                                       postfilter_max):
    # 0: always read the filter's ids; 4: a round or two of candidates, then the ids; 4096: candidates only.
    monkeypatch.setattr(catalog_module, "POSTFILTER_MAX", postfilter_max)
    monkeypatch.setattr(catalog_module, "POSTFILTER_GROWTH", 2)
    query = _unit(1, 0, 0.1, 0)
    assert ids(filled, like=query, like_model="tiny", category="weapon", limit=2) == [
        "spring-1/sword", "spring-1/sword-copy"]
    assert ids(filled, like=query, like_model="tiny", batch="winter-1", limit=1) == ["winter-1/potion"]
    assert ids(filled, like=query, like_model="tiny", tag=["brown"]) == ["spring-1/bow"]
    assert ids(filled, like=query, like_model="tiny", verdict="review", exclude="spring-1/sword-copy") == []
