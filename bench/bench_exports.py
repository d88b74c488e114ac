"""Distribution benchmark: seconds per image of each installed exporter, writing and reading back.

Each exporter packages --images stored images of --size px through `pipeline.distribution.distribute`
(what its `{name}_export` asset runs: write the package, then `validate` reads it back), on local
storage. The images are noise, like the tiny model's, which is the worst case for JPEG sizes (social
and CMS files search for the quality under their limit) and for PNG compression; real images encode
faster. Exporters left at their defaults (print: Lanczos, no diffusers upscaler; CMS: no upload).

Prints figures; asserts nothing. Best of --rounds rounds.

    .venv/bin/python bench/bench_exports.py
    .venv/bin/python bench/bench_exports.py --images 4 --size 1024 --only social print
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from assetql_dagster.domain.records import BatchInput
from assetql_dagster.domain.settings import BatchSettings
from assetql_dagster.pipeline.distribution import distribute
from assetql_dagster.pipeline.exporters.base import ExportImage
from assetql_dagster.pipeline.exporters.registry import installed_exporters
from resources.storage import LocalStorage

BATCH = "bench-0123abcd"
CATEGORIES = ("weapons/swords", "weapons/axes", "potions", "characters/heroes")


def stored_images(storage: LocalStorage, count: int, size: int) -> list[ExportImage]:
    rng = np.random.default_rng(0)
    images = []
    for index in range(count):
        stem = f"item-{index:03d}"
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
        storage.write_bytes(f"raw/{BATCH}/{stem}.png", buffer.getvalue(), "image/png")
        images.append(ExportImage({
            "file_name": f"{stem}.png", "raw_key": f"raw/{BATCH}/{stem}.png", "variant_id": f"item-{index // 2}",
            "variation": index % 2 + 1, "prompt": f"a fantasy item number {index}, game icon, painterly",
            "tags": ["sword:0.90", "steel:0.80", "blue:0.70"], "category": CATEGORIES[index % len(CATEGORIES)],
            "sku": f"SKU-{1000 + index // 2}", "width": size, "height": size, "language": "en", "extra": {},
            "seed": index,
        }))
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="exporters to time (default: every installed one)")
    args = parser.parse_args()
    exporters = {n: e for n, e in installed_exporters().items() if not args.only or n in args.only}
    batch = BatchInput(batch=BATCH, name="bench", origin="bench", registered_at="", content_hash="0" * 64,
                       settings=BatchSettings(), references=(), rows=())
    print(f"{args.images} noise images of {args.size}×{args.size} px, best of {args.rounds} round(s)")
    print(f"{'exporter':<12} {'s/image':>8} {'files':>6} {'MB':>7}  valid")
    with tempfile.TemporaryDirectory(prefix="assetql-bench-") as tmp:
        storage = LocalStorage(root=str(Path(tmp) / "data"))
        images = stored_images(storage, args.images, args.size)
        for name, exporter in exporters.items():
            best, package = float("inf"), None
            for _ in range(args.rounds):
                start = time.perf_counter()
                package = distribute(storage, exporter, batch, images)
                best = min(best, time.perf_counter() - start)
            megabytes = sum(package.files.values()) / 1e6
            print(f"{name:<12} {best / len(images):>8.3f} {len(package.files):>6} {megabytes:>7.1f}  "
                  f"{'yes' if not package.problems else '; '.join(package.problems)}")


if __name__ == "__main__":
    main()
