"""Writing a batch CSV and collecting the problems `read_batch_csv` reports for it."""

import pytest

from assetql_dagster.domain.csv_schema import read_batch_csv
from assetql_dagster.domain.errors import BatchValidationError, Problem
from assetql_dagster.domain.settings import BatchSettings


def write_csv(tmp_path, content: str | bytes, name: str = "batch.csv"):
    """`content` written to `tmp_path / name` (text as UTF-8)."""
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def problems_of(path, settings: BatchSettings = BatchSettings(), **kwargs) -> list[Problem]:
    """The problems of the BatchValidationError that reading `path` must raise."""
    with pytest.raises(BatchValidationError) as caught:
        read_batch_csv(path, settings, **kwargs)
    return caught.value.problems


def where(problems: list[Problem]) -> list[tuple[str, int | None, str | None]]:
    """(file, row, column) of each problem, in order."""
    return [(p.file, p.row, p.column) for p in problems]
