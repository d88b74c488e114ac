"""The library's server-rendered pages: batches, a batch, an asset, search, style profiles, a new
batch and quick generate (the admin page is `admin.py`); forms post back here and are answered with a redirect
(303) to the page that shows the result, or with the form again and what was wrong (400)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from assetql_dagster.domain.batch_loader import REFERENCES_DIR
from assetql_dagster.domain.errors import BatchValidationError
from assetql_dagster.domain.export_writers import EXPORT_FORMATS
from assetql_dagster.domain.profiles import diff_profiles
from assetql_dagster.domain.scoring import PARAMETERS
from assetql_dagster.domain.style_refs import PRESETS
from assetql_dagster.library import actions, service
from assetql_dagster.library.auth import Identity, requires
from assetql_dagster.library.config import Role
from assetql_dagster.library.guard import read_form
from assetql_dagster.library.service import BadRequest, Library, NotFound
from assetql_dagster.pipeline import reviews
from assetql_dagster.pipeline.profiles import ProfileNotFound, get_profile, list_profiles, profile_versions
from resources.catalog_search import FILTERS, SORTS

# Filters the batch page offers (the search page offers every one).
BATCH_FILTERS = ("verdict", "category", "tag", "min_score", "max_score", "review")
VIEWS = ("grid", "list")
# What a redirect after a form may announce: fixed texts, so a link cannot make the page say anything.
NOTICES = {
    "reviewed": "Review saved for {n} image(s).",
    "regenerating": "Regenerating {n} image(s): new versions appear when the batch has been re-exported.",
    "rolled-back": "Rolled back: the batch is being re-exported with that version.",
    "exported": "The package now holds the approved images only ({n}).",
    "exported-preset": "The package was written again with the chosen formats and {n} image(s).",
    "transferred": "Ownership transferred.",
    "deleted": "The batch was deleted from the library (its files stay in storage).",
    "submitted": "Batch submitted: its run has been launched.",
    "profile-saved": "Style profile version saved.",
    "role-saved": "Role saved: it applies from the next request.",
    "role-removed": "Role removed: it applies from the next request.",
    "token-revoked": "API token revoked: it no longer works.",
}


def lib_of(request: Request) -> Library:
    return request.app.state.library


def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    identity: Identity = request.state.identity
    notice = NOTICES.get(request.query_params.get("notice", ""))
    base = {
        "identity": identity, "Role": Role, "csrf": request.state.csrf, "config": lib_of(request).config,
        "notice": notice.format(n=_count(request.query_params.get("n", ""))) if notice else None,
        "can_regenerate": lib_of(request).generator is not None and lib_of(request).clip is not None,
    }
    return request.app.state.templates.TemplateResponse(request, template, {**base, **context}, status_code=status)


def _count(text: str) -> str:
    return text if text.isdigit() else ""


def redirect(url: str, notice: str | None = None, n: int | None = None) -> RedirectResponse:
    """A 303 to `url` (a path, perhaps with a query, whose own notice is replaced) with `notice`."""
    path, _, query = url.partition("?")
    params = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in ("notice", "n")]
    params += [(k, str(v)) for k, v in (("notice", notice), ("n", n)) if v is not None]
    return RedirectResponse(path + ("?" + urlencode(params) if params else ""), status_code=303)


def back_url(form: Any, default: str) -> str:
    """Where a form asks to go back to: a path of this site only (never another host)."""
    back = str(form.get("back") or "")
    return back if back.startswith("/") and not back.startswith("//") and "\\" not in back else default


def asset_id_of(request: Request) -> str:
    return f"{request.path_params['batch']}/{request.path_params['image']}"


def query_without(request: Request, *names: str) -> str:
    """The request's query string without `names` (for links that change one of them)."""
    return urlencode([(k, v) for k, v in request.query_params.multi_items() if k not in names])


# ---- batches -------------------------------------------------------------------------------------


@requires(Role.VIEWER)
async def home(request: Request) -> Response:
    return RedirectResponse("/batches", status_code=303)


