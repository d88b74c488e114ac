"""Load a batch (CSV, optional settings, optional style references) and validate all of it at once.

A batch is either a folder holding `batch.csv`, optionally `batch.yaml` and `references/`, or
a CSV file whose folder may hold `batch.yaml` and `references/` next to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from assetql_dagster.domain.csv_schema import BatchRow, read_batch_csv
from assetql_dagster.domain.errors import BatchValidationError, Problem
from assetql_dagster.domain.settings import BatchSettings, identifier_error, read_settings

CSV_NAME = "batch.csv"
SETTINGS_NAME = "batch.yaml"
REFERENCES_DIR = "references"
REFERENCE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
MAX_REFERENCES = 5
MAX_REFERENCE_BYTES = 10_000_000
MIN_REFERENCE_SIDE = 16


@dataclass(frozen=True)
class BatchSource:
    """A validated batch and a hash of every input file, to tell re-uploads from changes."""

    name: str
    csv_path: Path
    settings_path: Path | None
    reference_paths: tuple[Path, ...]
    rows: tuple[BatchRow, ...]
    settings: BatchSettings
    content_hash: str


@dataclass(frozen=True)
class _Layout:
    csv_path: Path
    settings_path: Path | None
    references_dir: Path
    default_name: str


def load_batch(path: Path) -> BatchSource:
    """Validate the batch at `path`, raising BatchValidationError listing every problem."""
    path = Path(path)
    layout = _layout(path)
    settings, problems = read_settings(layout.settings_path)
    settings_file = layout.settings_path.name if layout.settings_path else SETTINGS_NAME
    rows = _read_rows(layout.csv_path, settings, settings_file, problems)
    references, reference_problems = check_references(layout.references_dir)
    problems += reference_problems
    name = settings.name or layout.default_name
    # A rejected `name` setting is already reported; do not also blame the folder name.
    invalid_name = identifier_error(name, "batch name")
    if invalid_name and not any(p.column == "name" for p in problems):
        problems.append(Problem(path.name, f"{invalid_name}; rename it or set 'name' in {settings_file}"))
    if problems:
        raise BatchValidationError(problems)
    files = {"csv": layout.csv_path, **{f"{REFERENCES_DIR}/{p.name}": p for p in references}}
    if layout.settings_path:
        files["settings"] = layout.settings_path
    return BatchSource(
        name=name,
        csv_path=layout.csv_path,
        settings_path=layout.settings_path,
        reference_paths=tuple(references),
        rows=tuple(rows),
        settings=settings,
        content_hash=compute_content_hash(files),
    )


def _read_rows(
    csv_path: Path, settings: BatchSettings, settings_file: str, problems: list[Problem]
) -> list[BatchRow]:
    """The CSV's rows, or none after adding its problems to `problems`."""
    if not csv_path.is_file():
        problems.append(_missing_csv_problem(csv_path))
        return []
    try:
        return read_batch_csv(csv_path, settings, settings_file=settings_file)
    except BatchValidationError as error:
        problems += error.problems
        return []


def _layout(path: Path) -> _Layout:
    """Where the CSV, settings and references of the batch at `path` are."""
    if path.is_dir():
        folder, csv_path, default_name = path, path / CSV_NAME, path.name
    elif path.is_file() and path.suffix.lower() == ".csv":
        folder, csv_path, default_name = path.parent, path, path.stem
    elif path.exists():
        raise BatchValidationError([Problem(path.name, "expected a batch folder or a .csv file")])
    else:
        message = f"{path} does not exist; expected a batch folder containing {CSV_NAME} or a .csv file"
        raise BatchValidationError([Problem(str(path), message)])
    settings_path = folder / SETTINGS_NAME
    settings = settings_path if settings_path.exists() else None
    return _Layout(csv_path, settings, folder / REFERENCES_DIR, default_name)


def _missing_csv_problem(csv_path: Path) -> Problem:
    others = sorted(p.name for p in csv_path.parent.iterdir() if p.suffix.lower() == ".csv")
    hint = f" (found {', '.join(others)}; rename the one to use)" if others else ""
    return Problem(CSV_NAME, f"the batch folder has no {CSV_NAME}{hint}")


def check_references(folder: Path) -> tuple[list[Path], list[Problem]]:
    """The style reference images in `folder` (sorted by name) and a problem per unusable one."""
    if not folder.exists():
        return [], []
    if not folder.is_dir():
        return [], [Problem(REFERENCES_DIR, "must be a folder of reference images")]
    # Hidden files are OS clutter (.DS_Store), not references.
    entries = sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
    problems = [problem for entry in entries if (problem := _reference_problem(entry)) is not None]
    if len(entries) > MAX_REFERENCES:
        message = f"{len(entries)} files, more than the limit of {MAX_REFERENCES} style references"
        problems.insert(0, Problem(f"{REFERENCES_DIR}/", message))
    return entries, problems


def _reference_problem(path: Path) -> Problem | None:
    file = f"{REFERENCES_DIR}/{path.name}"
    if path.is_dir():
        return Problem(file, f"is a folder; {REFERENCES_DIR}/ may only contain image files")
    if path.suffix.lower() not in REFERENCE_EXTENSIONS:
        allowed = ", ".join(REFERENCE_EXTENSIONS)
        return Problem(file, f"unsupported file type '{path.suffix or path.name}'; use {allowed}")
    # Size first: an oversized file is rejected without decoding it.
    size = path.stat().st_size
    if size > MAX_REFERENCE_BYTES:
        return Problem(file, f"file is {size:,} bytes, over the limit of {MAX_REFERENCE_BYTES:,} bytes")
    try:
        with Image.open(path) as image:
            image.verify()
        # verify() leaves the image unusable and skips pixel data; a full decode catches truncation.
        with Image.open(path) as image:
            image.load()
            width, height = image.size
    except Exception as error:  # Pillow raises many unrelated types (OSError, SyntaxError, struct.error...)
        return Problem(file, f"cannot be read as an image ({error}); re-export it as PNG or JPEG")
    if min(width, height) < MIN_REFERENCE_SIDE:
        message = f"image is {width}x{height} px; both sides must be at least {MIN_REFERENCE_SIDE} px"
        return Problem(file, message)
    return None


def compute_content_hash(files: Mapping[str, Path]) -> str:
    """sha256 hex over each labelled file's label, size and bytes, in label order."""
    digest = hashlib.sha256()
    for label in sorted(files):
        path = files[label]
        # Label and size frame each file, so moving bytes between files changes the hash.
        digest.update(f"{label}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()
