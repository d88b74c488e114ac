"""The seasonal catalogue: seasonal contexts with their modifiers, palettes and cultural elements, by
region and hemisphere.

The data is seasons.yaml beside this module (a YAML file rather than a Python table because it is
mostly dates, colours and words that an editor reviews, and its sources sit in comments beside the
dates they justify); it is read and checked once, at import. `season: auto` picks with
`season_for(day, region)`:

- the festivals observed in the region (None: the `global` ones only) whose window holds the day;
  of several, one that lists the region beats a global one, then the shorter window, then the one
  listed for fewer regions, then catalogue order. A festival wins over the meteorological season, so
  25 December in AU is `christmas-south` (the catalogue's summer Christmas), never summer-south;
- else the meteorological season of the region's hemisphere (None: north).

`python -m assetql_dagster.domain.seasons > docs/seasons.md` writes the catalogue's documentation.
"""

from __future__ import annotations

import calendar
import difflib
import re
# reprlib bounds quoted user values; settings.quote does the same but settings imports this module.
import reprlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import resources
from typing import Any, NamedTuple, NoReturn

import yaml
from dateutil.easter import easter
from dateutil.relativedelta import TH, relativedelta

AUTO = "auto"
GLOBAL = "global"
NORTH, SOUTH = "north", "south"
HEMISPHERES = (NORTH, SOUTH)
MIN_PALETTE, MAX_PALETTE = 3, 6

_FILE = "seasons.yaml"
_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_HEX = re.compile(r"#[0-9a-f]{6}")
_MONTH_DAY = re.compile(r"(\d\d)-(\d\d)")


class Window(NamedTuple):
    """The days a season is active, both included."""

    first: date
    last: date

    @property
    def days(self) -> int:
        """How many days the window spans."""
        return (self.last - self.first).days + 1

    def holds(self, day: date) -> bool:
        """Whether `day` falls in the window."""
        return self.first <= day <= self.last

    def __str__(self) -> str:
        return f"{self.first.day} {self.first:%b} – {self.last.day} {self.last:%b}"


class Calendar(ABC):
    """When a season is active: its windows starting in each year."""

    @abstractmethod
    def windows_in(self, year: int) -> list[Window]:
        """The windows that start in `year`."""

    def knows(self, day: date) -> bool:
        """Whether the calendar can tell if the season is active on `day`."""
        return True

    def window_at(self, day: date) -> Window | None:
        """The window holding `day`, or None."""
        # A window starting in the previous year may run into this one (winter, Ramadan in December).
        for year in (day.year - 1, day.year):
            for window in self.windows_in(year):
                if window.holds(day):
                    return window
        return None

    @abstractmethod
    def describe(self) -> str:
        """The rule in words, for docs/seasons.md."""


@dataclass(frozen=True)
class Months(Calendar):
    """Whole consecutive months every year: a meteorological season."""

    months: tuple[int, ...]

    def windows_in(self, year: int) -> list[Window]:
        first, last = self.months[0], self.months[-1]
        last_year = year + (last < first)
        return [Window(date(year, first, 1), date(last_year, last, calendar.monthrange(last_year, last)[1]))]

    def describe(self) -> str:
        return ", ".join(calendar.month_abbr[m] for m in self.months)


@dataclass(frozen=True)
class EveryYear(Calendar):
    """The same days every year, e.g. 1 to 26 December."""

    first: tuple[int, int]
    last: tuple[int, int]

    def windows_in(self, year: int) -> list[Window]:
        return [Window(date(year, *self.first), date(year + (self.last < self.first), *self.last))]

    def describe(self) -> str:
        return f"{self.windows_in(2001)[0]}, every year"


# The yearly days a window is counted from, by the name seasons.yaml gives them: (day of a year, words).
ANCHORS = {
    "easter": (easter, "Easter Sunday (Western)"),
    # TH(+4) from 1 November: its first Thursday on or after, then three weeks on.
    "us-thanksgiving": (lambda year: date(year, 11, 1) + relativedelta(weekday=TH(+4)),
                        "US Thanksgiving (fourth Thursday of November)"),
}


