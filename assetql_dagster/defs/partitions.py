"""One dynamic partition per batch, and the per-batch asset checks' specs."""

import warnings

import dagster as dg

BATCHES = "batches"

batches_partitions = dg.DynamicPartitionsDefinition(name=BATCHES)


def batch_check_spec(name: str, asset: str, description: str) -> dg.AssetCheckSpec:
    """A check evaluated for each batch partition, shown next to that partition in the UI."""
    # Partitioned check specs are a Dagster preview feature and warn on every construction, i.e.
    # on every import of the code location; they are what makes a check's result per batch.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(name, asset=asset, description=description, partitions_def=batches_partitions)
