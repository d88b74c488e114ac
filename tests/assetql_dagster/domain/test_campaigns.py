import datetime
import textwrap

import pytest
import yaml
from dagster._utils.schedules import is_valid_cron_string

from assetql_dagster.domain.export_writers import EXPORT_FORMATS
from assetql_dagster.domain.campaigns import (
    PALETTE_LOCK,
    Campaign,
    CampaignError,
    campaign_overrides,
    campaign_partition_key,
    check_cron,
    load_campaigns,
    profile_modifiers,
)
from assetql_dagster.domain.errors import BatchValidationError
from assetql_dagster.domain.settings import BatchSettings

VALID_CRONS = ["0 6 * * MON", "*/15 * * * *", "5/10 8-18 * * 1-5", "0 6 1,15 jan-mar *",
               "30 23 31 12 7", "0 6 1-5/2 * sun"]


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "batches" / "winter").mkdir(parents=True)
    (tmp_path / "batches" / "spring.csv").write_text("prompt\nsnowy cabin\n")
    (tmp_path / "references" / "winter").mkdir(parents=True)
    return tmp_path


def _write(directory, campaigns) -> str:
    path = directory / "campaigns.yaml"
    path.write_text(yaml.safe_dump({"campaigns": campaigns}))
    return str(path)


def _problems(path) -> list[str]:
    with pytest.raises(CampaignError) as info:
        load_campaigns(path)
    assert str(info.value).splitlines()[0].endswith(f"campaigns file {path}:")
    return info.value.problems


def test_full_campaign_is_loaded_with_resolved_paths(workdir):
    path = workdir / "campaigns.yaml"
    path.write_text(textwrap.dedent("""\
        campaigns:
          - name: winter-sale
            cron: "0 6 * * MON"
            source: batches/winter
            modifiers: winter holiday, snow, warm lights
            style_profile: references/winter
            exports: [zip, gallery, links]
            timezone: Europe/Berlin
            settings: {images_per_row: 2, seed: 7}
            description: Weekly winter refresh
          - name: spring
            cron: "30 8 1 * *"
            source: s3://assetql-inputs/spring/rows.csv
            style_profile: winter-sale-2024
    """))
    winter, spring = load_campaigns(path)
    assert winter == Campaign(
        name="winter-sale",
        cron="0 6 * * MON",
        source=str(workdir / "batches" / "winter"),
        modifiers="winter holiday, snow, warm lights",
        style_profile=str(workdir / "references" / "winter"),
        exports=("zip", "gallery", "links"),
        timezone="Europe/Berlin",
        settings={"images_per_row": 2, "seed": 7},
        description="Weekly winter refresh",
    )
    assert (spring.source, spring.style_profile) == ("s3://assetql-inputs/spring/rows.csv",
                                                     "winter-sale-2024")
    assert (spring.timezone, spring.exports, spring.modifiers) == ("UTC", (), "")


def test_csv_source_and_absolute_path_are_accepted(workdir, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    csv = workdir / "batches" / "spring.csv"
    path = _write(elsewhere, [{"name": "spring", "cron": "0 6 * * *", "source": str(csv)}])
    assert load_campaigns(path)[0].source == str(csv)


def test_every_problem_is_reported_with_campaign_and_field(workdir):
    path = _write(workdir, [
        {"name": "Winter Sale", "cron": "0 25 * * *", "source": "batches/missing",
         "exports": ["zip", "PDF!"], "timezone": "Mars/Olympus", "crom": "x"},
        {"cron": "0 6 * *", "style_profile": "./references/none", "settings": ["a"]},
        {"name": "dup", "cron": "0 6 * * *", "source": "batches/winter"},
        {"name": "dup", "cron": "0 7 * * *", "source": "batches/spring.csv"},
        "not a mapping",
    ])
    problems = _problems(path)
    expected = [
        "campaign #1 ('Winter Sale'), field 'crom': unknown field",
        "campaign #1 ('Winter Sale'), field 'name': 'Winter Sale' must use only lowercase",
        "campaign #1 ('Winter Sale'), field 'cron': '0 25 * * *', hour '25': 25 is outside 0-23",
        "campaign #1 ('Winter Sale'), field 'source': 'batches/missing' (resolved to",
        "campaign #1 ('Winter Sale'), field 'exports': must be a non-empty list of export names",
        "campaign #1 ('Winter Sale'), field 'timezone': 'Mars/Olympus' is not an IANA time zone",
        "campaign #2, field 'name': is required",
        "campaign #2, field 'cron': '0 6 * *' has 4 fields; expected 5",
        "campaign #2, field 'source': is required",
        "campaign #2, field 'style_profile': './references/none' (resolved to",
        "campaign #2, field 'settings': ['a'] must be a mapping",
        "campaign #4 ('dup'), field 'name': 'dup' is already used by campaign #3",
        "campaign #5: must be a mapping of fields, got 'not a mapping'",
    ]
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected):
        assert problem.startswith(start), problem


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("campaigns: [", "is not valid YAML"),
        ("schedules: []", "only the key 'campaigns'"),
        ("campaigns: {name: x}", "'campaigns' must be a list"),
    ],
)
def test_malformed_files_are_rejected(tmp_path, content, message):
    path = tmp_path / "campaigns.yaml"
    path.write_text(content)
    assert message in _problems(str(path))[0]


