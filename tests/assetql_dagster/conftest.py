import shutil
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fantasy-items"


def make_batch(root: Path, rows: int = 4, variations: int = 1, references: bool = True, name: str = "demo") -> Path:
    """A copy of the sample batch cut down to `rows` rows, for fast runs on the tiny models."""
    folder = root / name
    folder.mkdir(parents=True)
    lines = (EXAMPLE / "batch.csv").read_text().splitlines()
    (folder / "batch.csv").write_text("\n".join(lines[: rows + 1]) + "\n")
    settings = (EXAMPLE / "batch.yaml").read_text()
    settings = settings.replace("name: fantasy-items", f"name: {name}")
    settings = settings.replace("variations: 2", f"variations: {variations}").replace("steps: 4", "steps: 2")
    (folder / "batch.yaml").write_text(settings)
    if references:
        shutil.copytree(EXAMPLE / "references", folder / "references")
    return folder


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
