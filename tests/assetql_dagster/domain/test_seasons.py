"""The seasonal catalogue: what `season: auto` picks by date, region and hemisphere, its errors, its data."""

import copy
import dataclasses
import re
from datetime import date, timedelta
from importlib import resources
from pathlib import Path

import pytest
import yaml
from dateutil.easter import easter

from assetql_dagster.domain.seasons import (
    AUTO,
    REGIONS,
    SEASONS,
    CatalogueError,
    Dated,
    docs_markdown,
    load_catalogue,
    region_error,
    season_error,
    season_for,
    season_tag,
)

ROOT = Path(__file__).resolve().parents[3]
TABLE_YEARS = range(2025, 2033)
REQUIRED = ("christmas", "lunar-new-year", "diwali", "ramadan", "eid-al-fitr", "halloween", "black-friday",
            "valentines-day", "easter", "thanksgiving", "mid-autumn", "hanami", "carnival")


def name_on(day: date, region: str | None) -> str:
    return season_for(day, region).name


@pytest.mark.parametrize("day", [date(2025, 12, 10), date(2025, 12, 25), date(2031, 12, 26)])
def test_christmas_in_december_in_the_us(day):
    season = season_for(day, "US")
    assert season.name == "christmas"
    assert "christmas" in season.modifiers and "Christmas tree" in season.cultural_elements


def test_a_festival_wins_over_the_meteorological_season_and_the_south_gets_a_summer_christmas():
    season = season_for(date(2025, 12, 25), "AU")
    assert season.name == "christmas-south" and season.hemisphere == "south"
    assert "bright sunshine" in season.modifiers and "snow" not in season.modifiers
    assert season.palette != SEASONS["christmas"].palette
    # Outside Christmas the southern summer shows.
    assert name_on(date(2026, 1, 10), "AU") == "summer-south"
    assert name_on(date(2025, 12, 27), "NZ") == "summer-south"


@pytest.mark.parametrize(("day", "region", "expected"), [
    (date(2026, 1, 10), "US", "winter-north"),
    (date(2026, 1, 10), "AU", "summer-south"),
    (date(2026, 7, 1), "US", "summer-north"),
    (date(2026, 7, 1), "ZA", "winter-south"),
    (date(2026, 4, 28), "DE", "spring-north"),
    (date(2026, 4, 28), "AR", "autumn-south"),
    (date(2026, 10, 5), "NZ", "spring-south"),
    (date(2026, 9, 1), "UK", "autumn-north"),
    (date(2026, 11, 20), "UK", "autumn-north"),
    (date(2026, 12, 1), "ZA", "christmas-south"),
])
def test_meteorological_seasons_follow_the_regions_hemisphere_by_whole_months(day, region, expected):
    assert name_on(day, region) == expected


def test_without_a_region_only_global_festivals_and_the_northern_seasons():
    assert name_on(date(2026, 2, 10), None) == "valentines-day"
    assert name_on(date(2026, 12, 20), None) == "christmas"
    # Easter, Diwali and the southern seasons need a region that observes them.
    assert name_on(date(2025, 4, 20), None) == "spring-north"
    assert name_on(date(2025, 4, 20), "US") == "easter"
    assert name_on(date(2026, 11, 8), None) == "autumn-north"
    assert name_on(date(2026, 1, 10), None) == "winter-north"


@pytest.mark.parametrize("day", [date(2025, 10, 18), date(2025, 10, 20), date(2025, 10, 22), date(2031, 11, 14)])
def test_diwali_in_india_on_the_tables_dates(day):
    assert name_on(day, "IN") == "diwali"


def test_diwali_window_is_the_five_days_only():
    assert name_on(date(2025, 10, 17), "IN") == "autumn-north"
    assert name_on(date(2025, 10, 23), "IN") == "autumn-north"
    # Not observed in the US: its autumn stays.
    assert name_on(date(2026, 11, 8), "IN") == "diwali"
    assert name_on(date(2026, 11, 8), "US") == "autumn-north"


@pytest.mark.parametrize(("day", "expected"), [
    (date(2026, 2, 18), "ramadan"),
    (date(2026, 3, 1), "ramadan"),
    (date(2026, 3, 19), "ramadan"),
    (date(2026, 3, 20), "eid-al-fitr"),
    (date(2026, 3, 22), "eid-al-fitr"),
    (date(2026, 3, 23), "spring-north"),
    # Ramadan 1452 starts in December 2030 and runs into 2031.
    (date(2031, 1, 2), "ramadan"),
])
def test_ramadan_and_eid_in_the_emirates(day, expected):
    assert name_on(day, "AE") == expected


