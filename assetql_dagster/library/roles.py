"""Who may do what, changed from the library by an admin: roles of e-mails and groups, API tokens.

Every change reads the config file as it is on disk (so hand edits made since the library started
are kept), applies one edit, checks the whole new config with `parse_config` (the checks the library
starts with) and refuses one that would leave no person with the admin role. Then it writes the file
atomically (a temporary file in the same folder, renamed over the old one, so neither the library
nor a restart ever reads half a file), keeps the previous file as `NAME.bak`, puts the new config
in use from the next request (`Library.config`) and records the change in the activity log.
YAML comments in the file are not kept (the writer cannot keep them); the `.bak` holds the file as
it was before the latest change.

A new API token is shown once: only its SHA-256 is stored, as for hand-made tokens.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from assetql_dagster.library.auth import Identity
from assetql_dagster.library.config import (
    MAX_CONFIG_BYTES, ApiToken, ConfigError, LibraryConfig, Role, load_config, parse_config,
)
from assetql_dagster.library.service import BadRequest, Conflict, Library, NotFound
from assetql_dagster.pipeline.reviews import record_activity

KINDS = ("user", "group")  # what a role is given to: an e-mail (a person) or a group of the proxy
BACKUP_SUFFIX = ".bak"
TOKEN_PREFIX = "aql_"  # so a leaked token is recognisable in logs and secret scanners
NAME_MAX = 254  # the longest e-mail address; group names and token owners are held to it too
SHOWN_DIGITS = 12  # of a token's SHA-256, enough to tell tokens apart on the page and in the log
ACTIVITY_TARGET = "access"  # activity entries of these changes: access/user/…, access/group/…, access/token/…
HEADER = ("# The asset library's config (README.md, \"Asset library\"). The admin page rewrites this file;\n"
          "# the previous version is kept beside it as {backup}.\n")
# One change at a time (the library serves from one process), so two admins never drop each other's.
_LOCK = threading.Lock()


@dataclass(frozen=True)
class NewToken:
    """A token just made: the secret (shown once, never stored) and what the config now holds of it."""

    secret: str
    entry: ApiToken


def admins(config: LibraryConfig) -> list[str]:
    """The people holding the admin role, as 'user X' or 'group Y'. API tokens are scripts, not
    people, so an admin token alone does not keep anybody able to administer the library."""
    return ([f"user {u}" for u, r in config.user_roles.items() if r is Role.ADMIN]
            + [f"group {g}" for g, r in config.group_roles.items() if r is Role.ADMIN])


def config_document(path: Path, config: LibraryConfig) -> dict[str, Any]:
    """The YAML data of `config` to write to `path`: the file's other settings as written there,
    roles and tokens as `config` holds them."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8-sig")) if path.exists() else None
    data = dict(raw) if isinstance(raw, dict) else {}
    data["roles"] = {"users": {u: r.label for u, r in config.user_roles.items()},
                     "groups": {g: r.label for g, r in config.group_roles.items()}}
    data["tokens"] = [{"sha256": t.sha256, "user": t.user, "role": t.role.label} for t in config.tokens]
    return data


def write_config(path: Path, data: dict[str, Any]) -> LibraryConfig:
    """Check `data` as the library would read it, then replace `path` with it atomically, keeping
    the old file as `path.bak`; the config as read back from the new file."""
    text = HEADER.format(backup=path.name + BACKUP_SUFFIX) + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    parse_config(yaml.safe_load(text), str(path))  # ConfigError: nothing is written
    if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
        raise BadRequest(f"{path}: the config would be over {MAX_CONFIG_BYTES:,} bytes; remove some roles or tokens")
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if path.exists():
            shutil.copymode(path, temporary)  # keep who may read it: it names people and token hashes
            shutil.copy2(path, path.with_name(path.name + BACKUP_SUFFIX))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return load_config(path)


def _one_line(value: object, what: str) -> str:
    text = str(value or "").strip()
    if not text or len(text) > NAME_MAX or any(ord(c) < 32 for c in text):
        raise BadRequest(f"{what}: must be 1 to {NAME_MAX} characters on one line, got {text[:60]!r}")
    return text


def holder(kind: str, name: object) -> str:
    """`name` as the config keys it: an e-mail in lower case, a group as written (BadRequest when unfit)."""
    if kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}, got {str(kind)[:40]!r}")
    text = _one_line(name, kind)
    # E-mail addresses compare without case (see config.py); group names are exact.
    return text.lower() if kind == "user" else text


def _role(value: object) -> Role:
    try:
        return Role.parse(value, "role")
    except ValueError as error:
        raise BadRequest(str(error)) from None


def _config_file(lib: Library) -> Path:
    if lib.config.development:
        raise Conflict("roles need a config file: this library runs in development mode (no library.yaml); "
                       "create one on the admin page first")
    return Path(lib.config.source or "")


