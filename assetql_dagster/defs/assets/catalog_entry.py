import dagster as dg

from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.domain.records import BatchInput, Curation, ExportSummary, ImagePlan, TagSet
from assetql_dagster.pipeline.categorizing import load_overrides
from assetql_dagster.pipeline.cataloguing import catalog_records, file_sizes
from assetql_dagster.pipeline.library_state import load_state
from assetql_dagster.pipeline.names import load_names
from assetql_dagster.pipeline.regeneration import load_histories
from resources.catalog import AssetCatalog, masked_url
from resources.storage import AssetStorage


@dg.asset(partitions_def=batches_partitions, group_name="batch", kinds={"sql"})
def catalog_entry(
    context: dg.AssetExecutionContext,
    storage: AssetStorage,
    catalog: AssetCatalog,
    batch_input: BatchInput,
    prompts: ImagePlan,
    curated_images: Curation,
    tags: TagSet,
    exports: ExportSummary,
) -> dg.MaterializeResult:
    """The batch's rows in the asset catalog: images, prompts, scores, versions, tags and exports."""
    # Upserts, so re-runs give the same rows. The version histories are the style loop's own record,
    # not an asset's output, so they are read where the loop keeps them, as are the names renames
    # gave, the categories people set and what the asset library decided (reviews, owner,
    # deletion); file sizes come from one storage listing.
    batch = batch_input.batch
    catalog.migrate()
    counts = catalog_records(
        catalog, batch_input, prompts, curated_images, tags, exports, load_histories(storage, batch),
        file_sizes(storage, batch), load_names(storage, batch), load_overrides(storage, batch),
        load_state(storage, batch),
    )
    if counts.deleted:
        context.log.warning(f"{batch} was deleted from the asset library: left out of {masked_url(catalog.url)}")
    else:
        context.log.info(
            f"{batch}: catalogued {counts.assets} image(s), {counts.versions} version(s), {counts.tags} tag(s), "
            f"{counts.exports} export(s) in {masked_url(catalog.url)}"
        )
    return dg.MaterializeResult(metadata={
        "rows_upserted": counts.rows,
        "assets": counts.assets,
        "versions": counts.versions,
        "tags": counts.tags,
        "exports": counts.exports,
        "assets_removed": counts.removed,
        "aliases": counts.aliases,
        "catalog_url": masked_url(catalog.url),
    })