@requires(Role.VIEWER)
async def batches_page(request: Request) -> Response:
    lib = lib_of(request)
    limit, offset = service.page_from(request.query_params)
    mine = request.query_params.get("mine") == "1"
    batches = service.list_batches(lib, limit, offset, owner=request.state.identity.user if mine else None)
    # The best three images of each batch, so the list shows what each batch looks like.
    covers = {b["key"]: lib.catalog.search(None, limit=3, batch=b["key"]) for b in batches}
    return render(request, "batches.html", batches=batches, covers=covers, page=offset // limit + 1,
                  more=len(batches) == limit, mine=mine, paging="mine=1" if mine else "")


@requires(Role.VIEWER)
async def batch_page(request: Request) -> Response:
    lib = lib_of(request)
    key = request.path_params["key"]
    batch = service.get_batch(lib, key)
    params = request.query_params
    view = params.get("view") if params.get("view") in VIEWS else "grid"
    filters = service.filters_from(params, BATCH_FILTERS)
    sort, reverse = service.sort_from(params)
    limit, offset = service.page_from(params)
    assets = lib.catalog.search(None, sort=sort, reverse=reverse, limit=limit, offset=offset, batch=key, **filters)
    return render(
        request, "batch.html", batch=batch, assets=assets, view=view, filters=filters, sort=sort, reverse=reverse,
        export_formats=EXPORT_FORMATS,
        sorts=SORTS, facets=lib.catalog.batch_facets(key), page=offset // limit + 1, more=len(assets) == limit,
        query=query_without(request, "view", "page"), paging=query_without(request, "page"),
        activity=reviews.activity(lib.catalog, target=key, limit=15),
    )


@requires(Role.VIEWER)
async def batch_export_file(request: Request) -> Response:
    lib = lib_of(request)
    key, kind = request.path_params["key"], request.path_params["kind"]
    exports = lib.catalog.batch_exports(key)
    if kind not in exports:
        raise NotFound(f"batch {key[:200]!r} has no {kind[:40]!r} export")
    reviews.record_download(lib.catalog, request.state.identity.user, key, f"export-{kind}"[:32])
    return actions.file_response(lib, exports[kind], download=True)


@requires(Role.CREATOR)
async def batch_export_approved(request: Request) -> Response:
    lib = lib_of(request)
    key = request.path_params["key"]
    summary = actions.export_approved(lib, request.state.identity, key)
    return redirect(f"/batches/{key}", "exported", summary.images)


@requires(Role.CREATOR)
async def batch_export_preset(request: Request) -> Response:
    lib = lib_of(request)
    key = request.path_params["key"]
    form = await read_form(request)
    exports = [str(e) for e in form.getlist("exports")]
    summary = actions.export_preset(lib, request.state.identity, key, exports, str(form.get("export_only") or "all"))
    return redirect(f"/batches/{key}", "exported-preset", summary.images)


@requires(Role.ADMIN)
async def batch_transfer(request: Request) -> Response:
    lib = lib_of(request)
    key = request.path_params["key"]
    form = await read_form(request)
    actions.transfer(lib, request.state.identity, key, str(form.get("owner") or ""))
    return redirect(f"/batches/{key}", "transferred")


@requires(Role.ADMIN)
async def batch_delete(request: Request) -> Response:
    lib = lib_of(request)
    actions.delete(lib, request.state.identity, request.path_params["key"])
    return redirect("/batches", "deleted")


# ---- selections (batch page, search page, asset page) ----------------------------------------------


@requires(Role.VIEWER)
async def selection_download(request: Request) -> Response:
    lib = lib_of(request)
    form = await read_form(request)
    rows = service.selected_assets(lib, form.getlist("asset"))
    return actions.zip_response(lib, request.state.identity, rows)


@requires(Role.CREATOR)
async def selection_review(request: Request) -> Response:
    lib = lib_of(request)
    form = await read_form(request)
    decision = str(form.get("decision") or "")
    count = actions.review(lib, request.state.identity, form.getlist("asset"), decision)
    return redirect(back_url(form, "/batches"), "reviewed", count)


