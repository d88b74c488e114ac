"""Running one batch partition in process on tiny models, as the asset tests need it."""

from pathlib import Path

import dagster as dg

from assetql_dagster.definitions import defs, with_io_manager
from assetql_dagster.defs.partitions import batches_partitions
from resources.catalog import AssetCatalog, sqlite_url_beside
from resources.clip import ClipEmbedder
from resources.generator import ImageGenerator
from resources.vision_tagger import VisionTagger


def catalog_beside(storage) -> AssetCatalog:
    """A catalog in an SQLite file next to a local storage root (`{root}-catalog/catalog.sqlite3`)."""
    root = Path(getattr(storage, "root", "data")).resolve()
    return AssetCatalog(url=sqlite_url_beside(root.with_name(f"{root.name}-catalog")))




def materialize_partition(storage, key, generator=None, selection=None, catalog=None) -> dg.ExecuteInProcessResult:
    """Every asset and check of partition `key` (or `selection`) on a throwaway instance; the
    catalog is `catalog` or `catalog_beside(storage)`."""
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(batches_partitions.name, [key])
        return dg.materialize(
            list(defs.assets),
            partition_key=key,
            instance=instance,
            resources=with_io_manager({
                "storage": storage,
                "generator": generator or ImageGenerator(),
                "clip": ClipEmbedder(),
                "catalog": catalog or catalog_beside(storage),
                "vision_tagger": VisionTagger(),
            }),
            selection=selection,
            raise_on_error=False,
        )
