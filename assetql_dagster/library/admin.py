"""The admin page and its API (admins only): roles of e-mails and groups, API tokens, the activity
log and download history; in development mode, creating the config file that ends it.

The changes themselves (checked, written to the config file, in use from the next request, logged)
are `roles.py`'s; here they are only translated from forms and JSON. A form that fails is answered
with the page again and what was wrong; a new token's secret is shown in the answer to the form that
made it, once (never in a redirect's address, where it would be kept in the browser's history).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from assetql_dagster.library import roles
from assetql_dagster.library.api import json_body
from assetql_dagster.library.auth import requires
from assetql_dagster.library.config import Role
from assetql_dagster.library.guard import read_form
from assetql_dagster.library.pages import lib_of, redirect, render
from assetql_dagster.library.service import BadRequest, Conflict, NotFound
from assetql_dagster.pipeline import reviews

# What the API's paths call the two kinds of role holders.
PLURAL = {"users": "user", "groups": "group"}
FORM_ERRORS = {BadRequest: 400, NotFound: 404, Conflict: 409}


def admin_view(request: Request, status: int = 200, error: str | None = None,
               new_token: roles.NewToken | None = None) -> Response:
    lib = lib_of(request)
    return render(request, "admin.html", status, activity=reviews.activity(lib.catalog, limit=100),
                  downloads=reviews.downloads(lib.catalog, limit=100), kinds=roles.KINDS, roles=list(Role),
                  admins=roles.admins(lib.config), config_file=lib.config_file, error=error, new_token=new_token,
                  shown=roles.SHOWN_DIGITS)


async def _form_action(request: Request, act: Callable[[Any], Response]) -> Response:
    """`act(form)`'s answer, or the admin page with what was wrong."""
    form = await read_form(request)
    try:
        return act(form)
    except (BadRequest, NotFound, Conflict) as problem:
        status = next(code for cls, code in FORM_ERRORS.items() if isinstance(problem, cls))
        return admin_view(request, status, error=str(problem))


def _field(form: Any, name: str) -> str:
    return str(form.get(name) or "")


# ---- pages --------------------------------------------------------------------------------------------------


@requires(Role.ADMIN)
async def admin_page(request: Request) -> Response:
    return admin_view(request)


@requires(Role.ADMIN)
async def role_set(request: Request) -> Response:
    lib, identity = lib_of(request), request.state.identity

    def act(form: Any) -> Response:
        roles.set_role(lib, identity, _field(form, "kind"), _field(form, "name"), _field(form, "role"))
        return redirect("/admin", "role-saved")

    return await _form_action(request, act)


@requires(Role.ADMIN)
async def role_remove(request: Request) -> Response:
    lib, identity = lib_of(request), request.state.identity

    def act(form: Any) -> Response:
        roles.remove_role(lib, identity, _field(form, "kind"), _field(form, "name"))
        return redirect("/admin", "role-removed")

    return await _form_action(request, act)


@requires(Role.ADMIN)
async def token_create(request: Request) -> Response:
    lib, identity = lib_of(request), request.state.identity

    def act(form: Any) -> Response:
        made = roles.create_token(lib, identity, _field(form, "user"), _field(form, "role"))
        return admin_view(request, new_token=made)

    return await _form_action(request, act)


@requires(Role.ADMIN)
async def token_revoke(request: Request) -> Response:
    lib, identity = lib_of(request), request.state.identity

    def act(form: Any) -> Response:
        roles.revoke_token(lib, identity, _field(form, "sha256"))
        return redirect("/admin", "token-revoked")

    return await _form_action(request, act)


@requires(Role.ADMIN)
async def config_create(request: Request) -> Response:
    lib, identity = lib_of(request), request.state.identity

    def act(form: Any) -> Response:
        proxies = _field(form, "trusted_proxies").replace(",", " ").split()
        made = roles.create_config(lib, identity, _field(form, "email"), proxies)
        return admin_view(request, new_token=made)

    return await _form_action(request, act)


# ---- API ------------------------------------------------------------------------------------------------------


def _kind(request: Request) -> str:
    plural = request.path_params["kind"]
    if plural not in PLURAL:
        raise NotFound(f"no role holders {plural[:40]!r}; use users or groups")
    return PLURAL[plural]


def token_json(token: Any) -> dict[str, str]:
    return {"sha256": token.sha256, "user": token.user, "role": token.role.label}


