"""Rendering: the Jinja2 environment, display helpers and the page response (security headers)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.responses import Response

from sensorhub import __version__
from sensorhub.accounts.models import Organisation, Role
from sensorhub.accounts.service import memberships_of
from sensorhub.auth.dependencies import SessionContext
from sensorhub.auth.scopes import SCOPE_DESCRIPTIONS
from sensorhub.db import utcnow
from sensorhub.errors import SensorhubError
from sensorhub.notices import service as notices
from sensorhub.notices.models import Notification
from sensorhub.tokens.models import Credential
from sensorhub.web.guards import RequireWebSession, read_form

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))

# Pages only load what this server serves; nothing inline, no framing (clickjacking on Revoke buttons).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# Notices shown as a banner on every page until read.
BANNER_KINDS = frozenset({"token.expiring", "token.expired"})

SCOPES = [(s.value, d) for s, d in SCOPE_DESCRIPTIONS.items()]
ROLES = [r.value for r in Role]
ROLE_HELP = {
    "owner": "everything, including other owners",
    "admin": "manages members, API keys, API users, grants and policy; reads all data",
    "member": "reads what grants allow; may use every scope",
    "viewer": "reads what grants allow; read scopes only (no ingest)",
}

# Fixed notices for redirect-after-POST (?done=…); the text never comes from the URL.
NOTICES = {
    "revoked": "Token revoked. It is refused from the very next request.",
    "key-revoked": "API key revoked. It is refused from the very next request.",
    "member-added": "Member added.",
    "member-invited": "Invitation sent. The person becomes a member once they accept it.",
    "invitation-cancelled": "Invitation cancelled.",
    "signed-up": "Your account is ready. Accept or decline the invitation below.",
    "invitation-accepted": "Invitation accepted: you are now a member.",
    "invitation-declined": "Invitation declined.",
    "member-updated": "Role changed. Their tokens follow the new role at once.",
    "member-removed": "Member removed. Their tokens lost this organisation at once.",
    "grant-created": "Grant added.",
    "grant-removed": "Grant removed.",
    "policy-saved": "Token policy saved.",
    "credential-approved": "Token approved: it reads the organisation from the next request. Its owner was told.",
    "credential-denied": "Token denied: it does not read the organisation. Its owner was told why.",
    "credential-revoked": "Revoked for this organisation, from the next request. A member's token keeps working elsewhere; its owner was told.",
    "workspace-created": "Workspace created.",
    "auto-provisioning-saved": "Auto-provisioning saved.",
    "api-user-updated": "API user updated.",
    "logged-out": "You are logged out.",
}


def fmt_dt(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M UTC")


def fmt_date(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d")


def relative(value: datetime | None, now: datetime | None = None) -> str:
    """'3 minutes ago', 'in 365 days'."""
    if value is None:
        return ""
    now = now or utcnow()
    secs = (value - now).total_seconds()
    future = secs > 0
    s = abs(secs)
    # Rounded to the nearest unit: a token created now for 365 days expires "in 365 days".
    for unit, size in (("year", 365 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= size * 0.99:
            n = max(1, round(s / size))
            if unit == "year" and n < 2:
                unit, n = "day", round(s / 86400)
            text = f"{n} {unit}{'s' if n != 1 else ''}"
            return f"in {text}" if future else f"{text} ago"
    return "in a moment" if future else "just now"


templates.env.filters["dt"] = fmt_dt
templates.env.filters["date"] = fmt_date
templates.env.filters["rel"] = relative
templates.env.globals["version"] = __version__
templates.env.globals["SCOPES"] = SCOPES
templates.env.globals["ROLES"] = ROLES
templates.env.globals["ROLE_HELP"] = ROLE_HELP


@dataclass
class NavOrg:
    id: str
    slug: str
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return Role(self.role).is_admin


@dataclass
class Page:
    """What every page template gets besides its own data."""

    title: str
    active: str = ""
    sc: SessionContext | None = None
    org: Organisation | None = None
    notice: str | None = None
    error: str | None = None
    orgs: list[NavOrg] = field(default_factory=list)
    # Unread notices about the person's credentials (the banner) and the unread count (the nav).
    banners: list[Notification] = field(default_factory=list)
    unread: int = 0

    @property
    def admin_org(self) -> NavOrg | None:
        """The organisation the admin links point at: the one in the URL, else the first administered."""
        admins = [o for o in self.orgs if o.is_admin]
        if self.org is not None:
            return next((o for o in admins if o.id == self.org.id), None)
        return admins[0] if admins else None


def page(request: Request, title: str, sc: SessionContext | None, active: str = "", **kw: Any) -> Page:
    p = Page(title=title, active=active, sc=sc, **kw)
    if sc is not None:
        p.orgs = [NavOrg(o.id, o.slug, o.name, m.role) for m, o in memberships_of(sc.db, sc.user.id)]
        unread = notices.unread(sc.db, sc.user.id)
        p.unread = len(unread)
        p.banners = _still_relevant(sc.db, [n for n in unread if n.kind in BANNER_KINDS])[:3]
        if p.org is None and sc.org is not None:
            p.org = sc.org
    done = request.query_params.get("done")
    if p.notice is None and done in NOTICES:
        p.notice = NOTICES[done]
    return p


def _still_relevant(db: Session, banners: list[Notification]) -> list[Notification]:
    """Expiry banners of credentials still in use (not revoked, not rotated away)."""
    ids = [n.credential_id for n in banners if n.credential_id]
    if not ids:
        return banners
    live = set(
        db.scalars(
            select(Credential.id).where(
                Credential.id.in_(ids), Credential.revoked_at.is_(None), Credential.superseded_at.is_(None)
            )
        )
    )
    return [n for n in banners if n.credential_id is None or n.credential_id in live]


def render(request: Request, template: str, p: Page, status_code: int = 200, **data: Any) -> Response:
    ctx: dict[str, Any] = {
        "page": p,
        "user": p.sc.user if p.sc else None,
        "csrf": p.sc.web_session.csrf_token if p.sc else "",
        "now": utcnow(),
    }
    ctx.update(data)
    return templates.TemplateResponse(
        request, template, ctx, status_code=status_code, headers=SECURITY_HEADERS
    )


def describe_restrictions(
    data: dict[str, Any] | None, org_names: dict[str, str], ws_names: dict[str, str]
) -> list[str]:
    """One short phrase per stored restriction, e.g. ``workspaces: acme/farm``."""
    data = data or {}
    out: list[str] = []
    if data.get("organisations"):
        out.append("organisations: " + ", ".join(org_names.get(o, o[:8]) for o in data["organisations"]))
    if data.get("workspaces"):
        out.append("workspaces: " + ", ".join(ws_names.get(w["id"], w["id"][:8]) for w in data["workspaces"]))
    if data.get("entities"):
        ents = list(data["entities"])
        out.append(
            "entities: " + ", ".join(ents[:3]) + (f" and {len(ents) - 3} more" if len(ents) > 3 else "")
        )
    tw = data.get("time_window") or {}
    if tw.get("start") or tw.get("end"):
        out.append(f"data from {(tw.get('start') or '…')[:10]} until {(tw.get('end') or '…')[:10]}")
    if data.get("allowed_ips"):
        out.append("IPs: " + ", ".join(data["allowed_ips"]))
    return out


templates.env.globals["describe_restrictions"] = describe_restrictions


def attempt(
    request: Request,
    sc: SessionContext,
    action: Callable[[], Response],
    form_page: Callable[..., Response],
    **page_args: Any,
) -> Response:
    """The shape of every form handler: run ``action`` (parse the form, call one service, answer with
    a page or a redirect); on a service error undo what it wrote (the request's transaction then
    commits nothing) and show ``form_page(request, sc, error=..., status=..., **page_args)`` again with
    the message next to the form."""
    try:
        return action()
    except SensorhubError as e:
        sc.db.rollback()
        return form_page(request, sc, error=e.message, status=e.status, **page_args)


def org_page(
    request: Request,
    sc: SessionContext,
    section: str,
    title: str,
    template: str,
    *,
    error: str | None = None,
    status: int = 200,
    notice: str | None = None,
    notices: Mapping[str, str] | None = None,
    **values: Any,
) -> Response:
    """One page of the organisation's area: ``title · org`` with ``section`` active in the nav. Its
    notice is ``notice``, else what ``notices`` says for ``?done=``, else the common :data:`NOTICES`."""
    o = sc.org
    assert o is not None
    if notice is None and notices is not None:
        notice = notices.get(request.query_params.get("done") or "")
    p = page(request, f"{title} · {o.name}", sc, active=section, error=error, notice=notice)
    return render(request, template, p, status, org=o, **values)


def done_redirect(org: Organisation, path: str, done: str) -> Response:
    """Redirect-after-POST to the organisation's page ``path``, which shows the notice for ``?done=``."""
    return RedirectResponse(f"/orgs/{org.slug}/{path}?done={done}", status_code=303)


