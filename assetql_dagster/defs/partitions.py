"""One dynamic partition per batch."""

import dagster as dg

BATCHES = "batches"

batches_partitions = dg.DynamicPartitionsDefinition(name=BATCHES)
