"""The batch CSV: one row per asset to generate, validated all at once.

Row numbers in problems are physical line numbers (header = 1); a record whose quoted field
spans several lines is reported at the line where it starts.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import io
import os
import re
import stat
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from assetql_dagster.domain.errors import BatchValidationError, Problem
from assetql_dagster.domain.languages import DEFAULT_KEY, DEFAULT_LANGUAGE, LANGUAGES, per_language
from assetql_dagster.domain.naming import available_placeholders, validate_pattern
from assetql_dagster.domain.settings import BatchSettings, identifier_error
from assetql_dagster.domain.templating import (
    MissingVariableError,
    RenderError,
    Template,
    TemplateError,
    collapse_whitespace,
    compile_template,
)

KNOWN_COLUMNS = ("variant_id", "prompt", "category", "sku", "language")
_QUOTE_TIP = 'write a quote inside a quoted field as ""'
# C0 control characters and DEL, except the whitespace a spreadsheet legitimately writes: tab
# (whitespace that prompts collapse and ids reject anyway), and CR and LF (they end rows and may
# appear in a quoted multi-line cell).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class BatchRow:
    """One validated CSV record; `extra` holds every column not in KNOWN_COLUMNS."""

    line: int
    variant_id: str
    prompt: str
    category: str
    sku: str
    language: str
    extra: dict[str, str] = field(default_factory=dict)

    def template_values(self) -> dict[str, str]:
        """Every column of the row by name, as a template sees them."""
        known = {name: getattr(self, name) for name in KNOWN_COLUMNS}
        return {SEASON_VARIABLE: "", **known, **self.extra}


# A template variable that is no CSV column: the season's modifiers, placed where the template wants
# them (else they are appended to the prompt).
SEASON_VARIABLE = "season_modifier"


@dataclass(frozen=True)
class BatchTemplates:
    """The batch's compiled templates: one, or one per language (key as in the `template` setting)."""

    by_key: Mapping[str, Template]
    single: bool

    def key_for(self, language: str) -> str | None:
        """Which template a row in `language` takes: "" (the only one), its language, `default` or `en`."""
        return "" if self.single else per_language({k: k for k in self.by_key}, language)

    def for_language(self, language: str) -> Template | None:
        """The template of a row in `language` (the row's own, else `default`, else `en`)."""
        key = self.key_for(language)
        return None if key is None else self.by_key[key]

    @property
    def required_variables(self) -> frozenset[str]:
        """Columns some template needs without a default (the header must have them)."""
        return frozenset().union(*(t.required_variables for t in self.by_key.values())) - {SEASON_VARIABLE}


def batch_template(settings: BatchSettings) -> BatchTemplates | None:
    """The compiled prompt templates of `settings`, or None when prompts come from the CSV."""
    if settings.template is None:
        return None
    if isinstance(settings.template, str):
        return BatchTemplates({"": compile_template(settings.template)}, single=True)
    compiled = {}
    for key, text in settings.template:
        try:
            compiled[key] = compile_template(text)
        except TemplateError as error:
            raise TemplateError(f"template for {key!r}: {error.message}", error.position) from None
    return BatchTemplates(compiled, single=False)


def read_batch_csv(
    path: Path, settings: BatchSettings, max_bytes: int = 5_000_000, settings_file: str = "batch.yaml"
) -> list[BatchRow]:
    """Parse and validate a batch CSV, raising BatchValidationError with every problem found."""
    file = path.name
    problems: list[Problem] = []
    template = _template(settings, settings_file, problems)
    text = _decode(path, file, max_bytes, problems)
    known = len(problems)
    records = _records(text, file, problems) if text is not None else []
    # A record lost to malformed quoting is reported as such, not as a missing row.
    malformed = len(problems) > known
    if not records:
        if text is not None and not malformed:
            message = "file is empty; expected a header row naming at least 'variant_id' and 'prompt'"
            problems.append(Problem(file, message, 1))
        raise BatchValidationError(problems)
    (header_line, header), data = records[0], records[1:]
    problems += _header_problems(header, header_line, file, template)
    problems += _naming_problems(settings, header, settings_file)
    if data or not malformed:
        problems += _count_problems(data, file, settings, settings_file, header_line)
    rows = _rows(data, header, file, problems)
    problems += _content_problems(rows, file, template, _usable_columns(header))
    if problems:
        raise BatchValidationError(problems)
    return rows


def _template(settings: BatchSettings, settings_file: str, problems: list[Problem]) -> BatchTemplates | None:
    try:
        return batch_template(settings)
    except TemplateError as error:
        problems.append(Problem(settings_file, str(error), column="template"))
        return None