def test_missing_file_is_reported(tmp_path):
    assert "cannot be read" in _problems(str(tmp_path / "nope.yaml"))[0]


def test_empty_campaign_list_is_allowed(tmp_path):
    path = tmp_path / "campaigns.yaml"
    path.write_text("campaigns:\n")
    assert load_campaigns(path) == []


@pytest.mark.parametrize("expression", VALID_CRONS)
def test_valid_cron_strings_are_accepted_here_and_by_dagster(expression):
    assert check_cron(expression) == expression
    assert is_valid_cron_string(expression)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("@daily", "has 1 fields; expected 5"),
        ("60 * * * *", "minute '60': 60 is outside 0-59"),
        ("0 0 0 * *", "day of month '0': 0 is outside 1-31"),
        ("0 0 * 13 *", "month '13': 13 is outside 1-12"),
        ("0 0 * * 8", "day of week '8': 8 is outside 0-7"),
        ("0 0 * * 5-1", "range '5-1' runs backwards"),
        ("*/0 * * * *", "step in '*/0' must be at least 1"),
        ("0 0 * * funday", "'funday' is not a number or a name like sun"),
        ("1,,2 * * * *", "'' is not '*', a value"),
        ("0 0 * * ²", "'²' is not '*', a value"),
    ],
)
def test_invalid_cron_strings_are_explained(expression, message):
    with pytest.raises(ValueError) as info:
        check_cron(expression)
    assert str(info.value).startswith(repr(expression))
    assert message in str(info.value)


def test_every_export_format_is_accepted(workdir):
    path = _write(workdir, [{"name": "all", "cron": "0 6 * * *", "source": "batches/winter",
                             "exports": list(EXPORT_FORMATS)}])
    assert load_campaigns(path)[0].exports == EXPORT_FORMATS


def test_partition_key_is_name_date_and_short_hash():
    day, digest = datetime.date(2025, 12, 1), "AbCdEf0123456789"
    key = campaign_partition_key("Winter Sale!", day, digest)
    assert key == f"winter-sale-{day.isoformat()}-{digest[:8].lower()}"


def test_partition_key_needs_usable_name_and_hash():
    with pytest.raises(ValueError, match="'!!!'"):
        campaign_partition_key("!!!", datetime.date(2025, 12, 1), "abcdef01")


# Campaign profiles: brand colours, theme, audience and tone, with or without a schedule.

def test_a_profile_needs_no_schedule_and_reads_its_brand_fields(workdir):
    path = _write(workdir, [{"name": "winter-sale", "brand_colors": ["#C8102E", "#ffffff"],
                             "theme": " winter holiday ", "audience": "young families", "tone": "playful and warm",
                             "style_profile": "references/winter", "exports": ["zip"]}])
    [profile] = load_campaigns(path)
    assert (profile.cron, profile.source, profile.scheduled) == (None, None, False)
    assert profile.brand_colors == ("#c8102e", "#ffffff")
    assert (profile.theme, profile.audience, profile.tone) == ("winter holiday", "young families", "playful and warm")
    assert profile.style_profile == str(workdir / "references" / "winter")


