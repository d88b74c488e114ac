import io
import time

import dagster as dg
from PIL import Image

from assetql_dagster.assets.prompts import prompts
from assetql_dagster.domain.contact_sheet import contact_sheet_markdown
from assetql_dagster.domain.settings import settings_from_dict
from assetql_dagster.generation import RenderSettings, generate_images, micro_batch_size
from assetql_dagster.partitions import batches_partitions
from assetql_dagster.records import read_record, write_record
from resources.generator import ImageGenerator
from resources.storage import AssetStorage

CONTACT_SHEET_IMAGES = 12


def contact_sheet(storage: AssetStorage, records: list[dict], caption) -> str:
    items = [
        (caption(r), Image.open(io.BytesIO(storage.read_bytes(r["thumb_key"]))))
        for r in records[:CONTACT_SHEET_IMAGES]
    ]
    return contact_sheet_markdown(items)


@dg.asset(partitions_def=batches_partitions, deps=[prompts], group_name="batch", kinds={"pytorch"})
def images(
    context: dg.AssetExecutionContext, storage: AssetStorage, generator: ImageGenerator
) -> dg.MaterializeResult:
    """Generated PNGs and thumbnails, one per row × variation."""
    started = time.perf_counter()
    batch = context.partition_key
    settings = settings_from_dict(read_record(storage, batch, "batch_input")["settings"])
    jobs = read_record(storage, batch, "prompts")
    pipe = generator.load(settings.model)
    width, height = settings.width or pipe.native_size[0], settings.height or pipe.native_size[1]
    render = RenderSettings(width, height, settings.steps, settings.guidance_scale)
    micro = micro_batch_size(settings.micro_batch, pipe.device.type, width, height)
    loaded_at = time.perf_counter()

    def generate(chunk: list[dict]) -> list:
        return pipe.generate(
            [j["prompt"] for j in chunk],
            [j["negative_prompt"] for j in chunk],
            [j["seed"] for j in chunk],
            width,
            height,
            render.steps,
            render.guidance_scale,
        )

    def progress(done: int, total: int) -> None:
        context.log.info(f"{batch}: {done}/{total} images stored")

    report = generate_images(storage, batch, jobs, generate, render, micro, progress)
    records = report.skipped + report.generated
    by_id = {r["image_id"]: r for r in records}
    ordered = [by_id[j["image_id"]] for j in jobs]
    write_record(storage, batch, "images", ordered)
    return dg.MaterializeResult(
        metadata={
            "images": len(ordered),
            "generated": len(report.generated),
            "already_stored": len(report.skipped),
            "model": settings.model,
            "device": str(pipe.device),
            "size": f"{width}x{height}",
            "micro_batch": micro,
            "model_load_seconds": round(loaded_at - started, 3),
            "generation_seconds": round(report.seconds_generating, 3),
            "images_per_second": round(len(report.generated) / report.seconds_generating, 3)
            if report.seconds_generating
            else 0.0,
            "contact_sheet": dg.MetadataValue.md(contact_sheet(storage, ordered, lambda r: r["file_name"])),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
