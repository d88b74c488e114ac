import dagster as dg

from assetql_dagster.defs.metadata import markdown_table
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.domain.records import BatchInput, ImagePlan
from assetql_dagster.pipeline.planning import plan_images

PREVIEW_ROWS = 10


@dg.asset(partitions_def=batches_partitions, group_name="batch")
def prompts(batch_input: BatchInput) -> dg.Output[ImagePlan]:
    """Rendered prompt, seed and file name for every image of the batch."""
    plan = plan_images(batch_input)
    preview = markdown_table(
        ["file", "variant_id", "variation", "seed", "prompt"],
        [[j.file_name, j.variant_id, j.variation, j.seed, j.prompt] for j in plan.jobs[:PREVIEW_ROWS]],
    )
    return dg.Output(
        plan,
        metadata={"images_planned": len(plan.jobs), "rows": len(batch_input.rows), "preview": preview},
    )
