"""Generation benchmark: a raw diffusers loop against AssetQL's generation path, then a whole batch run.

For one pipeline, with the same prompts, settings, micro-batch and number of images, in one process:

  (a) raw      a plain loop of pipeline calls, one micro-batch each, to PIL images (nothing written);
  (b) AssetQL  `assetql_dagster.pipeline.generation.generate_images`, which also writes each PNG and thumbnail.

Each is warmed up with one call, then timed in alternating rounds, keeping each one's best. Then the
batch job (images, scores, tags, exports) runs one batch through `dg.execute_job` and the code
location's executor: images/s end to end and the orchestration overhead around generation
(run start -> first image stored, last image stored -> run end).

`--mode cpu` uses the tiny model. `--mode gpu` builds the full-size SD 1.5 and SDXL architectures
with random bf16 weights (bench/arch_models.py), saves each to a temporary folder and loads it
through `ImageGenerator`, exactly as a batch with `model: <folder>` does. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_generation.py                         # CPU, tiny model
    .venv/bin/python bench/bench_generation.py --mode gpu --arch all   # or --arch sd15 / sdxl
    .venv/bin/python bench/bench_generation.py --check-arch            # parameter counts, no GPU needed
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from assetql_dagster.domain.batch_loader import load_batch
from assetql_dagster.domain.records import BatchInput, ImageJob
from assetql_dagster.pipeline.planning import plan_images
from assetql_dagster.pipeline.generation import RenderSettings, generate_images, job_generator, micro_batch_size
from resources.generator import ImageGenerator
from resources.storage import LocalStorage

# A sibling script: bench/ is on sys.path when this file runs as a script.
from bench_pipeline import write_batch as write_pipeline_batch  # noqa: E402

# torch, diffusers and arch_models are imported inside the functions that use them: the multiprocess
# executor's step processes re-import this script as `__mp_main__`, and heavy imports here would
# make every step of the batch run pay for them and distort its orchestration overhead.

RATIO_TARGET = 0.95
GUIDANCE_SCALE = 7.5
NEGATIVE_PROMPT = "blurry, text, watermark"
TEMPLATE = "{subject} made of {material}, game item icon"
# Console logs at INFO would interleave with the figures; every event is still stored in the instance.
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class Profile:
    """What one benchmark pass generates; `model` is "tiny" or a key of arch_models.ARCHS."""

    model: str
    size: int
    steps: int
    images: int
    job_images: int
    rounds: int
    target_img_s: float | None


PROFILES = {
    "tiny": Profile("tiny", size=64, steps=4, images=200, job_images=64, rounds=3, target_img_s=None),
    "sd15": Profile("sd15", size=512, steps=30, images=256, job_images=256, rounds=1, target_img_s=8.0),
    "sdxl": Profile("sdxl", size=1024, steps=30, images=64, job_images=64, rounds=1, target_img_s=1.15),
}
ARCH_NAMES = ["sd15", "sdxl"]


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_arch() -> None:
    """Print the GPU architectures' parameter counts, built on the meta device, next to the published ones."""
    from arch_models import ARCHS, parameter_counts

    print(f"{'arch':<6} {'component':<15} {'built':>15} {'published':>15} {'diff':>8}")
    for key, arch in ARCHS.items():
        for name, count in parameter_counts(arch).items():
            published = arch.published_params[name]
            print(f"{key:<6} {name:<15} {count:>15,} {published:>15,} {(count - published) / published:>8.2%}")


def save_arch(key: str, device: str, target: Path) -> str:
    """Build architecture `key` with random bf16 weights on `device` and save it to `target`."""
    import torch
    from arch_models import ARCHS, build_pipeline

    started = time.perf_counter()
    pipe = build_pipeline(ARCHS[key], device, torch.bfloat16)
    pipe.save_pretrained(target)
    del pipe
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    print(f"built and saved {ARCHS[key].name} (random bf16 weights) in {time.perf_counter() - started:.1f} s")
    return str(target)


def write_batch(folder: Path, rows: int, settings: dict) -> None:
    """bench_pipeline's batch folder of `rows` rows, with `settings` as its batch.yaml instead."""
    write_pipeline_batch(folder, rows, settings["steps"])
    (folder / "batch.yaml").write_text(yaml.safe_dump({**settings, "max_rows": rows}))


def planned_jobs(folder: Path) -> tuple[ImageJob, ...]:
    """The generation jobs the `prompts` asset would plan for the batch in `folder`."""
    source = load_batch(folder)
    batch = BatchInput(
        batch=source.name,
        name=source.name,
        origin=str(folder),
        registered_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        content_hash=source.content_hash,
        settings=source.settings,
        references=(),
        rows=source.rows,
    )
    return plan_images(batch).jobs