def _decode(path: Path, file: str, max_bytes: int, problems: list[Problem]) -> str | None:
    """The file's text without BOM, or None after recording why it cannot be read."""
    # stat() first: a FIFO or device must never be opened (it can block or never end).
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        problems.append(Problem(file, "is not a regular file; expected a CSV file"))
        return None
    size = info.st_size
    if size > max_bytes:
        message = f"file is {size:,} bytes, larger than the limit of {max_bytes:,} bytes; split the batch"
        problems.append(Problem(file, message))
        return None
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew after stat()
        message = f"file is larger than the limit of {max_bytes:,} bytes; split the batch"
        problems.append(Problem(file, message))
        return None
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        message = f"not valid UTF-8 (byte 0x{data[error.start]:02x}); save the file as 'CSV UTF-8'"
        problems.append(Problem(file, message, line))
        return None


def _records(text: str, file: str, problems: list[Problem]) -> list[tuple[int, list[str]]]:
    """Non-blank records as (starting line, stripped cells), recording malformed quoting."""
    lines = io.StringIO(text, newline="").readlines()
    reader = csv.reader(lines, strict=True)
    records: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return records
        except csv.Error as error:
            problems.append(_quoting_problem(error, lines, line, file))
            continue
        problems += _control_problems(cells, header, line, file)
        cells = [cell.strip() for cell in cells]
        # Spreadsheets often save trailing rows of empty cells; they carry nothing.
        if any(cells):
            records.append((line, cells))
            header = cells if header is None else header


def _control_problems(cells: list[str], header: list[str] | None, line: int, file: str) -> list[Problem]:
    """A problem per cell holding a control character (checked before strip(), which drops some)."""
    problems = []
    for index, cell in enumerate(cells):
        found = _CONTROL_RE.search(cell)
        if found:
            name = header[index] if header is not None and index < len(header) and header[index] else None
            column = name or f"column {index + 1}"
            message = (
                f"cell contains the control character U+{ord(found.group()):04X}, which is not allowed; "
                "remove it (it is often pasted in by accident)"
            )
            problems.append(Problem(file, message, line, column))
    return problems


def _quoting_problem(error: csv.Error, lines: list[str], line: int, file: str) -> Problem:
    opened = _unclosed_quote_line(lines, line)
    if opened is not None:
        message = f"unmatched quote: the quoted field starting on this row is never closed; {_QUOTE_TIP}"
        return Problem(file, message, opened)
    if "field larger than field limit" in str(error):
        # Quoting is fine here; the cell itself is too long to be a prompt part.
        message = f"a cell is longer than the limit of {csv.field_size_limit():,} characters; shorten it"
        return Problem(file, message, line)
    return Problem(file, f"cannot parse this record: {error}; {_QUOTE_TIP}", line)


def _unclosed_quote_line(lines: list[str], line: int) -> int | None:
    """Line where a quoted field of the record starting at `line` opens and never closes, or None."""
    starts = [0]
    for text in lines:
        starts.append(starts[-1] + len(text))
    text = "".join(lines)
    position, in_quotes, field_start, opened = starts[line - 1], False, True, 0
    while position < len(text):
        char = text[position]
        if in_quotes and char == '"' and text[position + 1 : position + 2] == '"':
            position += 1  # an escaped quote inside a quoted field
        elif in_quotes and char == '"':
            in_quotes = False
        elif not in_quotes and char in "\r\n":
            return None
        elif not in_quotes and char == '"' and field_start:
            in_quotes, opened = True, position
        field_start = not in_quotes and char == ","
        position += 1
    return bisect.bisect_right(starts, opened) if in_quotes else None


def _header_problems(header: list[str], line: int, file: str, template: BatchTemplates | None) -> list[Problem]:
    problems = [
        Problem(file, f"header column {index} has no name; name it or delete the column", line)
        for index, name in enumerate(header, 1)
        if not name
    ]
    for name, count in Counter(header).items():
        if name and count > 1:
            problems.append(Problem(file, f"column name appears {count} times in the header", line, name))
    required = ["variant_id"] if template else ["variant_id", "prompt"]
    for name in required:
        if name not in header:
            message = (
                f"missing required column '{name}'{_case_hint(name, header)}; "
                f"the header has: {', '.join(header)}"
            )
            if name == "prompt":
                message += " (or set 'template' in the settings)"
            problems.append(Problem(file, message, line, name))
    for name in sorted(template.required_variables - set(header)) if template else ():
        hint = _case_hint(name, header)
        message = f"the template uses {{{name}}} but there is no '{name}' column{hint}; add the column or "
        problems.append(Problem(file, message + _default_tip(name), line, name))
    # Rows also carry the known columns and the season variable, so a loop variable would hide those too.
    loops = frozenset().union(*(t.loop_variables for t in template.by_key.values())) if template else set()
    for name in sorted(loops & {*header, *KNOWN_COLUMNS, SEASON_VARIABLE}):
        message = (
            f"the template's loop variable '{name}' would hide the row's '{name}' value (rows have "
            f"{', '.join(KNOWN_COLUMNS)}, {SEASON_VARIABLE} and every column); rename the loop variable"
        )
        problems.append(Problem(file, message, line, name))
    return problems


