"""One real tiny batch, run through the whole graph and catalogued, for every library test; and a
library app over it with a test Dagster instance, API tokens for each role and a trusted proxy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dagster as dg
import pytest
from harness.batch_runs import catalog_beside, materialize_partition
from harness.library_people import PEOPLE, PROXY, ROLES, library_config, person
from harness.sample_batches import make_batch
from starlette.testclient import TestClient

from assetql_dagster.library.app import create_app
from assetql_dagster.defs.launching import InstanceLauncher
from assetql_dagster.pipeline.registration import register_batch
from resources.catalog import AssetCatalog
from resources.clip import ClipEmbedder
from resources.generator import ImageGenerator
from resources.storage import LocalStorage


@dataclasses.dataclass(frozen=True)
class World:
    storage: LocalStorage
    catalog: AssetCatalog
    key: str  # the batch that was run
    root: Path


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    """A 3-row batch (1 variation) made by the real pipeline on the tiny models, catalogued."""
    root = tmp_path_factory.mktemp("library")
    storage = LocalStorage(root=str(root / "data"))
    key = register_batch(storage, make_batch(root / "inbox", rows=3), creator=PEOPLE["creator"]).key
    assert materialize_partition(storage, key).success
    catalog = catalog_beside(storage)
    catalog.migrate()  # the library's tables
    return World(storage, catalog, key, root)


@pytest.fixture(scope="module")
def instance():
    """A throwaway Dagster instance that starts submitted runs at once (no queue, so no daemon)."""
    coordinator = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}
    with dg.instance_for_test(overrides={"run_coordinator": coordinator}) as instance:
        yield instance


@pytest.fixture(scope="module")
def launcher(world, instance):
    """Launches runs on `instance` whose code location uses the world's storage and catalog."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ASSETQL_DATA_DIR", world.storage.root)
        env.setenv("ASSETQL_CATALOG_URL", world.catalog.url)
        with InstanceLauncher(instance, working_directory=str(world.root)) as launcher:
            yield launcher


@pytest.fixture(scope="module")
def app(world, launcher, tmp_path_factory):
    return create_app(library_config(), world.storage, world.catalog, launcher, ClipEmbedder(),
                      generator=ImageGenerator(), uploads=tmp_path_factory.mktemp("uploads"), secret="test-secret")


@pytest.fixture(scope="module")
def client(app) -> TestClient:
    """Requests from the trusted proxy's address."""
    return TestClient(app, client=(PROXY, 40000))


@pytest.fixture(scope="module")
def browsers(app) -> dict[str, TestClient]:
    """One browser per role, signed in through the trusted proxy, each with its own cookies."""
    return {role: TestClient(app, client=(PROXY, 41000 + i), headers=person(role)) for i, role in enumerate(ROLES)}
