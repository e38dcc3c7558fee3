"""Organisation administration pages (owners and admins only): API keys, API users and their tokens,
grants, members and roles, token policy and workspaces.

Every route declares ``RequireWebSession(org_admin=True)``: members and viewers get a 403 page, people
outside the organisation a 404 page. Handlers call the same services as ``sensorhub.accounts.endpoints``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from starlette.datastructures import FormData
from starlette.responses import Response

from sensorhub.accounts import invitations
from sensorhub.accounts import service as accounts
from sensorhub.accounts.models import Organisation, Role, User
from sensorhub.api.deps import ctx, request_ip
from sensorhub.auth.dependencies import SessionContext
from sensorhub.auth.scopes import ROLE_SCOPES
from sensorhub.db import utcnow
from sensorhub.errors import BadRequest, SensorhubError
from sensorhub.tokens import service as tokens
from sensorhub.web import forms
from sensorhub.web.endpoints import TokenForm, _reveal, expiry_options
from sensorhub.web.guards import RequireWebSession, read_form
from sensorhub.web.views import base_url, page, render

router = APIRouter(include_in_schema=False)

ADMIN_PAGE = RequireWebSession(org_admin=True, csrf=False)
ADMIN_FORM = RequireWebSession(org_admin=True)


def _org(sc: SessionContext) -> Organisation:
    assert sc.org is not None
    return sc.org


def _done(org: Organisation, section: str, what: str) -> Response:
    return RedirectResponse(f"/orgs/{org.slug}/{section}?done={what}", status_code=303)


def _attempt(
    request: Request,
    sc: SessionContext,
    action: Callable[[], Response],
    on_error: Callable[[str, int], Response],
) -> Response:
    """Run ``action``; on a service error roll back and show the page again with the message."""
    try:
        return action()
    except SensorhubError as e:
        sc.db.rollback()
        return on_error(e.message, e.status)


@router.get("/orgs/{org}")
def org_home(org: str, sc: SessionContext = Depends(ADMIN_PAGE)) -> Response:
    return RedirectResponse(f"/orgs/{_org(sc).slug}/api-keys", status_code=303)


# -- API keys -----------------------------------------------------------------------------------
def api_keys_page(
    request: Request,
    sc: SessionContext,
    *,
    reveal: dict[str, Any] | None = None,
    error: str | None = None,
    form: TokenForm | None = None,
    status: int = 200,
) -> Response:
    o = _org(sc)
    settings = ctx(request).settings
    exp = expiry_options([o], settings.default_token_lifetime_days)
    keys = tokens.list_api_keys(sc.db, o.id)
    wss = accounts.list_workspaces(sc.db, o)
    p = page(request, f"API keys · {o.name}", sc, active="api-keys", error=error)
    return render(
        request,
        "org_api_keys.html",
        p,
        status,
        org=o,
        reveal=reveal,
        expiry=exp,
        base=base_url(request, settings.base_url),
        form=form or TokenForm(expiry=exp.default),
        workspaces=wss,
        live=[k for k in keys if k.revoked_at is None],
        revoked=[k for k in keys if k.revoked_at is not None],
        ws_names={w.id: w.slug for w in wss},
    )


@router.get("/orgs/{org}/api-keys")
def api_keys(org: str, request: Request, sc: SessionContext = Depends(ADMIN_PAGE)) -> Response:
    return api_keys_page(request, sc)


@router.post("/orgs/{org}/api-keys")
def create_api_key(
    org: str,
    request: Request,
    form: FormData | None = Depends(read_form),
    sc: SessionContext = Depends(ADMIN_FORM),
) -> Response:
    c = ctx(request)
    state = TokenForm.of(form)

    def act() -> Response:
        spec = forms.restrictions(form, organisations=False)
        minted = tokens.create_api_key(
            sc.db,
            _org(sc),
            name=state.name,
            scopes=sorted(state.scopes),
            workspaces=list(spec.workspaces),
            expiry=forms.expiry(form),
            restrictions=spec,
            settings=c.settings,
            created_by=sc.user.id,
            rate_limit_per_minute=forms.integer(
                forms.text(form, "rate_limit_per_minute"), "Requests per minute"
            ),
            ip=request_ip(request),
        )
        sc.db.commit()
        return api_keys_page(request, sc, reveal=_reveal(minted, "created"), status=201)

    return _attempt(request, sc, act, lambda m, s: api_keys_page(request, sc, error=m, form=state, status=s))


@router.post("/orgs/{org}/api-keys/{key_id}/revoke")
def revoke_api_key(
    org: str, key_id: str, request: Request, sc: SessionContext = Depends(ADMIN_FORM)
) -> Response:
    def act() -> Response:
        cred = tokens.get_api_key(sc.db, _org(sc).id, key_id)
        tokens.revoke(
            sc.db, cred, actor_id=sc.user.id, invalidate=ctx(request).invalidate_auth, ip=request_ip(request)
        )
        sc.db.commit()
        return _done(_org(sc), "api-keys", "key-revoked")

    return _attempt(request, sc, act, lambda m, s: api_keys_page(request, sc, error=m, status=s))


@router.post("/orgs/{org}/api-keys/{key_id}/rotate")
def rotate_api_key(
    org: str, key_id: str, request: Request, sc: SessionContext = Depends(ADMIN_FORM)
) -> Response:
    c = ctx(request)

    def act() -> Response:
        cred = tokens.get_api_key(sc.db, _org(sc).id, key_id)
        minted = tokens.rotate(
            sc.db,
            cred,
            settings=c.settings,
            actor_id=sc.user.id,
            invalidate=c.invalidate_auth,
            ip=request_ip(request),
        )
        sc.db.commit()
        return api_keys_page(request, sc, reveal=_reveal(minted, "rotated"))

    return _attempt(request, sc, act, lambda m, s: api_keys_page(request, sc, error=m, status=s))


# -- API users ----------------------------------------------------------------------------------
def api_users_page(
    request: Request,
    sc: SessionContext,
    *,
    error: str | None = None,
    form: FormData | None = None,
    status: int = 200,
) -> Response:
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
    p = page(request, f"API users · {o.name}", sc, active="api-users", error=error)
    return render(
        request,
        "org_api_users.html",
        p,
        status,
        org=o,
        users=users,
        workspaces=accounts.list_workspaces(sc.db, o),
        form={
            "name": forms.text(form, "name"),
            "role": forms.text(form, "role") or "member",
            "workspaces": set(forms.many(form, "workspaces")),
        },
    )


@router.get("/orgs/{org}/api-users")
def api_users(org: str, request: Request, sc: SessionContext = Depends(ADMIN_PAGE)) -> Response:
    return api_users_page(request, sc)


@router.post("/orgs/{org}/api-users")
def create_api_user(
    org: str,
    request: Request,
    form: FormData | None = Depends(read_form),
    sc: SessionContext = Depends(ADMIN_FORM),
) -> Response:
    c = ctx(request)

    def act() -> Response:
        o = _org(sc)
        user, _ = accounts.create_api_user(
            sc.db, o, forms.text(form, "name"), forms.text(form, "role") or "member", c.invalidate_auth
        )
        for ref in forms.many(form, "workspaces"):
            ws = accounts.get_workspace(sc.db, o, ref)
            accounts.create_grant(
                sc.db,
                o,
                user,
                workspace=ws,
                entity_id=None,
                time_start=None,
                time_end=None,
                actor_id=sc.user.id,
                invalidate=c.invalidate_auth,
            )
        for ent in forms.lines(forms.text(form, "entities")):
            accounts.create_grant(
                sc.db,
                o,
                user,
                workspace=None,
                entity_id=ent,
                time_start=None,
                time_end=None,
                actor_id=sc.user.id,
                invalidate=c.invalidate_auth,
            )
        sc.db.commit()
        return RedirectResponse(f"/orgs/{o.slug}/api-users/{user.id}?done=api-user-created", status_code=303)

    return _attempt(request, sc, act, lambda m, s: api_users_page(request, sc, error=m, form=form, status=s))


def api_user_page(
    request: Request,
    sc: SessionContext,
    user_id: str,
    *,
    reveal: dict[str, Any] | None = None,
    error: str | None = None,
    form: TokenForm | None = None,
    status: int = 200,
) -> Response:
    o = _org(sc)
    user = accounts.get_api_user(sc.db, o, user_id)
    m = accounts.membership(sc.db, user.id, o.id)
    exp = expiry_options([o], ctx(request).settings.default_token_lifetime_days)
    pats = tokens.list_pats(sc.db, user.id)
    grants = [g for g in accounts.list_grants(sc.db, o, user.id)]
    wss = accounts.list_workspaces(sc.db, o)
    notice = (
        "API user created. Now create a token for it."
        if request.query_params.get("done") == "api-user-created"
        else None
    )
    p = page(
        request, f"{user.name} · API users · {o.name}", sc, active="api-users", error=error, notice=notice
    )
    return render(
        request,
        "org_api_user.html",
        p,
        status,
        org=o,
        api_user=user,
        role=m.role if m else None,
        reveal=reveal,
        expiry=exp,
        form=form or TokenForm(expiry=exp.default),
        grants=grants,
        ws_names={w.id: w.name for w in wss},
        workspaces=wss,
        allowed_scopes=ROLE_SCOPES[Role(m.role)] if m else frozenset(),
        live=[t for t in pats if t.revoked_at is None],
        revoked=[t for t in pats if t.revoked_at is not None],
    )


def _page_or_404(fn: Callable[[], Response]) -> Response:
    from sensorhub.web.guards import PageError

    try:
        return fn()
    except SensorhubError as e:
        raise PageError(e.status, e.error, e.message) from None


@router.get("/orgs/{org}/api-users/{user_id}")
def api_user(org: str, user_id: str, request: Request, sc: SessionContext = Depends(ADMIN_PAGE)) -> Response:
    return _page_or_404(lambda: api_user_page(request, sc, user_id))


@router.post("/orgs/{org}/api-users/{user_id}")
def update_api_user(
    org: str,
    user_id: str,
    request: Request,
    form: FormData | None = Depends(read_form),
    sc: SessionContext = Depends(ADMIN_FORM),
) -> Response:
    c = ctx(request)

    def act() -> Response:
        o = _org(sc)
        user = accounts.get_api_user(sc.db, o, user_id)
        role = forms.text(form, "role")
        if role:
            if role == "owner":
                raise BadRequest("API users cannot be owners; use admin, member or viewer")
            accounts.set_membership(sc.db, user, o, role, c.invalidate_auth, actor_role=sc.role)
        disabled = forms.text(form, "disabled")
        if disabled in ("0", "1"):
            accounts.set_user_disabled(sc.db, user, disabled == "1", c.invalidate_auth)
        sc.db.commit()
        return RedirectResponse(f"/orgs/{o.slug}/api-users/{user.id}?done=api-user-updated", status_code=303)

    return _attempt(
        request,
        sc,
        act,
        lambda m, s: _page_or_404(lambda: api_user_page(request, sc, user_id, error=m, status=s)),
    )


@router.post("/orgs/{org}/api-users/{user_id}/tokens")
def create_api_user_token(
    org: str,
    user_id: str,
    request: Request,
    form: FormData | None = Depends(read_form),
    sc: SessionContext = Depends(ADMIN_FORM),
) -> Response:
    c = ctx(request)
    state = TokenForm.of(form)

    def act() -> Response:
        user = accounts.get_api_user(sc.db, _org(sc), user_id)
        if user.disabled:
            raise BadRequest("This API user is disabled; enable it before creating tokens.")
        minted = tokens.create_pat(
            sc.db,
            user,
            name=state.name,
            scopes=sorted(state.scopes),
            expiry=forms.expiry(form),
            restrictions=forms.restrictions(form, organisations=False),
            settings=c.settings,
            created_by=sc.user.id,
            ip=request_ip(request),
        )
        sc.db.commit()
        return api_user_page(request, sc, user_id, reveal=_reveal(minted, "created"), status=201)

    return _attempt(
        request,
        sc,
        act,
        lambda m, s: _page_or_404(lambda: api_user_page(request, sc, user_id, error=m, form=state, status=s)),
    )


def _api_user_token(sc: SessionContext, user_id: str, token_id: str) -> tuple[User, Any]:
    user = accounts.get_api_user(sc.db, _org(sc), user_id)
    return user, tokens.get_pat(sc.db, user.id, token_id)


@router.post("/orgs/{org}/api-users/{user_id}/tokens/{token_id}/revoke")
def revoke_api_user_token(
    org: str, user_id: str, token_id: str, request: Request, sc: SessionContext = Depends(ADMIN_FORM)
) -> Response:
    def act() -> Response:
        user, cred = _api_user_token(sc, user_id, token_id)
        tokens.revoke(
            sc.db, cred, actor_id=sc.user.id, invalidate=ctx(request).invalidate_auth, ip=request_ip(request)
        )
        sc.db.commit()
        return RedirectResponse(f"/orgs/{_org(sc).slug}/api-users/{user.id}?done=revoked", status_code=303)

    return _attempt(
        request,
        sc,
        act,
        lambda m, s: _page_or_404(lambda: api_user_page(request, sc, user_id, error=m, status=s)),
    )


@router.post("/orgs/{org}/api-users/{user_id}/tokens/{token_id}/rotate")
def rotate_api_user_token(
    org: str, user_id: str, token_id: str, request: Request, sc: SessionContext = Depends(ADMIN_FORM)
) -> Response:
    c = ctx(request)

    def act() -> Response:
        _, cred = _api_user_token(sc, user_id, token_id)
        minted = tokens.rotate(
            sc.db,
            cred,
            settings=c.settings,
            actor_id=sc.user.id,
            invalidate=c.invalidate_auth,
            ip=request_ip(request),
        )
        sc.db.commit()
        return api_user_page(request, sc, user_id, reveal=_reveal(minted, "rotated"))

    return _attempt(
        request,
        sc,
        act,
        lambda m, s: _page_or_404(lambda: api_user_page(request, sc, user_id, error=m, status=s)),
    )


# -- grants -------------------------------------------------------------------------------------
def grants_page(
    request: Request,
    sc: SessionContext,
    *,
    error: str | None = None,
    form: FormData | None = None,
    status: int = 200,
) -> Response:
    o = _org(sc)
    wss = accounts.list_workspaces(sc.db, o)
    people = [(u, m.role) for m, u in accounts.list_members(sc.db, o)]
    bots = [(u, m.role if m else None) for u, m in accounts.list_api_users(sc.db, o)]
    users = {u.id: u for u, _ in people + bots}
    roles = {u.id: r for u, r in people + bots}
    rows = []
    for g in accounts.list_grants(sc.db, o):
        u = users.get(g.user_id)
        rows.append({"grant": g, "user": u, "role": roles.get(g.user_id)})
    p = page(request, f"Grants · {o.name}", sc, active="grants", error=error)
    return render(
        request,
        "org_grants.html",
        p,
        status,
        org=o,
        grants=rows,
        workspaces=wss,
        ws_names={w.id: w.name for w in wss},
        people=people,
        bots=bots,
        form={k: forms.text(form, k) for k in ("user", "workspace", "entity", "time_start", "time_end")},
    )


@router.get("/orgs/{org}/grants")
def grants(org: str, request: Request, sc: SessionContext = Depends(ADMIN_PAGE)) -> Response:
    return grants_page(request, sc)


@router.post("/orgs/{org}/grants")
def create_grant(
    org: str,
    request: Request,
    form: FormData | None = Depends(read_form),
    sc: SessionContext = Depends(ADMIN_FORM),
) -> Response:
    def act() -> Response:
        o = _org(sc)
        ref = forms.text(form, "user")
        if not ref:
            raise BadRequest("Choose who the grant is for.")
        user = accounts.get_member_user(sc.db, o, ref)
        ws_ref = forms.text(form, "workspace")
        ws = accounts.get_workspace(sc.db, o, ws_ref) if ws_ref else None
        accounts.create_grant(
            sc.db,
            o,
            user,
            workspace=ws,
            entity_id=forms.text(form, "entity") or None,
            time_start=forms.date(forms.text(form, "time_start"), "From"),
            time_end=forms.date(forms.text(form, "time_end"), "Until"),
            actor_id=sc.user.id,
            invalidate=ctx(request).invalidate_auth,
        )
        sc.db.commit()
        return _done(o, "grants", "grant-created")

    return _attempt(request, sc, act, lambda m, s: grants_page(request, sc, error=m, form=form, status=s))


@router.post("/orgs/{org}/grants/{grant_id}/delete")
def delete_grant(
    org: str, grant_id: str, request: Request, sc: SessionContext = Depends(ADMIN_FORM)
) -> Response:
    def act() -> Response:
        accounts.delete_grant(sc.db, _org(sc), grant_id, sc.user.id, ctx(request).invalidate_auth)
        sc.db.commit()
        return _done(_org(sc), "grants", "grant-removed")

    return _attempt(request, sc, act, lambda m, s: grants_page(request, sc, error=m, status=s))


# -- members ------------------------------------------------------------------------------------
def members_page(
    request: Request,
    sc: SessionContext,
    *,
    error: str | None = None,
    form: FormData | None = None,
    status: int = 200,
) -> Response:
    o = _org(sc)
    p = page(request, f"Members · {o.name}", sc, active="members", error=error)
    return render(
        request,
        "org_members.html",
        p,
        status,
        org=o,
        members=accounts.list_members(sc.db, o),
        invitations=invitations.list_org_invitations(sc.db, o),
        my_role=sc.role,
        workspaces=accounts.list_workspaces(sc.db, o),
        form={
            "email": forms.text(form, "email"),
            "role": forms.text(form, "role") or "member",
            "workspaces": set(forms.many(form, "workspaces")),
        },
    )


@router.get("/orgs/{org}/members")
def members(org: str, request: Request, sc: SessionContext = Depends(ADMIN_PAGE)) -> Response:
    return members_page(request, sc)


@router.post("/orgs/{org}/members")
def add_member(
    org: str,
    request: Request,
    form: FormData | None = Depends(read_form),
    sc: SessionContext = Depends(ADMIN_FORM),
) -> Response:
    """Invite a person (the same service as ``POST /api/orgs/{org}/members``)."""

    def act() -> Response:
        o = _org(sc)
        email = forms.text(form, "email")
        if not email:
            raise BadRequest("Enter the person's email address.")
        password = form.get("password") if form is not None else None
        invitations.invite_member(
            sc.db,
            o,
            email=email,
            role=forms.text(form, "role") or "member",
            workspaces=forms.many(form, "workspaces"),
            actor=sc.user,
            actor_role=sc.role,
            password=password if isinstance(password, str) else None,
            ip=request_ip(request),
        )
        sc.db.commit()
        return _done(o, "members", "member-invited")

    return _attempt(request, sc, act, lambda m, s: members_page(request, sc, error=m, form=form, status=s))


@router.post("/orgs/{org}/invitations/{invitation_id}/cancel")
def cancel_invitation(
    org: str, invitation_id: str, request: Request, sc: SessionContext = Depends(ADMIN_FORM)
) -> Response:
    def act() -> Response:
        invitations.cancel_invitation(sc.db, _org(sc), invitation_id, sc.user, ip=request_ip(request))
        sc.db.commit()
        return _done(_org(sc), "members", "invitation-cancelled")

    return _attempt(request, sc, act, lambda m, s: members_page(request, sc, error=m, status=s))


@router.post("/orgs/{org}/members/{user_id}/role")
def change_role(
    org: str,
    user_id: str,
    request: Request,
    form: FormData | None = Depends(read_form),
    sc: SessionContext = Depends(ADMIN_FORM),
) -> Response:
    def act() -> Response:
        o = _org(sc)
        user = accounts.get_member_user(sc.db, o, user_id)
        accounts.set_membership(
            sc.db, user, o, forms.text(form, "role"), ctx(request).invalidate_auth, actor_role=sc.role
        )
        sc.db.commit()
        return _done(o, "members", "member-updated")

    return _attempt(request, sc, act, lambda m, s: members_page(request, sc, error=m, status=s))


@router.post("/orgs/{org}/members/{user_id}/remove")
def remove_member(
    org: str, user_id: str, request: Request, sc: SessionContext = Depends(ADMIN_FORM)
) -> Response:
    def act() -> Response:
        o = _org(sc)
        user = accounts.get_member_user(sc.db, o, user_id)
        accounts.remove_membership(sc.db, user, o, ctx(request).invalidate_auth, actor_role=sc.role)
        sc.db.commit()
        if user.id == sc.user.id:
            return RedirectResponse("/", status_code=303)
        return _done(o, "members", "member-removed")

    return _attempt(request, sc, act, lambda m, s: members_page(request, sc, error=m, status=s))


# -- settings: token policy and workspaces ---------------------------------------------------------
def settings_page(
    request: Request,
    sc: SessionContext,
    *,
    error: str | None = None,
    form: FormData | None = None,
    status: int = 200,
) -> Response:
    o = _org(sc)
    p = page(request, f"Settings · {o.name}", sc, active="settings", error=error)
    return render(
        request,
        "org_settings.html",
        p,
        status,
        org=o,
        workspaces=accounts.list_workspaces(sc.db, o),
        form={"slug": forms.text(form, "slug"), "name": forms.text(form, "name")},
    )


@router.get("/orgs/{org}/settings")
def settings(org: str, request: Request, sc: SessionContext = Depends(ADMIN_PAGE)) -> Response:
    return settings_page(request, sc)


@router.post("/orgs/{org}/settings/policy")
def save_policy(
    org: str,
    request: Request,
    form: FormData | None = Depends(read_form),
    sc: SessionContext = Depends(ADMIN_FORM),
) -> Response:
    def act() -> Response:
        o = _org(sc)
        accounts.update_policy(
            sc.db,
            o,
            max_token_lifetime_days=forms.integer(
                forms.text(form, "max_token_lifetime_days"), "Maximum lifetime"
            ),
            allow_non_expiring_tokens=forms.text(form, "allow_non_expiring_tokens") == "1",
            invalidate=ctx(request).invalidate_auth,
        )
        sc.db.commit()
        return _done(o, "settings", "policy-saved")

    return _attempt(request, sc, act, lambda m, s: settings_page(request, sc, error=m, status=s))


@router.post("/orgs/{org}/workspaces")
def create_workspace(
    org: str,
    request: Request,
    form: FormData | None = Depends(read_form),
    sc: SessionContext = Depends(ADMIN_FORM),
) -> Response:
    def act() -> Response:
        o = _org(sc)
        name, slug = forms.text(form, "name"), forms.text(form, "slug")
        if not name and not slug:
            raise BadRequest("Give the workspace a name.")
        slug = slug or accounts.slugify(name)
        accounts.create_workspace(sc.db, o, slug, name or None)
        sc.db.commit()
        ctx(request).invalidate_auth()
        return _done(o, "settings", "workspace-created")

    return _attempt(request, sc, act, lambda m, s: settings_page(request, sc, error=m, form=form, status=s))
