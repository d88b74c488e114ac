"""Campaign profiles declared in a YAML file: what a campaign brings to a batch (brand colours,
theme, audience, tone, modifiers, style references, exports, settings) and, with `cron` and
`source`, a recurring batch run on its own schedule.

```yaml
campaigns:
  - name: winter-sale
    cron: "0 6 * * MON"           # optional, with source: without them the profile is only applied
    source: batches/winter        # by batches naming it (`campaign: winter-sale` in batch.yaml);
                                  # a batch folder or CSV, relative to this file, or s3://bucket/key
    brand_colors: ["#c8102e", "#ffffff"]   # the batch's `palette`, held by a palette lock
    theme: winter holiday         # "winter holiday theme"
    audience: young families      # "for young families"
    tone: playful and warm        # "playful and warm tone"
    modifiers: snow, warm lights
    style_profile: references/winter   # a references folder, or a batch name to reuse
    exports: [zip, gallery, links]
    timezone: Europe/Berlin
    settings: {seed: 7}           # batch setting overrides
```

`campaign_overrides` turns a profile into batch setting overrides; schedules and `campaign:`
batches both apply a campaign through it.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from assetql_dagster.domain.errors import BatchValidationError
from assetql_dagster.domain.settings import MAX_PALETTE, BatchSettings, exports_error, parse_settings

REQUIRED_FIELDS = ("name",)
# A schedule needs both: when to run and what to run.
SCHEDULE_FIELDS = ("cron", "source")
# Lock weight (0-100) that holds a campaign's brand colours when its settings give no palette
# lock: it pulls each image 70% of the way to the brand palette, leaving some of the subject's own
# colours (a red potion stays red) while the brand colours dominate.
PALETTE_LOCK = 70

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
    cron: str | None = None
    source: str | None = None
    modifiers: str = ""
    brand_colors: tuple[str, ...] = ()
    theme: str = ""
    audience: str = ""
    tone: str = ""
    style_profile: str | None = None
    exports: tuple[str, ...] = ()
    timezone: str = "UTC"
    settings: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def scheduled(self) -> bool:
        """Whether the campaign runs on a schedule (it has `cron` and `source`)."""
        return self.cron is not None


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


def _phrase(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or "\n" in value:
        raise ValueError(f"{value!r} must be one line of non-empty text, e.g. 'winter holiday'")
    return value.strip()


def _brand_colors(value: Any) -> tuple[str, ...]:
    # The `palette` setting's own check, so both accept the same colours ('season' is a palette,
    # but no brand's colours).
    if isinstance(value, list):
        try:
            return parse_settings({"palette": value}, "").palette
        except BatchValidationError:
            pass
    raise ValueError(f"{value!r} must be a list of 1 to {MAX_PALETTE} colours as '#rrggbb' (quoted in YAML)")


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
    if "campaign" in value:
        raise ValueError("cannot set 'campaign': a campaign profile cannot apply another campaign")
    return dict(value)


# Why a schedule field missing beside the other is needed.
_SCHEDULE_NEEDS = {
    "cron": "is required with 'source' (when to register it); a profile without a schedule has neither",
    "source": "is required with 'cron' (the batch each tick registers)",
}


def _missing(key: str, raw: Mapping[str, Any]) -> str | None:
    """Why field `key`, absent from `raw`, is needed there (None when it may be left out)."""
    if key in REQUIRED_FIELDS:
        return "is required"
    if key in SCHEDULE_FIELDS and any(raw.get(k) is not None for k in SCHEDULE_FIELDS):
        return _SCHEDULE_NEEDS[key]
    return None


def _parse_campaign(raw: dict, base: Path) -> tuple[Campaign | None, list[str]]:
    """The campaign in `raw`, or None and a "field 'x': message" line per problem."""
    parsers: dict[str, Callable[[Any], Any]] = {
        "name": _name,
        "cron": check_cron,
        "source": lambda v: _source(v, base),
        "modifiers": _text,
        "brand_colors": _brand_colors,
        "theme": _phrase,
        "audience": _phrase,
        "tone": _phrase,
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
            if (why := _missing(key, raw)) is not None:
                problems.append(f"field '{key}': {why}")
            continue
        try:
            values[key] = parse(raw[key])
        except ValueError as exc:
            problems.append(f"field '{key}': {exc}")
    if "brand_colors" in values and "palette" in values.get("settings", {}):
        problems.append("field 'brand_colors': the campaign's settings also set 'palette'; give the colours once")
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


def campaign_settings(campaign: Campaign, file: str) -> dict[str, object]:
    """The campaign's `settings` as batch.yaml entries, checked like batch.yaml (BatchValidationError
    naming `file` and the campaign)."""
    parsed = parse_settings(campaign.settings, f"{file} campaign {campaign.name!r}")
    # Kept as written (they go into a derived batch.yaml, checked again there); a YAML list of
    # modifiers becomes the text the campaign's own are appended to.
    joined = {"modifiers": parsed.modifiers} if "modifiers" in campaign.settings else {}
    return {**campaign.settings, **joined}


def _worded(text: str, prefix: str = "", suffix: str = "") -> str:
    """`text` as a prompt phrase ('young families' → 'for young families'), unless it already says so."""
    if text and prefix and not text.lower().startswith(prefix):
        text = prefix + text
    if text and suffix and not re.search(rf"\b{suffix.strip()}$", text.lower()):
        text += suffix
    return text


def profile_modifiers(campaign: Campaign) -> str:
    """The prompt words a campaign adds: its modifiers, then its theme, audience and tone as phrases,
    e.g. 'snow, winter holiday theme, for young families, playful and warm tone'."""
    phrases = (
        campaign.modifiers.strip(),
        _worded(campaign.theme, suffix=" theme"),
        _worded(campaign.audience, prefix="for "),
        _worded(campaign.tone, suffix=" tone"),
    )
    return ", ".join(phrase for phrase in phrases if phrase)


def campaign_overrides(
    campaign: Campaign, settings: BatchSettings, file: str, own: Collection[str] = ()
) -> dict[str, object]:
    """batch.yaml overrides applying `campaign` to a batch whose settings are `settings`: the
    campaign's settings and exports, its brand colours as `palette` held by a palette lock, and its
    modifiers (with theme, audience and tone) appended to the batch's.

    Settings named in `own` (those the batch's batch.yaml sets itself) keep the batch's value, except
    `modifiers`, to which the campaign's are still appended, and `locks`, which still gain the
    palette lock (PALETTE_LOCK) when the brand colours apply and no lock holds the palette.
    """
    given = campaign_settings(campaign, file)
    if campaign.exports:
        given["exports"] = list(campaign.exports)
    if campaign.brand_colors:
        given["palette"] = list(campaign.brand_colors)
    overrides = {key: value for key, value in given.items() if key not in own}
    if campaign.brand_colors and "palette" in overrides:
        locks = dict(overrides.get("locks", settings.lock_weights))
        # Without a palette lock the brand colours would only be scored, never aimed at.
        overrides["locks"] = {"palette": PALETTE_LOCK, **locks}
    words = profile_modifiers(campaign)
    if words or "modifiers" in given:
        # The campaign's `modifiers` setting replaces the batch's unless the batch set its own.
        kept = settings.modifiers if "modifiers" in own or "modifiers" not in given else ""
        parts = (kept, str(given.get("modifiers", "")), words)
        overrides["modifiers"] = ", ".join(text.strip() for text in parts if text.strip())
    return overrides


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
