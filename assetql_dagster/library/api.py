"""The JSON API under /api/v1, mirroring the pages: batches, assets, search, reviews, styles,
exports, quick generate, the activity log and download history.

Each endpoint's docstring ends in its OpenAPI operation (YAML after `---`), which
`/api/v1/openapi.json` serves and `/api/docs` shows. Scripts authenticate with
`Authorization: Bearer TOKEN`; a browser session (proxy or local admin) sends `X-CSRF-Token` with
every state-changing call. Errors are `{"error": message, "status": code}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from assetql_dagster.domain.errors import BatchValidationError
from assetql_dagster.domain.scoring import PARAMETERS
from assetql_dagster.library import actions, service
from assetql_dagster.library.auth import requires
from assetql_dagster.library.config import Role
from assetql_dagster.library.guard import read_form
from assetql_dagster.library.service import BadRequest, Library, NotFound, public_row
from assetql_dagster.pipeline import reviews
from assetql_dagster.pipeline.profiles import ProfileNotFound, get_profile, list_profiles, profile_versions


class JsonParams:
    """A JSON object read like query parameters (`get`, `getlist`), for the functions both share."""

    def __init__(self, data: Mapping[str, Any]):
        self.data = data

    def get(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key, default)
        return value[0] if isinstance(value, list) and value else value

    def getlist(self, key: str) -> list[Any]:
        value = self.data.get(key)
        return [] if value is None else list(value) if isinstance(value, list) else [value]


async def json_body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def lib_of(request: Request) -> Library:
    return request.app.state.library


def file_url(key: str) -> str:
    return f"/files/{key}"


def problems_json(problems: list[Any]) -> list[dict[str, Any]]:
    return [{"file": p.file, "row": p.row, "column": p.column, "message": p.message} for p in problems]


# ---- identity -----------------------------------------------------------------------------------------


@requires(Role.VIEWER)
async def me(request: Request) -> Response:
    """
    ---
    summary: Who is calling, with which role
    tags: [identity]
    responses:
      200: {description: "{user, role, via}: via is proxy, token or local"}
    """
    identity = request.state.identity
    return JSONResponse({"user": identity.user, "role": identity.role.label, "via": identity.via})


# ---- batches ---------------------------------------------------------------------------------------------


@requires(Role.VIEWER)
async def batches_list(request: Request) -> Response:
    """
    ---
    summary: Batches, newest first, with status, owner, pass rate and run progress (ETA while running)
    tags: [batches]
    parameters:
      - {name: page, in: query, schema: {type: integer, minimum: 1}}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 500}}
      - {name: owner, in: query, description: "only the batches this user owns", schema: {type: string}}
      - {name: mine, in: query, description: "1: only the caller's batches", schema: {type: integer, enum: [0, 1]}}
    responses:
      200: {description: "{batches: [...]}"}
    """
    params = request.query_params
    limit, offset = service.page_from(params)
    owner = request.state.identity.user if params.get("mine") == "1" else params.get("owner") or None
    return JSONResponse({"batches": service.list_batches(lib_of(request), limit, offset, owner=owner)})


@requires(Role.CREATOR)
async def batches_create(request: Request) -> Response:
    """
    ---
    summary: Upload a batch (CSV, references, settings), validate it as the CLI does, and launch it
    description: >
      multipart/form-data with `csv` (batch.csv), `references` (0-5 images), any plain batch.yaml
      setting by name (name, variations, seed, ...), `profile` (brand-x@2) and `preset`. With
      `?dry_run=1` nothing is registered: the answer is the preview. Every problem is reported with
      its file, row and column (422). Needs the creator role.
    tags: [batches]
    parameters:
      - {name: dry_run, in: query, schema: {type: integer, enum: [0, 1]}}
    responses:
      201: {description: "{key, preview}: registered and launched"}
      200: {description: "{preview}: a dry run"}
      422: {description: "{problems: [{file, row, column, message}], preview}"}
    """
    from assetql_dagster.pipeline.launching import preview_upload

    lib = lib_of(request)
    identity = request.state.identity
    form = await read_form(request)
    token, folder = await service.stage_batch(lib, identity.user, form)
    preview = preview_upload(folder, lib.storage, lib.launcher)
    summary = preview_json(preview)
    if preview.problems:
        service.discard_upload(lib, token)
        return JSONResponse({"problems": summary["problems"], "preview": summary}, status_code=422)
    if request.query_params.get("dry_run") == "1":
        service.discard_upload(lib, token)
        return JSONResponse({"preview": summary})
    key = actions.submit(lib, identity, token)
    return JSONResponse({"key": key, "preview": summary}, status_code=201)


def preview_json(preview: Any) -> dict[str, Any]:
    return {"rows": preview.rows, "images": preview.images, "prompts": list(preview.prompts),
            "estimated_seconds": preview.estimated_seconds, "estimate_basis": preview.estimate_basis,
            "problems": problems_json(preview.problems), "warnings": problems_json(preview.warnings)}


@requires(Role.VIEWER)
async def batch_get(request: Request) -> Response:
    """
    ---
    summary: One batch with its settings, run progress and export files
    tags: [batches]
    responses:
      200: {description: "the batch"}
      404: {description: "no such batch"}
    """
    batch = service.get_batch(lib_of(request), request.path_params["key"])
    batch["exports"] = {kind: file_url(key) for kind, key in batch["exports"].items()}
    return JSONResponse(batch)


@requires(Role.ADMIN)
async def batch_delete(request: Request) -> Response:
    """
    ---
    summary: Delete a batch from the library (its files stay in storage)
    tags: [batches]
    responses:
      200: {description: "{deleted: key}"}
    """
    key = request.path_params["key"]
    actions.delete(lib_of(request), request.state.identity, key)
    return JSONResponse({"deleted": key})


@requires(Role.ADMIN)
async def batch_owner(request: Request) -> Response:
    """
    ---
    summary: Transfer a batch to another owner
    tags: [batches]
    requestBody:
      content: {application/json: {schema: {type: object, properties: {owner: {type: string}}, required: [owner]}}}
    responses:
      200: {description: "{key, owner}"}
    """
    key = request.path_params["key"]
    owner = str((await json_body(request)).get("owner") or "")
    actions.transfer(lib_of(request), request.state.identity, key, owner)
    return JSONResponse({"key": key, "owner": owner.strip()})


@requires(Role.CREATOR)
async def batch_export_approved(request: Request) -> Response:
    """
    ---
    summary: Rewrite the batch's package with its approved images only
    tags: [exports]
    responses:
      200: {description: "{key, images, files}"}
    """
    key = request.path_params["key"]
    summary = actions.export_approved(lib_of(request), request.state.identity, key)
    return JSONResponse(export_json(key, summary))


def export_json(key: str, summary: Any) -> dict[str, Any]:
    return {"key": key, "images": summary.images, "exports": list(summary.exports),
            "files": {kind: file_url(k) for kind, k in summary.files.items()}}


@requires(Role.CREATOR)
async def batch_export_preset(request: Request) -> Response:
    """
    ---
    summary: Rewrite the batch's package in chosen formats, of all its images or only the approved
    description: >
      `exports` lists the formats to write (default: the batch's own `exports` setting); files of
      the others are no longer listed. `export_only` is `all` (default) or `approved`. Later runs of
      the batch follow its settings again.
    tags: [exports]
    requestBody:
      content:
        application/json:
          schema:
            type: object
            properties:
              exports: {type: array, items: {type: string, enum: [zip, manifest, gallery, links]}}
              export_only: {type: string, enum: [all, approved]}
    responses:
      200: {description: "{key, images, exports, files}"}
      400: {description: "an unknown format or export_only"}
    """
    key = request.path_params["key"]
    body = JsonParams(await json_body(request))
    exports = [str(e) for e in body.getlist("exports")] if "exports" in body.data else None
    summary = actions.export_preset(lib_of(request), request.state.identity, key, exports,
                                    str(body.get("export_only") or "all"))
    return JSONResponse(export_json(key, summary))


# ---- assets and search -----------------------------------------------------------------------------------


def _results(lib: Library, params: Any) -> Response:
    rows = service.search(lib, params)
    for row in rows:
        row["thumbnail_url"], row["image_url"] = file_url(row["thumb_key"]), file_url(row["raw_key"])
    return JSONResponse({"assets": [public_row(r) | {"thumbnail_url": r["thumbnail_url"], "image_url": r["image_url"]}
                                    for r in rows]})


@requires(Role.VIEWER)
async def assets_list(request: Request) -> Response:
    """
    ---
    summary: Assets matching full text, every catalog filter, or similarity
    description: >
      Query parameters: `q` (words), `like` (an asset id: visually similar), `describe` (text:
      similar to the description), `sort` (score, date, name, category), `reverse`, `page`,
      `limit`, and every catalog filter by its name (batch, category, tag, any_tag, verdict,
      review, language, style_profile, campaign, owner, creator, since, until, min_score, max_score, min/max_width,
      min/max_height, min/max_file_size, file_format); repeatable ones take several values or
      comma-separated words.
    tags: [assets]
    responses:
      200: {description: "{assets: [...]}, each with thumbnail_url and image_url"}
      400: {description: "a filter or option that does not parse"}
    """
    return _results(lib_of(request), request.query_params)


@requires(Role.VIEWER)
async def assets_search(request: Request) -> Response:
    """
    ---
    summary: The same search as GET /assets, from a JSON object of the same names
    tags: [assets]
    requestBody:
      content: {application/json: {schema: {type: object}}}
    responses:
      200: {description: "{assets: [...]}"}
    """
    return _results(lib_of(request), JsonParams(await json_body(request)))


@requires(Role.VIEWER)
async def asset_get(request: Request) -> Response:
    """
    ---
    summary: One asset with all its metadata, tags (with confidence, group, source) and versions
    tags: [assets]
    responses:
      200: {description: "{asset, tags, versions, variant_id, variation}"}
      404: {description: "no such asset"}
    """
    asset_id = f"{request.path_params['batch']}/{request.path_params['image']}"
    detail = service.asset_detail(lib_of(request), asset_id)
    detail["asset"] = public_row(detail["asset"]) | {"image_url": file_url(detail["asset"]["raw_key"]),
                                                     "thumbnail_url": file_url(detail["asset"]["thumb_key"])}
    return JSONResponse(detail)


@requires(Role.CREATOR)
async def reviews_set(request: Request) -> Response:
    """
    ---
    summary: Approve, reject or clear the review of images (any batches)
    tags: [reviews]
    requestBody:
      content:
        application/json:
          schema:
            type: object
            properties:
              asset_ids: {type: array, items: {type: string}}
              decision: {type: string, enum: [approved, rejected, clear]}
    responses:
      200: {description: "{reviewed: count, decision}"}
    """
    body = JsonParams(await json_body(request))
    decision = str(body.get("decision") or "")
    count = actions.review(lib_of(request), request.state.identity, body.getlist("asset_ids"), decision)
    return JSONResponse({"reviewed": count, "decision": decision})


@requires(Role.CREATOR)
async def asset_rollback(request: Request) -> Response:
    """
    ---
    summary: Make an earlier version current (pinned), then re-export the batch
    tags: [assets]
    requestBody:
      content: {application/json: {schema: {type: object, properties: {version: {type: integer}}}}}
    responses:
      200: {description: "{asset, version}"}
      409: {description: "a run of the batch is queued or going"}
    """
    asset_id = f"{request.path_params['batch']}/{request.path_params['image']}"
    version = str((await json_body(request)).get("version") or "")
    actions.rollback(lib_of(request), request.state.identity, asset_id, version)
    return JSONResponse({"asset": asset_id, "version": int(version)})


@requires(Role.CREATOR)
async def asset_regenerate(request: Request) -> Response:
    """
    ---
    summary: Generate a new version with an optional prompt, seed and style strength (0-1)
    tags: [assets]
    requestBody:
      content:
        application/json:
          schema:
            type: object
            properties: {prompt: {type: string}, seed: {type: integer}, style_strength: {type: number}}
    responses:
      202: {description: "accepted: the version appears when the batch has been re-exported"}
      503: {description: "this library has no image generator"}
    """
    asset_id = f"{request.path_params['batch']}/{request.path_params['image']}"
    task = actions.regenerate_one(lib_of(request), request.state.identity, asset_id,
                                  JsonParams(await json_body(request)))
    return JSONResponse({"regenerating": asset_id}, status_code=202, background=BackgroundTask(task.run))


@requires(Role.CREATOR)
async def assets_regenerate(request: Request) -> Response:
    """
    ---
    summary: A new version of each of the given images (any batches), with a fresh seed
    description: >
      One regeneration per image, within each image's `max_manual_regenerations`, as
      `assetql regenerate` makes it; each batch is re-exported afterwards. Refused (409) while a run
      of one of the batches is queued or going.
    tags: [assets]
    requestBody:
      content: {application/json: {schema: {type: object, properties: {asset_ids: {type: array, items: {type: string}}}}}}
    responses:
      202: {description: "{regenerating: [asset ids]}: the versions appear when the batches have been re-exported"}
      400: {description: "no images, too many, or an image out of manual regenerations"}
      503: {description: "this library has no image generator"}
    """
    task = actions.regenerate_many(lib_of(request), request.state.identity,
                                   JsonParams(await json_body(request)).getlist("asset_ids"))
    ids = [f"{ref.key}/{ref.job.image_id}" for ref in task.refs]
    return JSONResponse({"regenerating": ids}, status_code=202, background=BackgroundTask(task.run))


# ---- styles -------------------------------------------------------------------------------------------------


def style_json(lib: Library, spec: Any) -> dict[str, Any]:
    return {**spec.to_dict(), "ref": spec.ref,
            "reference_urls": [file_url(r.key) for r in spec.references],
            "palette": [{"color": c, "share": round(s, 4)} for c, s in service.profile_palette(lib, spec.name, spec.version)]}


@requires(Role.VIEWER)
async def styles_list(request: Request) -> Response:
    """
    ---
    summary: The latest version of every style profile
    tags: [styles]
    responses:
      200: {description: "{styles: [...]}"}
    """
    lib = lib_of(request)
    return JSONResponse({"styles": [style_json(lib, spec) for spec in list_profiles(lib.storage)]})


@requires(Role.VIEWER)
async def style_get(request: Request) -> Response:
    """
    ---
    summary: One style profile version (the latest, or ?version=N) with its palette and versions
    tags: [styles]
    responses:
      200: {description: "the profile version"}
      404: {description: "no such profile or version"}
    """
    lib = lib_of(request)
    name, version = request.path_params["name"], request.query_params.get("version")
    try:
        spec = get_profile(lib.storage, f"{name}@{version}" if version else name)
    except (ProfileNotFound, ValueError) as missing:
        raise NotFound(str(missing)) from None
    return JSONResponse({**style_json(lib, spec), "versions": profile_versions(lib.storage, name)})


@requires(Role.CREATOR)
async def style_create(request: Request) -> Response:
    """
    ---
    summary: Store uploaded references as the next version of a profile
    description: >
      multipart/form-data with `name`, `references` (1-5 images), `lock_palette` ...
      `lock_embedding` (0-100), `threshold` (0-1), `notes` and `preset`. The images are checked like
      a batch's references/ (422 lists every problem).
    tags: [styles]
    responses:
      201: {description: "the new version"}
      422: {description: "{problems: [...]}"}
    """
    lib = lib_of(request)
    form = await read_form(request)
    try:
        spec = await actions.create_profile_from(lib, request.state.identity, form)
    except BatchValidationError as invalid:
        return JSONResponse({"problems": problems_json(invalid.problems)}, status_code=422)
    except (ValueError, FileExistsError) as problem:
        raise BadRequest(str(problem)) from None
    return JSONResponse(style_json(lib, spec), status_code=201)


@requires(Role.CREATOR)
async def style_update(request: Request) -> Response:
    """
    ---
    summary: Change locks, threshold, notes or preset, as the profile's next version
    tags: [styles]
    requestBody:
      content:
        application/json:
          schema:
            type: object
            properties:
              locks: {type: object, additionalProperties: {type: integer}}
              threshold: {type: number}
              notes: {type: string}
              preset: {type: string}
    responses:
      200: {description: "the new version"}
    """
    lib = lib_of(request)
    body = await json_body(request)
    locks = body.get("locks") or {}
    if not isinstance(locks, dict):
        raise BadRequest("locks must be an object of parameter: weight (0-100)")
    unknown = sorted(set(locks) - set(PARAMETERS))
    if unknown:
        raise BadRequest(f"unknown lock parameter(s) {unknown}; expected among {list(PARAMETERS)}")
    params = JsonParams({**{k: v for k, v in body.items() if k != "locks"}, **{f"lock_{k}": v for k, v in locks.items()}})
    try:
        spec = actions.edit_profile(lib, request.state.identity, request.path_params["name"], params)
    except (ValueError, FileExistsError) as problem:
        raise BadRequest(str(problem)) from None
    return JSONResponse(style_json(lib, spec))


# ---- exports and downloads --------------------------------------------------------------------------------


@requires(Role.VIEWER)
async def exports_create(request: Request) -> Response:
    """
    ---
    summary: A ZIP of the given images (any batches) with their manifest.csv
    tags: [exports]
    requestBody:
      content: {application/json: {schema: {type: object, properties: {asset_ids: {type: array, items: {type: string}}}}}}
    responses:
      200: {description: "application/zip"}
    """
    lib = lib_of(request)
    rows = service.selected_assets(lib, JsonParams(await json_body(request)).getlist("asset_ids"))
    return actions.zip_response(lib, request.state.identity, rows)


@requires(Role.VIEWER)
async def exports_get(request: Request) -> Response:
    """
    ---
    summary: The export files of a batch (package ZIP, manifests, gallery, links) by kind
    tags: [exports]
    responses:
      200: {description: "{key, files: {kind: url}}"}
    """
    lib = lib_of(request)
    key = request.path_params["key"]
    if lib.catalog.get_batch(key) is None:
        raise NotFound(f"no batch {key[:200]!r} in the catalog")
    return JSONResponse({"key": key, "files": {kind: f"/batches/{key}/exports/{kind}"
                                               for kind in lib.catalog.batch_exports(key)}})


@requires(Role.VIEWER)
async def downloads_list(request: Request) -> Response:
    """
    ---
    summary: The download history, newest first (your own; an admin may ask for ?user= or everyone's)
    tags: [activity]
    responses:
      200: {description: "{downloads: [...]}"}
    """
    identity = request.state.identity
    user = request.query_params.get("user") if identity.may(Role.ADMIN) else identity.user
    entries = reviews.downloads(lib_of(request).catalog, user=user or None, limit=500)
    return JSONResponse({"downloads": [{k: service.jsonable(v) for k, v in e.items()} for e in entries]})


@requires(Role.ADMIN)
async def activity_list(request: Request) -> Response:
    """
    ---
    summary: The activity log, newest first, of a target (batch or asset) and/or a user
    tags: [activity]
    parameters:
      - {name: target, in: query, schema: {type: string}}
      - {name: user, in: query, schema: {type: string}}
    responses:
      200: {description: "{activity: [...]}"}
    """
    params = request.query_params
    entries = reviews.activity(lib_of(request).catalog, target=params.get("target") or None,
                               user=params.get("user") or None, limit=500)
    return JSONResponse({"activity": [{k: service.jsonable(v) for k, v in e.items()} for e in entries]})


# ---- quick generate -----------------------------------------------------------------------------------------


def quick_json(quick: dict[str, Any]) -> dict[str, Any]:
    images = [None if r is None else {"id": r["id"], "file_name": r["file_name"], "thumbnail_url": file_url(r["thumb_key"]),
                                      "image_url": file_url(r["raw_key"])} for group in quick["groups"] for r in group]
    return {"key": quick["key"], "prompt": quick["prompt"], "running": quick["running"], "failed": quick["failed"],
            "progress": service.progress_dict(quick["progress"]), "images": images}


@requires(Role.CREATOR)
async def generate(request: Request) -> Response:
    """
    ---
    summary: Four variations of one prompt (at most 500 characters), with the workspace's style and LoRA
    tags: [generate]
    requestBody:
      content: {application/json: {schema: {type: object, properties: {prompt: {type: string, maxLength: 500}}}}}
    responses:
      202: {description: "{key}: poll GET /generate/{key}"}
    """
    prompt = str((await json_body(request)).get("prompt") or "")
    key = actions.quick_generate(lib_of(request), request.state.identity, prompt)
    return JSONResponse({"key": key}, status_code=202)


@requires(Role.CREATOR)
async def generate_more(request: Request) -> Response:
    """
    ---
    summary: Four more variations of an earlier quick generation
    tags: [generate]
    responses:
      202: {description: "{key}"}
    """
    key = actions.quick_generate(lib_of(request), request.state.identity, None, more_of=request.path_params["key"])
    return JSONResponse({"key": key}, status_code=202)


@requires(Role.VIEWER)
async def generate_get(request: Request) -> Response:
    """
    ---
    summary: A quick generation's progress and images (null where one is still being made)
    tags: [generate]
    responses:
      200: {description: "{key, prompt, running, failed, progress, images}"}
    """
    return JSONResponse(quick_json(actions.quick_results(lib_of(request), request.path_params["key"])))


@requires(Role.VIEWER)
async def openapi(request: Request) -> Response:
    """The OpenAPI document of this API (not itself an operation of it)."""
    return JSONResponse(request.app.state.openapi())


ROUTES = [
    ("/me", me, "GET"),
    ("/batches", batches_list, "GET"),
    ("/batches", batches_create, "POST"),
    ("/batches/{key}", batch_get, "GET"),
    ("/batches/{key}", batch_delete, "DELETE"),
    ("/batches/{key}/owner", batch_owner, "PUT"),
    ("/batches/{key}/export-approved", batch_export_approved, "POST"),
    ("/batches/{key}/export", batch_export_preset, "POST"),
    ("/assets", assets_list, "GET"),
    ("/assets/search", assets_search, "POST"),
    ("/assets/regenerate", assets_regenerate, "POST"),
    ("/assets/{batch}/{image}", asset_get, "GET"),
    ("/assets/{batch}/{image}/rollback", asset_rollback, "POST"),
    ("/assets/{batch}/{image}/regenerate", asset_regenerate, "POST"),
    ("/reviews", reviews_set, "POST"),
    ("/styles", styles_list, "GET"),
    ("/styles", style_create, "POST"),
    ("/styles/{name}", style_get, "GET"),
    ("/styles/{name}", style_update, "PUT"),
    ("/exports", exports_create, "POST"),
    ("/exports/{key}", exports_get, "GET"),
    ("/downloads", downloads_list, "GET"),
    ("/activity", activity_list, "GET"),
    ("/generate", generate, "POST"),
    ("/generate/{key}", generate_get, "GET"),
    ("/generate/{key}/more", generate_more, "POST"),
    ("/openapi.json", openapi, "GET"),
]