@requires(Role.ADMIN)
async def roles_get(request: Request) -> Response:
    """
    ---
    summary: Roles of e-mails and groups, API tokens (their SHA-256 only), and where they are kept
    tags: [admin]
    responses:
      200:
        description: >-
          {config_file, development, users: {e-mail: role}, groups: {group: role},
          tokens: [{sha256, user, role}], admins}
    """
    config = lib_of(request).config
    return JSONResponse({
        "config_file": str(lib_of(request).config_file), "development": config.development,
        "users": {u: r.label for u, r in config.user_roles.items()},
        "groups": {g: r.label for g, r in config.group_roles.items()},
        "tokens": [token_json(t) for t in config.tokens], "admins": roles.admins(config),
    })


@requires(Role.ADMIN)
async def role_put(request: Request) -> Response:
    """
    ---
    summary: Give an e-mail (users) or a group (groups) a role; it applies from the next request
    tags: [admin]
    parameters:
      - {name: kind, in: path, required: true, schema: {type: string, enum: [users, groups]}}
      - {name: name, in: path, required: true, schema: {type: string}}
    requestBody:
      content:
        application/json:
          schema: {type: object, properties: {role: {type: string, enum: [viewer, creator, admin]}}, required: [role]}
    responses:
      200: {description: "{kind, name, role, was}: was is the role before (null: none)"}
      400: {description: "not a role, or a name that is not one line of text"}
      409: {description: "it would leave nobody with the admin role, or there is no config file (development mode)"}
    """
    kind = _kind(request)
    name = roles.holder(kind, request.path_params["name"])
    role = str((await json_body(request)).get("role") or "")
    was = roles.set_role(lib_of(request), request.state.identity, kind, name, role)
    config = lib_of(request).config
    granted = (config.user_roles if kind == "user" else config.group_roles)[name]
    return JSONResponse({"kind": kind, "name": name, "role": granted.label, "was": was.label if was else None})


@requires(Role.ADMIN)
async def role_delete(request: Request) -> Response:
    """
    ---
    summary: Take an e-mail's (users) or a group's (groups) role away
    tags: [admin]
    parameters:
      - {name: kind, in: path, required: true, schema: {type: string, enum: [users, groups]}}
      - {name: name, in: path, required: true, schema: {type: string}}
    responses:
      200: {description: "{kind, name, removed}: removed is the role it had"}
      404: {description: "it had no role"}
      409: {description: "it is the last admin, or there is no config file (development mode)"}
    """
    kind = _kind(request)
    name = roles.holder(kind, request.path_params["name"])
    was = roles.remove_role(lib_of(request), request.state.identity, kind, name)
    return JSONResponse({"kind": kind, "name": name, "removed": was.label})


@requires(Role.ADMIN)
async def tokens_create(request: Request) -> Response:
    """
    ---
    summary: A new API token for a person or script with a role; the token is in this answer only
    tags: [admin]
    requestBody:
      content:
        application/json:
          schema:
            type: object
            properties: {user: {type: string}, role: {type: string, enum: [viewer, creator, admin]}}
            required: [user, role]
    responses:
      201: {description: "{token, sha256, user, role}: send it as Authorization: Bearer TOKEN; only its sha256 is kept"}
    """
    body = await json_body(request)
    made = roles.create_token(lib_of(request), request.state.identity, str(body.get("user") or ""),
                              str(body.get("role") or ""))
    return JSONResponse({"token": made.secret, **token_json(made.entry)}, status_code=201)


@requires(Role.ADMIN)
async def tokens_delete(request: Request) -> Response:
    """
    ---
    summary: Revoke an API token (by its SHA-256); it stops working at once
    tags: [admin]
    parameters:
      - {name: sha256, in: path, required: true, schema: {type: string}}
    responses:
      200: {description: "{revoked: sha256, user, role}"}
      404: {description: "no such token"}
    """
    gone = roles.revoke_token(lib_of(request), request.state.identity, request.path_params["sha256"])
    return JSONResponse({"revoked": gone.sha256, "user": gone.user, "role": gone.role.label})


PAGE_ROUTES = [
    ("/admin", admin_page, "GET"),
    ("/admin/roles", role_set, "POST"),
    ("/admin/roles/remove", role_remove, "POST"),
    ("/admin/tokens", token_create, "POST"),
    ("/admin/tokens/revoke", token_revoke, "POST"),
    ("/admin/config", config_create, "POST"),
]
API_ROUTES = [
    ("/admin/roles", roles_get, "GET"),
    ("/admin/roles/{kind}/{name:path}", role_put, "PUT"),
    ("/admin/roles/{kind}/{name:path}", role_delete, "DELETE"),
    ("/admin/tokens", tokens_create, "POST"),
    ("/admin/tokens/{sha256}", tokens_delete, "DELETE"),
]
