"""Running one batch partition in process on tiny models, as the asset tests need it."""

import dagster as dg

from assetql_dagster.definitions import defs, with_io_manager
from assetql_dagster.defs.partitions import batches_partitions
from resources.clip import ClipEmbedder
from resources.generator import ImageGenerator


def materialize_partition(storage, key, generator=None, selection=None) -> dg.ExecuteInProcessResult:
    """Every asset and check of partition `key` (or `selection`) on a throwaway instance."""
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(batches_partitions.name, [key])
        return dg.materialize(
            list(defs.assets),
            partition_key=key,
            instance=instance,
            resources=with_io_manager(
                {"storage": storage, "generator": generator or ImageGenerator(), "clip": ClipEmbedder()}
            ),
            selection=selection,
            raise_on_error=False,
        )
