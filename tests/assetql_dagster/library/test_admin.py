"""Admins manage roles and API tokens from the library: changes are written to the config file
(atomically, checked, the previous file kept as .bak), apply from the next request and are logged;
the last admin cannot be removed; lower roles get 403; development mode offers to create the file."""

from __future__ import annotations

import hashlib
import re

import pytest
import yaml
from harness.library_people import PEOPLE, PROXY, ROLES, TOKENS, person, token
from harness.batch_runs import catalog_beside
from starlette.testclient import TestClient

from assetql_dagster.library import admin
from assetql_dagster.library.app import create_app
from assetql_dagster.library.config import LibraryConfig, Role, load_config
from assetql_dagster.pipeline import reviews
from resources.storage import LocalStorage

NEWCOMER = "newcomer@studio.example"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Empty storage and a migrated catalog (the activity log): the admin pages need no batch."""
    storage = LocalStorage(root=str(tmp_path_factory.mktemp("admin") / "data"))
    catalog = catalog_beside(storage)
    catalog.migrate()
    return storage, catalog


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "library.yaml"
    path.write_text(yaml.safe_dump({
        "trusted_proxies": [PROXY],
        "roles": {"users": {PEOPLE["admin"]: "admin", PEOPLE["viewer"]: "viewer"}, "groups": {"artists": "creator"}},
        "tokens": [{"sha256": hashlib.sha256(t.encode()).hexdigest(), "user": f"{r}-script", "role": r}
                   for r, t in TOKENS.items()],
        "rate_limit_per_minute": 1000,
    }), encoding="utf-8")
    return path


@pytest.fixture
def app(store, config_file, tmp_path):
    storage, catalog = store
    return create_app(load_config(config_file), storage, catalog, None, uploads=tmp_path / "uploads", secret="s")


def browser(app, who: dict[str, str], port: int = 42000) -> TestClient:
    return TestClient(app, client=(PROXY, port), headers=who)


def csrf_of(page) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)[1]


def on_disk(path):
    """The file as the library would read it at start (so every write must be a valid config)."""
    return load_config(path)


def test_admin_adds_changes_and_removes_a_role_on_the_page(app, config_file, store):
    newcomer = browser(app, {"x-forwarded-email": NEWCOMER}, 42001)
    assert newcomer.get("/api/v1/me").status_code == 403
    admin_browser = browser(app, person("admin"))
    page = admin_browser.get("/admin")
    assert "Add or change" in page.text and "group <b>artists</b>" in page.text
    before = config_file.read_text(encoding="utf-8")

    added = admin_browser.post("/admin/roles", data={"csrf_token": csrf_of(page), "kind": "user",
                                                     "name": "Newcomer@Studio.Example", "role": "viewer"},
                               follow_redirects=False)
    assert added.status_code == 303 and added.headers["location"] == "/admin?notice=role-saved"
    assert newcomer.get("/api/v1/me").json() == {"user": NEWCOMER, "role": "viewer", "via": "proxy"}
    assert on_disk(config_file).user_roles[NEWCOMER] is Role.VIEWER
    assert config_file.with_name("library.yaml.bak").read_text(encoding="utf-8") == before

    changed = admin_browser.post("/admin/roles", data={"csrf_token": csrf_of(page), "kind": "user", "name": NEWCOMER,
                                                       "role": "creator"})
    assert changed.status_code == 200 and "Role saved" in changed.text
    assert newcomer.get("/api/v1/me").json()["role"] == "creator"
    assert on_disk(config_file.with_name("library.yaml.bak")).user_roles[NEWCOMER] is Role.VIEWER

    group = admin_browser.post("/admin/roles", data={"csrf_token": csrf_of(page), "kind": "group", "name": "reviewers",
                                                     "role": "admin"})
    assert group.status_code == 200 and "group <b>reviewers</b>" in group.text
    assert browser(app, {"x-forwarded-email": "x@studio.example", "x-forwarded-groups": "reviewers"}, 42002
                   ).get("/api/v1/me").json()["role"] == "admin"

    removed = admin_browser.post("/admin/roles/remove", data={"csrf_token": csrf_of(page), "kind": "user", "name": NEWCOMER})
    assert removed.status_code == 200 and "Role removed" in removed.text
    assert newcomer.get("/api/v1/me").status_code == 403
    config = on_disk(config_file)
    assert NEWCOMER not in config.user_roles and config.group_roles["reviewers"] is Role.ADMIN
    # Settings the page does not manage are kept as written.
    assert config.rate_limit_per_minute == 1000 and [str(n) for n in config.trusted_proxies] == [f"{PROXY}/32"]
    log = reviews.activity(store[1], target=f"access/user/{NEWCOMER}")
    assert [(e["user"], e["action"], e["detail"]) for e in log] == [
        (PEOPLE["admin"], "role.remove", "was creator"),
        (PEOPLE["admin"], "role.set", "creator (was viewer)"),
        (PEOPLE["admin"], "role.set", "viewer (new)"),
    ]


def test_bad_values_are_refused_and_nothing_is_written(app, config_file):
    admin_browser = browser(app, person("admin"))
    page = admin_browser.get("/admin")
    before = config_file.read_text(encoding="utf-8")
    wrong = admin_browser.post("/admin/roles", data={"csrf_token": csrf_of(page), "kind": "user", "name": "a@b.example",
                                                     "role": "boss"})
    assert wrong.status_code == 400 and "role: must be one of viewer, creator, admin, got &#39;boss&#39;" in wrong.text
    missing = admin_browser.post("/admin/roles/remove", data={"csrf_token": csrf_of(page), "kind": "group", "name": "nobody"})
    assert missing.status_code == 404 and "group &#39;nobody&#39; has no role" in missing.text
    no_csrf = admin_browser.post("/admin/roles", data={"kind": "user", "name": "a@b.example", "role": "viewer"})
    assert no_csrf.status_code == 403
    assert config_file.read_text(encoding="utf-8") == before and not config_file.with_name("library.yaml.bak").exists()


def test_the_last_admin_can_be_neither_removed_nor_demoted(app, config_file):
    api = browser(app, token("admin"))
    demote = api.put(f"/api/v1/admin/roles/users/{PEOPLE['admin']}", json={"role": "creator"})
    assert demote.status_code == 409
    assert "nobody with the admin role (user admin@studio.example is the last admin)" in demote.json()["error"]
    assert api.delete(f"/api/v1/admin/roles/users/{PEOPLE['admin']}").status_code == 409
    # With a second admin, the first may step down.
    assert api.put("/api/v1/admin/roles/groups/leads", json={"role": "admin"}).json() == {
        "kind": "group", "name": "leads", "role": "admin", "was": None}
    stepped = api.put(f"/api/v1/admin/roles/users/{PEOPLE['admin']}", json={"role": "creator"})
    assert stepped.json() == {"kind": "user", "name": PEOPLE["admin"], "role": "creator", "was": "admin"}
    assert browser(app, person("admin")).get("/admin").status_code == 403
    last = api.delete("/api/v1/admin/roles/groups/leads")
    assert last.status_code == 409 and "group leads is the last admin" in last.json()["error"]
    assert on_disk(config_file).group_roles["leads"] is Role.ADMIN


def test_a_token_is_shown_once_works_and_stops_working_when_revoked(app, config_file, store):
    admin_browser = browser(app, person("admin"))
    page = admin_browser.get("/admin")
    made = admin_browser.post("/admin/tokens", data={"csrf_token": csrf_of(page), "user": "nightly-export",
                                                     "role": "creator"})
    assert made.status_code == 200 and "shown only this once" in made.text
    secret = re.search(r'<code class="mono" id="new-token">([^<]+)</code>', made.text)[1]
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert secret.startswith("aql_") and len(secret) > 40
    # Only the hash is kept: on disk and on the page from now on.
    assert secret not in config_file.read_text(encoding="utf-8") and secret not in admin_browser.get("/admin").text
    assert any(t.sha256 == digest and t.user == "nightly-export" for t in on_disk(config_file).tokens)
    script = browser(app, {"authorization": f"Bearer {secret}"}, 42003)
    assert script.get("/api/v1/me").json() == {"user": "nightly-export", "role": "creator", "via": "token"}

    revoked = admin_browser.post("/admin/tokens/revoke", data={"csrf_token": csrf_of(page), "sha256": digest},
                                 follow_redirects=False)
    assert revoked.headers["location"] == "/admin?notice=token-revoked"
    gone = script.get("/api/v1/me")
    assert gone.status_code == 401 and "not known" in gone.json()["error"]
    assert all(t.sha256 != digest for t in on_disk(config_file).tokens)
    log = reviews.activity(store[1], target=f"access/token/{digest[:12]}")
    assert [(e["action"], e["detail"]) for e in log] == [("token.revoke", "of nightly-export as creator"),
                                                        ("token.create", "for nightly-export as creator")]


def test_tokens_through_the_api(app, config_file):
    api = browser(app, token("admin"))
    made = api.post("/api/v1/admin/tokens", json={"user": "ci", "role": "viewer"})
    assert made.status_code == 201 and set(made.json()) == {"token", "sha256", "user", "role"}
    assert made.json()["sha256"] == hashlib.sha256(made.json()["token"].encode()).hexdigest()
    listed = api.get("/api/v1/admin/roles").json()
    assert listed["config_file"] == str(config_file) and listed["development"] is False
    assert listed["users"] == {PEOPLE["admin"]: "admin", PEOPLE["viewer"]: "viewer"} and listed["groups"] == {"artists": "creator"}
    assert {"sha256": made.json()["sha256"], "user": "ci", "role": "viewer"} in listed["tokens"]
    assert all(set(t) == {"sha256", "user", "role"} for t in listed["tokens"])  # never a secret
    ci = browser(app, {"authorization": f"Bearer {made.json()['token']}"}, 42004)
    assert ci.get("/api/v1/me").json()["role"] == "viewer"
    assert api.delete(f"/api/v1/admin/tokens/{made.json()['sha256']}").json() == {
        "revoked": made.json()["sha256"], "user": "ci", "role": "viewer"}
    assert ci.get("/api/v1/me").status_code == 401
    assert api.delete(f"/api/v1/admin/tokens/{made.json()['sha256']}").status_code == 404
    assert api.put("/api/v1/admin/roles/people/x", json={"role": "viewer"}).status_code == 404


@pytest.mark.parametrize("role", [r for r in ROLES if r != "admin"])
def test_creators_and_viewers_get_403_on_every_admin_route(app, config_file, role):
    before = config_file.read_text(encoding="utf-8")
    signed_in = browser(app, person(role))
    csrf = csrf_of(signed_in.get("/batches/new" if role == "creator" else "/api/docs"))
    for path, _, method in admin.PAGE_ROUTES:
        answer = signed_in.request(method, path, data={"csrf_token": csrf} if method == "POST" else None)
        assert answer.status_code == 403, (method, path)
    api = browser(app, token(role))
    for path, _, method in admin.API_ROUTES:
        concrete = path.replace("{kind}", "users").replace("{name:path}", NEWCOMER).replace("{sha256}", "0" * 64)
        answer = api.request(method, f"/api/v1{concrete}", json={"role": "admin", "user": "x"})
        assert answer.status_code == 403 and "needs the admin role" in answer.json()["error"], (method, path)
    assert config_file.read_text(encoding="utf-8") == before


def test_the_admin_routes_are_in_the_openapi_document(app):
    spec = browser(app, token("viewer")).get("/api/v1/openapi.json").json()
    operations = {(p, m): op for p, ops in spec["paths"].items() for m, op in ops.items()}
    for path, method in [("/api/v1/admin/roles", "get"), ("/api/v1/admin/roles/{kind}/{name}", "put"),
                         ("/api/v1/admin/roles/{kind}/{name}", "delete"), ("/api/v1/admin/tokens", "post"),
                         ("/api/v1/admin/tokens/{sha256}", "delete")]:
        assert operations[path, method]["x-required-role"] == "admin" and operations[path, method]["tags"] == ["admin"]


def test_development_mode_explains_and_creates_the_config_file(store, tmp_path):
    storage, catalog = store
    target = tmp_path / "library.yaml"
    app = create_app(LibraryConfig(), storage, catalog, None, uploads=tmp_path / "uploads", secret="s", config_file=target)
    local = TestClient(app, client=("127.0.0.1", 5000))
    page = local.get("/admin")
    assert "Roles need a config file" in page.text and str(target) in page.text
    # Role changes need the file first.
    refused = local.put("/api/v1/admin/roles/users/a@b.example", json={"role": "viewer"},
                        headers={"x-csrf-token": csrf_of(page)})
    assert refused.status_code == 409 and "development mode" in refused.json()["error"]
    bad = local.post("/admin/config", data={"csrf_token": csrf_of(page), "email": "me@studio.example",
                                            "trusted_proxies": "not-an-address"})
    assert bad.status_code == 400 and "trusted_proxies[0]" in bad.text and not target.exists()

    made = local.post("/admin/config", data={"csrf_token": csrf_of(page), "email": "Me@Studio.Example",
                                             "trusted_proxies": "10.0.0.5, 10.0.1.0/24"})
    assert made.status_code == 200 and "shown only this once" in made.text
    secret = re.search(r'<code class="mono" id="new-token">([^<]+)</code>', made.text)[1]
    config = on_disk(target)
    assert config.user_roles == {"me@studio.example": Role.ADMIN}
    assert [str(n) for n in config.trusted_proxies] == ["10.0.0.5/32", "10.0.1.0/24"]
    assert [(t.sha256, t.user, t.role) for t in config.tokens] == [
        (hashlib.sha256(secret.encode()).hexdigest(), "me@studio.example", Role.ADMIN)]
    # Development mode is over: nobody is admitted without the proxy or a token, and the new admin is both.
    assert local.get("/admin").status_code == 401
    assert local.get("/api/v1/me", headers={"authorization": f"Bearer {secret}"}).json()["role"] == "admin"
    signed_in = TestClient(app, client=("10.0.0.5", 5001), headers={"x-forwarded-email": "me@studio.example"})
    assert "Add or change" in signed_in.get("/admin").text
    again = signed_in.post("/admin/config", data={"csrf_token": csrf_of(signed_in.get("/admin")), "email": "x@y.example"})
    assert again.status_code == 409 and not target.with_name("library.yaml.bak").exists()
    assert reviews.activity(catalog, target="access/config")[0]["user"] == "local-admin"