def test_profile_fields_are_checked_with_campaign_and_field(workdir):
    path = _write(workdir, [
        {"name": "a", "cron": "0 6 * * *"},
        {"name": "b", "source": "batches/winter"},
        {"name": "c", "brand_colors": "#c8102e", "theme": "", "audience": 3, "tone": "warm\nand loud"},
        {"name": "d", "brand_colors": ["#c8102e", "red"]},
        {"name": "e", "brand_colors": "season"},
        {"name": "f", "brand_colors": ["#c8102e"], "settings": {"palette": ["#000000"]}},
        {"name": "g", "settings": {"campaign": "a"}},
    ])
    assert _problems(path) == [
        "campaign #1 ('a'), field 'source': is required with 'cron' (the batch each tick registers)",
        "campaign #2 ('b'), field 'cron': is required with 'source' (when to register it); a profile without "
        "a schedule has neither",
        "campaign #3 ('c'), field 'brand_colors': '#c8102e' must be a list of 1 to 8 colours as '#rrggbb' "
        "(quoted in YAML)",
        "campaign #3 ('c'), field 'theme': '' must be one line of non-empty text, e.g. 'winter holiday'",
        "campaign #3 ('c'), field 'audience': 3 must be one line of non-empty text, e.g. 'winter holiday'",
        "campaign #3 ('c'), field 'tone': 'warm\\nand loud' must be one line of non-empty text, e.g. 'winter holiday'",
        "campaign #4 ('d'), field 'brand_colors': ['#c8102e', 'red'] must be a list of 1 to 8 colours as '#rrggbb' "
        "(quoted in YAML)",
        "campaign #5 ('e'), field 'brand_colors': 'season' must be a list of 1 to 8 colours as '#rrggbb' "
        "(quoted in YAML)",
        "campaign #6 ('f'), field 'brand_colors': the campaign's settings also set 'palette'; give the colours once",
        "campaign #7 ('g'), field 'settings': cannot set 'campaign': a campaign profile cannot apply another campaign",
    ]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"theme": "winter holiday", "audience": "young families", "tone": "playful and warm"},
         "winter holiday theme, for young families, playful and warm tone"),
        # Already worded as a phrase: left as written.
        ({"theme": "Winter Holiday Theme", "audience": "For gamers", "tone": "calm tone"},
         "Winter Holiday Theme, For gamers, calm tone"),
        ({"modifiers": " snow, warm lights ", "tone": "cheerful"}, "snow, warm lights, cheerful tone"),
        # 'theme' inside a word is not the word theme.
        ({"theme": "anthemic"}, "anthemic theme"),
        ({}, ""),
    ],
)
def test_profile_modifiers_read_as_prompt_phrases(fields, words):
    assert profile_modifiers(Campaign(name="x", **fields)) == words


BRAND = ("#c8102e", "#ffffff")


def test_overrides_bring_brand_colours_with_a_palette_lock_exports_settings_and_modifiers():
    campaign = Campaign(name="sale", brand_colors=BRAND, theme="winter holiday", exports=("zip", "links"),
                        settings={"seed": 7, "modifiers": ["snow", "stars"]})
    settings = BatchSettings(modifiers="painterly", locks={"lighting": 50})
    assert campaign_overrides(campaign, settings, "c.yaml") == {
        "seed": 7, "exports": ["zip", "links"], "palette": list(BRAND),
        "locks": {"palette": PALETTE_LOCK, "lighting": 50},
        # The campaign's own `modifiers` setting replaces the batch's; its words are appended.
        "modifiers": "snow, stars, winter holiday theme",
    }


def test_a_palette_lock_in_the_campaign_settings_is_kept():
    campaign = Campaign(name="sale", brand_colors=BRAND, settings={"locks": {"palette": 30, "texture": 20}})
    overrides = campaign_overrides(campaign, BatchSettings(), "c.yaml")
    assert overrides["locks"] == {"palette": 30, "texture": 20}


def test_the_batch_own_settings_win_except_modifiers_and_the_palette_lock():
    campaign = Campaign(name="sale", brand_colors=BRAND, audience="kids", exports=("zip",),
                        settings={"seed": 7, "steps": 2, "modifiers": "snow", "locks": {"texture": 20}})
    settings = BatchSettings(seed=42, modifiers="painterly", exports=["gallery"], locks={"lighting": 50})
    overrides = campaign_overrides(campaign, settings, "c.yaml", own={"seed", "modifiers", "exports", "locks"})
    assert overrides == {"steps": 2, "palette": list(BRAND), "locks": {"palette": PALETTE_LOCK, "lighting": 50},
                         "modifiers": "painterly, snow, for kids"}


def test_a_batch_with_its_own_palette_gets_no_brand_colours_nor_lock():
    campaign = Campaign(name="sale", brand_colors=BRAND)
    assert campaign_overrides(campaign, BatchSettings(palette="season"), "c.yaml", own={"palette"}) == {}


def test_invalid_campaign_settings_name_file_campaign_and_setting():
    with pytest.raises(BatchValidationError) as info:
        campaign_overrides(Campaign(name="sale", settings={"seed": "x"}), BatchSettings(), "c.yaml")
    [problem] = info.value.problems
    assert (problem.file, problem.column) == ("c.yaml campaign 'sale'", "seed")
