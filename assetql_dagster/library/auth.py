"""Who is asking, and may they: identity from a trusted proxy, an API token, or the local admin.

Three ways in, tried in this order:

- a reverse proxy that signed the person in (the oauth2-proxy convention): `X-Forwarded-Email` and
  `X-Forwarded-Groups` (comma-separated), believed only when the request's peer address is one of
  `trusted_proxies`; from anywhere else the headers are ignored, since anybody can send them;
- `Authorization: Bearer TOKEN` for scripts, matched by the token's SHA-256 against `tokens`;
- development mode (no config file): one local administrator, and only for requests from this
  machine (loopback), so a development server bound to a public address admits nobody.

A person's role is the highest among their e-mail's and their groups' in `roles`; signed in but
in none of them answers 403.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from assetql_dagster.library.config import LibraryConfig, Role

EMAIL_HEADER = "x-forwarded-email"
GROUPS_HEADER = "x-forwarded-groups"
LOCAL_ADMIN = "local-admin"
MAX_HEADER = 4096  # longer identity headers are not what a proxy sends


@dataclass(frozen=True)
class Identity:
    """The person (or script) behind a request: name (an e-mail for people), role, and how we know."""

    user: str
    role: Role
    via: str  # "proxy", "token" or "local"

    def may(self, role: Role) -> bool:
        return self.role >= role


class Denied(Exception):
    """A request that may not go on: 401 (nobody we know) or 403 (known, but not allowed)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _address(host: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host or "")
    except ValueError:
        return None


def trusted_peer(config: LibraryConfig, host: str | None) -> bool:
    address = _address(host)
    return address is not None and any(address in network for network in config.trusted_proxies)


def token_identity(config: LibraryConfig, token: str) -> Identity | None:
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    # Every configured token is compared, in constant time each, so timing tells nothing.
    found = None
    for entry in config.tokens:
        if hmac.compare_digest(entry.sha256, digest):
            found = entry
    return None if found is None else Identity(found.user, found.role, "token")


def proxy_identity(config: LibraryConfig, email: str, groups: str) -> Identity:
    email = email.strip()
    if not email or len(email) > MAX_HEADER or any(ord(c) < 32 for c in email):
        raise Denied(401, "the proxy sent no usable X-Forwarded-Email")
    roles = [config.user_roles.get(email.lower())]
    roles += [config.group_roles.get(g.strip()) for g in groups[:MAX_HEADER].split(",") if g.strip()]
    granted = [r for r in roles if r is not None]
    if not granted:
        raise Denied(403, f"{email} has no role in the asset library; ask an administrator to add you to library.yaml")
    return Identity(email, max(granted), "proxy")


def identify(config: LibraryConfig, host: str | None, headers: Mapping[str, str]) -> Identity:
    """The identity of a request from peer `host` with `headers`; Denied when there is none."""
    if trusted_peer(config, host) and headers.get(EMAIL_HEADER):
        return proxy_identity(config, headers[EMAIL_HEADER], headers.get(GROUPS_HEADER, ""))
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        identity = token_identity(config, token.strip())
        if identity is None:
            raise Denied(401, "the API token is not known")
        return identity
    if config.development:
        address = _address(host)
        if address is None or not address.is_loopback:
            raise Denied(403, "development mode (no library.yaml) admits only requests from this machine")
        return Identity(LOCAL_ADMIN, Role.ADMIN, "local")
    raise Denied(401, "sign in through the organisation's proxy, or send an API token (Authorization: Bearer …)")


Endpoint = Callable[[Request], Awaitable[Response]]


def requires(role: Role) -> Callable[[Endpoint], Endpoint]:
    """Let only identities of at least `role` into the endpoint; others get 403 naming the role."""

    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            identity: Identity = request.state.identity
            if not identity.may(role):
                raise Denied(403, f"this needs the {role.label} role; {identity.user} is {identity.role.label}")
            return await endpoint(request)

        guarded.required_role = role  # type: ignore[attr-defined]  # read by the route tests and the docs
        return guarded

    return wrap
