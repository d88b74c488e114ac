"""Identity: proxy headers only from a trusted peer, tokens by their hash, the local admin only in
development mode and only from this machine; the highest role wins, none is 403."""

import hashlib

import pytest

from assetql_dagster.library.auth import LOCAL_ADMIN, Denied, Identity, identify
from assetql_dagster.library.config import LibraryConfig, Role, parse_config

TOKEN = "s3cret-token-for-scripts"
CONFIG = parse_config({
    "trusted_proxies": ["10.0.0.5", "fd00::/64"],
    "roles": {"users": {"ana@studio.example": "admin", "bo@studio.example": "viewer"},
              "groups": {"artists": "creator", "guests": "viewer"}},
    "tokens": [{"sha256": hashlib.sha256(TOKEN.encode()).hexdigest(), "user": "ci", "role": "creator"}],
}, "library.yaml")


def proxy(email, groups=""):
    return {"x-forwarded-email": email, "x-forwarded-groups": groups}


def test_a_trusted_proxy_names_the_person_and_the_highest_of_their_roles():
    assert identify(CONFIG, "10.0.0.5", proxy("Ana@Studio.Example")) == Identity("Ana@Studio.Example", Role.ADMIN, "proxy")
    assert identify(CONFIG, "10.0.0.5", proxy("bo@studio.example", "guests, artists")).role is Role.CREATOR
    assert identify(CONFIG, "fd00::7", proxy("cy@studio.example", "guests")).role is Role.VIEWER


def test_someone_signed_in_without_a_role_is_forbidden():
    with pytest.raises(Denied) as caught:
        identify(CONFIG, "10.0.0.5", proxy("cy@studio.example", "other-team"))
    assert caught.value.status == 403 and "cy@studio.example has no role" in caught.value.message


def test_proxy_headers_from_anywhere_else_are_ignored():
    for peer in ("10.0.0.6", "127.0.0.1", "testclient", None):
        with pytest.raises(Denied) as caught:
            identify(CONFIG, peer, proxy("ana@studio.example", "artists"))
        assert caught.value.status == 401


def test_a_token_is_known_by_its_hash_from_any_address():
    assert identify(CONFIG, "203.0.113.9", {"authorization": f"Bearer {TOKEN}"}) == Identity("ci", Role.CREATOR, "token")
    with pytest.raises(Denied) as caught:
        identify(CONFIG, "203.0.113.9", {"authorization": "Bearer wrong"})
    assert caught.value.status == 401 and "not known" in caught.value.message


def test_development_mode_admits_only_this_machine_as_the_local_admin():
    development = LibraryConfig()
    assert identify(development, "127.0.0.1", {}) == Identity(LOCAL_ADMIN, Role.ADMIN, "local")
    assert identify(development, "::1", {}).role is Role.ADMIN
    with pytest.raises(Denied) as caught:
        identify(development, "192.168.1.20", {})
    assert caught.value.status == 403 and "only requests from this machine" in caught.value.message
    # A configured library has no local admin at all.
    with pytest.raises(Denied) as caught:
        identify(CONFIG, "127.0.0.1", {})
    assert caught.value.status == 401
