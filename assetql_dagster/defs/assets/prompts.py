import time
from datetime import datetime

import dagster as dg

from assetql_dagster.defs.assets.batch_input import batch_input
from assetql_dagster.domain.csv_schema import BatchRow, batch_template, build_prompt
from assetql_dagster.domain.layout import image_seed
from assetql_dagster.domain.naming import NameAllocator, image_identity, placeholder_values, render_name
from assetql_dagster.domain.settings import settings_from_dict
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.pipeline.records import read_record, write_record
from assetql_dagster.defs.metadata import markdown_table
from resources.storage import AssetStorage

PREVIEW_ROWS = 10


def plan_images(batch: str, inputs: dict) -> list[dict]:
    """One generation job per row × variation, each with its seed and collision-free file stem."""
    settings = settings_from_dict(inputs["settings"])
    template = batch_template(settings)
    # Names carry the registration time, not the run time, so a retried or resumed run
    # produces the same file names and finds the images it already stored.
    registered_at = datetime.fromisoformat(inputs["registered_at"])
    names = NameAllocator()
    jobs = []
    for raw in inputs["rows"]:
        row = BatchRow(**raw)
        prompt = build_prompt(row, settings, template)
        for variation in range(1, settings.variations + 1):
            seed = image_seed(settings.seed, row.variant_id, variation)
            values = placeholder_values(
                batch=inputs["name"],
                variant_id=row.variant_id,
                variation=variation,
                identity=image_identity(batch, row.variant_id, variation, seed),
                created_at=registered_at,
                seq=len(jobs) + 1,
                category=row.category,
                sku=row.sku,
                extra=row.extra,
            )
            stem = names.allocate(render_name(settings.naming_pattern, values))
            jobs.append(
                {
                    "image_id": stem,
                    "file_name": f"{stem}.png",
                    "variant_id": row.variant_id,
                    "variation": variation,
                    "seed": seed,
                    "prompt": prompt,
                    "negative_prompt": settings.negative_prompt,
                    "category": row.category,
                    "sku": row.sku,
                    "language": row.language,
                    "extra": row.extra,
                    "row": row.line,
                }
            )
    return jobs


@dg.asset(partitions_def=batches_partitions, deps=[batch_input], group_name="batch")
def prompts(context: dg.AssetExecutionContext, storage: AssetStorage) -> dg.MaterializeResult:
    """Rendered prompt, seed and file name for every image of the batch."""
    started = time.perf_counter()
    batch = context.partition_key
    jobs = plan_images(batch, read_record(storage, batch, "batch_input"))
    write_record(storage, batch, "prompts", jobs)
    preview = markdown_table(
        ["file", "variant_id", "variation", "seed", "prompt"],
        [[j["file_name"], j["variant_id"], j["variation"], j["seed"], j["prompt"]] for j in jobs[:PREVIEW_ROWS]],
    )
    return dg.MaterializeResult(
        metadata={
            "images_planned": len(jobs),
            "rows": len({j["variant_id"] for j in jobs}),
            "preview": dg.MetadataValue.md(preview),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
