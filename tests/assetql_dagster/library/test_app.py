"""Every route by role (403 for each role below the one it needs), and what every request passes:
identity (proxy headers only from the trusted proxy), CSRF, the rate limit, the security headers,
and file serving limited to catalogued keys."""

from __future__ import annotations

import re

import pytest
from harness.library_people import PEOPLE, PROXY, ROLES, library_config, person, token
from starlette.routing import Route
from starlette.testclient import TestClient

from assetql_dagster.library.app import create_app
from assetql_dagster.library.config import Role
from assetql_dagster.library.guard import CSRF_COOKIE


def routes(app) -> list[Route]:
    return [r for r in app.routes if isinstance(r, Route)]


def concrete(path: str, world) -> str:
    """A route path with its parameters filled in with values that exist."""
    asset = world.catalog.search(None, batch=world.key, limit=1)[0]
    values = {"key": world.key, "batch": world.key, "image": asset["image_id"], "kind": "zip", "name": "brand-x",
              "token": "t" * 24, "key:path": asset["thumb_key"], "name:path": "someone@studio.example",
              "sha256": "0" * 64}
    return re.sub(r"\{([^}]+)\}", lambda m: values[m[1]], path)


def test_every_route_names_the_role_it_needs(app):
    missing = [(r.path, sorted(r.methods)) for r in routes(app) if getattr(r.endpoint, "required_role", None) is None]
    assert missing == []
    # Reading is for everyone signed in; changing anything needs more.
    for r in routes(app):
        if r.methods - {"GET", "HEAD"} and r.path not in ("/selection/download", "/api/v1/exports", "/api/v1/assets/search"):
            assert r.endpoint.required_role > Role.VIEWER, r.path


@pytest.mark.parametrize("role", ROLES[:2])
def test_each_route_answers_403_to_every_role_below_the_one_it_needs(app, client, world, role):
    checked = 0
    for r in routes(app):
        needed = r.endpoint.required_role
        if Role.parse(role, "test") >= needed:
            continue
        method = next(m for m in r.methods if m != "HEAD")
        response = client.request(method, concrete(r.path, world), headers=token(role))
        assert response.status_code == 403, (method, r.path, response.text)
        assert f"needs the {needed.label} role" in response.text
        checked += 1
    assert checked >= (20 if role == "viewer" else 3)


def test_signed_in_people_and_scripts_get_their_role(client):
    for role in ROLES:
        assert client.get("/api/v1/me", headers=token(role)).json() == {"user": f"{role}-script", "role": role, "via": "token"}
        assert client.get("/api/v1/me", headers=person(role)).json() == {"user": PEOPLE[role], "role": role, "via": "proxy"}


def test_proxy_headers_from_an_untrusted_peer_are_ignored(app):
    outsider = TestClient(app, client=("10.0.0.99", 40000))
    response = outsider.get("/api/v1/me", headers=person("admin"))
    assert response.status_code == 401 and "sign in" in response.json()["error"]
    # ... and a page says so too, as a page.
    page = outsider.get("/batches", headers=person("admin"))
    assert page.status_code == 401 and "Please sign in" in page.text
    assert outsider.get("/api/v1/me", headers={**person("admin"), **token("viewer")}).json()["role"] == "viewer"


def test_someone_without_a_role_is_forbidden(client):
    response = client.get("/batches", headers={"x-forwarded-email": "stranger@else.example"})
    assert response.status_code == 403 and "stranger@else.example has no role" in response.text


