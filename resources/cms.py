"""Direct uploads to a CMS's media library (WordPress, Contentful, Strapi), and `CmsConnections`, the
resource holding each system's URL and credentials.

Each client uploads one image at a time through the system's documented API:

- WordPress REST: `POST /wp-json/wp/v2/media` with the file as the body and its name in
  `Content-Disposition` (Basic auth with an application password), then `POST /wp-json/wp/v2/media/{id}`
  with the alt text, title, caption and description.
- Contentful Management API: `POST /spaces/{space}/uploads` on the upload host, then
  `PUT .../environments/{env}/assets/{id}` linking the upload (with `X-Contentful-Version` when the
  asset exists), `PUT .../assets/{id}/files/{locale}/process`, a wait until the file has its URL, and
  `PUT .../assets/{id}/published`.
- Strapi: `POST /api/upload`, multipart with `files` and `fileInfo` (name, alternativeText,
  caption), Bearer API token.

Requests go through one `requests.Session` per client whose urllib3 `Retry` tries 429 and 5xx
answers and connection errors again with exponential backoff (honouring `Retry-After`).
"""

from __future__ import annotations

import abc
import json
import mimetypes
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, NamedTuple
from urllib.parse import quote, urljoin

import dagster as dg
import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from resources.notifier import base_url as http_url

CONTENTFUL_API = "https://api.contentful.com"
CONTENTFUL_UPLOAD = "https://upload.contentful.com"
CONTENTFUL_JSON = "application/vnd.contentful.management.v1+json"
# Answers worth another try: rate limited (429) or the service overloaded or restarting (5xx).
RETRY_STATUSES = (429, 500, 502, 503, 504)
# The environment variable each CmsConnections field is bound to by `CmsConnections.from_env`.
ENV_VARS = {
    "wordpress_url": "ASSETQL_WORDPRESS_URL",
    "wordpress_user": "ASSETQL_WORDPRESS_USER",
    "wordpress_app_password": "ASSETQL_WORDPRESS_APP_PASSWORD",
    "contentful_space_id": "ASSETQL_CONTENTFUL_SPACE_ID",
    "contentful_environment": "ASSETQL_CONTENTFUL_ENVIRONMENT",
    "contentful_management_token": "ASSETQL_CONTENTFUL_MANAGEMENT_TOKEN",
    "contentful_base_url": "ASSETQL_CONTENTFUL_BASE_URL",
    "contentful_upload_url": "ASSETQL_CONTENTFUL_UPLOAD_URL",
    "strapi_url": "ASSETQL_STRAPI_URL",
    "strapi_token": "ASSETQL_STRAPI_TOKEN",
}


class CmsUploadError(RuntimeError):
    """A CMS refused or failed a request; the message names the system, the request and its answer."""


class MediaUpload(NamedTuple):
    """One file to upload: its bytes, its file name, the system's own metadata fields for it
    (WordPress REST fields, Contentful asset fields per locale, Strapi fileInfo) and, for systems
    whose clients choose the id (Contentful), a stable `key` so a second upload updates the first."""

    data: bytes
    file_name: str
    fields: Mapping[str, Any]
    key: str = ""


