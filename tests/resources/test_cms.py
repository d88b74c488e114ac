"""The CMS upload clients against local stand-ins of the documented APIs: request shapes, auth, retries."""

import base64
import json

import dagster as dg
import pytest
from harness.cms_servers import CONTENTFUL_JSON, ContentfulStandIn, StrapiStandIn, WordPressStandIn

from resources.cms import (
    ENV_VARS,
    CmsConnections,
    CmsUploadError,
    ContentfulClient,
    MediaUpload,
    StrapiClient,
    WordPressClient,
)

JPEG = b"\xff\xd8\xff\xe0 not really a jpeg \x00\x01\xfe\xff\xd9"  # bytes that must arrive unchanged
FAST = {"retries": 3, "backoff_s": 0.0, "timeout_s": 5.0}


def wordpress_client(server: WordPressStandIn, password: str | None = None, **http) -> WordPressClient:
    return WordPressClient(server.url, server.user, password or server.password, **{**FAST, **http})


def contentful_client(server: ContentfulStandIn, token: str | None = None, **http) -> ContentfulClient:
    return ContentfulClient(server.space, server.environment, token or server.token, server.url, server.url,
                            poll_s=0.0, **{**FAST, **http})


def strapi_client(server: StrapiStandIn, token: str | None = None, **http) -> StrapiClient:
    return StrapiClient(server.url, token or server.token, **{**FAST, **http})


WP_FIELDS = {"title": "A sword", "alt_text": "a steel sword, game icon", "caption": "sword", "description": "long"}


def test_wordpress_posts_the_file_with_its_name_then_sets_alt_text_on_the_media_item():
    with WordPressStandIn() as server:
        remote = wordpress_client(server).upload(MediaUpload(JPEG, "item-000.jpg", WP_FIELDS))
    created, updated = server.calls("POST", "/wp-json/wp/v2/media")
    assert created.path == "/wp-json/wp/v2/media" and created.body == JPEG
    assert created.headers["Content-Disposition"] == 'attachment; filename="item-000.jpg"'
    assert created.headers["Content-Type"] == "image/jpeg"
    expected_auth = base64.b64encode(f"{server.user}:{server.password}".encode()).decode()
    assert created.headers["Authorization"] == f"Basic {expected_auth}"
    assert updated.path == "/wp-json/wp/v2/media/1" and json.loads(updated.body) == WP_FIELDS
    media = server.media[1]
    assert media["data"] == JPEG and media["alt_text"] == "a steel sword, game icon"
    assert media["caption"] == {"raw": "sword"}
    assert remote == {"id": "1", "url": f"{server.url}/wp-content/uploads/item-000.jpg"}


def test_wordpress_wrong_application_password_names_the_credentials_to_check():
    with WordPressStandIn() as server:
        with pytest.raises(CmsUploadError, match=r"answered 401 .*rest_not_logged_in.*application password"):
            wordpress_client(server, password="wrong").upload(MediaUpload(JPEG, "a.jpg", WP_FIELDS))
    assert server.media == {}


def test_wordpress_retries_after_500_and_uploads_once():
    with WordPressStandIn(fail_first=2) as server:
        remote = wordpress_client(server).upload(MediaUpload(JPEG, "a.jpg", WP_FIELDS))
    assert [r.method for r in server.requests] == ["POST"] * 4  # two failures, the upload, the fields
    assert len(server.media) == 1 and remote["id"] == "1"


def test_wordpress_gives_up_after_its_retries_quoting_the_answer():
    with WordPressStandIn(fail_first=10) as server:
        with pytest.raises(CmsUploadError, match=r"POST .*/wp-json/wp/v2/media answered 500 .*failing on purpose"):
            wordpress_client(server, retries=1).upload(MediaUpload(JPEG, "a.jpg", WP_FIELDS))
    assert len(server.requests) == 2  # the try and one retry


def test_wordpress_refuses_a_file_name_that_cannot_go_in_content_disposition():
    client = WordPressClient("http://127.0.0.1:9", "u", "p", **FAST)
    with pytest.raises(ValueError, match="file name 'a\"b.jpg' must be plain ASCII"):
        client.upload(MediaUpload(JPEG, 'a"b.jpg', {}))


CF_FIELDS = {"title": {"en-US": "A sword", "de": "Ein Schwert"}, "description": {"en-US": "alt", "de": "Alt"}}