def test_forms_need_the_csrf_token_of_the_cookie_and_the_person(app, world):
    browser = TestClient(app, client=(PROXY, 40000))  # one person's browser: its own cookie jar
    asset = world.catalog.search(None, batch=world.key, limit=1)[0]["id"]
    page = browser.get(f"/assets/{asset}", headers=person("creator"))
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]
    assert browser.cookies[CSRF_COOKIE] == csrf
    form = {"asset": asset, "decision": "approved", "back": f"/assets/{asset}"}
    assert browser.post("/selection/review", data=form, headers=person("creator")).status_code == 403
    assert browser.post("/selection/review", data={**form, "csrf_token": "forged"}, headers=person("creator")).status_code == 403
    # Someone else presenting this person's token and cookie is refused: the token names its person.
    other = TestClient(app, client=(PROXY, 40001), cookies={CSRF_COOKIE: csrf})
    refused = other.post("/selection/review", data={**form, "csrf_token": csrf}, headers=person("admin"))
    assert refused.status_code == 403 and "CSRF" in refused.text
    done = browser.post("/selection/review", data={**form, "csrf_token": csrf}, headers=person("creator"),
                        follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/assets/{asset}?notice=reviewed&n=1"
    assert world.catalog.get_asset(asset)["review"] == "approved"
    # JSON calls from a browser session send it as a header; API tokens need none.
    body = {"asset_ids": [asset], "decision": "clear"}
    assert browser.post("/api/v1/reviews", json=body, headers=person("creator")).status_code == 403
    assert browser.post("/api/v1/reviews", json=body, headers={**person("creator"), "x-csrf-token": csrf}).status_code == 200
    assert browser.post("/api/v1/reviews", json=body, headers=token("creator")).status_code == 200
    assert world.catalog.get_asset(asset)["review"] == ""


def test_security_headers_on_every_answer(client):
    for response in (client.get("/batches", headers=person("viewer")), client.get("/api/v1/me"),
                     client.get("/static/library.css")):
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
    assert client.get("/batches", headers=person("viewer")).headers["cache-control"] == "no-store"
    cookie = client.get("/batches", headers=person("viewer")).headers.get("set-cookie", "")
    assert cookie == "" or ("HttpOnly" in cookie and "SameSite=strict" in cookie)


def test_over_the_rate_limit_answers_429_with_retry_after(world, launcher, tmp_path):
    app = create_app(library_config(rate_limit_per_minute=5), world.storage, world.catalog, launcher,
                     uploads=tmp_path, secret="s")
    client = TestClient(app, client=(PROXY, 40000))
    thumb = world.catalog.search(None, batch=world.key, limit=1)[0]["thumb_key"]
    statuses = [client.get("/api/v1/me", headers=token("viewer")).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    limited = client.get("/batches", headers=token("viewer"))
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
    assert "more than 5 requests a minute" in limited.text
    # Another person has their own minute; images and static files do not count.
    assert client.get("/api/v1/me", headers=token("creator")).status_code == 200
    assert all(client.get(f"/files/{thumb}", headers=token("viewer")).status_code == 200 for _ in range(8))
    # Unknown callers are limited by address.
    stranger = TestClient(app, client=("192.0.2.1", 1))
    assert [stranger.get("/api/v1/me").status_code for _ in range(6)] == [401] * 5 + [429]


def test_files_are_served_only_for_keys_the_catalog_knows(client, world):
    asset = world.catalog.search(None, batch=world.key, limit=1)[0]
    thumb = client.get(f"/files/{asset['thumb_key']}", headers=token("viewer"))
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content == world.storage.read_bytes(asset["thumb_key"])
    raw = client.get(f"/files/{asset['raw_key']}", headers=token("viewer"))
    assert raw.headers["content-type"] == "image/png" and raw.content[:8] == b"\x89PNG\r\n\x1a\n"
    zip_key = world.catalog.batch_exports(world.key)["zip"]
    assert client.get(f"/files/{zip_key}", headers=token("viewer")).status_code == 200
    stored_but_not_catalogued = [f"batches/{world.key}/source.json", f"batches/{world.key}/images.json",
                                 f"style-references/{world.key}/" + world.storage.list_keys(f"style-references/{world.key}/")[0].rsplit("/", 1)[1]]
    tricks = [f"raw/{world.key}/../../batches/{world.key}/source.json", f"raw/{world.key}/%2e%2e/x.png",
              f"{asset['thumb_key']}/..", f"raw//{world.key}/x.png", "raw/%00/x", "..%2fcatalog.sqlite3",
              "/etc/passwd", "style-profiles/brand-x/v1/references/../profile.json"]
    for key in stored_but_not_catalogued + tricks:
        response = client.get(f"/files/{key}", headers=token("viewer"))
        assert response.status_code == 404, key


def test_unknown_pages_and_api_paths_are_404_in_their_own_form(client):
    page = client.get("/no/such/page", headers=token("viewer"))
    assert page.status_code == 404 and "Not found" in page.text
    api = client.get("/api/v1/nothing", headers=token("viewer"))
    assert api.status_code == 404 and api.json()["status"] == 404


def test_a_request_over_the_upload_limit_is_refused_before_it_is_read(client):
    from assetql_dagster.library.app import MAX_BODY_BYTES

    answer = client.post("/api/v1/batches", headers={**token("creator"), "content-type": "application/octet-stream"},
                         content=b"x" * (MAX_BODY_BYTES + 1))
    assert answer.status_code == 413


def test_on_s3_catalogued_files_redirect_to_presigned_urls(world, launcher, s3_endpoint, s3_bucket, tmp_path):
    from resources.catalog import AssetCatalog, sqlite_url_beside
    from resources.catalog_models import AssetEntry, BatchEntry
    from resources.s3 import S3Connection
    from resources.s3_storage import S3Storage

    storage = S3Storage(connection=S3Connection(endpoint_url=s3_endpoint, region_name="us-east-1"), bucket=s3_bucket)
    storage.write_bytes("thumbnails/s3-batch/a.jpg", b"jpeg bytes", "image/jpeg")
    catalog = AssetCatalog(url=sqlite_url_beside(tmp_path))
    catalog.migrate()
    catalog.upsert_batch(BatchEntry(key="s3-batch", name="s3"))
    catalog.upsert_assets("s3-batch", [AssetEntry(image_id="a", file_name="a.png", raw_key="raw/s3-batch/a.png",
                                                   thumb_key="thumbnails/s3-batch/a.jpg")])
    client = TestClient(create_app(library_config(), storage, catalog, launcher, uploads=tmp_path, secret="s"),
                        client=(PROXY, 1))
    answer = client.get("/files/thumbnails/s3-batch/a.jpg", headers=token("viewer"), follow_redirects=False)
    assert answer.status_code == 307
    location = answer.headers["location"]
    assert location.startswith(s3_endpoint) and s3_bucket in location and "Signature" in location
    import urllib.request

    with urllib.request.urlopen(location) as presigned:
        assert presigned.read() == b"jpeg bytes"
    assert client.get("/files/thumbnails/s3-batch/b.jpg", headers=token("viewer"), follow_redirects=False).status_code == 404
