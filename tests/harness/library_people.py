"""The people, tokens and config of the asset library's tests, and waiting for a launched run."""

from __future__ import annotations

import hashlib
import time

from assetql_dagster.library.config import parse_config

PROXY = "10.0.0.5"
ROLES = ("viewer", "creator", "admin")
TOKENS = {role: f"token-of-the-{role}" for role in ROLES}
PEOPLE = {role: f"{role}@studio.example" for role in ROLES}


def library_config(**overrides):
    return parse_config({
        "trusted_proxies": [PROXY],
        "roles": {"users": {PEOPLE["admin"]: "admin", PEOPLE["viewer"]: "viewer"}, "groups": {"artists": "creator"}},
        "tokens": [{"sha256": hashlib.sha256(t.encode()).hexdigest(), "user": f"{r}-script", "role": r}
                   for r, t in TOKENS.items()],
        **overrides,
    }, "library.yaml")


def wait_for_run(launcher, key: str, after: str | None = None, timeout_s: float = 240):
    """The batch's newest run (other than run `after`) once it has ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = launcher.latest_run(key)
        if run is not None and run.run_id != after and run.status in ("SUCCESS", "FAILURE", "CANCELED"):
            return run
        time.sleep(0.5)
    raise AssertionError(f"no run of {key} ended within {timeout_s} s")


def token(role: str) -> dict[str, str]:
    return {"authorization": f"Bearer {TOKENS[role]}"}


def person(role: str) -> dict[str, str]:
    """Proxy headers of someone with `role` (the creator by group, the others by e-mail)."""
    return {"x-forwarded-email": PEOPLE[role], "x-forwarded-groups": "artists" if role == "creator" else "staff"}
