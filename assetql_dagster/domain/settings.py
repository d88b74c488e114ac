"""Per-batch settings (`batch.yaml`): fields, defaults, ranges and YAML loading."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from assetql_dagster.domain.errors import BatchValidationError, Problem
from assetql_dagster.domain.export_writers import EXPORT_FORMATS
from assetql_dagster.domain.links import parse_expiry
from assetql_dagster.domain.naming import BUILTIN_PLACEHOLDERS, DEFAULT_PATTERN

# Batch names and variant ids end up in file names and storage keys.
_IDENTIFIER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

SETTINGS_DOC: dict[str, str] = {
    "name": "Batch name used in file and storage names (letters, digits, '.', '_', '-'; at most 64). "
    "Default: the batch folder name, or the CSV file name without extension.",
    "description": "Free text describing the batch. Default: empty.",
    "template": "Prompt template filled from CSV columns, e.g. '{subject}, {style|flat art}"
    '{{if category == "character"}}, full body shot{{endif}}\'. '
    "Default: none, the CSV 'prompt' column is the prompt.",
    "negative_prompt": "What the images must not show. Default: empty.",
    "modifiers": "Seasonal or campaign modifiers appended to every prompt after ', ' "
    "(text, or a YAML list of texts joined with ', '). Default: empty.",
    "model": "Image model: a hub id, a local model folder, or 'tiny' for the built-in test model. "
    "Default: tiny.",
    "width": "Image width in pixels, a multiple of 8 from 64 to 2048. Default: the model's native size.",
    "height": "Image height in pixels, a multiple of 8 from 64 to 2048. Default: the model's native size.",
    "steps": "Denoising steps, 1 to 150. Default: 20.",
    "guidance_scale": "Classifier-free guidance scale, 0 to 30. Default: 7.5.",
    "variations": "Images generated per CSV row, 1 to 8. Default: 1.",
    "seed": "Base random seed, 0 to 4294967295; the same seed reproduces the same images. Default: 0.",
    "max_rows": "Largest number of CSV data rows accepted, 1 to 10000. Default: 500.",
    "style_threshold": "Style score, 0 to 1, at or above which an image passes (else it needs review). "
    "Default: 0.85.",
    "min_pass_rate": "Share of images, 0 to 1, that must pass the style threshold for the batch check "
    "to pass. Default: 0.85.",
    "min_completion_rate": "Share of planned images, 0 to 1, that must be generated for the batch check "
    "to pass. Default: 0.95.",
    "naming_pattern": "File name pattern using "
    + ", ".join(f"{{{name}}}" for name in sorted(BUILTIN_PLACEHOLDERS))
    + " and any extra CSV column (checked against the CSV header). "
    f"Default: {DEFAULT_PATTERN}.",
    "shard_size": "Images per generation shard (one executor step each), 1 to 500. Default: 25.",
    "micro_batch": "Images per model call, 1 to 64, or 'auto' to fit the accelerator's memory. "
    "Default: auto.",
    "exports": "What the export writes, a list among "
    + ", ".join(EXPORT_FORMATS)
    + " (zip: the package with images, manifests and gallery; manifest: standalone manifest.csv/json; "
    "gallery: standalone gallery.html; links: links.csv/json). Default: all of them.",
    "link_expiry": "Lifetime of the shareable image links in the export's links manifest: seconds or "
    "a number with unit s, m, h or d, from 1h to 7d (the SigV4 limit of S3 presigned URLs). "
    "Default: 7d.",
}


def identifier_error(value: str, what: str) -> str | None:
    """Why `value` cannot name a batch or variant in file names, or None when it can."""
    if _IDENTIFIER_RE.fullmatch(value):
        return None
    return (
        f"{what} {value!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter "
        "or digit, because it becomes part of file names"
    )


def _text(value: object, optional: bool = False, allow_empty: bool = True) -> str | None:
    if optional and value is None:
        return None
    if isinstance(value, str) and (allow_empty or value.strip()):
        return None
    expected = "non-empty text" if not allow_empty else "text"
    if isinstance(value, dict):
        # An unquoted YAML value starting with '{' (as templates do) is read as a mapping.
        return f"must be {expected}, got a mapping; put the value in quotes in YAML"
    return f"must be {expected}{' or omitted' if optional else ''}, got {value!r}"


def _integer(
    low: int, high: int, multiple: int = 1, optional: bool = False
) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if optional and value is None:
            return None
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        if ok and value % multiple == 0:
            return None
        step = f" that is a multiple of {multiple}" if multiple > 1 else ""
        omit = " (or omitted for the model's native size)" if optional else ""
        return f"must be an integer from {low} to {high}{step}{omit}, got {value!r}"

    return check


def _number(low: float, high: float) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            if low <= value <= high:
                return None
        return f"must be a number from {low:g} to {high:g}, got {value!r}"

    return check


def _name(value: object) -> str | None:
    if value is None:
        return None
    return _text(value) or identifier_error(value, "name")


def _link_expiry(value: object) -> str | None:
    try:
        parse_expiry(value)
    except ValueError as error:
        # "8d" is reported in seconds by parse_expiry; echo what the user wrote too.
        return f"{error} (got {value!r})" if isinstance(value, str) else str(error)
    return None


def exports_error(value: object) -> str | None:
    """Why `value` is not a valid `exports` list, or None."""
    if not isinstance(value, (list, tuple)) or not value:
        return f"must be a non-empty list among {list(EXPORT_FORMATS)}, got {value!r}"
    unknown = [v for v in value if v not in EXPORT_FORMATS]
    if unknown:
        return f"unknown export(s) {unknown}; expected among {list(EXPORT_FORMATS)}"
    if len(set(value)) != len(value):
        return f"lists an export more than once: {list(value)!r}"
    return None


def _micro_batch(value: object) -> str | None:
    if value == "auto" or _integer(1, 64)(value) is None:
        return None
    return f"must be 'auto' or an integer from 1 to 64, got {value!r}"


_CHECKS: dict[str, Callable[[object], str | None]] = {
    "name": _name,
    "description": _text,
    "template": lambda v: _text(v, optional=True, allow_empty=False),
    "negative_prompt": _text,
    "modifiers": _text,
    "model": lambda v: _text(v, allow_empty=False),
    "width": _integer(64, 2048, multiple=8, optional=True),
    "height": _integer(64, 2048, multiple=8, optional=True),
    "steps": _integer(1, 150),
    "guidance_scale": _number(0, 30),
    "variations": _integer(1, 8),
    "seed": _integer(0, 2**32 - 1),
    "max_rows": _integer(1, 10_000),
    "style_threshold": _number(0, 1),
    "min_pass_rate": _number(0, 1),
    "min_completion_rate": _number(0, 1),
    # Placeholders depend on the CSV columns, so read_batch_csv checks the pattern itself.
    "naming_pattern": lambda v: _text(v, allow_empty=False),
    "shard_size": _integer(1, 500),
    "micro_batch": _micro_batch,
    "exports": exports_error,
    "link_expiry": _link_expiry,
}


@dataclass(frozen=True)
class BatchSettings:
    """Validated settings of one batch; see SETTINGS_DOC for each field."""

    name: str | None = None
    description: str = ""
    template: str | None = None
    negative_prompt: str = ""
    modifiers: str = ""
    model: str = "tiny"
    width: int | None = None
    height: int | None = None
    steps: int = 20
    guidance_scale: float = 7.5
    variations: int = 1
    seed: int = 0
    max_rows: int = 500
    style_threshold: float = 0.85
    min_pass_rate: float = 0.85
    min_completion_rate: float = 0.95
    naming_pattern: str = DEFAULT_PATTERN
    shard_size: int = 25
    micro_batch: int | str = "auto"
    exports: tuple[str, ...] = EXPORT_FORMATS
    link_expiry: int | str = "7d"

    def __post_init__(self) -> None:
        # Validating here too keeps `dataclasses.replace` overrides as strict as batch.yaml.
        problems = [Problem("settings", message, column=field) for field, message in _errors(vars(self))]
        if problems:
            raise BatchValidationError(problems)
        for field in ("guidance_scale", "style_threshold", "min_pass_rate", "min_completion_rate"):
            object.__setattr__(self, field, float(getattr(self, field)))
        # YAML and JSON give lists; a tuple keeps the frozen settings hashable.
        object.__setattr__(self, "exports", tuple(self.exports))

    def to_dict(self) -> dict[str, object]:
        """JSON-safe field values; `settings_from_dict` reverses it."""
        return dataclasses.asdict(self)


def _errors(values: Mapping[str, object]) -> Iterator[tuple[str, str]]:
    for field, value in values.items():
        message = _CHECKS[field](value)
        if message:
            yield field, message


def _unknown_key_message(key: object) -> str:
    close = difflib.get_close_matches(str(key), _CHECKS, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown setting {str(key)!r}; {hint}allowed settings: {', '.join(_CHECKS)}"


def _collect(
    data: Mapping[object, object], file: str, lines: Mapping[str, int] | None = None
) -> tuple[BatchSettings, list[Problem]]:
    """Settings from the valid entries of `data` (defaults elsewhere) and a problem per invalid one."""
    lines = lines or {}
    valid: dict[str, object] = {}
    problems: list[Problem] = []
    for key, value in data.items():
        row = lines.get(key) if isinstance(key, str) else None
        if key not in _CHECKS:
            problems.append(Problem(file, _unknown_key_message(key), row, str(key)))
            continue
        if key == "modifiers" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = ", ".join(v.strip() for v in value if v.strip())
        message = _CHECKS[key](value)
        if message:
            problems.append(Problem(file, message, row, key))
        else:
            valid[key] = value
    return BatchSettings(**valid), problems


def parse_settings(data: Mapping[object, object], file: str) -> BatchSettings:
    """Settings from a mapping, raising BatchValidationError listing every invalid entry."""
    settings, problems = _collect(data, file)
    if problems:
        raise BatchValidationError(problems)
    return settings


def settings_from_dict(data: Mapping[str, object]) -> BatchSettings:
    """Inverse of `BatchSettings.to_dict`."""
    return parse_settings(data, "settings")


def read_settings(path: Path | None) -> tuple[BatchSettings, list[Problem]]:
    """Best-effort settings from a YAML file plus every problem found in it.

    Invalid entries fall back to their defaults, so callers can keep checking the rest of a
    batch and report all problems together. A missing file (or None) means all defaults.
    """
    if path is None or not path.exists():
        return BatchSettings(), []
    file = path.name
    try:
        raw = path.read_bytes()
    except OSError as error:
        return BatchSettings(), [Problem(file, f"cannot be read: {error.strerror or error}")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        return BatchSettings(), [Problem(file, "not valid UTF-8; save the file as UTF-8", line)]
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        detail = "; ".join(filter(None, (error.context, error.problem)))
        column = f" column {mark.column + 1}" if mark else ""
        row = mark.line + 1 if mark else None
        return BatchSettings(), [Problem(file, f"invalid YAML at{column}: {detail}", row)]
    except yaml.YAMLError as error:
        return BatchSettings(), [Problem(file, f"invalid YAML: {error}")]
    finally:
        loader.dispose()
    if data is None:
        return BatchSettings(), []
    if not isinstance(data, dict):
        message = f"must be a mapping of 'setting: value' lines, got {type(data).__name__}"
        return BatchSettings(), [Problem(file, message, node.start_mark.line + 1)]
    lines, duplicates = _key_lines(node, file)
    settings, problems = _collect(data, file, lines)
    return settings, duplicates + problems


def _key_lines(node: yaml.MappingNode, file: str) -> tuple[dict[str, int], list[Problem]]:
    """Line of each top-level key's last occurrence, and a problem per repeated key."""
    first: dict[str, int] = {}
    lines: dict[str, int] = {}
    problems: list[Problem] = []
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode):
            continue
        line = key.start_mark.line + 1
        if key.value in first:
            message = f"setting is written again (first on row {first[key.value]}); YAML keeps the last one"
            problems.append(Problem(file, message, line, key.value))
        first.setdefault(key.value, line)
        lines[key.value] = line
    return lines, problems


def load_settings(path: Path | None) -> BatchSettings:
    """Settings from a YAML file (defaults when None or missing), raising BatchValidationError."""
    settings, problems = read_settings(path)
    if problems:
        raise BatchValidationError(problems)
    return settings
