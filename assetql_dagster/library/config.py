"""The asset library's settings (`library.yaml`): one declaration per setting, loading and checking.

Each `LibraryConfig` field declares its setting once: default, parser (which checks the value and
says what was expected) and documentation; `load_config` and README.md's table both come from
`dataclasses.fields(LibraryConfig)` (`python -m assetql_dagster.library.config` prints the table).

Without a config file the library runs in development mode: one local administrator and nothing
else (see `auth.identify`). A file, even an empty one, turns that off.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import os
import re
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from assetql_dagster.domain.profiles import parse_ref

CONFIG_ENV = "ASSETQL_LIBRARY_CONFIG"
DEFAULT_CONFIG_FILE = "library.yaml"
MAX_CONFIG_BYTES = 256_000
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_QUOTE = reprlib.Repr()
_QUOTE.maxstring = _QUOTE.maxother = 80


class Role(enum.IntEnum):
    """What a person may do; each role may do everything the roles below it may."""

    VIEWER = 1  # browse, search, download
    CREATOR = 2  # submit and regenerate batches, review, export, style profiles, quick generate
    ADMIN = 3  # everything: roles page, ownership transfer, delete

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: object, where: str) -> Role:
        names = [r.label for r in cls]
        if isinstance(value, str) and value.strip().lower() in names:
            return cls[value.strip().upper()]
        raise ValueError(f"{where}: must be one of {', '.join(names)}, got {_QUOTE.repr(value)}")


@dataclass(frozen=True)
class ApiToken:
    """An API token for scripts: the SHA-256 of the secret (never the secret), whose it is and its role."""

    sha256: str
    user: str
    role: Role


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """Every problem of a config file, one per line, each naming the setting and what was expected."""

    def __init__(self, file: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{file}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or any(ord(c) < 32 for c in value):
        raise ValueError(f"{where}: must be one line of non-empty text, got {_QUOTE.repr(value)}")
    return value.strip()


def _mapping(value: object, where: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: must be a mapping, got {_QUOTE.repr(value)}")
    return value


def _proxies(value: object) -> tuple[Network, ...]:
    if not isinstance(value, list):
        raise ValueError(f"trusted_proxies: must be a list of addresses or CIDR ranges, got {_QUOTE.repr(value)}")
    networks = []
    for i, item in enumerate(value):
        try:
            networks.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise ValueError(
                f"trusted_proxies[{i}]: must be an IP address or CIDR range such as 10.0.0.5 or 10.0.0.0/24, "
                f"got {_QUOTE.repr(item)}"
            ) from None
    return tuple(networks)


def _roles(value: object) -> tuple[dict[str, Role], dict[str, Role]]:
    data = _mapping(value, "roles")
    unknown = sorted(str(k) for k in data if k not in ("users", "groups"))
    if unknown:
        raise ValueError(f"roles: unknown key(s) {unknown}; expected users and/or groups")
    users = {
        # E-mail addresses compare without case, as mail systems and identity providers treat them.
        _text(name, "roles.users key").lower(): Role.parse(role, f"roles.users[{name!r}]")
        for name, role in _mapping(data.get("users") or {}, "roles.users").items()
    }
    groups = {
        _text(name, "roles.groups key"): Role.parse(role, f"roles.groups[{name!r}]")
        for name, role in _mapping(data.get("groups") or {}, "roles.groups").items()
    }
    return users, groups


def _tokens(value: object) -> tuple[ApiToken, ...]:
    if not isinstance(value, list):
        raise ValueError(f"tokens: must be a list of {{sha256, user, role}}, got {_QUOTE.repr(value)}")
    tokens = []
    for i, item in enumerate(value):
        entry = _mapping(item, f"tokens[{i}]")
        if set(entry) != {"sha256", "user", "role"}:
            raise ValueError(f"tokens[{i}]: must have exactly the keys sha256, user and role, got {sorted(map(str, entry))}")
        digest = str(entry["sha256"]).strip().lower()
        if not _SHA256_RE.fullmatch(digest):
            raise ValueError(
                f"tokens[{i}].sha256: must be the 64 hex digits of the token's SHA-256 "
                f"(printf %s TOKEN | sha256sum), got {_QUOTE.repr(entry['sha256'])}"
            )
        tokens.append(ApiToken(digest, _text(entry["user"], f"tokens[{i}].user"), Role.parse(entry["role"], f"tokens[{i}].role")))
    digests = [t.sha256 for t in tokens]
    if len(set(digests)) != len(digests):
        raise ValueError("tokens: the same sha256 is listed twice")
    return tuple(tokens)


def _profile(value: object) -> str | None:
    if value is None:
        return None
    ref = parse_ref(_text(value, "default_style_profile"))
    if ref.preset:
        raise ValueError(f"default_style_profile: must name a stored profile (brand-x or brand-x@2), got '{ref}'")
    return str(ref)


def _optional_text(name: str) -> Callable[[object], str | None]:
    return lambda value: None if value is None else _text(value, name)


def _rate(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
        raise ValueError(f"rate_limit_per_minute: must be a whole number from 1 to 100000, got {_QUOTE.repr(value)}")
    return value


def _url(value: object) -> str | None:
    if value is None:
        return None
    url = _text(value, "dagster_url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"dagster_url: must be the webserver's http(s) URL, e.g. http://127.0.0.1:3000, got {url!r}")
    return url.rstrip("/")


def _option(default: Any, parse: Callable[[object], Any], doc: str, shown: str) -> Any:
    """A LibraryConfig field: `parse` turns the YAML value into the field's (ValueError naming it)."""
    return dataclasses.field(default=default, metadata={"parse": parse, "doc": doc, "shown": shown})