def _change(lib: Library, edit: Callable[[LibraryConfig], LibraryConfig]) -> tuple[LibraryConfig, LibraryConfig]:
    """Apply `edit` to the config on disk and write the result: (before, after)."""
    path = _config_file(lib)
    with _LOCK:
        try:
            before = load_config(path)
        except ConfigError as broken:
            raise Conflict(f"the config file has problems; fix it by hand first. {broken}") from None
        after = edit(before)
        if admins(before) and not admins(after):
            raise Conflict(f"that would leave nobody with the admin role ({', '.join(admins(before))} is the last "
                           "admin); give someone else the admin role first")
        try:
            lib.config = write_config(path, config_document(path, after))
        except ConfigError as invalid:
            raise BadRequest(str(invalid)) from None
    return before, lib.config


def _with_mapping(config: LibraryConfig, kind: str, mapping: dict[str, Role]) -> LibraryConfig:
    roles = (mapping, config.group_roles) if kind == "user" else (config.user_roles, mapping)
    return replace(config, roles=roles)


def _mappings(config: LibraryConfig, kind: str) -> dict[str, Role]:
    return dict(config.user_roles if kind == "user" else config.group_roles)


def set_role(lib: Library, identity: Identity, kind: str, name: str, role: str) -> Role | None:
    """Give user (e-mail) or group `name` the `role`; the role it had before (None: it had none)."""
    name, new = holder(kind, name), _role(role)

    def edit(config: LibraryConfig) -> LibraryConfig:
        mapping = _mappings(config, kind)
        mapping[name] = new
        return _with_mapping(config, kind, mapping)

    before, _ = _change(lib, edit)
    old = _mappings(before, kind).get(name)
    record_activity(lib.catalog, identity.user, "role.set", f"{ACTIVITY_TARGET}/{kind}/{name}",
                    f"{new.label}" + (f" (was {old.label})" if old else " (new)"))
    return old


def remove_role(lib: Library, identity: Identity, kind: str, name: str) -> Role:
    """Take user or group `name`'s role away; the role it had (NotFound when it had none)."""
    name = holder(kind, name)

    def edit(config: LibraryConfig) -> LibraryConfig:
        mapping = _mappings(config, kind)
        if mapping.pop(name, None) is None:
            raise NotFound(f"{kind} {name[:200]!r} has no role in the config")
        return _with_mapping(config, kind, mapping)

    before, _ = _change(lib, edit)
    old = _mappings(before, kind)[name]
    record_activity(lib.catalog, identity.user, "role.remove", f"{ACTIVITY_TARGET}/{kind}/{name}", f"was {old.label}")
    return old


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(lib: Library, identity: Identity, user: str, role: str) -> NewToken:
    """A new API token acting as `user` (a person's e-mail or a script's name) with `role`."""
    owner, granted = _one_line(user, "token user"), _role(role)
    secret = new_secret()
    entry = ApiToken(hashlib.sha256(secret.encode("utf-8")).hexdigest(), owner, granted)
    _change(lib, lambda config: replace(config, tokens=(*config.tokens, entry)))
    record_activity(lib.catalog, identity.user, "token.create", f"{ACTIVITY_TARGET}/token/{entry.sha256[:SHOWN_DIGITS]}",
                    f"for {owner} as {granted.label}")
    return NewToken(secret, entry)


def revoke_token(lib: Library, identity: Identity, sha256: str) -> ApiToken:
    """Remove the token whose SHA-256 is `sha256` (all 64 hex digits); it stops working at once."""
    digest = str(sha256 or "").strip().lower()

    def edit(config: LibraryConfig) -> LibraryConfig:
        kept = tuple(t for t in config.tokens if t.sha256 != digest)
        if len(kept) == len(config.tokens):
            raise NotFound(f"no API token with SHA-256 {digest[:64]!r}")
        return replace(config, tokens=kept)

    before, _ = _change(lib, edit)
    gone = next(t for t in before.tokens if t.sha256 == digest)
    record_activity(lib.catalog, identity.user, "token.revoke", f"{ACTIVITY_TARGET}/token/{digest[:SHOWN_DIGITS]}",
                    f"of {gone.user} as {gone.role.label}")
    return gone


def create_config(lib: Library, identity: Identity, admin_email: str, proxies: list[str]) -> NewToken:
    """Leave development mode: write `Library.config_file` naming `admin_email` the admin (as the
    proxy will send it), trusting `proxies`, with an admin API token for that person (returned, shown
    once), since from then on only the proxy or a token lets anybody in."""
    if not lib.config.development:
        raise Conflict(f"this library already reads its roles from {lib.config.source}")
    path = Path(lib.config_file)
    email = holder("user", admin_email)
    secret = new_secret()
    entry = ApiToken(hashlib.sha256(secret.encode("utf-8")).hexdigest(), email, Role.ADMIN)
    data = {
        "trusted_proxies": [p.strip() for p in proxies if p.strip()],
        "roles": {"users": {email: Role.ADMIN.label}, "groups": {}},
        "tokens": [{"sha256": entry.sha256, "user": email, "role": Role.ADMIN.label}],
    }
    with _LOCK:
        if path.exists():
            raise Conflict(f"{path} exists already; restart the library to use it")
        try:
            lib.config = write_config(path, data)
        except ConfigError as invalid:
            raise BadRequest(str(invalid)) from None
    record_activity(lib.catalog, identity.user, "config.create", f"{ACTIVITY_TARGET}/config",
                    f"{path.name}: {email} is admin; trusted proxies: {', '.join(data['trusted_proxies']) or 'none'}")
    return NewToken(secret, entry)