@dataclass(frozen=True)
class FromAnchor(Calendar):
    """Days counted from a yearly anchor computed by rule (Easter, US Thanksgiving), for any year."""

    anchor: str
    days: tuple[int, int]

    def windows_in(self, year: int) -> list[Window]:
        day = ANCHORS[self.anchor][0](year)
        return [Window(day + timedelta(self.days[0]), day + timedelta(self.days[1]))]

    def describe(self) -> str:
        return f"{_offsets(self.days)} {ANCHORS[self.anchor][1]}, every year"


@dataclass(frozen=True)
class Dated(Calendar):
    """A table of windows (lunar and Islamic calendars move every year); it knows its table's years."""

    windows: tuple[Window, ...]
    days: tuple[int, int] = (0, 0)

    @property
    def years(self) -> range:
        """The years the table covers: those its first and last windows start in, and all between."""
        return range(self.windows[0].first.year, self.windows[-1].first.year + 1)

    def windows_in(self, year: int) -> list[Window]:
        return [w for w in self.windows if w.first.year == year]

    def knows(self, day: date) -> bool:
        return day.year in self.years or self.window_at(day) is not None

    def describe(self) -> str:
        around = "the table's windows" if self.days == (0, 0) else f"{_offsets(self.days)} each date of the table"
        return f"{around}, {self.years[0]}–{self.years[-1]} only (below)"


def _offsets(days: tuple[int, int]) -> str:
    return " to ".join(f"{d:+d}" if d else "0" for d in days) + " days from"


@dataclass(frozen=True)
class Region:
    """An audience region of `region:`; its hemisphere picks the meteorological seasons."""

    code: str
    name: str
    hemisphere: str


@dataclass(frozen=True)
class Season:
    """A seasonal context: prompt modifiers, a palette, cultural elements; where and when it holds."""

    name: str
    title: str
    modifiers: str
    palette: tuple[str, ...]
    cultural_elements: tuple[str, ...] = ()
    # Region codes where it is observed, or (GLOBAL,): everywhere except `not_in`, and for no region.
    regions: tuple[str, ...] = (GLOBAL,)
    # north/south for the meteorological seasons and a festival drawn for one hemisphere; else None.
    hemisphere: str | None = None
    not_in: tuple[str, ...] = ()
    when: Calendar | None = None
    # Other names users type (xmas, eid): suggested by season_error, never accepted, so tags stay one name.
    aliases: tuple[str, ...] = ()

    @property
    def meteorological(self) -> bool:
        """Whether this is one of the hemisphere's four seasons rather than a festival."""
        return isinstance(self.when, Months)

    def observed_in(self, region: str | None) -> bool:
        """Whether `region` observes it; None observes the global festivals and the northern seasons."""
        if GLOBAL in self.regions:
            return region not in self.not_in
        if region is None:
            return self.meteorological and self.hemisphere == NORTH
        return region in self.regions


class CatalogueError(ValueError):
    """A mistake in seasons.yaml."""


def _fail(where: str, message: str, value: object) -> NoReturn:
    raise CatalogueError(f"{_FILE}: {where}: {message}, got {reprlib.repr(value)}")


def _check(ok: bool, where: str, message: str, value: object) -> None:
    if not ok:
        _fail(where, message, value)


def _strings(value: object, where: str, what: str) -> tuple[str, ...]:
    _check(isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value),
           where, f"{what} must be a list of non-empty texts", value)
    return tuple(value)


def _days(value: object, where: str) -> tuple[int, int]:
    _check(isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)
           and value[0] <= value[1], where, "days must be [first, last] offsets in days, first <= last", value)
    return value[0], value[1]


def _month_day(text: str, where: str) -> tuple[int, int]:
    match = _MONTH_DAY.fullmatch(text)
    month, day = (int(match[1]), int(match[2])) if match else (0, 0)
    try:
        # 2001 is not a leap year, so 29 February (absent most years) is refused too.
        date(2001, month, day)
    except ValueError:
        _fail(where, "every_year must be 'MM-DD..MM-DD' with real days (not 02-29)", text)
    return month, day