def time_raw_loop(pipe, jobs: tuple[ImageJob, ...], render: RenderSettings, micro: int) -> float:
    """Seconds for a plain loop of pipeline calls over `jobs`, micro-batch by micro-batch, after one warm-up call."""
    import torch

    device = pipe.device
    chunks = [jobs[i : i + micro] for i in range(0, len(jobs), micro)]

    def call(chunk: tuple[ImageJob, ...]) -> list:
        return pipe(
            prompt=[j.prompt for j in chunk],
            negative_prompt=[j.negative_prompt for j in chunk],
            generator=torch.Generator(device).manual_seed(chunk[0].seed),
            width=render.width,
            height=render.height,
            num_inference_steps=render.steps,
            guidance_scale=render.guidance_scale,
            output_type="pil",
        ).images

    call(chunks[0])
    synchronize(device)
    started = time.perf_counter()
    for chunk in chunks:
        call(chunk)
    synchronize(device)
    return time.perf_counter() - started


def time_generate_images(loaded, jobs: tuple[ImageJob, ...], render: RenderSettings, micro: int, root: Path):
    """(wall seconds, GenerationReport) of AssetQL's generation path over `jobs`, after a warm-up micro-batch."""
    generate = job_generator(loaded, render)
    generate_images(LocalStorage(root=str(root / "warm-up")), "bench", jobs[:micro], generate, render, micro)
    storage = LocalStorage(root=str(root / "timed"))
    synchronize(loaded.device)
    started = time.perf_counter()
    report = generate_images(storage, "bench", jobs, generate, render, micro)
    synchronize(loaded.device)
    return time.perf_counter() - started, report


def compare(loaded, folder: Path, profile: Profile, micro: int, work: Path) -> float:
    """Run (a) and (b) in alternating rounds, print the best of each and return (a)'s seconds per micro-batch."""
    jobs = planned_jobs(folder)
    render = RenderSettings(profile.size, profile.size, profile.steps, GUIDANCE_SCALE)
    # Alternating rounds and keeping each side's best spreads background load over both sides.
    raws, ours = [], []
    for i in range(profile.rounds):
        raws.append(time_raw_loop(loaded.pipeline, jobs, render, micro))
        ours.append(time_generate_images(loaded, jobs, render, micro, work / f"round-{i}"))
    raw_s = min(raws)
    ours_s, report = min(ours, key=lambda r: r[0])
    n, gen_s = len(report.generated), report.seconds_generating
    raw = len(jobs) / raw_s
    ratios = " ".join(f"{r / o[0]:.3f}" for r, o in zip(raws, ours))
    print(f"best of {profile.rounds} alternating round(s); ratio b/a with writing per round: {ratios}")
    print(f"(a) raw diffusers loop     {len(jobs):>5} images in {raw_s:8.2f} s   {raw:8.3f} img/s")
    print(f"(b) AssetQL, with writing  {n:>5} images in {ours_s:8.2f} s   {n / ours_s:8.3f} img/s   "
          f"ratio b/a {n / ours_s / raw:.3f} (target >= {RATIO_TARGET})")
    print(
        f"    AssetQL, generation    {n:>5} images in {gen_s:8.2f} s   {n / gen_s:8.3f} img/s   "
        f"ratio b/a {n / gen_s / raw:.3f}"
    )
    print(f"    writing PNG + thumbnail: {(ours_s - gen_s) / n * 1000:.1f} ms per image")
    return raw_s / math.ceil(len(jobs) / micro)


def run_batch_job(folder: Path) -> dict:
    """Register the batch in `folder`, run the batch job through the code location's executor and time it."""
    import dagster as dg

    from assetql_dagster.cli import batch_job_definition
    from assetql_dagster.definitions import defs
    from assetql_dagster.pipeline.registration import register_batch
    from assetql_dagster.defs.partitions import batches_partitions
    from assetql_dagster.pipeline.records import read_record

    storage = defs.resources["storage"]
    key = register_batch(storage, folder).key
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(batches_partitions.name, [key])
        result = dg.execute_job(
            dg.reconstructable(batch_job_definition),
            instance=instance,
            tags={"dagster/partition": key},
            run_config=RUN_CONFIG,
        )
        if not result.success:
            failures = "; ".join(
                f"{e.step_key}: {e.step_failure_data.error.message.strip()}" for e in result.get_step_failure_events()
            )
            raise SystemExit(f"batch run {result.run_id} of {key} failed: {failures or 'see the log above'}")
        record = instance.get_run_record_by_id(result.run_id)
        steps = sorted(instance.get_run_step_stats(result.run_id), key=lambda s: s.start_time)
    # Storage writes are atomic renames, so a PNG's mtime is the moment that image was stored.
    stored = sorted(storage.local_path(r.raw_key).stat().st_mtime for r in read_record(storage, key, "images").stored)
    return {
        "executor": batch_job_definition().executor_def.name,
        "start": record.start_time,
        "end": record.end_time,
        "stored": stored,
        "steps": [(s.step_key, s.start_time, s.end_time) for s in steps],
    }