def test_a_year_outside_the_table_names_the_years_known():
    with pytest.raises(ValueError) as raised:
        season_for(date(2040, 3, 1), "AE")
    message = str(raised.value)
    assert "2040-03-01" in message and "region AE" in message
    assert "ramadan (2025–2032)" in message and "eid-al-fitr (2025–2032)" in message
    assert "set `season:` to a season name" in message
    # Festivals computed by rule know every year, and so do regions without moving festivals.
    assert name_on(date(2040, 12, 25), "US") == "christmas"
    assert name_on(date(2040, 11, 22), "US") == "thanksgiving"
    assert name_on(date(2040, 3, 1), None) == "spring-north"


def test_a_region_listing_the_festival_beats_a_global_one_then_the_shorter_window_wins():
    # Valentine's Day is global; Ramadan is listed for AE, Lunar New Year for CN.
    assert name_on(date(2027, 2, 14), "AE") == "ramadan"
    assert name_on(date(2026, 2, 14), "CN") == "lunar-new-year"
    # Both global: Cyber Monday's 4-day window beats Christmas's 26 days.
    assert name_on(date(2025, 12, 1), "US") == "black-friday"
    # Both listed for SG: Eid's 3 days beat Lunar New Year's 22.
    assert name_on(date(2029, 2, 15), "SG") == "eid-al-fitr"
    assert name_on(date(2029, 2, 12), "SG") == "lunar-new-year"


def test_a_global_festival_is_not_picked_where_it_is_not_observed():
    assert name_on(date(2025, 12, 25), "SA") == "winter-north"
    assert name_on(date(2025, 10, 31), "CN") == "autumn-north"
    assert name_on(date(2025, 10, 31), "JP") == "halloween"


def test_festivals_computed_from_easter_and_us_thanksgiving():
    assert name_on(date(2025, 11, 27), "US") == "thanksgiving"  # fourth Thursday of November 2025
    assert name_on(date(2025, 11, 28), "US") == "black-friday"
    assert name_on(date(2025, 11, 27), "UK") == "autumn-north"  # Thanksgiving is listed for US only
    assert name_on(date(2025, 11, 28), "UK") == "black-friday"
    for year in TABLE_YEARS:
        assert name_on(easter(year), "UK") == "easter"
        assert name_on(easter(year) - timedelta(47), "BR") == "carnival"  # Shrove Tuesday
    assert name_on(date(2025, 3, 4), "BR") == "carnival"
    assert name_on(date(2025, 4, 1), "JP") == "hanami"


@pytest.mark.parametrize("name", [s.name for s in SEASONS.values() if isinstance(s.when, Dated)])
def test_every_moving_festival_has_a_window_in_every_table_year(name):
    table = SEASONS[name].when
    assert table.years == TABLE_YEARS
    for year in TABLE_YEARS:
        assert table.windows_in(year), f"{name} has no window starting in {year}"


def test_lunar_new_year_window_runs_from_a_week_before_to_the_lantern_festival():
    window = SEASONS["lunar-new-year"].when.window_at(date(2026, 2, 17))
    assert (window.first, window.last) == (date(2026, 2, 10), date(2026, 3, 3))
    assert name_on(date(2026, 2, 17), "KR") == "lunar-new-year"
    assert name_on(date(2026, 3, 4), "CN") == "spring-north"


@pytest.mark.parametrize("region", [None, "AE", "AU", "SG"])
def test_every_day_of_the_table_years_picks_a_season_the_region_observes(region):
    day = date(TABLE_YEARS[0], 1, 1)
    while day.year in TABLE_YEARS:
        season = season_for(day, region)
        assert season.observed_in(region), (day, region, season.name)
        assert season.when.window_at(day) is not None
        day += timedelta(1)


