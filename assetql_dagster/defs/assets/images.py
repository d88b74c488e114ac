"""The images stage: a graph-backed asset that fans generation out into shards.

Each shard is its own step on the GPU executor, with a RetryPolicy; shards of one batch run in
parallel across the device pool, each device's shards in one warm worker. Shards of a remote model
take no device and run on a pool sized to its endpoint (`images_asset`). The asset graph still
shows one `images` asset, with its `completion_rate` check.
"""

import time
from collections.abc import Mapping, Sequence

import dagster as dg

from assetql_dagster.defs.gpu import GPU_OP_TAGS, GPU_POOL, REMOTE_POOL, endpoint_pool, endpoint_slug
from assetql_dagster.defs.metadata import contact_sheet, markdown_table
from assetql_dagster.defs.partitions import batch_check_spec, batches_partitions
from assetql_dagster.defs.progress import report_progress
from assetql_dagster.defs.quality import flag_failed_check
from assetql_dagster.domain.costs import BatchCost
from assetql_dagster.domain.records import BatchInput, ImagePlan, ImageSet, Shard, ShardResult, StyleProfile
from assetql_dagster.pipeline.costs import batch_cost, load_prices
from assetql_dagster.pipeline.generation import (
    adapter_style,
    generate_images,
    job_generator,
    micro_batch_size,
    palette_hold,
    render_settings,
)
from assetql_dagster.pipeline.planning import shards
from assetql_dagster.pipeline.style import ip_adapter_references
from resources.generator import ImageGenerator
from resources.models import remote_model
from resources.storage import AssetStorage

SHARD_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
PROGRESS_EVERY_S = 1.0
COMPLETION_RATE = batch_check_spec(
    "completion_rate", "images", "Share of planned images that were generated and stored (default at least 95%)."
)


# An op's pool and tags are fixed when it is defined, but whether a batch's model is local or remote is
# only known from its settings; so shards go out on one of several dynamic outputs: `result` to the GPU
# op, each remote model the deployment declares (`endpoint_outputs`: model -> output) to its own op on
# its endpoint's pool, and `remote` (any other remote model) to `generate_remote_shard` on the shared
# `remote` pool. Remote ops take no device.
def image_shards_op(endpoint_outputs: Mapping[str, str]) -> dg.OpDefinition:
    """`image_shards`, with an output per declared remote model besides `result` and `remote`."""

    @dg.op(name="image_shards", out={
        name: dg.DynamicOut(Shard) for name in ("result", "remote", *endpoint_outputs.values())})
    def image_shards(context: dg.OpExecutionContext, prompts: ImagePlan, batch_input: BatchInput):
        """Slices of the batch's planned images, `shard_size` each, on the output of where they are generated."""
        model = batch_input.settings.model
        parts = shards(prompts, batch_input.settings.shard_size)
        output = "result" if remote_model(model) is None else endpoint_outputs.get(model, "remote")
        context.log.info(
            f"{batch_input.batch}: {len(prompts.jobs)} images in {len(parts)} shard(s) of up to "
            f"{batch_input.settings.shard_size}" + ("" if output == "result" else f" for {model}")
        )
        for part in parts:
            yield dg.DynamicOutput(part, output_name=output, mapping_key=f"shard_{part.index:04d}")

    return image_shards


def shard_op(name: str, pool: str, description: str, tags: Mapping[str, str] | None = None) -> dg.OpDefinition:
    """The op `name` generating one shard on a slot of `pool`: with GPU tags on a device, without on
    the batch's remote model."""

    @dg.op(name=name, description=description, tags=tags, pool=pool, retry_policy=SHARD_RETRY_POLICY)
    def generate(
        context: dg.OpExecutionContext,
        storage: AssetStorage,
        generator: ImageGenerator,
        shard: Shard,
        batch_input: BatchInput,
        style_profile: StyleProfile,
    ) -> dg.Output[ShardResult]:
        return run_shard(context, storage, generator, shard, batch_input, style_profile)

    return generate


def remote_shard_op(name: str, pool: str) -> dg.OpDefinition:
    """The op `name` generating shards of remote models on a slot of `pool`, with no GPU tags."""
    return shard_op(name, pool, "Generates one shard's images on the batch's remote model (SageMaker or Bedrock); "
                                "no local device.")


generate_shard = shard_op(
    "generate_shard", GPU_POOL,
    "Generates one shard's images that are not stored intact yet; returns what is stored and what failed.",
    GPU_OP_TAGS,
)
# Remote models the deployment does not declare share the `remote` pool.
generate_remote_shard = remote_shard_op("generate_remote_shard", REMOTE_POOL)