def _calendar(when: object, where: str) -> Calendar:
    _check(isinstance(when, dict) and (sum(k in when for k in ("every_year", "from", "dates")) == 1),
           where, "when must have exactly one of every_year, from, dates", when)
    if "every_year" in when:
        text = when["every_year"]
        _check(isinstance(text, str) and text.count("..") == 1, where, "every_year must be 'MM-DD..MM-DD'", text)
        first, last = (_month_day(part, where) for part in text.split(".."))
        return EveryYear(first, last)
    days = _days(when.get("days", [0, 0]), where)
    if "from" in when:
        _check(when["from"] in ANCHORS, where, f"from must be one of {', '.join(ANCHORS)}", when["from"])
        return FromAnchor(when["from"], days)
    entries = when["dates"]
    _check(isinstance(entries, list) and entries, where, "dates must be a non-empty list", entries)
    windows = []
    for entry in entries:
        if isinstance(entry, date):
            windows.append(Window(entry + timedelta(days[0]), entry + timedelta(days[1])))
        else:
            _check(isinstance(entry, list) and len(entry) == 2 and all(isinstance(d, date) for d in entry)
                   and entry[0] <= entry[1] and days == (0, 0), where,
                   "each date must be YYYY-MM-DD, or [first, last] without `days`", entry)
            windows.append(Window(*entry))
    _check(all(a.last < b.first for a, b in zip(windows, windows[1:])), where,
           "dates must be in order without overlapping windows", entries)
    table = Dated(tuple(windows), days)
    # A year missing between the first and the last would be silently treated as known.
    missing = [y for y in table.years if not table.windows_in(y)]
    _check(not missing, where, "dates must have a window starting in every year of the table, missing", missing)
    return table


def _season(name: str, data: Mapping[str, Any], known: Mapping[str, Region], when: Calendar) -> Season:
    where = f"season {name!r}"
    palette = data.get("palette")
    _check(isinstance(palette, list) and MIN_PALETTE <= len(palette) <= MAX_PALETTE
           and all(isinstance(c, str) and _HEX.fullmatch(c) for c in palette),
           where, f"palette must be {MIN_PALETTE} to {MAX_PALETTE} lowercase '#rrggbb' colours", palette)
    observed = data.get("regions")
    if observed == GLOBAL:
        observed = [GLOBAL]
    else:
        _check("not_in" not in data, where, "not_in goes only with regions: global", data.get("not_in"))
    codes = [*_strings(observed, where, "regions"), *_strings(data.get("not_in", []), where, "not_in")]
    _check(all(c in known for c in codes if c != GLOBAL), where, f"regions must be among {', '.join(known)}", codes)
    hemisphere = data.get("hemisphere")
    _check(hemisphere in (None, *HEMISPHERES), where, f"hemisphere must be one of {', '.join(HEMISPHERES)}", hemisphere)
    _check(hemisphere is None or GLOBAL not in observed and all(known[c].hemisphere == hemisphere for c in observed),
           where, f"regions must be listed, all in the {hemisphere} hemisphere", observed)
    for key in ("title", "modifiers"):
        _check(isinstance(data.get(key), str) and data[key].strip(), where, f"{key} must be a non-empty text",
               data.get(key))
    return Season(
        name=name, title=data["title"], modifiers=data["modifiers"], palette=tuple(palette),
        cultural_elements=_strings(data.get("cultural_elements"), where, "cultural_elements"),
        regions=tuple(observed), hemisphere=hemisphere, not_in=tuple(data.get("not_in", ())),
        when=when, aliases=_strings(data.get("aliases", []), where, "aliases"),
    )


def _months(value: object, where: str) -> Months:
    _check(isinstance(value, list) and value and all(type(m) is int and 1 <= m <= 12 for m in value)
           and all(b == a % 12 + 1 for a, b in zip(value, value[1:])), where,
           "months must be consecutive month numbers 1-12", value)
    return Months(tuple(value))