def retrying_session(retries: int, backoff_s: float) -> requests.Session:
    """A Session trying connection errors and 429/5xx answers again `retries` times, backing off
    `backoff_s` × 2^n seconds (or as long as a Retry-After asks)."""
    retry = Retry(
        total=retries,
        backoff_factor=backoff_s,
        status_forcelist=RETRY_STATUSES,
        # A read timeout may mean the CMS stored the file and is slow to answer: not uploaded twice.
        read=0,
        # Uploads are POSTs, which urllib3 does not retry by default. A 429 or 5xx from these APIs
        # means the file was not stored, so trying again is what a person would do.
        allowed_methods=None,
        # The last answer is returned rather than raised, so the error can quote what the CMS said.
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def content_type(file_name: str) -> str:
    return mimetypes.guess_type(file_name)[0] or "application/octet-stream"


class CmsClient(abc.ABC):
    """What the clients share: the retrying session, requests checked against the statuses the
    API documents, and uploading many files with progress."""

    system: ClassVar[str]
    # What to check when the CMS answers 401 or 403.
    credentials: ClassVar[str]

    def __init__(self, timeout_s: float = 60.0, retries: int = 4, backoff_s: float = 1.0) -> None:
        self.session = retrying_session(retries, backoff_s)
        self.timeout_s = timeout_s

    @property
    @abc.abstractmethod
    def target(self) -> str:
        """Where uploads go, for records and messages (never a credential)."""

    def request(self, method: str, url: str, expect: tuple[int, ...], **kwargs: Any) -> requests.Response:
        """`method url` through the session; CmsUploadError unless it answers one of `expect`."""
        try:
            response = self.session.request(method, url, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as error:
            raise CmsUploadError(f"{self.system} {method} {url} failed: {error}") from error
        if response.status_code not in expect:
            hint = f" (check {self.credentials})" if response.status_code in (401, 403) else ""
            raise CmsUploadError(
                f"{self.system} {method} {url} answered {response.status_code} {response.reason}, expected "
                f"{' or '.join(map(str, expect))}: {response.text[:300]}{hint}"
            )
        return response

    @abc.abstractmethod
    def upload(self, item: MediaUpload) -> dict[str, str]:
        """Upload one file with its metadata: the CMS's id and URL for it."""

    def upload_all(
        self, items: Iterable[MediaUpload], total: int | None = None,
        progress: Callable[[MediaUpload, dict[str, str]], None] | None = None,
    ) -> list[dict[str, str]]:
        """Upload `items` in turn, with a tqdm bar on a terminal; `progress` hears of each one done
        (so a caller keeps what was uploaded when a later one fails)."""
        done = []
        for item in tqdm(items, total=total, desc=f"{self.system} upload", unit="file", disable=None):
            result = self.upload(item)
            done.append(result)
            if progress:
                progress(item, result)
        return done


class WordPressClient(CmsClient):
    """Uploads to a WordPress media library through the REST API, as a user with an application password."""

    system = "WordPress"
    credentials = "the WordPress user and its application password (Users → Profile → Application Passwords)"

    def __init__(self, site_url: str, user: str, app_password: str, **http: Any) -> None:
        super().__init__(**http)
        self.site_url = http_url(site_url, "the WordPress site URL")
        self.media_url = f"{self.site_url}/wp-json/wp/v2/media"
        self.session.auth = (user, app_password)

    @property
    def target(self) -> str:
        return self.site_url

    def upload(self, item: MediaUpload) -> dict[str, str]:
        """The file as the request body, named in Content-Disposition; then its REST fields
        (title, alt_text, caption, description) set on the new media item."""
        if not item.file_name.isascii() or any(c in item.file_name for c in '"\\/\r\n'):
            raise ValueError(f"file name {item.file_name!r} must be plain ASCII without quotes or slashes "
                             "to go in a Content-Disposition header")
        created = self.request(
            "POST", self.media_url, (201,), data=item.data,
            headers={
                "Content-Type": content_type(item.file_name),
                "Content-Disposition": f'attachment; filename="{item.file_name}"',
            },
        ).json()
        media = created
        if item.fields:
            media = self.request("POST", f"{self.media_url}/{created['id']}", (200,), json=dict(item.fields)).json()
        return {"id": str(media["id"]), "url": media.get("source_url", "")}


class ContentfulClient(CmsClient):
    """Creates, processes and publishes assets in a Contentful space through the Management API."""

    system = "Contentful"
    credentials = "the Contentful space id and its content management token"

    def __init__(
        self, space_id: str, environment: str, management_token: str, base_url: str = CONTENTFUL_API,
        upload_url: str = CONTENTFUL_UPLOAD, processing_timeout_s: float = 60.0, poll_s: float = 0.5, **http: Any,
    ) -> None:
        super().__init__(**http)
        self.space_id = space_id
        self.environment = environment
        self.api_url = http_url(base_url, "the Contentful Management API URL")
        self.upload_url = http_url(upload_url, "the Contentful upload URL")
        self.processing_timeout_s = processing_timeout_s
        self.poll_s = poll_s
        self.session.headers["Authorization"] = f"Bearer {management_token}"

    @property
    def target(self) -> str:
        return f"{self.api_url}/spaces/{self.space_id}/environments/{self.environment}"

    def asset_url(self, asset_id: str) -> str:
        return f"{self.target}/assets/{quote(asset_id, safe='')}"

    def current_version(self, asset_id: str) -> int | None:
        """The asset's sys.version, None when it does not exist yet."""
        response = self.request("GET", self.asset_url(asset_id), (200, 404))
        return response.json()["sys"]["version"] if response.status_code == 200 else None

    def upload(self, item: MediaUpload) -> dict[str, str]:
        """Upload the bytes, link them to asset `item.key` for each locale of its title, process each
        locale's file, wait for its URL, then publish; `item.fields` are the asset's title and
        description per locale."""
        if not item.key:
            raise ValueError(f"a Contentful upload of {item.file_name} needs the asset id as its key")
        locales = list(item.fields.get("title") or {})
        if not locales:
            raise ValueError(f"the Contentful fields of {item.file_name} need a title per locale, got {dict(item.fields)!r}")
        upload = self.request(
            "POST", f"{self.upload_url}/spaces/{self.space_id}/uploads", (200, 201), data=item.data,
            headers={"Content-Type": "application/octet-stream"},
        ).json()
        link = {"sys": {"type": "Link", "linkType": "Upload", "id": upload["sys"]["id"]}}
        file = {"contentType": content_type(item.file_name), "fileName": item.file_name, "uploadFrom": link}
        fields = {**item.fields, "file": {locale: file for locale in locales}}
        url = self.asset_url(item.key)
        headers = {"Content-Type": CONTENTFUL_JSON}
        # Creating with a chosen id takes no version; updating must name the version it replaces.
        version = self.current_version(item.key)
        if version is not None:
            headers["X-Contentful-Version"] = str(version)
        asset = self.request("PUT", url, (200, 201), json={"fields": fields}, headers=headers).json()
        for locale in locales:
            self.request("PUT", f"{url}/files/{quote(locale, safe='')}/process", (204,),
                         headers={"X-Contentful-Version": str(asset["sys"]["version"])})
        asset = self.processed(item.key, locales)
        published = self.request(
            "PUT", f"{url}/published", (200,), headers={"X-Contentful-Version": str(asset["sys"]["version"])}
        ).json()
        file_url = published["fields"]["file"][locales[0]]["url"]
        return {"id": item.key, "url": f"https:{file_url}" if file_url.startswith("//") else file_url}

    def processed(self, asset_id: str, locales: list[str]) -> dict[str, Any]:
        """The asset once every locale's file has its URL (processing finishes after the process
        request answers); CmsUploadError after `processing_timeout_s`."""
        deadline = time.monotonic() + self.processing_timeout_s
        while True:
            asset = self.request("GET", self.asset_url(asset_id), (200,)).json()
            files = asset["fields"].get("file", {})
            if all(files.get(locale, {}).get("url") for locale in locales):
                return asset
            if time.monotonic() > deadline:
                raise CmsUploadError(f"Contentful asset {asset_id} was not processed within "
                                     f"{self.processing_timeout_s:g}s (its files: {files})")
            time.sleep(self.poll_s)


class StrapiClient(CmsClient):
    """Uploads to a Strapi media library through the upload API, with an API token."""

    system = "Strapi"
    credentials = "the Strapi API token (Settings → API Tokens; it needs the upload permission)"

    def __init__(self, url: str, api_token: str, **http: Any) -> None:
        super().__init__(**http)
        self.url = http_url(url, "the Strapi URL")
        self.session.headers["Authorization"] = f"Bearer {api_token}"

    @property
    def target(self) -> str:
        return self.url

    def upload(self, item: MediaUpload) -> dict[str, str]:
        """One multipart POST: the file as `files`, `item.fields` as the `fileInfo` JSON."""
        answer = self.request(
            "POST", f"{self.url}/api/upload", (200, 201),
            files={"files": (item.file_name, item.data, content_type(item.file_name))},
            data={"fileInfo": json.dumps(dict(item.fields), ensure_ascii=False)},
        ).json()
        stored = answer[0]
        # The local provider answers a path ("/uploads/x.jpg"); cloud providers a full URL.
        return {"id": str(stored["id"]), "url": urljoin(f"{self.url}/", stored.get("url", ""))}


class CmsConnections(dg.ConfigurableResource):
    """URLs and credentials of the CMSs exporters upload to; bind the secrets with `dg.EnvVar`
    (`CmsConnections.from_env()` binds every variable that is set). A system is configured when
    its URL and credentials are all given; `clients()` makes a client for each configured one.

    Requests wait at most `timeout_s`; 429/5xx answers and connection errors are tried again up to
    `retries` times, `backoff_s` × 2^n apart.
    """

    wordpress_url: str = ""
    wordpress_user: str = ""
    wordpress_app_password: str = ""
    contentful_space_id: str = ""
    contentful_environment: str = "master"
    contentful_management_token: str = ""
    contentful_base_url: str = CONTENTFUL_API
    contentful_upload_url: str = CONTENTFUL_UPLOAD
    strapi_url: str = ""
    strapi_token: str = ""
    timeout_s: float = 60.0
    retries: int = 4
    backoff_s: float = 1.0

    # The fields each system needs, all or none.
    REQUIRED: ClassVar[dict[str, tuple[str, ...]]] = {
        "wordpress": ("wordpress_url", "wordpress_user", "wordpress_app_password"),
        "contentful": ("contentful_space_id", "contentful_management_token"),
        "strapi": ("strapi_url", "strapi_token"),
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CmsConnections:
        """Each field whose variable (ENV_VARS) is set, bound as a `dg.EnvVar` so the UI shows the
        variable's name and never a secret; the others keep their defaults."""
        environ = os.environ if environ is None else environ
        return cls(**{field: dg.EnvVar(name) for field, name in ENV_VARS.items() if environ.get(name)})

    def configured(self) -> list[str]:
        """The systems given all their settings; ValueError naming what is missing for a system
        given only some."""
        found = []
        for system, fields in self.REQUIRED.items():
            given = [f for f in fields if getattr(self, f)]
            if given and len(given) < len(fields):
                missing = [f for f in fields if f not in given]
                raise ValueError(
                    f"{system} is partly configured: {', '.join(given)} set but {', '.join(missing)} empty "
                    f"(environment: {', '.join(ENV_VARS[f] for f in missing)}); set all of them or none"
                )
            if given:
                found.append(system)
        return found

    def clients(self) -> dict[str, CmsClient]:
        """An upload client per configured system, by exporter name (wordpress, contentful, strapi)."""
        http = {"timeout_s": self.timeout_s, "retries": self.retries, "backoff_s": self.backoff_s}
        makers: dict[str, Callable[[], CmsClient]] = {
            "wordpress": lambda: WordPressClient(
                self.wordpress_url, self.wordpress_user, self.wordpress_app_password, **http),
            "contentful": lambda: ContentfulClient(
                self.contentful_space_id, self.contentful_environment or "master", self.contentful_management_token,
                self.contentful_base_url, self.contentful_upload_url, **http),
            "strapi": lambda: StrapiClient(self.strapi_url, self.strapi_token, **http),
        }
        return {system: makers[system]() for system in self.configured()}