def load_model(generator: ImageGenerator, batch_input: BatchInput):
    """The batch's model (local or remote), or a Failure that is not retried: a model that is missing
    or misconfigured will be just as missing on the next attempt."""
    settings = batch_input.settings
    try:
        return generator.load(settings.model, settings.ip_adapter, settings.lora)
    except (FileNotFoundError, ValueError) as err:
        raise dg.Failure(description=f"cannot load model {settings.model!r}: {err}", allow_retries=False) from err


def run_shard(
    context: dg.OpExecutionContext,
    storage: AssetStorage,
    generator: ImageGenerator,
    shard: Shard,
    batch_input: BatchInput,
    style_profile: StyleProfile,
) -> dg.Output[ShardResult]:
    """Generates `shard` on the batch's (local or remote) model and reports it as the shard's result."""
    started = time.perf_counter()
    loads = generator.loads()  # diffusers pipelines built here; a remote model builds none
    pipe = load_model(generator, batch_input)
    batch, settings = batch_input.batch, batch_input.settings
    render = render_settings(settings, pipe)
    micro = micro_batch_size(settings.micro_batch, pipe.device.type, render.width, render.height)
    attempt = context.retry_number + 1
    name = f"shard {shard.index}"

    last_report = [0.0]

    def progress(done: int, total: int) -> None:
        # Each report is instance writes and a log line; micro-batches of a small model finish many
        # times a second, so report at most every PROGRESS_EVERY_S, and always the shard's last.
        now = time.monotonic()
        if done < total and now - last_report[0] < PROGRESS_EVERY_S:
            return
        last_report[0] = now
        line = report_progress(context, str(shard.index), done, shard.planned)
        context.log.info(f"{batch} {name}: {done}/{total} images; batch: {line}")

    report = generate_images(
        storage,
        batch,
        shard.jobs,
        job_generator(
            pipe,
            render,
            palette_hold(style_profile, settings.lock_weights.get("palette", 0)),
            adapter_style(pipe, ip_adapter_references(storage, batch_input), settings.style_strength),
        ),
        render,
        micro,
        attempt=attempt,
        final_attempt=attempt > SHARD_RETRY_POLICY.max_retries,
        progress=progress,
        on_oom=pipe.free_memory,
    )
    if report.oom_backoffs:
        context.log.warning(f"out of memory: micro-batch reduced from {micro} to {report.final_micro_batch}")
    if report.corrupt:
        context.log.warning(
            f"{batch} {name}: {len(report.corrupt)} stored file(s) did not decode, so their images were "
            f"generated again: {', '.join(report.corrupt)}"
        )
    stored = {r.image_id: r for r in report.skipped + report.generated}
    result = ShardResult(
        index=shard.index,
        planned=shard.planned,
        stored=tuple(stored[j.image_id] for j in shard.jobs if j.image_id in stored),
        failed=tuple(report.failed),
        generated=len(report.generated),
        skipped=len(report.skipped),
        attempt=attempt,
        device=str(pipe.device),
        micro_batch=micro,
        final_micro_batch=report.final_micro_batch,
        generation_seconds=report.seconds_generating,
        seconds=time.perf_counter() - started,
        model_loads=generator.loads() - loads,
    )
    return dg.Output(result, metadata={"corrupt_files": len(report.corrupt)})


def collect_images_op(shard_inputs: Sequence[str]) -> dg.OpDefinition:
    """`collect_images`, taking one collected list of shard results per name in `shard_inputs`."""

    @dg.op(
        name="collect_images",
        ins={**{name: dg.In(list[ShardResult]) for name in shard_inputs}, "batch_input": dg.In(BatchInput)},
        out={"result": dg.Out(ImageSet), "completion_rate": dg.Out(dg.Nothing, is_required=False)},
    )
    def collect_images(
        context: dg.OpExecutionContext, storage: AssetStorage, batch_input: BatchInput, **shard_lists: list[ShardResult]
    ):
        """The batch's stored images and failed rows, and how complete the batch is."""
        yield from collected_images(context, storage, batch_input, shard_lists)

    return collect_images