FormAction = Callable[[Request, SessionContext, FormData | None, Mapping[str, str]], Response]
PageValues = Callable[..., dict[str, Any]]
PageRenderer = Callable[..., Response]


def section_page(
    router: APIRouter,
    guard: RequireWebSession,
    section: str,
    title: str,
    template: str,
    *,
    path: str | None = None,
    page_args: tuple[str, ...] = (),
    notices: Mapping[str, str] | None = None,
) -> Callable[[PageValues], PageRenderer]:
    """Register ``GET path`` (default ``/orgs/{org}/<section>``) under ``guard`` as the organisation page
    ``template`` (``section`` active in the nav, see :func:`org_page`) filled by ``values(request, sc,
    *path parameters named in page_args, form=..., **extra)``, which may give the page its own ``title``
    or ``notice``. The decorated name becomes the page's renderer ``(request, sc, *path parameters,
    error, form, status, **extra)``, which form handlers show again with an error and the form as filled
    in, or with what they made (``extra``: e.g. a secret revealed once)."""

    def register(values: PageValues) -> PageRenderer:
        def render_page(
            request: Request,
            sc: SessionContext,
            *args: str,
            error: str | None = None,
            form: Any = None,
            status: int = 200,
            **extra: Any,
        ) -> Response:
            v = values(request, sc, *args, form=form, **extra)
            name = v.pop("title", title)
            return org_page(
                request, sc, section, name, template, error=error, status=status, notices=notices, **v
            )

        route = path or f"/orgs/{{org}}/{section}"
        page_route(router, guard, route, values.__name__.removesuffix("_page"), render_page, page_args)
        return render_page

    return register


