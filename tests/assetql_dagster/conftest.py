import shutil
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest
from harness.sample_batches import make_batch

@pytest.fixture
def batch_factory(tmp_path):
    def factory(**kwargs) -> Path:
        return make_batch(tmp_path / "inbox", **kwargs)

    return factory


@pytest.fixture
def postgres_instance(postgres_url, tmp_path, monkeypatch):
    """A DagsterInstance from the repository's production dagster.yaml, on the session's PostgreSQL."""
    url = urlsplit(postgres_url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name, value in [("USER", url.username), ("PASSWORD", "unused-with-trust-auth"), ("HOST", url.hostname),
                        ("DB", url.path.lstrip("/")), ("PORT", str(url.port))]:
        monkeypatch.setenv(f"ASSETQL_PG_{name}", value)
    with dg.DagsterInstance.get() as instance:
        yield instance
