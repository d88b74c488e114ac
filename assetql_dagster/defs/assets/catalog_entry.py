import dagster as dg

from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.domain.records import ExportSummary
from assetql_dagster.pipeline.cataloguing import catalog_batch
from resources.catalog import AssetCatalog, masked_url
from resources.storage import AssetStorage


@dg.asset(partitions_def=batches_partitions, group_name="batch", kinds={"sql"})
def catalog_entry(
    context: dg.AssetExecutionContext,
    storage: AssetStorage,
    catalog: AssetCatalog,
    exports: ExportSummary,
) -> dg.MaterializeResult:
    """The batch's rows in the asset catalog: images, prompts, scores, versions, tags and exports."""
    # Upserted from the stored records, so re-runs give the same rows; `exports` is the lineage: a
    # batch is catalogued once exported.
    del exports
    batch = context.partition_key
    catalog.migrate()
    counts = catalog_batch(catalog, storage, batch)
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
        "catalog_url": masked_url(catalog.url),
    })