def test_contentful_uploads_links_processes_each_locale_waits_and_publishes():
    with ContentfulStandIn(processing_polls=2) as server:
        remote = contentful_client(server).upload(MediaUpload(JPEG, "item-000.jpg", CF_FIELDS, key="b-item-000"))
    (upload,) = server.calls("POST", f"/spaces/{server.space}/uploads")
    assert upload.headers["Content-Type"] == "application/octet-stream" and upload.body == JPEG
    assert upload.headers["Authorization"] == f"Bearer {server.token}"
    asset_path = f"/spaces/{server.space}/environments/{server.environment}/assets/b-item-000"
    put = server.calls("PUT", asset_path)
    create = put[0]
    assert create.path == asset_path and create.headers["Content-Type"] == CONTENTFUL_JSON
    assert "X-Contentful-Version" not in create.headers  # creating with a chosen id takes no version
    fields = json.loads(create.body)["fields"]
    assert fields["title"] == CF_FIELDS["title"] and fields["description"] == CF_FIELDS["description"]
    (upload_id,) = server.uploads
    assert fields["file"]["de"] == {"contentType": "image/jpeg", "fileName": "item-000.jpg",
                                    "uploadFrom": {"sys": {"type": "Link", "linkType": "Upload", "id": upload_id}}}
    assert [r.path.removeprefix(asset_path) for r in put[1:]] == ["/files/en-US/process", "/files/de/process", "/published"]
    assert [r.headers["X-Contentful-Version"] for r in put[1:]] == ["1", "1", "3"]  # processing made it 3
    assert len(server.calls("GET", asset_path)) == 3  # the existence check, then until processing finished (after two reads)
    asset = server.assets["b-item-000"]
    assert asset["sys"]["publishedVersion"] == 3
    assert remote["id"] == "b-item-000"
    assert remote["url"] == "https:" + asset["fields"]["file"]["en-US"]["url"]


def test_contentful_second_upload_updates_the_asset_with_its_current_version():
    with ContentfulStandIn() as server:
        client = contentful_client(server)
        client.upload(MediaUpload(JPEG, "a.jpg", CF_FIELDS, key="a"))
        client.upload(MediaUpload(JPEG + b"2", "a.jpg", CF_FIELDS, key="a"))
    asset_path = f"/spaces/{server.space}/environments/{server.environment}/assets/a"
    update = [r for r in server.calls("PUT", asset_path) if r.path == asset_path][1]
    # Created 1, each of the two locales processed (3), published 4; then updated 5, processed 7.
    assert update.headers["X-Contentful-Version"] == "4"
    assert len(server.assets) == 1 and server.assets["a"]["sys"]["publishedVersion"] == 7


def test_contentful_retries_after_500_and_rejects_a_wrong_token():
    with ContentfulStandIn(fail_first=2) as server:
        remote = contentful_client(server).upload(MediaUpload(JPEG, "a.jpg", CF_FIELDS, key="a"))
        assert remote["id"] == "a" and len(server.uploads) == 1
        assert [r.path for r in server.requests[:3]] == [f"/spaces/{server.space}/uploads"] * 3
        with pytest.raises(CmsUploadError, match=r"answered 401 .*AccessTokenInvalid.*content management token"):
            contentful_client(server, token="wrong").upload(MediaUpload(JPEG, "b.jpg", CF_FIELDS, key="b"))
    assert "b" not in server.assets


def test_contentful_gives_up_when_processing_never_finishes():
    with ContentfulStandIn(processing_polls=10_000) as server:
        client = contentful_client(server, processing_timeout_s=0.2)
        with pytest.raises(CmsUploadError, match="asset a was not processed within 0.2s"):
            client.upload(MediaUpload(JPEG, "a.jpg", CF_FIELDS, key="a"))
    assert "publishedVersion" not in server.assets["a"]["sys"]


def test_contentful_needs_the_asset_id_and_a_locale():
    client = ContentfulClient("s", "master", "t", "http://127.0.0.1:9", "http://127.0.0.1:9", **FAST)
    with pytest.raises(ValueError, match="needs the asset id as its key"):
        client.upload(MediaUpload(JPEG, "a.jpg", CF_FIELDS))
    with pytest.raises(ValueError, match="need a title per locale"):
        client.upload(MediaUpload(JPEG, "a.jpg", {}, key="a"))


STRAPI_INFO = {"name": "item-000.jpg", "alternativeText": "a steel sword", "caption": "sword"}


