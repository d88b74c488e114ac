"""Local stand-ins for the WordPress REST API, Contentful's Management and Upload APIs and Strapi's
upload API: real HTTP servers on 127.0.0.1 (a free port, in a thread) implementing the documented
endpoints the upload clients call, checking their auth headers and request shapes, and able to fail
the first N requests with 500 to exercise retries. They hold what was uploaded in memory."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

Answer = tuple[int, Any]  # status and a JSON-able body (None: no body)
CONTENTFUL_JSON = "application/vnd.contentful.management.v1+json"


@dataclass
class Recorded:
    """One request as the stand-in received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class StandIn:
    """The server machinery: subclasses check auth (`authorized`) and answer (`route`)."""

    fail_first: int = 0  # answer this many requests with 500 before serving any
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def handle_any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, payload = stand_in.answer(self.command, self.path, dict(self.headers.items()), body)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = handle_any

            def log_message(self, *args: Any) -> None:
                pass  # keep the test output to what fails

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll, so that shutting down at the end of each test takes milliseconds, not half a second.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        with self.lock:  # one request at a time: the state is plain dicts
            self.requests.append(Recorded(method, path, headers, body))
            if self.fail_first > 0:
                self.fail_first -= 1
                return 500, {"message": "stand-in failing on purpose"}
            if not self.authorized(headers.get("Authorization", "")):
                return self.unauthorized()
            return self.route(method, urlsplit(path).path, headers, body)

    def calls(self, method: str, path_start: str) -> list[Recorded]:
        """The requests received of `method` whose path starts with `path_start`."""
        return [r for r in self.requests if r.method == method and r.path.startswith(path_start)]

    def authorized(self, authorization: str) -> bool:
        raise NotImplementedError

    def unauthorized(self) -> Answer:
        raise NotImplementedError

    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        raise NotImplementedError


def header_param(value: str, header: str, param: str) -> str | None:
    """A parameter of a header value (e.g. filename of Content-Disposition), parsed as email does."""
    message = Message()
    message[header] = value
    return message.get_param(param, header=header)


@dataclass
class WordPressStandIn(StandIn):
    """`/wp-json/wp/v2/media` (create from a raw body named by Content-Disposition; read; update)
    behind Basic auth with `user` and application password `password`."""

    user: str = "editor"
    password: str = "abcd EFGH 1234 ijkl MNOP 5678"
    media: dict[int, dict[str, Any]] = field(default_factory=dict)

    def authorized(self, authorization: str) -> bool:
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return authorization == f"Basic {expected}"

    def unauthorized(self) -> Answer:
        return 401, {"code": "rest_not_logged_in", "message": "You are not currently logged in.", "data": {"status": 401}}

    def view(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if k != "data"}

    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        base = "/wp-json/wp/v2/media"
        if path == base and method == "POST":
            file_name = header_param(headers.get("Content-Disposition", ""), "Content-Disposition", "filename")
            if not file_name:
                return 400, {"code": "rest_upload_no_content_disposition", "message": "No Content-Disposition supplied."}
            if not body:
                return 400, {"code": "rest_upload_no_data", "message": "No data supplied."}
            media_id = len(self.media) + 1
            self.media[media_id] = {
                "id": media_id, "media_type": "image", "mime_type": headers.get("Content-Type", ""),
                "source_url": f"{self.url}/wp-content/uploads/{file_name}", "title": {"raw": file_name.rsplit(".", 1)[0]},
                "alt_text": "", "caption": {"raw": ""}, "description": {"raw": ""}, "data": body,
            }
            return 201, self.view(self.media[media_id])
        if path.startswith(base + "/") and path[len(base) + 1:].isdigit():
            item = self.media.get(int(path[len(base) + 1:]))
            if item is None:
                return 404, {"code": "rest_post_invalid_id", "message": "Invalid post ID.", "data": {"status": 404}}
            if method == "GET":
                return 200, self.view(item)
            if method == "POST":
                fields = json.loads(body)
                unknown = set(fields) - {"title", "alt_text", "caption", "description"}
                if unknown or not all(isinstance(v, str) for v in fields.values()):
                    return 400, {"code": "rest_invalid_param", "message": f"Invalid parameter(s): {sorted(unknown)}"}
                for key, value in fields.items():
                    item[key] = value if key == "alt_text" else {"raw": value}
                return 200, self.view(item)
        return 404, {"code": "rest_no_route", "message": "No route was found matching the URL and request method."}