@requires(Role.CREATOR)
async def selection_regenerate(request: Request) -> Response:
    lib = lib_of(request)
    form = await read_form(request)
    task = actions.regenerate_many(lib, request.state.identity, form.getlist("asset"))
    response = redirect(back_url(form, "/batches"), "regenerating", task.count)
    response.background = BackgroundTask(task.run)
    return response


# ---- one asset --------------------------------------------------------------------------------------------


@requires(Role.VIEWER)
async def asset_page(request: Request) -> Response:
    lib = lib_of(request)
    asset_id = asset_id_of(request)
    detail = service.asset_detail(lib, asset_id)
    return render(request, "asset.html", **detail, asset_id=asset_id, parameters=PARAMETERS,
                  activity=reviews.activity(lib.catalog, target=asset_id, limit=10))


@requires(Role.VIEWER)
async def asset_download(request: Request) -> Response:
    lib = lib_of(request)
    row = service.get_asset(lib, asset_id_of(request))
    kind = request.query_params.get("format", "original")
    return actions.asset_download(lib, request.state.identity, row, kind)


@requires(Role.CREATOR)
async def asset_rollback(request: Request) -> Response:
    lib = lib_of(request)
    asset_id = asset_id_of(request)
    form = await read_form(request)
    actions.rollback(lib, request.state.identity, asset_id, str(form.get("version") or ""))
    return redirect(f"/assets/{asset_id}", "rolled-back")


@requires(Role.CREATOR)
async def asset_regenerate(request: Request) -> Response:
    lib = lib_of(request)
    asset_id = asset_id_of(request)
    form = await read_form(request)
    task = actions.regenerate_one(lib, request.state.identity, asset_id, form)
    response = redirect(f"/assets/{asset_id}", "regenerating", 1)
    response.background = BackgroundTask(task.run)
    return response


# ---- search ------------------------------------------------------------------------------------------------


@requires(Role.VIEWER)
async def search_page(request: Request) -> Response:
    lib = lib_of(request)
    params = request.query_params
    asked = any(params.get(k) for k in params.keys() if k not in ("page", "sort", "reverse", "view"))
    error, results = None, []
    if asked:
        try:
            results = service.search(lib, params)
        except BadRequest as problem:
            error = str(problem)
    limit, offset = service.page_from(params)
    return render(
        request, "search.html", 400 if error else 200, filters=FILTERS, sorts=SORTS, params=params, results=results,
        asked=asked, filtered=any(params.get(f.name) for f in FILTERS), error=error,
        facets=lib.catalog.batch_facets(), page=offset // limit + 1,
        more=len(results) == limit, paging=query_without(request, "page"),
    )


# ---- style profiles -------------------------------------------------------------------------------------


@requires(Role.VIEWER)
async def styles_page(request: Request) -> Response:
    return styles_view(request)


def styles_view(request: Request, error: str | None = None, problems: list | None = None, status: int = 200) -> Response:
    lib = lib_of(request)
    profiles = list_profiles(lib.storage)
    return render(request, "styles.html", status, profiles=profiles, presets=PRESETS, parameters=PARAMETERS,
                  palettes={p.name: service.profile_palette(lib, p.name, p.version) for p in profiles},
                  error=error, problems=problems or [])


@requires(Role.VIEWER)
async def style_page(request: Request) -> Response:
    return style_view(request)


def style_view(request: Request, error: str | None = None, status: int = 200) -> Response:
    lib = lib_of(request)
    name = request.path_params["name"]
    version = request.query_params.get("version")
    try:
        spec = get_profile(lib.storage, f"{name}@{version}" if version else name)
    except (ProfileNotFound, ValueError) as missing:
        raise NotFound(str(missing)) from None
    versions = profile_versions(lib.storage, name)
    previous = get_profile(lib.storage, f"{name}@{spec.version - 1}") if spec.version - 1 in versions else None
    return render(request, "style.html", status, spec=spec, versions=versions, parameters=PARAMETERS,
                  palette=service.profile_palette(lib, spec.name, spec.version), presets=PRESETS,
                  changes=diff_profiles(previous, spec) if previous else [], error=error)


