import dataclasses
import time

import dagster as dg

from assetql_dagster.domain.layout import reference_key
from assetql_dagster.pipeline.registration import restored_batch
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.pipeline.records import write_record
from resources.storage import AssetStorage


@dg.asset(partitions_def=batches_partitions, group_name="batch", kinds={"csv"})
def batch_input(context: dg.AssetExecutionContext, storage: AssetStorage) -> dg.MaterializeResult:
    """Validated rows and a settings snapshot of one batch."""
    started = time.perf_counter()
    batch = context.partition_key
    with restored_batch(storage, batch) as (source, meta):
        references = []
        for path in source.reference_paths:
            key = reference_key(batch, path.name)
            storage.write_bytes(key, path.read_bytes())
            references.append(key)
    record = {
        "batch": batch,
        "name": source.name,
        "origin": meta["origin"],
        "registered_at": meta["registered_at"],
        "content_hash": source.content_hash,
        "settings": source.settings.to_dict(),
        "references": references,
        "rows": [dataclasses.asdict(row) for row in source.rows],
    }
    uri = write_record(storage, batch, "batch_input", record)
    return dg.MaterializeResult(
        metadata={
            "rows": len(source.rows),
            "references": len(references),
            "model": source.settings.model,
            "variations": source.settings.variations,
            "origin": meta["origin"],
            "record": dg.MetadataValue.url(uri) if uri.startswith("file:") else uri,
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