def idle_seconds(steps: list[tuple[str, float, float]], start: float, end: float) -> float:
    """Seconds of [start, end] covered by no step: process launches, event handling, scheduling."""
    busy, covered_to = 0.0, start
    for _, began, ended in sorted(steps, key=lambda s: s[1]):
        busy += max(0.0, ended - max(began, covered_to))
        covered_to = max(covered_to, ended)
    return (end - start) - busy


def report_batch_job(run: dict, profile: Profile, micro_s: float) -> None:
    start, end, stored = run["start"], run["end"], run["stored"]
    n, total = len(stored), end - start
    target = f"   (target >= {profile.target_img_s} img/s)" if profile.target_img_s else ""
    print(f"batch job, executor {run['executor']!r}: {n} images in {total:.2f} s, run start to run end")
    print(f"    end to end incl. scoring, tagging, export: {n / total:.3f} img/s{target}")
    first = stored[0] - start
    print(f"    run start -> first image stored: {first:7.2f} s  (generating one micro-batch: {micro_s:.2f} s)")
    print(f"    first -> last image stored:      {stored[-1] - stored[0]:7.2f} s")
    print(f"    last image stored -> run end:    {end - stored[-1]:7.2f} s")
    print(f"    no step running:                 {idle_seconds(run['steps'], start, end):7.2f} s of the run")
    print(f"    {'step':<48} {'starts at':>10} {'lasts':>8}")
    for key, began, ended in run["steps"]:
        print(f"    {key:<48} {began - start:>9.2f}s {ended - began:>7.2f}s")


def bench(profile: Profile, device: str, work: Path, micro_batch: str, shard_size: int | None) -> None:
    """Both measurements for one profile, under the scratch folder `work`."""
    import torch

    print(f"\n== {profile.model}: {profile.size}x{profile.size} px, {profile.steps} steps, device {device}")
    model = "tiny" if profile.model == "tiny" else save_arch(profile.model, device, work / "model")
    loaded = ImageGenerator(device=device).load(model)
    micro = micro_batch_size(micro_batch, loaded.device.type, profile.size, profile.size)
    devices = torch.cuda.device_count() if loaded.device.type == "cuda" else 1
    # One shard per device by default: each shard's step process loads the model once.
    shard = shard_size or math.ceil(profile.job_images / devices)
    settings = {
        "template": TEMPLATE,
        "negative_prompt": NEGATIVE_PROMPT,
        "model": model,
        "width": profile.size,
        "height": profile.size,
        "steps": profile.steps,
        "guidance_scale": GUIDANCE_SCALE,
        "micro_batch": micro,
        "shard_size": shard,
    }
    print(f"micro-batch {micro}, dtype {loaded.pipeline.dtype}; batch job: shards of {shard}")
    write_batch(work / "compare", profile.images, {**settings, "name": f"compare-{profile.model}"})
    micro_s = compare(loaded, work / "compare", profile, micro, work / "storage")
    # The batch run's step processes load their own copy; return this process's cached activations.
    loaded.free_memory()
    write_batch(work / "job", profile.job_images, {**settings, "name": f"job-{profile.model}"})
    report_batch_job(run_batch_job(work / "job"), profile, micro_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--arch", choices=[*ARCH_NAMES, "all"], default="all", help="gpu mode: architecture(s) to run")
    parser.add_argument("--device", help="gpu mode: torch device (default cuda)")
    parser.add_argument("--images", type=int, help="images for (a) and (b) (default: 200 tiny, 256 sd15, 64 sdxl)")
    parser.add_argument("--job-images", type=int, help="images in the batch run (default: 64 tiny, 256 sd15, 64 sdxl)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: 4 tiny, 30 otherwise)")
    parser.add_argument("--rounds", type=int, help="alternating rounds of (a) and (b), best kept (default: 3 tiny, 1)")
    parser.add_argument("--size", type=int, help="image width and height (default: 64 tiny, 512 sd15, 1024 sdxl)")
    parser.add_argument("--micro-batch", default="auto", help="images per pipeline call (default: AssetQL's auto)")
    parser.add_argument("--shard-size", type=int, help="batch run shard size (default: images / devices)")
    parser.add_argument("--check-arch", action="store_true", help="print the GPU architectures' parameter counts")
    args = parser.parse_args()
    if args.check_arch:
        check_arch()
        return
    names = ["tiny"] if args.mode == "cpu" else ARCH_NAMES if args.arch == "all" else [args.arch]
    overrides = {k: getattr(args, k) for k in ("images", "job_images", "rounds", "steps", "size") if getattr(args, k)}
    device = "cpu" if args.mode == "cpu" else args.device or "cuda"
    with tempfile.TemporaryDirectory(prefix="assetql-bench-generation-") as tmp:
        # Read when the code location is first imported, here and in every step process the run starts.
        os.environ.update({"ASSETQL_STORAGE": "local", "ASSETQL_DATA_DIR": str(Path(tmp) / "data")})
        for name in names:
            profile = dataclasses.replace(PROFILES[name], **overrides)
            bench(profile, device, Path(tmp) / name, args.micro_batch, args.shard_size)


if __name__ == "__main__":
    main()
