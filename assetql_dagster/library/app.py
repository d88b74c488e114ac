"""The asset library app: `create_app` assembles routes, templates, errors and the guard.

Every route names the role it needs (`auth.requires`); every state-changing route is CSRF-checked
where the route table is built (`_route`), so none can go without; `/files/` serves only storage
keys the catalog lists. The OpenAPI document of `/api/v1` comes from the API endpoints' docstrings.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.schemas import SchemaGenerator
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from assetql_dagster.library import actions, admin, api, pages, service
from assetql_dagster.library.auth import Denied, requires
from assetql_dagster.library.config import LibraryConfig, Role
from assetql_dagster.library.guard import SAFE_METHODS, Csrf, Guard, csrf_protected
from assetql_dagster.library.service import BadRequest, Conflict, Library, NotFound, Unavailable

HERE = Path(__file__).resolve().parent
SECRET_ENV = "ASSETQL_LIBRARY_SECRET"
API_VERSION = "1.0"
# A batch upload: the CSV (5 MB), 5 references (10 MB each), batch fields; anything larger is refused
# before it is read (413).
MAX_BODY_BYTES = 60 * 2**20
ERRORS = {NotFound: 404, BadRequest: 400, Conflict: 409, Unavailable: 503}


@requires(Role.VIEWER)
async def serve_file(request: Request) -> Response:
    """A stored image, thumbnail or export, only when the catalog lists its key, or a reference
    image of a stored style profile version."""
    lib: Library = request.app.state.library
    key = service.storage_key(request.path_params["key"])
    if not (lib.catalog.known_file(key) or service.profile_reference(lib, key)):
        raise NotFound("no such file in the catalog")
    return actions.file_response(lib, key, download=request.query_params.get("download") == "1")


def _route(csrf: Csrf, path: str, endpoint: Any, method: str = "GET") -> Route:
    if method not in SAFE_METHODS:
        endpoint = csrf_protected(csrf, endpoint)
    return Route(path, endpoint, methods=[method])


def routes(csrf: Csrf) -> list[BaseRoute]:
    """Every route of the library: pages, form actions, files and the API."""
    page_routes = [
        ("/", pages.home, "GET"),
        ("/batches", pages.batches_page, "GET"),
        ("/batches/new", pages.new_batch_page, "GET"),
        ("/batches/new", pages.new_batch_preview, "POST"),
        ("/batches/new/{token}/submit", pages.new_batch_submit, "POST"),
        ("/batches/{key}", pages.batch_page, "GET"),
        ("/batches/{key}/exports/{kind}", pages.batch_export_file, "GET"),
        ("/batches/{key}/export-approved", pages.batch_export_approved, "POST"),
        ("/batches/{key}/export", pages.batch_export_preset, "POST"),
        ("/batches/{key}/owner", pages.batch_transfer, "POST"),
        ("/batches/{key}/delete", pages.batch_delete, "POST"),
        ("/selection/download", pages.selection_download, "POST"),
        ("/selection/review", pages.selection_review, "POST"),
        ("/selection/regenerate", pages.selection_regenerate, "POST"),
        ("/assets/{batch}/{image}", pages.asset_page, "GET"),
        ("/assets/{batch}/{image}/download", pages.asset_download, "GET"),
        ("/assets/{batch}/{image}/rollback", pages.asset_rollback, "POST"),
        ("/assets/{batch}/{image}/regenerate", pages.asset_regenerate, "POST"),
        ("/search", pages.search_page, "GET"),
        ("/styles", pages.styles_page, "GET"),
        ("/styles", pages.style_create, "POST"),
        ("/styles/{name}", pages.style_page, "GET"),
        ("/styles/{name}", pages.style_edit, "POST"),
        ("/generate", pages.generate_page, "GET"),
        ("/generate", pages.generate_start, "POST"),
        ("/generate/{key}", pages.generate_results, "GET"),
        ("/generate/{key}/more", pages.generate_more, "POST"),
        ("/api/docs", pages.api_docs, "GET"),
        ("/files/{key:path}", serve_file, "GET"),
        *admin.PAGE_ROUTES,
    ]
    api_routes = [(f"/api/v1{path}", endpoint, method) for path, endpoint, method in [*api.ROUTES, *admin.API_ROUTES]]
    built: list[BaseRoute] = [_route(csrf, path, endpoint, method) for path, endpoint, method in [*page_routes, *api_routes]]
    built.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))
    return built


class LibrarySchema(SchemaGenerator):
    """OpenAPI from the API endpoints' docstrings, each operation also naming the role it needs."""

    def parse_docstring(self, func_or_method: Any) -> dict[str, Any]:
        parsed = super().parse_docstring(func_or_method)
        role = getattr(func_or_method, "required_role", None)
        if parsed and role is not None:
            parsed.setdefault("description", f"Needs the {role.label} role.")
            parsed["x-required-role"] = role.label
            parsed.setdefault("responses", {}).update({
                401: {"description": "not signed in (no trusted proxy identity, no valid token)"},
                403: {"description": f"signed in without the {role.label} role, or without the CSRF token"},
                429: {"description": "over the rate limit; Retry-After says when to try again"},
            })
        return parsed


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=HERE / "templates")
    env: Environment = templates.env
    env.filters.update(percent=_percent, score=_score, when=_when, size=_size, seconds=_seconds)
    return templates


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _when(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return value.strftime("%Y-%m-%d %H:%M UTC") if isinstance(value, datetime) else "—"


def _size(value: int | None) -> str:
    if value is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return "—"


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return "under 1 s"
    value = int(round(value))
    return f"{value} s" if value < 90 else f"{value // 60} min {value % 60:02d} s" if value < 3600 else f"{value // 3600} h {value % 3600 // 60:02d} min"


def create_app(config: LibraryConfig, storage: Any, catalog: Any, launcher: Any, clip: Any = None, *,
               generator: Any = None, uploads: Path | None = None, secret: str | None = None,
               config_file: Path | None = None) -> Starlette:
    """The asset library over `storage` and `catalog` (migrated), launching runs through `launcher`
    (a `launching.RunLauncher`). `clip` reads text descriptions for search and, with `generator`,
    regenerates images; without them those features answer that they are not available. `uploads`
    is where batch uploads are staged (default: the system's temporary folder). `secret` signs the
    CSRF tokens (default `ASSETQL_LIBRARY_SECRET`, else random per process, which is fine for one
    process: a restart only asks open forms to be reloaded). `config_file` is where development mode
    (a config without a file) creates one from the admin page (default: where `load_config` looks)."""
    library = Library(config, storage, catalog, launcher, clip, generator)
    if config.source is not None or config_file is not None:
        library.config_file = Path(config.source if config.source is not None else config_file)
    if uploads is not None:
        library.uploads = Path(uploads)
    csrf = Csrf(secret or os.environ.get(SECRET_ENV) or secrets.token_urlsafe(32))
    templates = _templates()

    def error(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message, "status": status}, status_code=status)
        return templates.TemplateResponse(request, "error.html", {
            "status": status, "message": message, "identity": getattr(request.state, "identity", None),
            "Role": Role, "config": library.config, "csrf": getattr(request.state, "csrf", ""), "notice": None,
        }, status_code=status)

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, Denied):
            return error(request, exc.status, exc.message)
        if isinstance(exc, HTTPException):
            return error(request, exc.status_code, str(exc.detail))
        return error(request, next(code for cls, code in ERRORS.items() if isinstance(exc, cls)), str(exc))

    handlers = {cls: on_error for cls in (Denied, HTTPException, *ERRORS)}
    csrf_routes = routes(csrf)
    app = Starlette(
        routes=csrf_routes,
        middleware=[Middleware(Guard, config=lambda: library.config, csrf=csrf, error=error)],
        exception_handlers=handlers,
        max_body_size=MAX_BODY_BYTES,
    )
    schema = LibrarySchema({"openapi": "3.0.0", "info": {"title": "AssetQL asset library API", "version": API_VERSION}})
    app.state.library = library
    app.state.templates = templates
    app.state.openapi = lambda: schema.get_schema(csrf_routes)
    return app
