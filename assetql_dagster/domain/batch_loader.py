"""Load a batch (CSV, optional settings, optional style references) and validate all of it at once.

A batch is either a folder holding `batch.csv`, optionally `batch.yaml` and `references/`, or
a CSV file whose folder may hold `batch.yaml` and `references/` next to it.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from assetql_dagster.domain.csv_schema import BatchRow, read_batch_csv
from assetql_dagster.domain.errors import BatchValidationError, Problem
from assetql_dagster.domain.safe_files import file_problem, folder_problem, name_component_problem
from assetql_dagster.domain.settings import BatchSettings, identifier_error, read_settings

CSV_NAME = "batch.csv"
SETTINGS_NAME = "batch.yaml"
REFERENCES_DIR = "references"
REFERENCE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
MAX_REFERENCES = 5
MAX_REFERENCE_BYTES = 10_000_000
MIN_REFERENCE_SIDE = 16
# Read from the image header before any decode: a small file can declare a huge canvas.
MAX_REFERENCE_PIXELS = 40_000_000


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
    root: Path  # the batch folder, resolved; no input may be read from outside it


def load_batch(path: Path, missing_model: Callable[[str], str | None] | None = None) -> BatchSource:
    """Validate the batch at `path`, raising BatchValidationError listing every problem.

    `missing_model`, when given, says why the `model` setting names nothing loadable (or None).
    """
    path = Path(path)
    layout = _layout(path)
    settings_problem = layout.settings_path and file_problem(layout.settings_path, layout.root, "a YAML file")
    if settings_problem:
        settings, problems = BatchSettings(), [Problem(layout.settings_path.name, settings_problem)]
    else:
        settings, problems = read_settings(layout.settings_path)
    settings_file = layout.settings_path.name if layout.settings_path else SETTINGS_NAME
    rows = _read_rows(layout.csv_path, layout.root, settings, settings_file, problems)
    references, reference_problems = check_references(layout.references_dir, layout.root)
    problems += reference_problems
    if missing_model is not None and not any(p.column == "model" for p in problems):
        model_problem = missing_model(settings.model)
        if model_problem:
            problems.append(Problem(settings_file, model_problem, column="model"))
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
    csv_path: Path, root: Path, settings: BatchSettings, settings_file: str, problems: list[Problem]
) -> list[BatchRow]:
    """The CSV's rows, or none after adding its problems to `problems`."""
    if not csv_path.exists() and not csv_path.is_symlink():
        problems.append(_missing_csv_problem(csv_path))
        return []
    if csv_path.is_dir():
        problems.append(Problem(csv_path.name, f"{csv_path.name} is a folder, expected a CSV file"))
        return []
    unusable = file_problem(csv_path, root, "a CSV file")
    if unusable:
        problems.append(Problem(csv_path.name, unusable))
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
    # A dangling link is still reported: it is a batch.yaml the user meant to supply.
    settings = settings_path if settings_path.exists() or settings_path.is_symlink() else None
    return _Layout(csv_path, settings, folder / REFERENCES_DIR, default_name, folder.resolve())


def _missing_csv_problem(csv_path: Path) -> Problem:
    others = sorted(p.name for p in csv_path.parent.iterdir() if p.suffix.lower() == ".csv")
    hint = f" (found {', '.join(others)}; rename the one to use)" if others else ""
    return Problem(CSV_NAME, f"the batch folder has no {CSV_NAME}{hint}")


def check_references(folder: Path, root: Path | None = None) -> tuple[list[Path], list[Problem]]:
    """The style reference images in `folder` (sorted by name) and a problem per unusable one.

    Nothing outside `root` (default: the folder holding `folder`) is read.
    """
    if not folder.exists() and not folder.is_symlink():
        return [], []
    root = (root or folder.parent).resolve()
    outside = folder_problem(folder, root)
    if outside:
        return [], [Problem(f"{REFERENCES_DIR}/", outside)]
    if not folder.is_dir():
        return [], [Problem(REFERENCES_DIR, "must be a folder of reference images")]
    # Hidden files are OS clutter (.DS_Store), not references.
    entries = sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
    problems = [problem for entry in entries if (problem := _reference_problem(entry, root)) is not None]
    if len(entries) > MAX_REFERENCES:
        message = f"{len(entries)} files, more than the limit of {MAX_REFERENCES} style references"
        problems.insert(0, Problem(f"{REFERENCES_DIR}/", message))
    return entries, problems


def _reference_problem(path: Path, root: Path) -> Problem | None:
    bad_name = name_component_problem(path.name)
    if bad_name:
        return Problem(f"{REFERENCES_DIR}/", bad_name)
    file = f"{REFERENCES_DIR}/{path.name}"
    if path.is_dir() and not path.is_symlink():
        return Problem(file, f"is a folder; {REFERENCES_DIR}/ may only contain image files")
    if path.suffix.lower() not in REFERENCE_EXTENSIONS:
        allowed = ", ".join(REFERENCE_EXTENSIONS)
        return Problem(file, f"unsupported file type '{path.suffix or path.name}'; use {allowed}")
    unusable = file_problem(path, root, "an image file")
    if unusable:
        return Problem(file, unusable)
    # Size first: an oversized file is rejected without decoding it.
    size = path.stat().st_size
    if size > MAX_REFERENCE_BYTES:
        return Problem(file, f"file is {size:,} bytes, over the limit of {MAX_REFERENCE_BYTES:,} bytes")
    try:
        # open() reads only the header. Pillow's own bomb limit (Image.MAX_IMAGE_PIXELS) warns or
        # raises on its own scale; the check below does not depend on it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError as error:
        message = f"image is too large to open ({error}); the limit is {MAX_REFERENCE_PIXELS:,} pixels"
        return Problem(file, message)
    except Exception as error:  # Pillow raises many unrelated types (OSError, SyntaxError, struct.error...)
        return Problem(file, f"cannot be read as an image ({error}); re-export it as PNG or JPEG")
    if width * height > MAX_REFERENCE_PIXELS:
        message = (
            f"image is {width}x{height} px ({width * height:,} pixels), over the limit of "
            f"{MAX_REFERENCE_PIXELS:,} pixels; scale it down"
        )
        return Problem(file, message)
    try:
        with Image.open(path) as image:
            image.verify()
        # verify() leaves the image unusable and skips pixel data; a decode catches truncation.
        # Only truncation matters, not the pixels: a JPEG decodes at reduced scale (still reading
        # every byte of its data); draft() does nothing for other formats. The header size stands.
        with Image.open(path) as image:
            image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
            image.load()
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