def load_catalogue(data: Mapping[str, Any]) -> tuple[dict[str, Region], dict[str, Season]]:
    """The regions and seasons of a parsed seasons.yaml, checked; CatalogueError names the first mistake."""
    regions = {}
    for code, entry in data["regions"].items():
        _check(isinstance(entry, dict) and isinstance(entry.get("name"), str)
               and entry.get("hemisphere") in HEMISPHERES,
               f"region {code!r}", f"must be {{name: ..., hemisphere: {' or '.join(HEMISPHERES)}}}", entry)
        regions[code] = Region(code, entry["name"], entry["hemisphere"])
    seasons: dict[str, Season] = {}
    for base, entry in data["meteorological"].items():
        _check(isinstance(entry, dict) and isinstance(entry.get("months"), dict) and entry.get("title"),
               f"meteorological season {base!r}",
               "must be a mapping with title and months: {north: [...], south: [...]}", entry)
        for hemisphere in HEMISPHERES:
            name = f"{base}-{hemisphere}"
            local = [code for code, region in regions.items() if region.hemisphere == hemisphere]
            fixed = {"title": f"{entry['title']} ({hemisphere}ern hemisphere)", "regions": local,
                     "hemisphere": hemisphere}
            months = _months(entry["months"].get(hemisphere), f"season {name!r}")
            seasons[name] = _season(name, {**entry, **fixed}, regions, months)
    for name, entry in data["festivals"].items():
        where = f"season {name!r}"
        _check(name not in seasons and bool(_NAME.fullmatch(name)), where,
               "names must be unique, lowercase words joined by '-'", name)
        _check(isinstance(entry, dict), where, "must be a mapping", entry)
        seasons[name] = _season(name, entry, regions, _calendar(entry.get("when"), where))
    taken = [a for s in seasons.values() for a in s.aliases if a in seasons]
    _check(not taken, "aliases", "must not be season names", taken)
    return regions, seasons


REGIONS, SEASONS = load_catalogue(yaml.safe_load(resources.files(__package__).joinpath(_FILE).read_text("utf-8")))


def _close(value: object, choices: Mapping[str, str]) -> str:
    """' did you mean …?' for the closest of `choices` (lookup text → answer) to `value`, or ''."""
    if not isinstance(value, str):
        return ""
    key = re.sub(r"[\s_]+", "-", value.strip().lower())
    matches = dict.fromkeys(choices[m] for m in difflib.get_close_matches(key, choices, n=3))
    return f"; did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""


def _lookup(names: Mapping[str, str]) -> dict[str, str]:
    # Matched lowercased and hyphenated, so 'Lunar New Year', 'us' and 'germany' find theirs.
    return {re.sub(r"\s+", "-", text.lower()): answer for answer, text in names.items()} | {
        answer.lower(): answer for answer in names}


_SEASON_LOOKUP = _lookup({name: season.title for name, season in SEASONS.items()}) | {
    alias: name for name, season in SEASONS.items() for alias in season.aliases}
_REGION_LOOKUP = _lookup({code: region.name for code, region in REGIONS.items()})


def season_error(value: object) -> str | None:
    """Why `value` is not a season of the catalogue nor 'auto', or None."""
    if value == AUTO or value in SEASONS:
        return None
    return (f"must be 'auto' or a season of the catalogue (docs/seasons.md): {', '.join(SEASONS)}; "
            f"got {reprlib.repr(value)}{_close(value, _SEASON_LOOKUP)}")


def region_error(value: object) -> str | None:
    """Why `value` is not a known region code, or None."""
    if value in REGIONS:
        return None
    return (f"must be a region code of the catalogue (docs/seasons.md): {', '.join(REGIONS)}; "
            f"got {reprlib.repr(value)}{_close(value, _REGION_LOOKUP)}")


