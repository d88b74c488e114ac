"""Planning a batch: one generation job per row × variation, with its prompt, seed and file name."""

from __future__ import annotations

from datetime import datetime

from assetql_dagster.domain.csv_schema import batch_template, build_prompt
from assetql_dagster.domain.layout import image_seed
from assetql_dagster.domain.naming import NameAllocator, image_identity, placeholder_values, render_name
from assetql_dagster.domain.records import BatchInput, ImageJob, ImagePlan, Shard


def plan_images(batch: BatchInput) -> ImagePlan:
    """Every image of `batch`, each with its seed and collision-free file stem."""
    settings = batch.settings
    template = batch_template(settings)
    # Names carry the registration time, not the run time, so a retried or resumed run
    # produces the same file names and finds the images it already stored.
    registered_at = datetime.fromisoformat(batch.registered_at)
    names = NameAllocator()
    jobs: list[ImageJob] = []
    for row in batch.rows:
        prompt = build_prompt(row, settings, template)
        for variation in range(1, settings.variations + 1):
            seed = image_seed(settings.seed, row.variant_id, variation)
            values = placeholder_values(
                batch=batch.name,
                variant_id=row.variant_id,
                variation=variation,
                identity=image_identity(batch.batch, row.variant_id, variation, seed),
                created_at=registered_at,
                seq=len(jobs) + 1,
                category=row.category,
                sku=row.sku,
                extra=row.extra,
            )
            stem = names.allocate(render_name(settings.naming_pattern, values))
            jobs.append(
                ImageJob(
                    image_id=stem,
                    file_name=f"{stem}.png",
                    variant_id=row.variant_id,
                    variation=variation,
                    seed=seed,
                    prompt=prompt,
                    negative_prompt=settings.negative_prompt,
                    category=row.category,
                    sku=row.sku,
                    language=row.language,
                    extra=row.extra,
                    row=row.line,
                )
            )
    return ImagePlan(tuple(jobs))


def shards(plan: ImagePlan, size: int) -> list[Shard]:
    """Consecutive slices of the plan, `size` jobs each."""
    return [
        Shard(index=i, offset=start, planned=len(plan.jobs), jobs=plan.jobs[start : start + size])
        for i, start in enumerate(range(0, len(plan.jobs), size))
    ]
