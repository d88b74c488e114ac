"""Validation problems that point at the exact file, row and column a user must fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a batch input. `row` is the 1-based line number in the file
    (the header is line 1), `column` the CSV column or settings field; both may be None
    when the problem concerns the whole file."""

    file: str
    message: str
    row: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.column is not None:
            where += f", column '{self.column}'"
        return f"{where}: {self.message}"


class BatchValidationError(ValueError):
    """Raised with every problem found, so a user can fix them all in one pass."""

    def __init__(self, problems: list[Problem]):
        if not problems:
            raise ValueError("BatchValidationError needs at least one problem")
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in batch input:\n{lines}")
