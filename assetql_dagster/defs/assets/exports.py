import dataclasses

import dagster as dg

from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.domain.layout import export_key
from assetql_dagster.domain.links import parse_expiry
from assetql_dagster.domain.records import BatchInput, Curation, ExportSummary, ImagePlan, StyleProfile, TagSet
from assetql_dagster.pipeline.packaging import package
from resources.storage import AssetStorage


@dg.asset(partitions_def=batches_partitions, group_name="batch", kinds={"zip"})
def exports(
    context: dg.AssetExecutionContext,
    storage: AssetStorage,
    batch_input: BatchInput,
    prompts: ImagePlan,
    curated_images: Curation,
    tags: TagSet,
    style_profile: StyleProfile,
) -> dg.Output[ExportSummary]:
    """The batch's package: ZIP of images with manifest CSV/JSON and an HTML gallery, plus links."""
    batch = batch_input.batch
    summary, columns = package(
        storage, batch_input, prompts, curated_images.images, curated_images.scores, tags, style_profile
    )
    context.log.info(f"{batch}: exported {', '.join(summary.exports)} under {export_key(batch, '')}")
    if batch_input.settings.export_only == "approved":
        context.log.info(
            f"{batch}: export_only: approved, so the package holds the {summary.images} of "
            f"{len(curated_images.images.stored)} image(s) approved in review; approve more (assetql review, "
            "the asset library) and export again to add them"
        )
    if summary.failed_rows:
        context.log.warning(
            f"{batch}: exported {summary.images} images without {summary.failed_rows} failed one(s); "
            f"see failed_rows in manifest.json, or re-run them with: assetql retry-failed {batch}"
        )
    # Links a person can click in the UI: signed on S3 or its CDN (for the batch's link lifetime), file
    # URIs locally.
    expires_in_s = parse_expiry(batch_input.settings.link_expiry)
    metadata = {
        **{k: v for k, v in dataclasses.asdict(summary).items() if k not in ("files", "exports")},
        **{kind: dg.MetadataValue.url(storage.link(key, expires_in_s)) for kind, key in summary.files.items()},
        "exports": ", ".join(summary.exports),
        "manifest_columns": dg.MetadataValue.json(columns),
        # What the batch's stored images cost (generation and a month of storage), as `images` measured.
        "cost_usd": round(sum(curated_images.images.costs.values()), 6),
    }
    return dg.Output(summary, metadata=metadata)
