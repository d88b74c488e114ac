"""Asset library benchmark: its pages and JSON API over a synthetic catalog of 10,000 images.

The catalog is filled as `bench_catalog.py` fills it (10 batches of 1,000 images, 5 tags and a 512-d
embedding each, through the catalog's own upserts); the library app then answers each request
--queries times in process (Starlette's TestClient, signed in with an API token, so the rate limit
is off the path: --rate-limit is set above the request count) and p50/p95 are printed. Requests are
what people do most: the batches list, a batch's grid, a filtered, tag, full-text and similarity
search, and an asset, as pages and as JSON.

Target (issue 11): p95 < 200 ms for every non-generation endpoint on a 10,000-image catalog. Prints
figures; asserts nothing.

    .venv/bin/python bench/bench_library.py
    .venv/bin/python bench/bench_library.py --assets 10000 --dialects sqlite postgresql
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT.parent), str(ROOT.parent / "tests")]

from bench_catalog import CATEGORIES, PER_BATCH, TAGS, catalog_on, ingest, percentiles, words  # noqa: E402

TOKEN = "bench-token"


def requests(catalog) -> dict[str, Callable[[np.random.Generator], str]]:
    """Each measured request as a function of a random generator giving its URL."""
    batches = [b["key"] for b in catalog.list_batches(limit=1000)]
    vocabulary = words(np.random.default_rng(0))

    def batch(r):
        return batches[int(r.integers(len(batches)))]

    def asset(r):
        return f"{batch(r)}/img-{int(r.integers(PER_BATCH)):04d}"

    def category(r):
        primary = list(CATEGORIES)[int(r.integers(len(CATEGORIES)))]
        return f"{primary}/{CATEGORIES[primary][int(r.integers(5))]}"

    return {
        "GET /batches (page)": lambda r: "/batches",
        "GET /api/v1/batches": lambda r: "/api/v1/batches",
        "GET /batches/{key} (grid of 60)": lambda r: f"/batches/{batch(r)}?sort=score",
        "GET /batches/{key}?verdict&min_score": lambda r: f"/batches/{batch(r)}?verdict=pass&min_score=0.7&view=list",
        "GET /api/v1/assets filtered": lambda r: f"/api/v1/assets?category={category(r)}&min_score={r.random():.2f}",
        "GET /api/v1/assets two tags": lambda r: "/api/v1/assets?" + "&".join(
            f"tag={t}" for t in r.choice(TAGS, size=2, replace=False)),
        "GET /search?q= (page)": lambda r: f"/search?q={vocabulary[int(r.integers(len(vocabulary)))]}",
        "GET /api/v1/assets?like= (similar)": lambda r: f"/api/v1/assets?like={asset(r)}&limit=20",
        "GET /assets/{id} (page)": lambda r: f"/assets/{asset(r)}",
        "GET /api/v1/assets/{id}": lambda r: f"/api/v1/assets/{asset(r)}",
    }


def main() -> None:
    import dagster as dg
    from starlette.testclient import TestClient

    from assetql_dagster.defs.launching import InstanceLauncher
    from assetql_dagster.library.app import create_app
    from assetql_dagster.library.config import parse_config
    from resources.storage import LocalStorage

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--dialects", nargs="+", default=["sqlite"], choices=["sqlite", "postgresql"])
    parser.add_argument("--postgres", help="a PostgreSQL URL to create the benchmark database on")
    args = parser.parse_args()
    config = parse_config({
        "tokens": [{"sha256": hashlib.sha256(TOKEN.encode()).hexdigest(), "user": "bench", "role": "viewer"}],
        "rate_limit_per_minute": 100_000,
    }, "bench")
    print(f"{args.assets:,} synthetic images ({args.assets // PER_BATCH} batches), {args.queries} requests per figure")
    for dialect in args.dialects:
        with catalog_on(dialect, args.postgres) as catalog, tempfile.TemporaryDirectory() as tmp, \
                dg.DagsterInstance.ephemeral() as instance:
            catalog.migrate()
            rate = ingest(catalog, args.assets)
            app = create_app(config, LocalStorage(root=tmp), catalog, InstanceLauncher(instance, tmp), secret="bench")
            client = TestClient(app, headers={"authorization": f"Bearer {TOKEN}"})
            print(f"\n{dialect}: ingest {rate:,.0f} images/s")
            for name, url in requests(catalog).items():
                def request(r, url=url):
                    response = client.get(url(r))
                    assert response.status_code == 200, (response.status_code, response.text[:200])

                p50, p95 = percentiles(request, args.queries)
                print(f"  {name:<40} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms")


if __name__ == "__main__":
    main()
