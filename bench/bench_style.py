"""Style engine benchmark: profile extraction per reference, and the style loop's cost per regenerated image.

(1) Profile extraction, what the `style_profile` asset does for a batch (`pipeline.style.build_profile`:
    CLIP embedding, `style_parameters.extract_parameters` of each reference, `profile_parameters` of
    them together, the pooled palette, and the pairwise reference scores), on the tiny CLIP, for 1, 3
    and 5 references of 512 and 1024 px. The references are the sample batch's two, upscaled, with
    noise for fine texture, and flipped/rotated to make five. Each part is timed separately too.
    The requirement: under 10 s per reference.

(2) Regeneration overhead per image, on the tiny model and CPU: the initial generation of a batch
    (`generate_images`, the `images` stage: generate and write PNG + thumbnail) and its scoring
    (`score_images`, the `scores` stage), against one round of the style loop over every image
    (`regeneration.run_loop` with max_attempts 2, as `curated_images` runs it: keep version 1, generate,
    write the version, score, copy the better version, save the histories).

Prints figures; asserts nothing. Best of --rounds rounds for each figure.

    .venv/bin/python bench/bench_style.py
    .venv/bin/python bench/bench_style.py --sizes 512 --references 1 5 --images 32 --rounds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from assetql_dagster.domain.batch_loader import load_batch
from assetql_dagster.domain.records import ImageSet
from assetql_dagster.domain.scoring import REVIEW, parameter_weights
from assetql_dagster.domain.style_parameters import extract_parameters, profile_parameters
from assetql_dagster.pipeline.analysis import score_images, scorer
from assetql_dagster.pipeline.generation import (
    RenderSettings,
    generate_images,
    job_generator,
    micro_batch_size,
    palette_hold,
)
from assetql_dagster.pipeline.regeneration import run_loop, save_histories
from assetql_dagster.pipeline.style import build_profile
from resources.clip import ClipEmbedder
from resources.generator import ImageGenerator
from resources.storage import LocalStorage

# Sibling scripts: bench/ is on sys.path when this file runs as a script.
from bench_generation import planned_jobs  # noqa: E402
from bench_pipeline import write_batch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = ROOT / "examples" / "fantasy-items" / "references"
TARGET_S_PER_REFERENCE = 10.0
SIZE, STEPS = 64, 4


def references(count: int, size: int) -> list[Image.Image]:
    """`count` references of `size` px: the sample's two upscaled, with noise, then mirrored/rotated copies."""
    rng = np.random.default_rng(size)
    base = []
    for path in sorted(REFERENCES.glob("*.png")):
        img = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
        pixels = np.asarray(img, dtype=np.float64) + rng.normal(0, 12, (size, size, 3))
        base.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    variants = [lambda i: i, ImageOps.mirror, ImageOps.flip, lambda i: i.rotate(90)]
    return [variants[(n // len(base)) % len(variants)](base[n % len(base)]) for n in range(count)]


def best_of(rounds: int, run) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def bench_profiles(clip, sizes: list[int], counts: list[int], rounds: int) -> None:
    weights = parameter_weights({})
    # One untimed pass first: the first CLIP call and the first k-means pay one-off set-up costs.
    build_profile(("a.png", "b.png"), references(2, sizes[0]), clip, "tiny", weights)
    print(f"(1) profile extraction, tiny CLIP on {clip.device}, best of {rounds}; seconds per reference")
    print(f"{'px':>5} {'refs':>4} {'build_profile':>13} {'per ref':>8} {'clip embed':>10} "
          f"{'extract_parameters':>18} {'profile_parameters':>18}  < {TARGET_S_PER_REFERENCE:.0f} s")
    for size in sizes:
        for count in counts:
            imgs = references(count, size)
            keys = tuple(f"ref-{i}.png" for i in range(count))
            total = best_of(rounds, lambda: build_profile(keys, imgs, clip, "tiny", weights))
            embed = best_of(rounds, lambda: clip.embed_images(imgs))
            extract = best_of(rounds, lambda: [extract_parameters(img) for img in imgs])
            pooled = best_of(rounds, lambda: profile_parameters(imgs))
            per = total / count
            print(f"{size:>5} {count:>4} {total:>12.2f}s {per:>7.2f}s {embed / count:>9.3f}s "
                  f"{extract / count:>17.3f}s {pooled / count:>17.3f}s  {'yes' if per < TARGET_S_PER_REFERENCE else 'NO'}")


def bench_loop(pipe, clip, images: int, rounds: int, work: Path) -> None:
    folder = work / "batch"
    write_batch(folder, images, STEPS)
    source = load_batch(folder)
    jobs = planned_jobs(folder)
    settings = source.settings
    render = RenderSettings(SIZE, SIZE, STEPS, settings.guidance_scale)
    micro = micro_batch_size("auto", pipe.device.type, SIZE, SIZE)
    refs = [Image.open(p).convert("RGB") for p in sorted(REFERENCES.glob("*.png"))]
    profile = build_profile(tuple(p.name for p in sorted(REFERENCES.glob("*.png"))), refs, clip, "tiny",
                            parameter_weights(settings.lock_weights))
    _, score = scorer(profile, settings, clip)
    by_id = {j.image_id: j for j in jobs}
    generate_images(LocalStorage(root=str(work / "warm-up")), "warm", jobs[:micro], job_generator(pipe, render), render, micro)

    def regenerate(chunk_jobs, boost):
        run = job_generator(pipe, render, palette_hold(profile, settings.lock_weights.get("palette", 0), boost))
        return [img for start in range(0, len(chunk_jobs), micro) for img in run(chunk_jobs[start : start + micro])]

    results = []
    n = len(jobs)
    for r in range(rounds):
        storage = LocalStorage(root=str(work / f"round-{r}"))
        started = time.perf_counter()
        report = generate_images(storage, "bench", jobs, job_generator(pipe, render), render, micro)
        initial_s = time.perf_counter() - started
        stored = ImageSet(len(jobs), tuple(report.generated), ())
        started = time.perf_counter()
        scores = score_images(storage, stored, profile, settings, clip)
        scoring_s = time.perf_counter() - started
        # Every image below the threshold: one round regenerates all of them once.
        below = dataclasses.replace(scores, images=tuple(dataclasses.replace(s, verdict=REVIEW) for s in scores.images))
        histories: dict = {}
        started = time.perf_counter()
        loop = run_loop(storage, "bench", by_id, stored.stored, below, histories, 2, len(jobs), regenerate, score,
                        lambda h: save_histories(storage, "bench", h))
        loop_s = time.perf_counter() - started
        results.append({
            "initial": initial_s / n, "initial_generation": report.seconds_generating / n,
            "scoring": scoring_s / n, "loop": loop_s / loop.regenerated,
            "loop_generation": loop.seconds_generating / loop.regenerated,
            "loop_rest": (loop_s - loop.seconds_generating) / loop.regenerated,
        })
    best = {key: min(r[key] * 1000 for r in results) for key in results[0]}
    print(f"\n(2) regeneration overhead, tiny model on {pipe.device}, {SIZE}x{SIZE}, {STEPS} steps, "
          f"micro-batch {micro}, {n} images, every image regenerated once; ms per image, best of {rounds}")
    print(f"initial generation (images stage)     {best['initial']:7.1f}   of which generation "
          f"{best['initial_generation']:.1f}, writing {best['initial'] - best['initial_generation']:.1f}")
    print(f"initial scoring (scores stage)        {best['scoring']:7.1f}")
    print(f"one loop round, per regenerated image {best['loop']:7.1f}   of which generation "
          f"{best['loop_generation']:.1f}, the rest {best['loop_rest']:.1f} (keep v1, write, score, copy, history)")
    print(f"loop round / initial generation       {best['loop'] / best['initial']:7.2f} x")
    print(f"loop round / (generation + scoring)   {best['loop'] / (best['initial'] + best['scoring']):7.2f} x")
    print(f"loop's own bookkeeping (rest - writing - scoring) "
          f"{best['loop_rest'] - (best['initial'] - best['initial_generation']) - best['scoring']:.1f} ms per image")
    print("loop ms per image by round: " + ", ".join(f"{r['loop'] * 1000:.1f}" for r in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--references", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--images", type=int, default=64, help="images in the loop benchmark's batch")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    clip = ClipEmbedder().load()
    print(f"tiny CLIP loaded in {time.perf_counter() - started:.1f} s (not in the figures below)")
    bench_profiles(clip, args.sizes, args.references, args.rounds)
    pipe = ImageGenerator().load("tiny")
    with tempfile.TemporaryDirectory(prefix="assetql-bench-style-") as tmp:
        bench_loop(pipe, clip, args.images, args.rounds, Path(tmp))


if __name__ == "__main__":
    main()