def page_route(
    router: APIRouter,
    guard: RequireWebSession,
    path: str,
    name: str,
    render_page: Callable[..., Response],
    page_args: tuple[str, ...] = (),
) -> None:
    """Register ``GET path`` (named ``name``) as ``render_page(request, sc, **path parameters named in
    page_args)`` under ``guard``."""

    def show(request: Request, sc: SessionContext = Depends(guard)) -> Response:
        return render_page(request, sc, **{k: request.path_params[k] for k in page_args})

    show.__name__ = show.__qualname__ = name
    router.get(path, name=name)(show)


def form_handler(
    router: APIRouter,
    guard: RequireWebSession,
    path: str,
    form_page: Callable[..., Response],
    *,
    refill: Callable[[FormData | None], Any] | None = None,
    page_args: tuple[str, ...] = (),
) -> Callable[[FormAction], FormAction]:
    """Register ``action(request, sc, form, path_params)`` as the form handler ``POST path`` under
    ``guard``: it runs under :func:`attempt`, so a service error shows ``form_page`` again (with the
    path parameters named in ``page_args`` and, with ``refill``, the form as the person filled it in)."""

    def register(action: FormAction) -> FormAction:
        def endpoint(
            request: Request,
            form: FormData | None = Depends(read_form),
            sc: SessionContext = Depends(guard),
        ) -> Response:
            params = request.path_params
            again: dict[str, Any] = {k: params[k] for k in page_args}
            if refill is not None:
                again["form"] = refill(form)
            return attempt(request, sc, lambda: action(request, sc, form, params), form_page, **again)

        endpoint.__name__ = endpoint.__qualname__ = action.__name__
        endpoint.__doc__ = action.__doc__
        router.post(path, name=action.__name__)(endpoint)
        return action

    return register


def same_form(form: FormData | None) -> FormData | None:
    """``refill`` for pages that take the form as it came."""
    return form
