"""Running one batch partition in process on tiny models, as the asset tests need it."""

import time
from pathlib import Path

import dagster as dg

from assetql_dagster.definitions import defs, with_io_manager
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.pipeline.launching import RunInfo
from resources.catalog import AssetCatalog, sqlite_url_beside
from resources.clip import ClipEmbedder
from resources.cms import CmsConnections
from resources.translator import AwsTranslate
from resources.generator import ImageGenerator
from resources.vision_tagger import VisionTagger


def catalog_beside(storage) -> AssetCatalog:
    """A catalog in an SQLite file next to a local storage root (`{root}-catalog/catalog.sqlite3`)."""
    root = Path(getattr(storage, "root", "data")).resolve()
    return AssetCatalog(url=sqlite_url_beside(root.with_name(f"{root.name}-catalog")))


def materialize_partition(storage, key, generator=None, selection=None, catalog=None,
                          instance=None, run_config=None, cms=None, assets=None) -> dg.ExecuteInProcessResult:
    """Every asset and check of partition `key` (or `selection`) on `instance` (default: a throwaway
    one); the catalog is `catalog` or `catalog_beside(storage)`, CMS connections `cms` or none; the
    assets are the code location's, or `assets` (those of a `build_definitions()` under another env)."""
    if instance is None:
        with dg.instance_for_test() as throwaway:
            return materialize_partition(storage, key, generator, selection, catalog, throwaway, run_config, cms,
                                         assets)
    instance.add_dynamic_partitions(batches_partitions.name, [key])
    return dg.materialize(
        list(assets or defs.assets),
        partition_key=key,
        instance=instance,
        resources=with_io_manager({
            "storage": storage,
            "generator": generator or ImageGenerator(),
            "clip": ClipEmbedder(),
            "catalog": catalog or catalog_beside(storage),
            "vision_tagger": VisionTagger(), "cms": cms or CmsConnections(), "aws_translate": AwsTranslate(),
        }),
        selection=selection,
        run_config=run_config,
        raise_on_error=False,
    )


@dg.op
def noop() -> None:
    pass


@dg.job
def stand_in():
    """A run that only its tags matter for, such as a sensor's or the registration's."""
    noop()


def finished_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> dg.ExecuteInProcessResult:
    """A successful run recorded on `instance` with `tags`."""
    return stand_in.execute_in_process(instance=instance, tags=tags)


class InProcessLauncher:
    """A `RunLauncher` that runs each launch at once, in process on the tiny models
    (`materialize_partition`), and remembers the launches and each batch's latest run."""

    def __init__(self, storage, catalog=None):
        self.storage, self.catalog = storage, catalog
        self.partitions: set[str] = set()
        self.launches: list[tuple[str, tuple[str, ...] | None, str | None]] = []
        self.runs: dict[str, RunInfo] = {}

    def add_partition(self, key: str) -> None:
        self.partitions.add(key)

    def launch(self, key: str, assets=None, origin=None, priority: int = 0) -> str:
        assert key in self.partitions, f"{key} launched before its partition was added"
        started = time.time()
        result = materialize_partition(self.storage, key, selection=list(assets) if assets else None, catalog=self.catalog)
        self.launches.append((key, tuple(assets) if assets else None, origin))
        self.runs[key] = RunInfo(result.run_id, "SUCCESS" if result.success else "FAILURE", started, time.time())
        return result.run_id

    def latest_run(self, key: str) -> RunInfo | None:
        return self.runs.get(key)

    def generation_samples(self, limit: int = 20) -> list:
        return []