@dataclass(frozen=True)
class LibraryConfig:
    """The library's settings; every field but `source` is a key of `library.yaml`."""

    trusted_proxies: tuple[Network, ...] = _option(
        (), _proxies,
        "addresses or CIDR ranges of the reverse proxy; `X-Forwarded-Email`/`X-Forwarded-Groups` are "
        "believed only on requests from them", "none")
    roles: tuple[dict[str, Role], dict[str, Role]] = _option(
        ({}, {}), _roles,
        "`users:` (e-mail → role) and `groups:` (group → role); roles are `viewer`, `creator`, `admin`, "
        "and a person gets the highest of theirs", "none")
    tokens: tuple[ApiToken, ...] = _option(
        (), _tokens, "API tokens for scripts: a list of `{sha256, user, role}` (the SHA-256 of the token, never "
        "the token)", "none")
    default_style_profile: str | None = _option(
        None, _profile, "style profile (`brand-x` or `brand-x@2`) quick generate uses", "none")
    default_lora: str | None = _option(
        None, _optional_text("default_lora"), "brand LoRA (`.safetensors` file or folder) quick generate applies",
        "none")
    rate_limit_per_minute: int = _option(
        100, _rate, "requests per minute per person (or per address before sign-in); more answer 429", "100")
    dagster_url: str | None = _option(
        None, _url, "the Dagster webserver to launch runs through (GraphQL); without it runs go through the "
        "local instance (`DAGSTER_HOME`)", "none")
    # Where it came from: None when there was no file (development mode, one local administrator).
    source: str | None = None

    @property
    def development(self) -> bool:
        return self.source is None

    @property
    def user_roles(self) -> dict[str, Role]:
        return self.roles[0]

    @property
    def group_roles(self) -> dict[str, Role]:
        return self.roles[1]


_OPTIONS = {f.name: f for f in dataclasses.fields(LibraryConfig) if "parse" in f.metadata}


def parse_config(data: object, file: str) -> LibraryConfig:
    """A config from a YAML document's data; ConfigError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(file, [f"must be a mapping of 'setting: value' lines, got {type(data).__name__}"])
    problems = [
        f"unknown setting {_QUOTE.repr(str(key))}; the settings are {', '.join(_OPTIONS)}"
        for key in data if key not in _OPTIONS
    ]
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in _OPTIONS:
            try:
                values[key] = _OPTIONS[key].metadata["parse"](value)
            except ValueError as error:
                problems.append(str(error))
    if problems:
        raise ConfigError(file, problems)
    return LibraryConfig(**values, source=file)


def config_path() -> tuple[Path, bool]:
    """The config file to read and whether it was named explicitly (`ASSETQL_LIBRARY_CONFIG`)."""
    named = os.environ.get(CONFIG_ENV)
    return Path(named or DEFAULT_CONFIG_FILE), bool(named)


def load_config(path: Path | None = None) -> LibraryConfig:
    """The config at `path` (default: `config_path()`); development mode when the default file is
    absent. A file named explicitly (argument or environment) must exist."""
    explicit = path is not None
    if path is None:
        path, explicit = config_path()
    path = Path(path)
    if not path.exists():
        if explicit:
            raise ConfigError(str(path), ["the library config file does not exist"])
        return LibraryConfig()
    if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(str(path), [f"must be a regular YAML file of at most {MAX_CONFIG_BYTES:,} bytes"])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(str(path), [f"is not valid UTF-8 YAML: {' '.join(str(error).split())}"]) from None
    return parse_config(data, str(path))


def config_table_markdown() -> str:
    """README.md's `library.yaml` table (key | default | meaning), one row per setting."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for name, field in _OPTIONS.items():
        lines.append(f"| `{name}` | {field.metadata['shown']} | {field.metadata['doc'].replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(config_table_markdown())