def _naming_problems(settings: BatchSettings, header: list[str], settings_file: str) -> list[Problem]:
    """The naming pattern may use extra columns, so it can only be checked against the header."""
    extra_columns = [name for name in header if name not in KNOWN_COLUMNS]
    try:
        validate_pattern(settings.naming_pattern, available_placeholders(extra_columns))
    except ValueError as error:
        return [Problem(settings_file, str(error), column="naming_pattern")]
    return []


def _default_tip(name: str) -> str:
    return f"give it a default in the template: {{{name}|...}}"


def _case_hint(name: str, header: list[str]) -> str:
    similar = [column for column in header if column.lower() == name.lower()]
    return f" (found '{similar[0]}'; column names are case-sensitive)" if similar else ""


def _count_problems(
    data: list[tuple[int, list[str]]],
    file: str,
    settings: BatchSettings,
    settings_file: str,
    header_line: int,
) -> list[Problem]:
    if not data:
        return [Problem(file, "no data rows; add at least one row below the header", header_line)]
    if len(data) > settings.max_rows:
        message = (
            f"{len(data)} data rows, more than the limit of max_rows={settings.max_rows}; "
            f"split the batch or raise max_rows in {settings_file}"
        )
        return [Problem(file, message, data[settings.max_rows][0])]
    return []


def _rows(
    data: list[tuple[int, list[str]]], header: list[str], file: str, problems: list[Problem]
) -> list[BatchRow]:
    """Rows whose field count matches the header; a problem for each that does not."""
    rows = []
    for line, cells in data:
        if len(cells) != len(header):
            message = (
                f"row has {len(cells)} fields but the header has {len(header)}; "
                "quote cells that contain commas"
            )
            problems.append(Problem(file, message, line))
            continue
        values = dict(zip(header, cells))
        known = {name: values.pop(name, "") for name in KNOWN_COLUMNS}
        rows.append(BatchRow(line=line, extra=values, **known))
    return rows


def _usable_columns(header: list[str]) -> set[str]:
    """Columns named exactly once, whose cells can be checked despite other header problems."""
    return {name for name, count in Counter(header).items() if name and count == 1}


def _content_problems(
    rows: list[BatchRow], file: str, template: BatchTemplates | None, usable: set[str]
) -> list[Problem]:
    """Per-row problems, skipping checks whose columns the header problems already cover."""
    problems: list[Problem] = []
    first_seen: dict[str, BatchRow] = {}
    for row in rows:
        if "variant_id" in usable:
            problems += _variant_id_problems(row, file, first_seen)
        if "language" in usable and row.language and row.language not in LANGUAGES:
            message = f"language {row.language!r} is not one AssetQL localises; expected one of {', '.join(LANGUAGES)}"
            problems.append(Problem(file, message, row.line, "language"))
        elif template is not None:
            chosen = template.for_language(row.language)
            if chosen is None:
                message = (f"the template has no entry for language {row.language or DEFAULT_LANGUAGE!r} nor a "
                           f"'{DEFAULT_KEY}' or 'en' one; add one to 'template' in the settings")
                problems.append(Problem(file, message, row.line, "language"))
            elif template.required_variables <= usable:
                problems += _template_problems(row, file, chosen)
        elif "prompt" in usable and not row.prompt:
            message = "prompt is empty; write a prompt or set 'template' in the settings"
            problems.append(Problem(file, message, row.line, "prompt"))
    return problems


def _variant_id_problems(row: BatchRow, file: str, first_seen: dict[str, BatchRow]) -> list[Problem]:
    if not row.variant_id:
        return [Problem(file, "variant_id is empty; every row needs a unique id", row.line, "variant_id")]
    invalid = identifier_error(row.variant_id, "variant_id")
    if invalid:
        return [Problem(file, invalid, row.line, "variant_id")]
    # Compared ignoring case: ids become file names, and some file systems ignore case.
    first = first_seen.setdefault(row.variant_id.lower(), row)
    if first is not row:
        message = f"duplicate variant_id {row.variant_id!r}: already used on row {first.line}"
        if first.variant_id != row.variant_id:
            message += f" as {first.variant_id!r} (ids are compared ignoring case)"
        return [Problem(file, message, row.line, "variant_id")]
    return []


def _template_problems(row: BatchRow, file: str, template: Template) -> list[Problem]:
    values = row.template_values()
    if not template.loop_variables.isdisjoint(values):
        return []  # reported once against the header
    # The season's words are the batch's, not the row's: empty here, filled when the batch is planned.
    empty = sorted(name for name in template.required_variables - {SEASON_VARIABLE} if not values[name])
    if empty:
        tip = "is empty but the template needs it; fill it in or"
        return [Problem(file, f"'{name}' {tip} {_default_tip(name)}", row.line, name) for name in empty]
    try:
        prompt = template.render(values)
    except MissingVariableError as error:
        message = f"the template uses '{error.name}' for this row but there is no '{error.name}' column"
        return [Problem(file, message, row.line, error.name)]
    except RenderError as error:  # a value the template cannot use, or a prompt over the limits
        return [Problem(file, error.message, row.line, error.name)]
    if not prompt:
        return [Problem(file, "the template renders an empty prompt for this row", row.line)]
    return []
