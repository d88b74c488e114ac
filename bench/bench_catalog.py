"""Catalog benchmark: a synthetic catalog of 100,000 images on SQLite and PostgreSQL.

Ingest goes through the catalog's own upserts (`upsert_batch`, `upsert_assets`, `replace_tags_many`,
in chunks of 1,000 images, as `catalog_entry` writes a batch); then each kind of query runs --queries
times with random arguments and prints p50 and p95:

- filtered: category/subcategory + verdict + minimum score, best score first, 50 results;
- tags: two tags that must both be present, newest first, 50 results;
- full text: one or two words of the prompts' vocabulary, 50 results;
- similarity: the 20 nearest of a random 512-d unit vector (the in-process index; its first load
  from the database is printed separately), and the same within a category filter.

The similarity index itself is compared with what else could hold the vectors (faiss-cpu's exact
and HNSW indexes, usearch), where they are installed: `pip install faiss-cpu usearch` first.

Targets (issue 10): p95 < 50 ms filtered, < 100 ms full text and similarity. Prints figures; asserts
nothing. PostgreSQL: --postgres URL, else a throwaway server from the test harness (Debian
`postgresql` binaries).

    .venv/bin/python bench/bench_catalog.py
    .venv/bin/python bench/bench_catalog.py --assets 20000 --dialects sqlite
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from resources.catalog import AssetCatalog, asset_id, dispose_engine, sqlite_url_beside  # noqa: E402
from resources.catalog_models import AssetEntry, BatchEntry, TagEntry  # noqa: E402

DIM = 512  # ViT-B-32's embedding width
PER_BATCH = 1_000
CATEGORIES = {
    "weapon": ["sword", "axe", "bow", "dagger", "staff"],
    "armor": ["helmet", "shield", "boots", "gloves", "chest"],
    "potion": ["health", "mana", "poison", "speed", "luck"],
    "creature": ["dragon", "wolf", "slime", "golem", "spider"],
    "apparel": ["shoe", "bag", "hat", "jacket", "scarf"],
    "food": ["bread", "fruit", "cheese", "pie", "soup"],
    "building": ["tower", "house", "castle", "shop", "bridge"],
    "vehicle": ["cart", "ship", "car", "airship", "bike"],
}
TAGS = ["red", "blue", "green", "gold", "black", "white", "bright", "dark", "soft", "muted", "square",
        "portrait", "landscape", "outdoor", "indoor", "forest", "city", "cartoon", "pixel art", "watercolor",
        "3d render", "photorealistic", "cozy", "epic", "calm", "playful", "ornate", "minimal", "glowing", "rusty"]


def clustered(rng: np.random.Generator, n: int, clusters: int = 256) -> np.ndarray:
    """`n` unit vectors around `clusters` centres, as image embeddings cluster by subject and
    style (uniformly random vectors have no neighbours at all, and no index would be tested)."""
    centres = np.random.default_rng(7).standard_normal((clusters, DIM)).astype(np.float32)
    vectors = centres[rng.integers(clusters, size=n)] + 0.7 * rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def words(rng: np.random.Generator, n: int = 2_000) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return ["".join(rng.choice(letters, size=int(rng.integers(4, 9)))) for _ in range(n)]


def synthetic_batches(assets: int, seed: int = 0) -> Iterator[tuple[str, list[AssetEntry], dict[str, list[TagEntry]]]]:
    rng = np.random.default_rng(seed)
    vocabulary = words(rng)
    primaries = list(CATEGORIES)
    for b in range(0, assets, PER_BATCH):
        key = f"bench-{b // PER_BATCH:04d}"
        entries, tags = [], {}
        vectors = clustered(rng, min(PER_BATCH, assets - b))
        for i in range(min(PER_BATCH, assets - b)):
            primary = primaries[int(rng.integers(len(primaries)))]
            sub = CATEGORIES[primary][int(rng.integers(5))]
            score = float(rng.random())
            image = f"img-{i:04d}"
            entries.append(AssetEntry(
                image_id=image, file_name=f"{key}_{image}.png", category=primary, subcategory=sub,
                category_source="csv", style_score=score, verdict="pass" if score >= 0.5 else "review",
                width=1024, height=1024, file_size=int(rng.integers(200_000, 2_000_000)), language="en",
                prompt=" ".join([primary, sub, *rng.choice(vocabulary, size=int(rng.integers(8, 16)))]),
                created_at=f"2026-{1 + b // PER_BATCH % 12:02d}-{1 + i % 28:02d}T12:00:00Z",
                embedding=vectors[i], embedding_model="ViT-B-32:openai",
            ))
            tags[asset_id(key, image)] = [
                TagEntry(label, "style", float(rng.uniform(0.3, 1.0)), "clip")
                for label in rng.choice(TAGS, size=5, replace=False)
            ]
        yield key, entries, tags


def ingest(catalog: AssetCatalog, assets: int) -> float:
    """Assets per second through the real upserts."""
    start = time.perf_counter()
    for key, entries, tags in synthetic_batches(assets):
        catalog.upsert_batch(BatchEntry(key=key, name=key, status="exported", style_profile="brand-x@1"))
        catalog.upsert_assets(key, entries)
        catalog.replace_tags_many(tags)
        catalog.analyze()  # as catalog_records does after each batch
    return assets / (time.perf_counter() - start)


def percentiles(run: Callable[[np.random.Generator], object], queries: int) -> tuple[float, float]:
    rng = np.random.default_rng(1)
    run(rng)  # warm caches and prepared statements the way a running service has them
    times = []
    for _ in range(queries):
        start = time.perf_counter()
        run(rng)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]


def measure(catalog: AssetCatalog, queries: int) -> dict[str, object]:
    rng = np.random.default_rng(2)
    vocabulary = words(np.random.default_rng(0))

    def pick_category(r: np.random.Generator) -> str:
        primary = list(CATEGORIES)[int(r.integers(len(CATEGORIES)))]
        return f"{primary}/{CATEGORIES[primary][int(r.integers(5))]}"

    def unit(r: np.random.Generator) -> np.ndarray:
        return clustered(r, 1)[0]

    start = time.perf_counter()
    catalog.search(like=unit(rng), like_model="ViT-B-32:openai", limit=20)
    load_s = time.perf_counter() - start
    return {
        "similarity index load (s)": round(load_s, 2),
        "filtered": percentiles(lambda r: catalog.search(
            category=pick_category(r), verdict="pass", min_score=0.6, limit=50), queries),
        "two tags": percentiles(lambda r: catalog.search(
            tag=list(r.choice(TAGS, size=2, replace=False)), sort="date", limit=50), queries),
        "full text": percentiles(lambda r: catalog.search(
            " ".join(r.choice(vocabulary, size=int(r.integers(1, 3)))), limit=50), queries),
        "similarity top-20": percentiles(lambda r: catalog.search(
            like=unit(r), like_model="ViT-B-32:openai", limit=20), queries),
        "similarity top-20 in a category": percentiles(lambda r: catalog.search(
            like=unit(r), like_model="ViT-B-32:openai", category=pick_category(r).split("/")[0], limit=20), queries),
    }


def compare_indexes(n: int, queries: int) -> None:
    rng = np.random.default_rng(3)
    matrix, qs = clustered(rng, n), clustered(rng, queries)
    exact = [np.argsort(-(matrix @ q))[:20] for q in qs]

    def timed(name: str, build: Callable[[], Callable[[np.ndarray], np.ndarray]]) -> None:
        start = time.perf_counter()
        search = build()
        built = time.perf_counter() - start
        times, recall = [], []
        for q, truth in zip(qs, exact):
            start = time.perf_counter()
            found = search(q)
            times.append((time.perf_counter() - start) * 1000)
            recall.append(len(set(found.tolist()) & set(truth.tolist())) / 20)
        times.sort()
        print(f"  {name:<28} build {built:6.2f} s   p50 {statistics.median(times):7.2f} ms   "
              f"p95 {times[int(0.95 * (len(times) - 1))]:7.2f} ms   recall@20 {np.mean(recall):.3f}")

    print(f"similarity index over {n:,} x {DIM} float32 vectors, top-20, {queries} queries:")
    timed("numpy exact (chosen)", lambda: lambda q: np.argpartition(-(matrix @ q), 19)[:20])
    try:
        import faiss
    except ImportError:
        print("  faiss-cpu                    not installed")
    else:
        def flat():
            index = faiss.IndexFlatIP(DIM)
            index.add(matrix)
            return lambda q: index.search(q[None, :], 20)[1][0]

        def hnsw():
            index = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
            index.add(matrix)
            index.hnsw.efSearch = 128
            return lambda q: index.search(q[None, :], 20)[1][0]

        timed("faiss IndexFlatIP (exact)", flat)
        timed("faiss HNSW M=32 ef=128", hnsw)
    try:
        from usearch.index import Index
    except ImportError:
        print("  usearch                      not installed")
    else:
        def usearch_index():
            index = Index(ndim=DIM, metric="ip", dtype="f32", expansion_search=128)
            index.add(np.arange(n), matrix)
            return lambda q: index.search(q, 20).keys

        timed("usearch HNSW ef=128", usearch_index)


@contextlib.contextmanager
def catalog_on(dialect: str, postgres: str | None) -> Iterator[AssetCatalog]:
    if dialect == "sqlite":
        with tempfile.TemporaryDirectory(prefix="assetql-bench-") as tmp:
            url = sqlite_url_beside(tmp)
            try:
                yield AssetCatalog(url=url)
            finally:
                dispose_engine(url)
        return
    with contextlib.ExitStack() as stack:
        if postgres is None:
            from harness.postgres import running_postgres

            postgres = stack.enter_context(running_postgres())
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        name = f"bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(make_url(postgres).set(drivername="postgresql+psycopg2"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = make_url(postgres).set(database=name).render_as_string(hide_password=False)
        try:
            yield AssetCatalog(url=url)
        finally:
            dispose_engine(url)
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--dialects", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--postgres", help="a PostgreSQL URL to create the benchmark database on")
    args = parser.parse_args()
    print(f"{args.assets:,} synthetic images ({args.assets // PER_BATCH} batches, 5 tags and a {DIM}-d "
          f"embedding each), {args.queries} queries per figure")
    for dialect in args.dialects:
        with catalog_on(dialect, args.postgres) as catalog:
            catalog.migrate()
            rate = ingest(catalog, args.assets)
            print(f"\n{dialect}: ingest {rate:,.0f} images/s ({args.assets / rate:.1f} s)")
            for name, value in measure(catalog, args.queries).items():
                if isinstance(value, tuple):
                    print(f"  {name:<34} p50 {value[0]:7.2f} ms   p95 {value[1]:7.2f} ms")
                else:
                    print(f"  {name:<34} {value}")
    print()
    compare_indexes(args.assets, args.queries)


if __name__ == "__main__":
    main()