@requires(Role.CREATOR)
async def style_create(request: Request) -> Response:
    lib = lib_of(request)
    form = await read_form(request)
    try:
        spec = await actions.create_profile_from(lib, request.state.identity, form)
    except BatchValidationError as invalid:
        return styles_view(request, "The references were not accepted:", invalid.problems, 400)
    except (BadRequest, ValueError, FileExistsError) as problem:
        return styles_view(request, str(problem), None, 400)
    return redirect(f"/styles/{spec.name}", "profile-saved")


@requires(Role.CREATOR)
async def style_edit(request: Request) -> Response:
    lib = lib_of(request)
    form = await read_form(request)
    try:
        spec = actions.edit_profile(lib, request.state.identity, request.path_params["name"], form)
    except (BadRequest, ValueError, FileExistsError) as problem:
        return style_view(request, str(problem), 400)
    return redirect(f"/styles/{spec.name}", "profile-saved")


# ---- new batch -------------------------------------------------------------------------------------------


def _style_choices(lib: Library) -> dict[str, Any]:
    return {"profiles": list_profiles(lib.storage), "presets": PRESETS, "settings": service.FORM_SETTINGS}


@requires(Role.CREATOR)
async def new_batch_page(request: Request) -> Response:
    return render(request, "new_batch.html", **_style_choices(lib_of(request)), values={}, error=None)


@requires(Role.CREATOR)
async def new_batch_preview(request: Request) -> Response:
    from assetql_dagster.pipeline.launching import preview_upload

    lib = lib_of(request)
    form = await read_form(request)
    try:
        token, folder = await service.stage_batch(lib, request.state.identity.user, form)
    except BadRequest as problem:
        return render(request, "new_batch.html", 400, **_style_choices(lib), values=form, error=str(problem))
    preview = preview_upload(folder, lib.storage, lib.launcher)
    header, rows = service.csv_preview(folder)
    references = sorted(p.name for p in (folder / REFERENCES_DIR).glob("*")) if (folder / REFERENCES_DIR).exists() else []
    return render(request, "preview.html", 400 if preview.problems else 200, preview=preview, token=token,
                  header=header, rows=rows, references=references, **_style_choices(lib), values=form)


@requires(Role.CREATOR)
async def new_batch_submit(request: Request) -> Response:
    lib = lib_of(request)
    key = actions.submit(lib, request.state.identity, request.path_params["token"])
    return redirect(f"/batches/{key}", "submitted")


# ---- quick generate -----------------------------------------------------------------------------------------


@requires(Role.CREATOR)
async def generate_page(request: Request) -> Response:
    return render(request, "generate.html", error=None, prompt="")


@requires(Role.CREATOR)
async def generate_start(request: Request) -> Response:
    lib = lib_of(request)
    form = await read_form(request)
    prompt = str(form.get("prompt") or "")
    try:
        key = actions.quick_generate(lib, request.state.identity, prompt)
    except BadRequest as problem:
        return render(request, "generate.html", 400, error=str(problem), prompt=prompt)
    return redirect(f"/generate/{key}")


@requires(Role.VIEWER)
async def generate_results(request: Request) -> Response:
    lib = lib_of(request)
    key = request.path_params["key"]
    quick = actions.quick_results(lib, key)
    return render(request, "quick.html", **quick)


@requires(Role.CREATOR)
async def generate_more(request: Request) -> Response:
    lib = lib_of(request)
    key = actions.quick_generate(lib, request.state.identity, None, more_of=request.path_params["key"])
    return redirect(f"/generate/{key}")


# ---- docs -------------------------------------------------------------------------------------------------


@requires(Role.VIEWER)
async def api_docs(request: Request) -> Response:
    return render(request, "api_docs.html", spec=request.app.state.openapi())

