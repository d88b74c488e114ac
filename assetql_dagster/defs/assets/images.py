"""The images stage: a graph-backed asset that fans generation out into shards.

Each shard is its own step on the GPU executor, with a RetryPolicy; shards of one batch run in
parallel across the device pool. The asset graph still shows one `images` asset.
"""

import io
import math
import time

import dagster as dg
from PIL import Image

from assetql_dagster.domain.contact_sheet import contact_sheet_markdown
from assetql_dagster.pipeline.generation import RenderSettings, generate_images, job_generator, micro_batch_size
from assetql_dagster.defs.metadata import markdown_table
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.pipeline.records import read_record, read_settings, write_record
from gpu_executor import GPU_TAG
from resources.generator import ImageGenerator
from resources.storage import AssetStorage

CONTACT_SHEET_IMAGES = 12
SHARD_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def contact_sheet(storage: AssetStorage, records: list[dict], captions: dict[str, str] | None = None) -> str:
    items = [
        (
            (captions or {}).get(r["image_id"], r["file_name"]),
            Image.open(io.BytesIO(storage.read_bytes(r["thumb_key"]))),
        )
        for r in records[:CONTACT_SHEET_IMAGES]
    ]
    return contact_sheet_markdown(items)


@dg.op(ins={"prompts": dg.In(dg.Nothing)}, out=dg.DynamicOut(dict))
def image_shards(context: dg.OpExecutionContext, storage: AssetStorage):
    """Slices of the batch's planned images, `shard_size` each."""
    batch = context.partition_key
    size = read_settings(storage, batch).shard_size
    jobs = read_record(storage, batch, "prompts")
    count = math.ceil(len(jobs) / size)
    context.log.info(f"{batch}: {len(jobs)} images in {count} shard(s) of up to {size}")
    for index in range(count):
        yield dg.DynamicOutput(
            {"index": index, "jobs": jobs[index * size : (index + 1) * size]},
            mapping_key=f"shard_{index:04d}",
        )


@dg.op(tags={GPU_TAG: "true"}, retry_policy=SHARD_RETRY_POLICY)
def generate_shard(
    context: dg.OpExecutionContext, storage: AssetStorage, generator: ImageGenerator, shard: dict
) -> dict:
    """Generates one shard's images that are not stored yet; returns what is stored and what failed."""
    started = time.perf_counter()
    batch = context.partition_key
    settings = read_settings(storage, batch)
    jobs = shard["jobs"]
    try:
        pipe = generator.load(settings.model)
    except (FileNotFoundError, ValueError) as err:
        # A model that is missing or misconfigured will be just as missing on the next attempt.
        raise dg.Failure(description=f"cannot load model {settings.model!r}: {err}", allow_retries=False) from err
    width, height = settings.width or pipe.native_size[0], settings.height or pipe.native_size[1]
    render = RenderSettings(width, height, settings.steps, settings.guidance_scale)
    micro = micro_batch_size(settings.micro_batch, pipe.device.type, width, height)
    attempt = context.retry_number + 1
    report = generate_images(
        storage,
        batch,
        jobs,
        job_generator(pipe, render),
        render,
        micro,
        attempt=attempt,
        final_attempt=attempt > SHARD_RETRY_POLICY.max_retries,
        progress=lambda done, total: context.log.info(f"{batch} shard {shard['index']}: {done}/{total} images"),
        on_oom=pipe.free_memory,
    )
    if report.oom_backoffs:
        context.log.warning(f"out of memory: micro-batch reduced from {micro} to {report.final_micro_batch}")
    stored = {r["image_id"]: r for r in report.skipped + report.generated}
    return {
        "index": shard["index"],
        "stored": [stored[j["image_id"]] for j in jobs if j["image_id"] in stored],
        "generated": len(report.generated),
        "skipped": len(report.skipped),
        "failed": report.failed,
        "attempt": attempt,
        "device": str(pipe.device),
        "micro_batch": micro,
        "final_micro_batch": report.final_micro_batch,
        "generation_seconds": report.seconds_generating,
        "seconds": time.perf_counter() - started,
    }


@dg.op(out=dg.Out(dg.Nothing))
def collect_images(context: dg.OpExecutionContext, storage: AssetStorage, shards: list[dict]) -> None:
    """Records the batch's stored images and its failed-rows report."""
    batch = context.partition_key
    # Shards hold consecutive slices of the plan, each listed in plan order.
    shards = sorted(shards, key=lambda s: s["index"])
    stored = [r for s in shards for r in s["stored"]]
    failed = [f for s in shards for f in s["failed"]]
    write_record(storage, batch, "images", stored)
    write_record(storage, batch, "failed_rows", failed)
    generated = sum(s["generated"] for s in shards)
    generation_seconds = sum(s["generation_seconds"] for s in shards)
    metadata = {
        "images": len(stored),
        "generated": generated,
        "already_stored": sum(s["skipped"] for s in shards),
        "failed": len(failed),
        "shards": len(shards),
        "devices": ", ".join(sorted({s["device"] for s in shards})),
        "micro_batch": max((s["micro_batch"] for s in shards), default=0),
        "generation_seconds": round(generation_seconds, 3),
        "images_per_second": round(generated / generation_seconds, 3) if generation_seconds else 0.0,
        "contact_sheet": dg.MetadataValue.md(contact_sheet(storage, stored)),
    }
    if failed:
        context.log.warning(
            f"{batch}: {len(failed)} image(s) failed after retries; the rest continue to export. "
            f"Re-run just those with: assetql retry-failed {batch}"
        )
        metadata["failed_rows"] = dg.MetadataValue.md(
            markdown_table(
                ["variant_id", "variation", "row", "attempts", "reason"],
                [[f["variant_id"], f["variation"], f["row"], f["attempts"], f["reason"]] for f in failed],
            )
        )
    context.add_output_metadata(metadata)


@dg.graph_asset(
    partitions_def=batches_partitions,
    ins={"prompts": dg.AssetIn(dagster_type=dg.Nothing)},
    group_name="batch",
    kinds={"pytorch"},
)
def images(prompts):
    """Generated PNGs and thumbnails, one per row × variation, produced shard by shard."""
    return collect_images(image_shards(prompts).map(generate_shard).collect())
