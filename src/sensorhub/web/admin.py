"""Organisation administration pages (owners and admins only): API keys, API users and their tokens,
grants, members and roles, token policy and workspaces.

Every route declares ``RequireWebSession(org_admin=True)``: members and viewers get a 403 page, people
outside the organisation a 404 page. Each form handler reads the form, calls the one service function
``sensorhub.accounts.endpoints`` calls for the same use case, and answers with a page or a redirect
(:func:`sensorhub.web.views.attempt`); the rules live in the services.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from starlette.datastructures import FormData
from starlette.responses import Response

from sensorhub.accounts import invitations
from sensorhub.accounts import service as accounts
from sensorhub.accounts.models import Organisation, Role
from sensorhub.api.deps import ctx, request_ip
from sensorhub.audit.service import EventQuery, matching_events_csv, search_events
from sensorhub.auth.dependencies import SessionContext
from sensorhub.auth.scopes import ROLE_SCOPES
from sensorhub.db import utcnow
from sensorhub.errors import BadRequest, SensorhubError
from sensorhub.kit.downloads import csv_attachment
from sensorhub.kit.urls import base_url
from sensorhub.tokens import inventory
from sensorhub.tokens import service as tokens
from sensorhub.web import forms
from sensorhub.web.endpoints import TokenForm, _reveal, token_values
from sensorhub.web.guards import PageError, RequireWebSession
from sensorhub.web.views import FormAction, done_redirect, form_handler, same_form, section_page

router = APIRouter(include_in_schema=False)

ADMIN_PAGE = RequireWebSession(org_admin=True, csrf=False)
ADMIN_FORM = RequireWebSession(org_admin=True)


def _org(sc: SessionContext) -> Organisation:
    assert sc.org is not None
    return sc.org


_form_handler = partial(form_handler, router, ADMIN_FORM)


def _person_form(form: FormData | None, key: str) -> dict[str, Any]:
    """The fields of a "new member / new API user" form, as the person filled them in."""
    return {
        key: forms.text(form, key),
        "role": forms.text(form, "role") or "member",
        "workspaces": set(forms.many(form, "workspaces")),
    }


_admin_page = partial(section_page, router, ADMIN_PAGE)


@router.get("/orgs/{org}")
def org_home(org: str, sc: SessionContext = Depends(ADMIN_PAGE)) -> Response:
    return RedirectResponse(f"/orgs/{_org(sc).slug}/api-keys", status_code=303)


# -- API keys -----------------------------------------------------------------------------------
@_admin_page("api-keys", "API keys", "org_api_keys.html")
def api_keys_page(
    request: Request, sc: SessionContext, form: TokenForm | None, reveal: dict[str, Any] | None = None
) -> dict[str, Any]:
    o = _org(sc)
    wss = accounts.list_workspaces(sc.db, o)
    return {
        "reveal": reveal,
        "base": base_url(request, ctx(request).settings.base_url),
        "workspaces": wss,
        "ws_names": {w.id: w.slug for w in wss},
        **token_values(request, [o], tokens.list_api_keys(sc.db, o.id), form),
    }


@_form_handler("/orgs/{org}/api-keys", api_keys_page, refill=TokenForm.of)
def create_api_key(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    minted = tokens.create_api_key(
        sc.db,
        _org(sc),
        forms.new_token(form, organisations=False),
        settings=ctx(request).settings,
        created_by=sc.user.id,
        rate_limit_per_minute=forms.integer(forms.text(form, "rate_limit_per_minute"), "Requests per minute"),
        ip=request_ip(request),
    )
    return api_keys_page(request, sc, reveal=_reveal(minted, "created"), status=201)


@_form_handler("/orgs/{org}/api-keys/{key_id}/revoke", api_keys_page)
def revoke_api_key(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    key_id = params["key_id"]
    tokens.revoke_api_key(sc.db, _org(sc), key_id, actor_id=sc.user.id, ip=request_ip(request))
    return done_redirect(_org(sc), "api-keys", "key-revoked")


@_form_handler("/orgs/{org}/api-keys/{key_id}/rotate", api_keys_page)
def rotate_api_key(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    key_id = params["key_id"]
    minted = tokens.rotate_api_key(
        sc.db,
        _org(sc),
        key_id,
        settings=ctx(request).settings,
        actor_id=sc.user.id,
        ip=request_ip(request),
        grace_days=forms.grace_days(form),
    )
    return api_keys_page(request, sc, reveal=_reveal(minted, "rotated"))


# -- API users ----------------------------------------------------------------------------------
@_admin_page("api-users", "API users", "org_api_users.html")
def api_users_page(request: Request, sc: SessionContext, form: FormData | None) -> dict[str, Any]:
    o = _org(sc)
    now = utcnow()
    users = []
    for u, m in accounts.list_api_users(sc.db, o):
        pats = tokens.list_pats(sc.db, u.id)
        users.append(
            {
                "user": u,
                "role": m.role if m else None,
                "active": sum(1 for t in pats if t.status(now) == "active"),
                "total": len(pats),
            }
        )
    return {
        "users": users,
        "workspaces": accounts.list_workspaces(sc.db, o),
        "form": _person_form(form, "name"),
    }


@_form_handler("/orgs/{org}/api-users", api_users_page, refill=same_form)
def create_api_user(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    o = _org(sc)
    user, _ = accounts.create_api_user(
        sc.db,
        o,
        forms.text(form, "name"),
        forms.text(form, "role") or "member",
        workspaces=forms.many(form, "workspaces"),
        entities=forms.lines(forms.text(form, "entities")),
        actor_id=sc.user.id,
    )
    return done_redirect(o, f"api-users/{user.id}", "api-user-created")


@_admin_page(
    "api-users",
    "API users",
    "org_api_user.html",
    path="/orgs/{org}/api-users/{user_id}",
    page_args=("user_id",),
)
def api_user_page(
    request: Request,
    sc: SessionContext,
    user_id: str,
    form: TokenForm | None,
    reveal: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The API user's page; an unknown API user is a 404 page."""
    o = _org(sc)
    try:
        user = accounts.get_api_user(sc.db, o, user_id)
    except SensorhubError as e:
        raise PageError(e.status, e.error, e.message) from None
    m = accounts.membership(sc.db, user.id, o.id)
    wss = accounts.list_workspaces(sc.db, o)
    notice = (
        "API user created. Now create a token for it."
        if request.query_params.get("done") == "api-user-created"
        else None
    )
    return {
        "title": f"{user.name} · API users",
        "notice": notice,
        "api_user": user,
        "role": m.role if m else None,
        "reveal": reveal,
        "grants": [row.grant for row in accounts.grant_rows(sc.db, o, user.id)],
        "ws_names": {w.id: w.name for w in wss},
        "workspaces": wss,
        "allowed_scopes": ROLE_SCOPES[Role(m.role)] if m else frozenset(),
        **token_values(request, [o], tokens.list_pats(sc.db, user.id), form),
    }


