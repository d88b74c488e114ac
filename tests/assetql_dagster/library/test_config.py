"""library.yaml: every setting parsed and checked, problems named all at once, development mode
only without a file, and README's table in sync with the one declaration."""

import ipaddress
from pathlib import Path

import pytest

from assetql_dagster.library.config import (
    CONFIG_ENV,
    ApiToken,
    ConfigError,
    LibraryConfig,
    Role,
    config_table_markdown,
    load_config,
    parse_config,
)

ROOT = Path(__file__).resolve().parents[3]
DIGEST = "a" * 64


def test_a_full_config_is_parsed_into_typed_settings():
    config = parse_config({
        "trusted_proxies": ["10.0.0.5", "192.168.0.0/24"],
        "roles": {"users": {"Ana@Studio.Example": "admin"}, "groups": {"studio-team": "creator"}},
        "tokens": [{"sha256": DIGEST.upper(), "user": "ci", "role": "viewer"}],
        "default_style_profile": "brand-x@2",
        "default_lora": "/models/brand.safetensors",
        "rate_limit_per_minute": 30,
        "dagster_url": "http://127.0.0.1:3000/",
    }, "library.yaml")
    assert config.trusted_proxies == (ipaddress.ip_network("10.0.0.5/32"), ipaddress.ip_network("192.168.0.0/24"))
    assert config.user_roles == {"ana@studio.example": Role.ADMIN}  # e-mails compare without case
    assert config.group_roles == {"studio-team": Role.CREATOR}
    assert config.tokens == (ApiToken(DIGEST, "ci", Role.VIEWER),)
    assert (config.default_style_profile, config.default_lora) == ("brand-x@2", "/models/brand.safetensors")
    assert (config.rate_limit_per_minute, config.dagster_url) == (30, "http://127.0.0.1:3000")
    assert not config.development and config.source == "library.yaml"


def test_every_problem_is_reported_with_the_setting_and_what_was_expected():
    with pytest.raises(ConfigError) as caught:
        parse_config({
            "trusted_proxies": ["not-an-address"],
            "roles": {"users": {"ana@studio.example": "boss"}},
            "tokens": [{"sha256": "abc", "user": "ci", "role": "viewer"}],
            "default_style_profile": "preset:watercolor",
            "rate_limit_per_minute": 0,
            "dagster_url": "ftp://x",
            "colour": "blue",
        }, "library.yaml")
    problems = "\n".join(caught.value.problems)
    assert len(caught.value.problems) == 7
    for expected in ("trusted_proxies[0]: must be an IP address or CIDR range", "roles.users['ana@studio.example']: "
                     "must be one of viewer, creator, admin, got 'boss'", "tokens[0].sha256: must be the 64 hex digits",
                     "default_style_profile: must name a stored profile", "rate_limit_per_minute: must be a whole number "
                     "from 1 to 100000, got 0", "dagster_url: must be the webserver's http(s) URL",
                     "unknown setting 'colour'"):
        assert expected in problems


def test_roles_order_each_role_above_the_ones_it_includes():
    assert Role.VIEWER < Role.CREATOR < Role.ADMIN
    assert Role.parse(" Creator ", "x") is Role.CREATOR


def test_no_file_at_the_default_place_is_development_mode(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    config = load_config()
    assert config.development and config == LibraryConfig()


def test_an_empty_file_ends_development_mode(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    (tmp_path / "library.yaml").write_text("")
    config = load_config()
    assert not config.development and config.user_roles == {} and config.tokens == ()


def test_a_file_named_explicitly_must_exist(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config()
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "other.yaml")


def test_a_file_that_is_not_yaml_says_so(tmp_path):
    path = tmp_path / "library.yaml"
    path.write_text("roles: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid UTF-8 YAML"):
        load_config(path)


def test_readme_shows_the_settings_table():
    assert config_table_markdown() in (ROOT / "README.md").read_text()