def test_season_error_accepts_auto_and_names_and_suggests_close_ones():
    assert season_error(AUTO) is None and season_error("christmas") is None
    message = season_error("Lunar New Year")
    assert message.startswith("must be 'auto' or a season of the catalogue (docs/seasons.md): ")
    assert "got 'Lunar New Year'; did you mean 'lunar-new-year'?" in message
    assert all(name in message for name in SEASONS)
    assert season_error("summer").endswith("did you mean 'summer-south' or 'summer-north'?")
    assert season_error("deepavali").endswith("did you mean 'diwali'?")
    # Aliases are suggested, never accepted: one name per season keeps the season:NAME tags unique.
    assert season_error("xmas").endswith("got 'xmas'; did you mean 'christmas'?")
    assert season_error("Chinese New Year").endswith("did you mean 'lunar-new-year'?")
    assert season_error(5).endswith("got 5")


def test_region_error_suggests_codes_from_codes_and_names():
    assert region_error("US") is None
    assert region_error("us").endswith("got 'us'; did you mean 'US'?")
    assert region_error("germany").endswith("did you mean 'DE'?")
    message = region_error("XX")
    assert message == ("must be a region code of the catalogue (docs/seasons.md): "
                       f"{', '.join(REGIONS)}; got 'XX'")
    with pytest.raises(ValueError, match=r"region must be a region code .*got 'Australia'; did you mean 'AU'\?"):
        season_for(date(2026, 1, 1), "Australia")


def test_the_catalogue_has_the_required_festivals_and_both_hemispheres_seasons():
    assert set(REQUIRED) <= set(SEASONS)
    for base in ("spring", "summer", "autumn", "winter"):
        for hemisphere in ("north", "south"):
            season = SEASONS[f"{base}-{hemisphere}"]
            assert season.meteorological and season.hemisphere == hemisphere


@pytest.mark.parametrize("season", SEASONS.values(), ids=list(SEASONS))
def test_every_season_is_complete_with_a_valid_palette(season):
    assert 3 <= len(season.palette) <= 6
    assert all(re.fullmatch(r"#[0-9a-f]{6}", colour) for colour in season.palette), season.palette
    assert season.title and season.modifiers and season.cultural_elements
    assert all(code == "global" or code in REGIONS for code in (*season.regions, *season.not_in))


def test_every_regions_hemisphere():
    south = {"BR", "AR", "AU", "NZ", "ZA"}
    assert {code: region.hemisphere for code, region in REGIONS.items()} == {
        code: "south" if code in south else "north" for code in REGIONS}
    assert {"US", "CA", "MX", "UK", "EU", "DE", "FR", "ES", "IN", "CN", "JP", "KR", "SG", "AE", "SA"} <= set(REGIONS)


def test_season_is_frozen_and_tagged_by_name():
    season = SEASONS["hanami"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        season.name = "other"
    assert season_tag(season) == "season:hanami"


def _shipped() -> dict:
    return yaml.safe_load(resources.files("assetql_dagster.domain").joinpath("seasons.yaml").read_text("utf-8"))


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda d: d["festivals"]["hanami"].update(palette=["#ffb7c5", "pink"]),
     "seasons.yaml: season 'hanami': palette must be 3 to 6 lowercase '#rrggbb' colours, got ['#ffb7c5', 'pink']"),
    (lambda d: d["festivals"]["diwali"].update(regions=["IN", "XX"]), "season 'diwali': regions must be among US, "),
    (lambda d: d["festivals"]["diwali"]["when"]["dates"].pop(3),
     "season 'diwali': dates must have a window starting in every year of the table, missing, got [2028]"),
    (lambda d: d["festivals"]["halloween"]["when"].update(every_year="10-15..02-29"),
     "every_year must be 'MM-DD..MM-DD' with real days (not 02-29), got '02-29'"),
    (lambda d: d["festivals"]["hanami"].update(aliases=["sakura", "easter"]),
     "seasons.yaml: aliases: must not be season names, got ['easter']"),
    (lambda d: d["festivals"]["christmas-south"].update(regions=["AU", "US"]),
     "regions must be listed, all in the south hemisphere"),
])
def test_catalogue_mistakes_are_named(edit, expected):
    data = copy.deepcopy(_shipped())
    edit(data)
    with pytest.raises(CatalogueError) as raised:
        load_catalogue(data)
    assert expected in str(raised.value)


def test_docs_seasons_md_is_generated_from_the_catalogue():
    assert (ROOT / "docs" / "seasons.md").read_text() == docs_markdown(), (
        "docs/seasons.md is stale: python -m assetql_dagster.domain.seasons > docs/seasons.md")