@dataclass
class ContentfulStandIn(StandIn):
    """Uploads (`POST /spaces/{space}/uploads`) and assets of one environment: create or update with
    a chosen id (X-Contentful-Version for an update), process per locale (done after
    `processing_polls` reads), read, publish (X-Contentful-Version); Bearer `token`."""

    space: str = "space1"
    environment: str = "master"
    token: str = "CFPAT-stand-in"
    processing_polls: int = 1
    uploads: dict[str, bytes] = field(default_factory=dict)
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def authorized(self, authorization: str) -> bool:
        return authorization == f"Bearer {self.token}"

    def unauthorized(self) -> Answer:
        return 401, error("AccessTokenInvalid", "The access token you sent could not be found or is invalid.")

    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if path == f"/spaces/{self.space}/uploads" and method == "POST":
            if headers.get("Content-Type") != "application/octet-stream":
                return 415, error("UnsupportedMediaType", "uploads take application/octet-stream")
            upload_id = uuid.uuid4().hex[:22]
            self.uploads[upload_id] = body
            return 201, {"sys": {"type": "Upload", "id": upload_id, "space": link("Space", self.space)}}
        prefix = f"/spaces/{self.space}/environments/{self.environment}/assets/"
        if not path.startswith(prefix):
            return 404, error("NotFound", "The resource could not be found.")
        asset_id, _, action = path[len(prefix):].partition("/")
        asset = self.assets.get(asset_id)
        version = headers.get("X-Contentful-Version")
        if method == "PUT" and not action:
            return self.put_asset(asset_id, asset, version, headers, body)
        if asset is None:
            return 404, error("NotFound", "The resource could not be found.")
        if version is not None and int(version) != asset["sys"]["version"]:
            return 409, error("VersionMismatch", f"version {version} is not the current {asset['sys']['version']}")
        if method == "GET" and not action:
            self.advance_processing(asset)
            return 200, asset
        if method == "PUT" and action.startswith("files/") and action.endswith("/process"):
            locale = action[len("files/"):-len("/process")]
            if locale not in asset["fields"].get("file", {}):
                return 404, error("NotFound", f"no file for locale {locale}")
            asset["pending"] = {**asset.get("pending", {}), locale: self.processing_polls}
            return 204, None
        if method == "PUT" and action == "published":
            if version is None:
                return 400, error("BadRequest", "X-Contentful-Version is required")
            if not all(f.get("url") for f in asset["fields"]["file"].values()):
                return 422, error("ValidationFailed", "every file must be processed before publishing")
            asset["sys"]["publishedVersion"] = asset["sys"]["version"]
            asset["sys"]["version"] += 1
            return 200, asset
        return 404, error("NotFound", "The resource could not be found.")

    def put_asset(self, asset_id: str, asset: dict | None, version: str | None, headers: dict[str, str],
                  body: bytes) -> Answer:
        if headers.get("Content-Type") != CONTENTFUL_JSON:
            return 415, error("UnsupportedMediaType", f"asset bodies are {CONTENTFUL_JSON}")
        if asset is not None and (version is None or int(version) != asset["sys"]["version"]):
            return 409, error("VersionMismatch", f"updating needs X-Contentful-Version {asset['sys']['version']}")
        fields = json.loads(body)["fields"]
        for locale, file in fields.get("file", {}).items():
            upload = file.get("uploadFrom", {}).get("sys", {})
            if upload.get("linkType") != "Upload" or upload.get("id") not in self.uploads:
                return 422, error("ValidationFailed", f"file {locale} links no known upload: {file}")
        new = asset is None
        asset = {"sys": {"type": "Asset", "id": asset_id, "version": 1 if new else asset["sys"]["version"] + 1},
                 "fields": fields}
        self.assets[asset_id] = asset
        return (201 if new else 200), asset

    def advance_processing(self, asset: dict[str, Any]) -> None:
        """Count a read against each pending locale; one whose count is spent gets its URL."""
        pending = asset.get("pending", {})
        for locale in list(pending):
            pending[locale] -= 1
            if pending[locale] > 0:
                continue
            del pending[locale]
            file = asset["fields"]["file"][locale]
            upload_id = file.pop("uploadFrom")["sys"]["id"]
            digest = hashlib.sha1(self.uploads[upload_id]).hexdigest()[:12]
            file["url"] = f"//images.ctfassets.net/{self.space}/{asset['sys']['id']}/{digest}/{file['fileName']}"
            file["details"] = {"size": len(self.uploads[upload_id])}
            asset["sys"]["version"] += 1


def error(kind: str, message: str) -> dict[str, Any]:
    return {"sys": {"type": "Error", "id": kind}, "message": message}


def link(kind: str, target: str) -> dict[str, Any]:
    return {"sys": {"type": "Link", "linkType": kind, "id": target}}


@dataclass
class StrapiStandIn(StandIn):
    """`POST /api/upload`: multipart `files` with a `fileInfo` JSON (name, alternativeText, caption),
    Bearer API `token`."""

    token: str = "strapi-stand-in-token"
    files: list[dict[str, Any]] = field(default_factory=list)

    def authorized(self, authorization: str) -> bool:
        return authorization == f"Bearer {self.token}"

    def unauthorized(self) -> Answer:
        return 401, {"data": None, "error": {"status": 401, "name": "UnauthorizedError",
                                             "message": "Missing or invalid credentials"}}

    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if path != "/api/upload" or method != "POST":
            return 404, {"data": None, "error": {"status": 404, "name": "NotFoundError", "message": "Not Found"}}
        content_type = headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            return 400, strapi_error("the upload is multipart/form-data")
        parts = BytesParser(policy=policy.HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        uploads, info = [], {}
        for part in parts.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "files":
                uploads.append((part.get_filename(), part.get_content_type(), part.get_payload(decode=True)))
            elif name == "fileInfo":
                info = json.loads(part.get_payload(decode=True))
        if not uploads:
            return 400, strapi_error("Files are empty")
        unknown = set(info) - {"name", "alternativeText", "caption", "folder"}
        if unknown:
            return 400, strapi_error(f"fileInfo has unknown key(s) {sorted(unknown)}")
        answered = []
        for file_name, mime, data in uploads:
            stem, _, ext = file_name.rpartition(".")
            stored = {
                "id": len(self.files) + 1, "documentId": uuid.uuid4().hex[:24], "name": info.get("name", file_name),
                "alternativeText": info.get("alternativeText"), "caption": info.get("caption"), "mime": mime,
                "ext": f".{ext}", "size": round(len(data) / 1000, 2),
                "url": f"/uploads/{stem}_{hashlib.sha1(data).hexdigest()[:10]}.{ext}", "data": data,
            }
            self.files.append(stored)
            answered.append({k: v for k, v in stored.items() if k != "data"})
        return 201, answered


def strapi_error(message: str) -> dict[str, Any]:
    return {"data": None, "error": {"status": 400, "name": "ValidationError", "message": message}}