def collected_images(
    context: dg.OpExecutionContext,
    storage: AssetStorage,
    batch_input: BatchInput,
    shard_lists: Mapping[str, list[ShardResult]],
):
    """`collect_images`' outputs: the ImageSet of all shards and the completion check."""
    batch = batch_input.batch
    # Shards hold consecutive slices of the plan, each listed in plan order; a batch's shards all ran
    # in one op (local, one endpoint's or the shared remote one), so the other lists are empty.
    shards = sorted((s for results in shard_lists.values() for s in results), key=lambda s: s.index)
    planned = shards[0].planned if shards else 0
    cost = batch_cost(storage, batch, batch_input.settings.model, shards, load_prices())
    images = ImageSet(
        planned=planned,
        stored=tuple(r for s in shards for r in s.stored),
        failed=tuple(f for s in shards for f in s.failed),
        costs={image_id: round(usd, 6) for image_id, usd in cost.per_image().items()},
    )
    generated = sum(s.generated for s in shards)
    generation_seconds = sum(s.generation_seconds for s in shards)
    done = len(images.stored) + len(images.failed)
    context.log.info(f"{batch}: {done}/{planned} images done, {len(images.stored)} stored, {len(images.failed)} failed")
    metadata = {
        "images": len(images.stored),
        "generated": generated,
        "already_stored": sum(s.skipped for s in shards),
        "failed": len(images.failed),
        "shards": len(shards),
        "model_loads": sum(s.model_loads for s in shards),
        "devices": ", ".join(sorted({s.device for s in shards})),
        "micro_batch": max((s.micro_batch for s in shards), default=0),
        "generation_seconds": round(generation_seconds, 3),
        "images_per_second": round(generated / generation_seconds, 3) if generation_seconds else 0.0,
        "contact_sheet": contact_sheet(storage, images.stored),
        # What this run spent (the budget sensor adds these up per day) and on what.
        "cost_usd": round(cost.total_usd, 6),
        "compute_usd": round(cost.compute_usd, 6),
        "storage_usd_month": round(cost.storage_usd, 6),
        "cost_basis": cost_basis(cost),
    }
    if images.failed:
        context.log.warning(
            f"{batch}: {len(images.failed)} image(s) failed after retries; the rest continue to export. "
            f"Re-run just those with: assetql retry-failed {batch}"
        )
        metadata["failed_rows"] = markdown_table(
            ["variant_id", "variation", "row", "attempts", "reason"],
            [[f.variant_id, f.variation, f.row, f.attempts, f.reason] for f in images.failed],
        )
    yield dg.Output(images, "result", metadata=metadata)
    yield flag_failed_check(context, completion_check(images, batch_input.settings.min_completion_rate))


def cost_basis(cost: BatchCost) -> str:
    """What the run's cost is made of, in words."""
    if cost.remote_calls:
        return f"{cost.remote_calls} {cost.provider} call(s)"
    return ", ".join(f"{seconds:.1f} s on {kind}" for kind, seconds in sorted(cost.device_seconds.items())) or "no generation"


def completion_check(images: ImageSet, minimum: float) -> dg.AssetCheckResult:
    stored, planned = len(images.stored), images.planned
    rate = stored / planned if planned else 0.0
    return dg.AssetCheckResult(
        check_name=COMPLETION_RATE.name,
        asset_key=COMPLETION_RATE.asset_key,
        passed=rate >= minimum,
        description=f"{stored} of {planned} planned images stored ({rate:.1%}, minimum {minimum:.0%})",
        metadata={"completion_rate": rate, "stored": stored, "planned": planned, "minimum": minimum},
    )


def images_asset(remote_pools: Mapping[str, int]) -> dg.AssetsDefinition:
    """The `images` asset; each remote model in `remote_pools` (`remote_pools_from_env`) has its own
    shard op, `generate_remote_shard_{slug}`, on its endpoint's pool."""
    endpoint_outputs = {model: endpoint_slug(model) for model in remote_pools}
    endpoint_ops = {
        output: remote_shard_op(f"generate_remote_shard_{output}", endpoint_pool(model))
        for model, output in endpoint_outputs.items()
    }
    image_shards = image_shards_op(endpoint_outputs)
    collect_images = collect_images_op(["shards", "remote_shards", *endpoint_ops])

    @dg.graph_asset(
        name="images",
        partitions_def=batches_partitions,
        group_name="batch",
        kinds={"pytorch"},
        check_specs=[COMPLETION_RATE],
    )
    def images(prompts: ImagePlan, batch_input: BatchInput, style_profile: StyleProfile):
        """Generated PNGs and thumbnails, one per row × variation, produced shard by shard."""
        parts = image_shards(prompts, batch_input)._asdict()

        def generated(op: dg.OpDefinition, output: str):
            return parts[output].map(lambda shard: op(shard, batch_input, style_profile)).collect()

        stored, completion = collect_images(
            batch_input=batch_input,
            shards=generated(generate_shard, "result"),
            remote_shards=generated(generate_remote_shard, "remote"),
            **{output: generated(op, output) for output, op in endpoint_ops.items()},
        )
        return {"result": stored, "images_completion_rate": completion}

    return images
