import dagster as dg

from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.domain.records import BatchInput
from assetql_dagster.pipeline.registration import registered_batch
from resources.storage import AssetStorage


@dg.asset(partitions_def=batches_partitions, group_name="batch", kinds={"csv"})
def batch_input(context: dg.AssetExecutionContext, storage: AssetStorage) -> dg.Output[BatchInput]:
    """Validated rows and a settings snapshot of one registered batch."""
    batch = registered_batch(storage, context.partition_key)
    return dg.Output(
        batch,
        metadata={
            "rows": len(batch.rows),
            "references": len(batch.references),
            "model": batch.settings.model,
            "variations": batch.settings.variations,
            "origin": batch.origin,
        },
    )
