import datetime
import textwrap

import pytest
import yaml
from dagster._utils.schedules import is_valid_cron_string

from assetql_dagster.domain.export_writers import EXPORT_FORMATS
from assetql_dagster.domain.campaigns import (
    Campaign,
    CampaignError,
    campaign_partition_key,
    check_cron,
    load_campaigns,
)

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