def test_strapi_posts_multipart_files_and_file_info_with_the_bearer_token():
    with StrapiStandIn() as server:
        remote = strapi_client(server).upload(MediaUpload(JPEG, "item-000.jpg", STRAPI_INFO))
    (request,) = server.calls("POST", "/api/upload")
    assert request.headers["Authorization"] == f"Bearer {server.token}"
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    (stored,) = server.files
    assert stored["data"] == JPEG and stored["mime"] == "image/jpeg"
    assert {k: stored[k] for k in STRAPI_INFO} == STRAPI_INFO
    assert remote == {"id": "1", "url": server.url + stored["url"]}


def test_strapi_retries_after_500_and_rejects_a_wrong_token():
    with StrapiStandIn(fail_first=1) as server:
        strapi_client(server).upload(MediaUpload(JPEG, "a.jpg", STRAPI_INFO))
        assert len(server.requests) == 2 and len(server.files) == 1
        with pytest.raises(CmsUploadError, match=r"answered 401 .*UnauthorizedError.*API token"):
            strapi_client(server, token="wrong").upload(MediaUpload(JPEG, "b.jpg", STRAPI_INFO))
    assert len(server.files) == 1


def test_upload_all_reports_each_upload_and_stops_at_the_first_failure():
    heard = []
    with StrapiStandIn() as server:
        client = strapi_client(server, retries=0)
        done = client.upload_all(
            (MediaUpload(JPEG, f"{n}.jpg", STRAPI_INFO) for n in range(3)), total=3,
            progress=lambda item, remote: heard.append((item.file_name, remote["id"])),
        )
        assert heard == [("0.jpg", "1"), ("1.jpg", "2"), ("2.jpg", "3")] and [d["id"] for d in done] == ["1", "2", "3"]
        server.fail_first = 1
        with pytest.raises(CmsUploadError, match="answered 500"):
            client.upload_all([MediaUpload(JPEG, "3.jpg", STRAPI_INFO), MediaUpload(JPEG, "4.jpg", STRAPI_INFO)],
                              progress=lambda item, remote: heard.append(item.file_name))
    assert len(heard) == 3 and len(server.files) == 3


def test_connections_make_a_client_per_fully_configured_system():
    connections = CmsConnections(
        wordpress_url="https://blog.example.com/", wordpress_user="editor", wordpress_app_password="pw",
        strapi_url="https://cms.example.com", strapi_token="t", retries=2, backoff_s=0.0,
    )
    clients = connections.clients()
    assert sorted(clients) == ["strapi", "wordpress"]
    assert clients["wordpress"].media_url == "https://blog.example.com/wp-json/wp/v2/media"
    assert clients["wordpress"].session.auth == ("editor", "pw")
    assert clients["strapi"].session.headers["Authorization"] == "Bearer t"
    assert clients["strapi"].session.get_adapter("https://").max_retries.total == 2
    assert CmsConnections().clients() == {}


def test_connections_name_what_is_missing_of_a_partly_configured_system():
    expected = (r"contentful is partly configured: contentful_space_id set but contentful_management_token "
                r"empty \(environment: ASSETQL_CONTENTFUL_MANAGEMENT_TOKEN\); set all of them or none")
    with pytest.raises(ValueError, match=expected):
        CmsConnections(contentful_space_id="space1").clients()
    with pytest.raises(ValueError, match="the WordPress site URL must be an http"):
        CmsConnections(wordpress_url="blog.example.com", wordpress_user="u", wordpress_app_password="p").clients()


def test_connections_from_env_bind_env_vars_that_dagster_resolves(monkeypatch):
    for name in ENV_VARS.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ASSETQL_CONTENTFUL_SPACE_ID", "space1")
    monkeypatch.setenv("ASSETQL_CONTENTFUL_MANAGEMENT_TOKEN", "CFPAT-secret")
    monkeypatch.setenv("ASSETQL_CONTENTFUL_ENVIRONMENT", "staging")
    connections = CmsConnections.from_env()
    assert connections.contentful_management_token == "ASSETQL_CONTENTFUL_MANAGEMENT_TOKEN"  # a name, not the secret
    with dg.build_resources({"cms": connections}) as resources:
        (name, client), = resources.cms.clients().items()
    assert name == "contentful" and client.target == "https://api.contentful.com/spaces/space1/environments/staging"
    assert client.session.headers["Authorization"] == "Bearer CFPAT-secret"
    assert client.upload_url == "https://upload.contentful.com"
