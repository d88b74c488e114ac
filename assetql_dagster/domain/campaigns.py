"""Campaigns: recurring batches declared in a YAML file, each run on its own cron schedule.

```yaml
campaigns:
  - name: winter-sale
    cron: "0 6 * * MON"
    source: batches/winter        # batch folder or CSV, relative to this file, or s3://bucket/key
    modifiers: winter holiday, snow, warm lights
    style_profile: references/winter   # a references folder, or a batch name to reuse
    exports: [zip, gallery, links]
    timezone: Europe/Berlin
    settings: {seed: 7}           # batch setting overrides, passed through unchanged
```
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from assetql_dagster.domain.settings import exports_error

REQUIRED_FIELDS = ("name", "cron", "source")

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$")
_CRON_PART = re.compile(r"^(?:(\*)|([0-9]+|[A-Za-z]+)(?:-([0-9]+|[A-Za-z]+))?)(?:/([0-9]+))?$")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (field name, lowest, highest, names); day of week 7 is Sunday as in standard cron.
_CRON_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i for i, m in enumerate(_MONTHS, start=1)}),
    ("day of week", 0, 7, {d: i for i, d in enumerate(_DAYS)}),
)


@dataclass(frozen=True)
class Campaign:
    """One validated campaign; local paths are absolute."""

    name: str
    cron: str
    source: str
    modifiers: str = ""
    style_profile: str | None = None
    exports: tuple[str, ...] = ()
    timezone: str = "UTC"
    settings: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


class CampaignError(ValueError):
    """Every problem found in a campaigns file, so a user can fix them all in one pass."""

    def __init__(self, file: str, problems: list[str]):
        self.file = file
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in campaigns file {file}:\n{lines}")


def _cron_value(text: str, low: int, high: int, names: Mapping[str, int]) -> int:
    value = int(text) if text.isdigit() else names.get(text.lower())
    if value is None:
        kind = ("a number or a name like " + ", ".join(list(names)[:3])) if names else "a number"
        raise ValueError(f"{text!r} is not {kind}")
    if not low <= value <= high:
        raise ValueError(f"{value} is outside {low}-{high}")
    return value


def _check_cron_part(part: str, low: int, high: int, names: Mapping[str, int]) -> None:
    match = _CRON_PART.match(part)
    if match is None:
        raise ValueError(f"{part!r} is not '*', a value, a range 'a-b' or a step '/n'")
    star, start, end, step = match.groups()
    if step is not None and int(step) == 0:
        raise ValueError(f"step in {part!r} must be at least 1")
    if star:
        return
    first = _cron_value(start, low, high, names)
    if end is not None and _cron_value(end, low, high, names) < first:
        raise ValueError(f"range {part!r} runs backwards")


def check_cron(expression: str) -> str:
    """Return `expression` if it is a valid 5-field cron string."""
    if not isinstance(expression, str):
        raise ValueError(f"{expression!r} must be a cron string like '0 6 * * MON'")
    fields = expression.split()
    if len(fields) != len(_CRON_FIELDS):
        raise ValueError(
            f"{expression!r} has {len(fields)} fields; expected 5: "
            "minute hour day-of-month month day-of-week"
        )
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS):
        for part in text.split(","):
            try:
                _check_cron_part(part, low, high, names)
            except ValueError as exc:
                raise ValueError(f"{expression!r}, {name} {text!r}: {exc}") from None
    return expression


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} must be a string")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"{value!r} must use only lowercase letters, digits and inner hyphens, "
            "e.g. 'winter-sale'"
        )
    return value


def _source(value: Any, base: Path) -> str:
    text = _text(value)
    if text.startswith("s3://"):
        if not _S3_URI.match(text):
            raise ValueError(f"{text!r} must look like s3://bucket/key")
        return text
    path = (base / text).resolve()
    if path.is_dir() or (path.is_file() and path.suffix.lower() == ".csv"):
        return str(path)
    raise ValueError(f"{text!r} (resolved to {path}) is not an existing batch folder or .csv file")


def _style_profile(value: Any, base: Path) -> str:
    text = _text(value)
    path = (base / text).resolve()
    if path.is_dir():
        return str(path)
    # Anything that looks like a path must exist; a bare word names a batch to reuse.
    if "/" in text or text.startswith((".", "~")):
        raise ValueError(f"{text!r} (resolved to {path}) is not an existing references folder")
    return text


def _exports(value: Any) -> tuple[str, ...]:
    message = exports_error(value)
    if message:
        raise ValueError(message)
    return tuple(value)


def _timezone(value: Any) -> str:
    text = _text(value)
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{text!r} is not an IANA time zone like 'UTC' or 'Europe/Berlin'"
        ) from None
    return text


def _settings(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{value!r} must be a mapping of setting names to values")
    return dict(value)


def _parse_campaign(raw: dict, base: Path) -> tuple[Campaign | None, list[str]]:
    """The campaign in `raw`, or None and a "field 'x': message" line per problem."""
    parsers: dict[str, Callable[[Any], Any]] = {
        "name": _name,
        "cron": check_cron,
        "source": lambda v: _source(v, base),
        "modifiers": _text,
        "style_profile": lambda v: _style_profile(v, base),
        "exports": _exports,
        "timezone": _timezone,
        "settings": _settings,
        "description": _text,
    }
    problems = [
        f"field '{key}': unknown field; expected one of {list(parsers)}"
        for key in raw
        if key not in parsers
    ]
    values = {}
    for key, parse in parsers.items():
        if raw.get(key) is None:
            if key in REQUIRED_FIELDS:
                problems.append(f"field '{key}': is required")
            continue
        try:
            values[key] = parse(raw[key])
        except ValueError as exc:
            problems.append(f"field '{key}': {exc}")
    return (None if problems else Campaign(**values)), problems


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CampaignError(str(path), [f"cannot be read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise CampaignError(str(path), [f"is not valid YAML: {exc}"]) from None


def _campaign_entries(path: Path) -> list:
    document = _read_yaml(path)
    if not isinstance(document, dict) or set(document) != {"campaigns"}:
        raise CampaignError(str(path), [
            f"top level must be a mapping with only the key 'campaigns', got {document!r:.80}"
        ])
    entries = document["campaigns"] or []
    if not isinstance(entries, list):
        raise CampaignError(str(path), [f"'campaigns' must be a list, got {entries!r:.80}"])
    return entries


def load_campaigns(path: str | Path) -> list[Campaign]:
    """Read and validate a campaigns file; raise CampaignError listing every problem."""
    path = Path(path)
    problems: list[str] = []
    campaigns: list[Campaign] = []
    first_use: dict[str, int] = {}
    for index, raw in enumerate(_campaign_entries(path), start=1):
        name = raw.get("name") if isinstance(raw, dict) else None
        where = f"campaign #{index}" + (f" ({name!r})" if isinstance(name, str) else "")
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a mapping of fields, got {raw!r:.80}")
            continue
        campaign, found = _parse_campaign(raw, path.parent)
        if isinstance(name, str) and name in first_use:
            found.append(f"field 'name': {name!r} is already used by campaign #{first_use[name]}")
        elif isinstance(name, str):
            first_use[name] = index
        problems += [f"{where}, {p}" for p in found]
        if campaign is not None:
            campaigns.append(campaign)
    if problems:
        raise CampaignError(str(path), problems)
    return campaigns


def campaign_partition_key(name: str, date: datetime.date, content_hash: str) -> str:
    """`{name}-{YYYY-MM-DD}-{hash[:8]}`, reduced to lowercase letters, digits and hyphens."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    digest = re.sub(r"[^a-z0-9]", "", content_hash.lower())[:8]
    if not slug or not digest:
        raise ValueError(
            f"campaign name {name!r} and content hash {content_hash!r} must each contain "
            "letters or digits"
        )
    return f"{slug}-{date.isoformat()}-{digest}"