@_form_handler("/orgs/{org}/api-users/{user_id}", api_user_page, page_args=("user_id",))
def update_api_user(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    user_id = params["user_id"]
    disabled = forms.text(form, "disabled")
    user, _ = accounts.update_api_user(
        sc.db,
        _org(sc),
        user_id,
        role=forms.text(form, "role") or None,
        disabled=disabled == "1" if disabled in ("0", "1") else None,
        actor_role=sc.role,
    )
    return done_redirect(_org(sc), f"api-users/{user.id}", "api-user-updated")


@_form_handler(
    "/orgs/{org}/api-users/{user_id}/tokens", api_user_page, refill=TokenForm.of, page_args=("user_id",)
)
def create_api_user_token(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    user_id = params["user_id"]
    minted = tokens.create_api_user_token(
        sc.db,
        _org(sc),
        user_id,
        forms.new_token(form, organisations=False),
        settings=ctx(request).settings,
        created_by=sc.user.id,
        ip=request_ip(request),
    )
    return api_user_page(request, sc, user_id, reveal=_reveal(minted, "created"), status=201)


@_form_handler(
    "/orgs/{org}/api-users/{user_id}/tokens/{token_id}/revoke", api_user_page, page_args=("user_id",)
)
def revoke_api_user_token(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    user_id = params["user_id"]
    token_id = params["token_id"]
    cred = tokens.revoke_api_user_token(
        sc.db, _org(sc), user_id, token_id, actor_id=sc.user.id, ip=request_ip(request)
    )
    return done_redirect(_org(sc), f"api-users/{cred.user_id}", "revoked")


@_form_handler(
    "/orgs/{org}/api-users/{user_id}/tokens/{token_id}/rotate", api_user_page, page_args=("user_id",)
)
def rotate_api_user_token(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    user_id = params["user_id"]
    token_id = params["token_id"]
    minted = tokens.rotate_api_user_token(
        sc.db,
        _org(sc),
        user_id,
        token_id,
        settings=ctx(request).settings,
        actor_id=sc.user.id,
        ip=request_ip(request),
        grace_days=forms.grace_days(form),
    )
    return api_user_page(request, sc, user_id, reveal=_reveal(minted, "rotated"))


# -- grants -------------------------------------------------------------------------------------
@_admin_page("grants", "Grants", "org_grants.html")
def grants_page(request: Request, sc: SessionContext, form: FormData | None) -> dict[str, Any]:
    o = _org(sc)
    wss = accounts.list_workspaces(sc.db, o)
    people = [(u, m.role) for m, u in accounts.list_members(sc.db, o)]
    bots = [(u, m.role if m else None) for u, m in accounts.list_api_users(sc.db, o)]
    return {
        "grants": accounts.grant_rows(sc.db, o),
        "workspaces": wss,
        "ws_names": {w.id: w.name for w in wss},
        "people": people,
        "bots": bots,
        "form": {k: forms.text(form, k) for k in ("user", "workspace", "entity", "time_start", "time_end")},
    }


@_form_handler("/orgs/{org}/grants", grants_page, refill=same_form)
def create_grant(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    accounts.grant_access(sc.db, _org(sc), forms.new_grant(form), actor_id=sc.user.id)
    return done_redirect(_org(sc), "grants", "grant-created")


@_form_handler("/orgs/{org}/grants/{grant_id}/delete", grants_page)
def delete_grant(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    grant_id = params["grant_id"]
    accounts.delete_grant(sc.db, _org(sc), grant_id, sc.user.id)
    return done_redirect(_org(sc), "grants", "grant-removed")


# -- members ------------------------------------------------------------------------------------
@_admin_page("members", "Members", "org_members.html")
def members_page(request: Request, sc: SessionContext, form: FormData | None) -> dict[str, Any]:
    o = _org(sc)
    return {
        "members": accounts.list_members(sc.db, o),
        "invitations": invitations.list_org_invitations(sc.db, o),
        "my_role": sc.role,
        "workspaces": accounts.list_workspaces(sc.db, o),
        "form": _person_form(form, "email"),
    }


@_form_handler("/orgs/{org}/members", members_page, refill=same_form)
def add_member(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    """Invite a person (the same service as ``POST /api/orgs/{org}/members``)."""
    invitations.invite_member(
        sc.db, _org(sc), forms.invite(form), actor=sc.user, actor_role=sc.role, ip=request_ip(request)
    )
    return done_redirect(_org(sc), "members", "member-invited")


@_form_handler("/orgs/{org}/invitations/{invitation_id}/cancel", members_page)
def cancel_invitation(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    invitation_id = params["invitation_id"]
    invitations.cancel_invitation(sc.db, _org(sc), invitation_id, sc.user, ip=request_ip(request))
    return done_redirect(_org(sc), "members", "invitation-cancelled")


@_form_handler("/orgs/{org}/members/{user_id}/role", members_page)
def change_role(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    user_id = params["user_id"]
    accounts.change_member_role(sc.db, _org(sc), user_id, forms.text(form, "role"), actor_role=sc.role)
    return done_redirect(_org(sc), "members", "member-updated")


@_form_handler("/orgs/{org}/members/{user_id}/remove", members_page)
def remove_member(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    user_id = params["user_id"]
    user = accounts.remove_member(sc.db, _org(sc), user_id, actor_role=sc.role)
    if user.id == sc.user.id:
        return RedirectResponse("/", status_code=303)
    return done_redirect(_org(sc), "members", "member-removed")


# -- settings: token policy and workspaces ---------------------------------------------------------
@_admin_page("settings", "Settings", "org_settings.html")
def settings_page(request: Request, sc: SessionContext, form: FormData | None) -> dict[str, Any]:
    return {
        "workspaces": accounts.list_workspaces(sc.db, _org(sc)),
        "form": {"slug": forms.text(form, "slug"), "name": forms.text(form, "name")},
    }


@_form_handler("/orgs/{org}/settings/policy", settings_page)
def save_policy(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    o = _org(sc)
    accounts.update_policy(sc.db, o, forms.token_policy(form, o.max_rotation_grace_days), actor_id=sc.user.id)
    return done_redirect(o, "settings", "policy-saved")


@_form_handler("/orgs/{org}/workspaces", settings_page, refill=same_form)
def create_workspace(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    name, slug = forms.text(form, "name"), forms.text(form, "slug")
    if not name and not slug:
        raise BadRequest("Give the workspace a name.")
    accounts.create_workspace(sc.db, _org(sc), slug or accounts.slugify(name), name or None)
    return done_redirect(_org(sc), "settings", "workspace-created")


@_form_handler("/orgs/{org}/workspaces/{workspace}/auto-provisioning", settings_page)
def save_auto_provisioning(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    ws = accounts.get_workspace(sc.db, _org(sc), params["workspace"])
    ids = forms.text(form, "credentials").split()
    accounts.set_auto_provisioning(
        sc.db,
        _org(sc),
        ws,
        enabled=forms.text(form, "enabled") == "1",
        entity_type=forms.text(form, "type") or "Device",
        credentials=ids or None,
        actor_id=sc.user.id,
        ip=request_ip(request),
    )
    return done_redirect(_org(sc), "settings", "auto-provisioning-saved")


# -- credential inventory: everything that can read the organisation ---------------------------------
INVENTORY_PER_PAGE = 50


def _inventory_query(request: Request) -> tuple[inventory.InventoryQuery, dict[str, str]]:
    qp = request.query_params
    chosen = {k: qp.get(k, "") for k in ("kind", "status", "q", "sort", "expiring")}
    query = inventory.InventoryQuery(
        kind=chosen["kind"] or None,
        status=chosen["status"] or None,
        q=chosen["q"] or None,
        expiring_within_days=forms.integer(chosen["expiring"], "Expiring within (days)"),
        sort=chosen["sort"] or "name",
    )
    return query.check(), chosen


@_admin_page("credentials", "Credentials", "org_credentials.html")
def credentials_page(request: Request, sc: SessionContext, form: FormData | None) -> dict[str, Any]:
    o = _org(sc)
    try:
        query, chosen = _inventory_query(request)
    except SensorhubError as e:
        query, chosen = inventory.InventoryQuery(), {"error": e.message}
    rows = inventory.search(sc.db, o, query)
    number = max(1, forms.integer(request.query_params.get("page", ""), "Page") or 1)
    pages = max(1, -(-len(rows) // INVENTORY_PER_PAGE))
    start = (min(number, pages) - 1) * INVENTORY_PER_PAGE
    params = {k: v for k, v in chosen.items() if v and k != "error"}
    return {
        "rows": rows[start : start + INVENTORY_PER_PAGE],
        "total": len(rows),
        "number": min(number, pages),
        "pages": pages,
        "chosen": chosen,
        "query_string": urlencode(params),
        "kinds": inventory.KINDS,
        "statuses": inventory.STATUSES,
        "sorts": inventory.SORTS,
        "pending": sum(1 for r in inventory.inventory(sc.db, o) if r.status == "pending"),
    }


DONE = {"approve": "credential-approved", "deny": "credential-denied", "revoke": "credential-revoked"}
DECIDE: dict[str, Callable[..., inventory.InventoryRow]] = {
    "approve": inventory.approve,
    "deny": inventory.deny,
    "revoke": inventory.revoke_for_org,
}


def _decision(action: str) -> FormAction:
    def act(
        request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
    ) -> Response:
        row = DECIDE[action](
            sc.db, _org(sc), params["credential_id"], actor=sc.user, reason=forms.text(form, "reason") or None,
            settings=ctx(request).settings, ip=request_ip(request),
        )  # fmt: skip
        assert row is not None
        return done_redirect(_org(sc), "credentials", DONE[action])

    act.__name__ = f"{action}_credential"
    return act


for _action in ("approve", "deny", "revoke"):
    _form_handler(f"/orgs/{{org}}/credentials/{{credential_id}}/{_action}", credentials_page)(
        _decision(_action)
    )


@router.get("/orgs/{org}/credentials.csv")
def credentials_csv(org: str, request: Request, sc: SessionContext = Depends(ADMIN_PAGE)) -> Response:
    o = _org(sc)
    query, _ = _inventory_query(request)
    return csv_attachment(inventory.to_csv(inventory.search(sc.db, o, query)), f"{o.slug}-credentials.csv")


# -- audit log ----------------------------------------------------------------------------------------
AUDIT_PER_PAGE = 50
AUDIT_FILTERS = ("action", "actor", "credential", "target", "ip", "since", "until")


def _audit_filter(sc: SessionContext, request: Request) -> tuple[EventQuery | None, dict[str, str]]:
    chosen = {k: request.query_params.get(k, "").strip() for k in AUDIT_FILTERS}
    given = {k: (v or None) for k, v in chosen.items()}
    return accounts.audit_query(sc.db, _org(sc), **given), chosen


@_admin_page("audit", "Audit log", "org_audit.html")
def audit_page(request: Request, sc: SessionContext, form: FormData | None) -> dict[str, Any]:
    o = _org(sc)
    error = None
    try:
        f, chosen = _audit_filter(sc, request)
    except SensorhubError as e:
        f, chosen, error = EventQuery(), {}, e.message
    number = max(1, forms.integer(request.query_params.get("page", ""), "Page") or 1)
    rows, total = search_events(sc.db, o.id, f, limit=AUDIT_PER_PAGE, offset=(number - 1) * AUDIT_PER_PAGE)
    users = {u.id: u.display for _, u in accounts.list_members(sc.db, o)}
    users.update({u.id: u.name for u, _ in accounts.list_api_users(sc.db, o)})
    params = {k: v for k, v in chosen.items() if v}
    return {
        "events": rows,
        "total": total,
        "number": number,
        "pages": max(1, -(-total // AUDIT_PER_PAGE)),
        "chosen": chosen,
        "filter_error": error,
        "query_string": urlencode(params),
        "users": users,
        "retention_days": ctx(request).settings.audit_retention_days,
    }


@router.get("/orgs/{org}/audit.csv")
def audit_csv(org: str, request: Request, sc: SessionContext = Depends(ADMIN_PAGE)) -> Response:
    o = _org(sc)
    f, _ = _audit_filter(sc, request)
    return csv_attachment(matching_events_csv(sc.db, o.id, f), f"{o.slug}-audit.csv")