def season_for(day: date, region: str | None = None) -> Season:
    """The season `auto` picks on `day` for `region` (module docstring); ValueError naming what it cannot tell."""
    if region is not None and region_error(region):
        raise ValueError(f"region {region_error(region)}")
    observed = [s for s in SEASONS.values() if s.observed_in(region)]
    unknown = [s for s in observed if not s.when.knows(day)]
    if unknown:
        known = ", ".join(f"{s.name} ({s.when.years[0]}–{s.when.years[-1]})" for s in unknown)
        where = f"in region {region}" if region else "without a region"
        raise ValueError(
            f"season 'auto' on {day} {where}: the dates of {known} are known for those years "
            f"only, not {day.year} (lunar and Islamic calendars move every year); set `season:` to a season "
            f"name, or add {day.year}'s dates to assetql_dagster/domain/{_FILE}")
    order = list(SEASONS)
    active = [(s, w) for s in observed if (w := s.when.window_at(day))]
    # Festivals first; one listing the region before a global one; then the shorter window, the
    # fewer regions, the catalogue's order. Exactly one meteorological season is always active.
    return min(active, key=lambda sw: (sw[0].meteorological, GLOBAL in sw[0].regions, sw[1].days,
                                       len(sw[0].regions), order.index(sw[0].name)))[0]


def season_tag(season: Season) -> str:
    """The tag every image of a seasonal batch carries."""
    return f"season:{season.name}"


CALENDAR_YEARS = range(2025, 2033)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def docs_markdown() -> str:
    """docs/seasons.md: the rules of `season: auto`, the regions, every season and its windows."""
    regions = ["| code | region | hemisphere |", "|---|---|---|"]
    regions += [f"| `{r.code}` | {r.name} | {r.hemisphere} |" for r in REGIONS.values()]
    seasons = ["| season | title | when | regions | modifiers | palette | cultural elements |",
               "|---|---|---|---|---|---|---|"]
    for s in SEASONS.values():
        where = (f"{s.hemisphere}ern hemisphere" if s.meteorological
                 else "global" + (f" except {', '.join(s.not_in)}" if s.not_in else "")
                 if GLOBAL in s.regions else ", ".join(s.regions))
        title = s.title + (f"<br>suggested for: {', '.join(s.aliases)}" if s.aliases else "")
        cells = (f"`{s.name}`", title, s.when.describe(), where, s.modifiers,
                 " ".join(f"`{c}`" for c in s.palette), ", ".join(s.cultural_elements))
        seasons.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    moving = [s for s in SEASONS.values() if isinstance(s.when, (FromAnchor, Dated))]
    years = ["| season | " + " | ".join(map(str, CALENDAR_YEARS)) + " |", "|---|" + "---|" * len(CALENDAR_YEARS)]
    for s in moving:
        cells = ["<br>".join(map(str, s.when.windows_in(y))) or "–" for y in CALENDAR_YEARS]
        years.append(f"| `{s.name}` | " + " | ".join(cells) + " |")
    return "\n".join([
        "# Seasons",
        "",
        "<!-- Generated by `python -m assetql_dagster.domain.seasons > docs/seasons.md` from",
        f"assetql_dagster/domain/{_FILE} (dates and their sources); edit that file, not this one. -->",
        "",
        "A batch's `season:` names one of the seasons below, or `auto`: the season of the batch's",
        "registration date in its `region:`. A season brings prompt modifiers (the template's",
        "`{season_modifier}`), a palette (`palette: season`), cultural elements, and the tag `season:NAME`.",
        "",
        "## How `auto` picks",
        "",
        "1. The festivals observed in the region whose window holds the day. Without a region, only the",
        "   global ones. Of several: one listing the region beats a global one, then the shorter window,",
        "   then the one listed for fewer regions, then the order below.",
        "2. Else the meteorological season of the region's hemisphere (whole months; without a region,",
        "   the northern one).",
        "",
        "A festival wins over the meteorological season: 25 December in `AU` is `christmas-south`,",
        "Christmas drawn for a southern summer. Windows include the lead-up a campaign shows the",
        "festival in, not only the holiday. Festivals on lunar and Islamic calendars come from a table of",
        f"dates whose years are listed; outside them `auto` stops with an error naming the years it knows",
        "(set `season:` by name, or extend the table). Observed Islamic dates follow the moon sighting",
        "and may differ from the Umm al-Qura calendar used here by a day.",
        "",
        "## Regions",
        "",
        *regions,
        "",
        "## The catalogue",
        "",
        *seasons,
        "",
        f"## Moving festivals, {CALENDAR_YEARS[0]}–{CALENDAR_YEARS[-1]}",
        "",
        *years,
        "",
    ])


if __name__ == "__main__":
    print(docs_markdown(), end="")
