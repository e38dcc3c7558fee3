"""The web UI for people: log in, home, Integrations (Personal Access Tokens) and a small data view.

Thin handlers over the same services as the management API (``sensorhub.tokens.service``,
``sensorhub.accounts.service``). Service errors are shown next to the form they came from.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.responses import Response

from sensorhub.accounts import invitations
from sensorhub.accounts import service as accounts
from sensorhub.accounts.models import Organisation, Workspace
from sensorhub.api.deps import ctx, get_db, request_ip
from sensorhub.auth import sessions
from sensorhub.auth.dependencies import Public, SessionContext
from sensorhub.auth.endpoints import check_login_budget, note_failed_login, set_session_cookie
from sensorhub.auth.scopes import ROLE_SCOPES
from sensorhub.authz.access import Access
from sensorhub.authz.entities import visible_entities_query, visible_entity
from sensorhub.authz.subjects import session_access
from sensorhub.db import utcnow
from sensorhub.entities.models import Entity
from sensorhub.errors import BadRequest, RateLimited, SensorhubError
from sensorhub.kit.time import MAX_TIME, MIN_TIME, RANGE_TEXT, clamp_us, display_time, from_us
from sensorhub.kit.urls import base_url
from sensorhub.net import is_https
from sensorhub.timeseries.models import DEFAULT_TOPIC, Series
from sensorhub.timeseries.reads import entity_data
from sensorhub.tokens import inventory
from sensorhub.tokens import service as tokens
from sensorhub.tokens.models import Credential
from sensorhub.tokens.service import Minted, RestrictionSpec
from sensorhub.web import forms, snippets
from sensorhub.web.chart import Chart, line_chart
from sensorhub.web.guards import RequireWebSession, read_form, safe_next
from sensorhub.web.views import Page, attempt, page, render

router = APIRouter(include_in_schema=False)

PAGE = RequireWebSession(csrf=False)
FORM = RequireWebSession()
MAYBE = RequireWebSession(csrf=False, optional=True)

LOGIN_CSRF_COOKIE = "sensorhub_login_csrf"


# -- login / logout -----------------------------------------------------------------------------
def render_login_form(request: Request, template: str, p: Page, status: int, **data: Any) -> Response:
    """``template``, a form that signs a person in (log in, sign up), with the button of the OpenID Connect
    provider when one is configured and a login CSRF token in the form and in a cookie: a double-submit
    token against login CSRF (someone logging your browser into their account)."""
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    settings = ctx(request).settings
    resp = render(
        request,
        template,
        p,
        status,
        login_csrf=token,
        oidc_name=settings.oidc_display_name if settings.oidc_enabled else None,
        **data,
    )
    resp.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="lax",
        path="/",
        secure=is_https(request, tuple(settings.trusted_proxies)),
    )
    return resp


def login_csrf_ok(request: Request, form: FormData | None) -> bool:
    """Whether the form sends back the login CSRF token of the browser's cookie."""
    given, expected = forms.text(form, "login_csrf"), request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return bool(expected) and secrets.compare_digest(given, expected)


def login_page(
    request: Request, *, error: str | None = None, email: str = "", next_path: str = "/", status: int = 200
) -> Response:
    p = page(request, "Log in", None, error=error)
    return render_login_form(request, "login.html", p, status, email=email, next_path=next_path)


@router.get("/login")
def login_form(request: Request, next: str = "/", sc: SessionContext | None = Depends(MAYBE)) -> Response:
    if sc is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return login_page(request, next_path=safe_next(next))


@router.post("/login", dependencies=[Depends(Public())])
def login_submit(
    request: Request, form: FormData | None = Depends(read_form), db: Session = Depends(get_db)
) -> Response:
    c = ctx(request)
    email, password = forms.text(form, "email"), forms.text(form, "password")
    next_path = safe_next(forms.text(form, "next"))
    if not login_csrf_ok(request, form):
        return login_page(
            request,
            error="The login form expired. Please enter your email and password again.",
            email=email,
            next_path=next_path,
            status=400,
        )
    if not email or not password:
        return login_page(
            request, error="Enter your email and your password.", email=email, next_path=next_path, status=400
        )
    try:
        check_login_budget(request, email)
    except RateLimited as e:
        minutes = max(1, math.ceil(e.retry_after / 60))
        msg = f"Too many failed logins. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
        resp = login_page(request, error=msg, email=email, next_path=next_path, status=429)
        resp.headers["Retry-After"] = str(e.retry_after)
        return resp
    done = sessions.login(db, email, password, request_ip(request), c.settings.session_lifetime_hours)
    if done is None:
        note_failed_login(request, email)
        return login_page(
            request, error="Wrong email or password.", email=email, next_path=next_path, status=401
        )
    resp = RedirectResponse(next_path, status_code=303)
    set_session_cookie(request, resp, done.cookie)
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return resp


@router.post("/logout")
def logout(request: Request, sc: SessionContext = Depends(FORM)) -> Response:
    sessions.logout(sc.db, request.cookies.get(sessions.COOKIE_NAME, ""))
    resp = RedirectResponse("/login?done=logged-out", status_code=303)
    resp.delete_cookie(sessions.COOKIE_NAME, path="/")
    return resp


# -- home ---------------------------------------------------------------------------------------
@router.get("/")
def home(request: Request, sc: SessionContext | None = Depends(MAYBE)) -> Response:
    if sc is None:
        return login_page(request)
    now = utcnow()
    pats = tokens.list_pats(sc.db, sc.user.id)
    active = [t for t in pats if t.status(now) == "active"]
    soon = [t for t in active if t.expires_at is not None and t.expires_at - now < timedelta(days=14)]
    orgs = []
    for m, o in accounts.memberships_of(sc.db, sc.user.id):
        orgs.append({"org": o, "role": m.role, "workspaces": accounts.list_workspaces(sc.db, o)})
    access = session_access(sc.db, sc.user)
    entity_count = sc.db.scalar(select(func.count()).select_from(visible_entities_query(access).subquery()))
    p = page(request, "Home", sc, active="home")
    return render(
        request,
        "home.html",
        p,
        orgs=orgs,
        active_count=len(active),
        expiring=soon,
        entity_count=entity_count or 0,
        invitation_count=len(invitations.invitations_for(sc.db, sc.user)),
    )


# -- Integrations (Personal Access Tokens) -------------------------------------------------------
@dataclass
class TokenForm:
    """What the create form shows (defaults, or what the person typed when the service said no)."""

    name: str = ""
    scopes: set[str] = field(default_factory=lambda: {"entities", "timeseries"})
    expiry: str = "365"
    expires_on: str = ""
    organisations: set[str] = field(default_factory=set)
    workspaces: set[str] = field(default_factory=set)
    entities: str = ""
    time_start: str = ""
    time_end: str = ""
    allowed_ips: str = ""
    open_restrictions: bool = False

    @classmethod
    def of(cls, form: FormData | None) -> TokenForm:
        f = cls(
            name=forms.text(form, "name"),
            scopes=set(forms.many(form, "scopes")),
            expiry=forms.text(form, "expiry") or "365",
            expires_on=forms.text(form, "expires_on"),
            organisations=set(forms.many(form, "organisations")),
            workspaces=set(forms.many(form, "workspaces")),
            entities=forms.text(form, "entities"),
            time_start=forms.text(form, "time_start"),
            time_end=forms.text(form, "time_end"),
            allowed_ips=forms.text(form, "allowed_ips"),
        )
        f.open_restrictions = bool(f.workspaces or f.entities or f.time_start or f.time_end or f.allowed_ips)
        return f


@dataclass
class ExpiryOptions:
    choices: list[tuple[str, str]]
    allow_never: bool
    max_days: int | None
    default: str


def expiry_options(orgs: list[Organisation], default_days: int) -> ExpiryOptions:
    """The lifetimes the strictest policy among ``orgs`` allows (the server enforces it again)."""
    policy = tokens._policy(orgs)
    cap = policy.max_days
    choices = [(d, f"{d} days") for d in ("30", "90", "365") if cap is None or int(d) <= cap]
    if cap is not None and str(cap) not in {d for d, _ in choices}:
        choices.append((str(cap), f"{cap} days (the maximum)"))
        choices.sort(key=lambda c: int(c[0]))
    default = str(default_days) if any(d == str(default_days) for d, _ in choices) else choices[-1][0]
    return ExpiryOptions(choices, policy.allow_never and cap is None, cap, default)


def token_values(
    request: Request, orgs: list[Organisation], creds: list[Credential], form: TokenForm | None
) -> dict[str, Any]:
    """What a page of tokens shows besides its own data: the lifetimes ``orgs``' policy allows, the
    create form (``form`` as typed, else the defaults) and the tokens ``creds``, live and revoked."""
    exp = expiry_options(orgs, ctx(request).settings.default_token_lifetime_days)
    return {
        "expiry": exp,
        "form": form or TokenForm(expiry=exp.default),
        "live": [t for t in creds if t.revoked_at is None],
        "revoked": [t for t in creds if t.revoked_at is not None],
    }


def _reveal(minted: Minted, action: str) -> dict[str, Any]:
    c = minted.credential
    return {
        "id": c.id,
        "name": c.name,
        "token": minted.token,
        "kind": c.kind,
        "scopes": list(c.scopes),
        "expires_at": c.expires_at,
        "action": action,
        "previous_valid_until": minted.previous_valid_until,
    }


def _example(db: Session, access: Any) -> snippets.Example | None:

    ents = visible_entities_query(access).subquery()
    row = db.execute(
        select(ents.c.entity_id, Series.attribute, Series.last_ts)
        .join(Series, Series.entity_pk == ents.c.pk)
        .where(Series.topic == DEFAULT_TOPIC)
        .order_by(Series.last_ts.desc().nulls_last())
        .limit(1)
    ).first()
    if row is not None:
        # clamp_us: a point stored before the time range was enforced (e.g. 9999-12-31) still renders.
        end = from_us(clamp_us(row[2])) if row[2] is not None else utcnow()
        return snippets.Example(row[0], row[1], end)
    first = db.scalar(select(ents.c.entity_id).limit(1))
    return snippets.Example(first, None, utcnow()) if first else None


def integrations_page(
    request: Request,
    sc: SessionContext,
    *,
    reveal: dict[str, Any] | None = None,
    error: str | None = None,
    form: TokenForm | None = None,
    status: int = 200,
) -> Response:
    settings = ctx(request).settings
    now = utcnow()
    memberships = accounts.memberships_of(sc.db, sc.user.id)
    orgs = [o for _, o in memberships]
    allowed_scopes: set[str] = set()
    for m, _ in memberships:
        allowed_scopes |= ROLE_SCOPES[m.role]
    workspaces: list[tuple[Organisation, Workspace]] = [
        (o, w) for o in orgs for w in accounts.list_workspaces(sc.db, o)
    ]
    values = token_values(request, orgs, tokens.list_pats(sc.db, sc.user.id), form)
    if form is None:
        wanted = request.query_params.get("org")
        picked = [o for o in orgs if wanted in (o.slug, o.id)] if wanted else []
        values["form"].organisations = {o.id for o in (picked or orgs)}
    access = session_access(sc.db, sc.user)
    base = base_url(request, settings.base_url)
    snip = snippets.build(base, reveal["token"] if reveal else None, "pat", _example(sc.db, access))
    p = page(request, "Integrations", sc, active="integrations", error=error)
    return render(
        request,
        "integrations.html",
        p,
        status,
        reveal=reveal,
        orgs=orgs,
        workspaces=workspaces,
        snippets=snip,
        now=now,
        allowed_scopes=allowed_scopes,
        ws_names=_workspace_names(workspaces),
        snippets_base_url=base,
        org_names={o.id: o.slug for o in orgs},
        org_access={t.id: inventory.access_states(sc.db, t) for t in values["live"]},
        **values,
    )


def _workspace_names(pairs: list[tuple[Organisation, Workspace]]) -> dict[str, str]:
    return {w.id: f"{o.slug}/{w.slug}" for o, w in pairs}


@router.get("/integrations")
def integrations(request: Request, sc: SessionContext = Depends(PAGE)) -> Response:
    return integrations_page(request, sc)


def _token_reach(sc: SessionContext, spec: RestrictionSpec) -> RestrictionSpec:
    """The form's ticked organisations as a restriction: everything ticked is no restriction (the token
    follows the person's memberships); nothing ticked, with several to choose from, is a mistake."""
    all_orgs = {o.id for _, o in accounts.memberships_of(sc.db, sc.user.id)}
    chosen = set(spec.organisations)
    if len(all_orgs) > 1 and not chosen:
        raise BadRequest("Tick at least one organisation the token may reach.")
    return replace(spec, organisations=() if chosen >= all_orgs else tuple(sorted(chosen)))


@router.post("/integrations/tokens")
def create_token(
    request: Request, form: FormData | None = Depends(read_form), sc: SessionContext = Depends(FORM)
) -> Response:
    def act() -> Response:
        new = forms.new_token(form)
        new = replace(new, restrictions=_token_reach(sc, new.restrictions))
        minted = tokens.create_pat(
            sc.db, sc.user, new, settings=ctx(request).settings, created_by=sc.user.id, ip=request_ip(request)
        )
        return integrations_page(request, sc, reveal=_reveal(minted, "created"), status=201)

    return attempt(request, sc, act, integrations_page, form=TokenForm.of(form))


@router.post("/integrations/tokens/{token_id}/revoke")
def revoke_token(token_id: str, request: Request, sc: SessionContext = Depends(FORM)) -> Response:
    def act() -> Response:
        tokens.revoke_pat(sc.db, sc.user, token_id, ip=request_ip(request))
        return RedirectResponse("/integrations?done=revoked", status_code=303)

    return attempt(request, sc, act, integrations_page)


@router.post("/integrations/tokens/{token_id}/rotate")
def rotate_token(
    token_id: str,
    request: Request,
    form: FormData | None = Depends(read_form),
    sc: SessionContext = Depends(FORM),
) -> Response:
    def act() -> Response:
        minted = tokens.rotate_pat(
            sc.db,
            sc.user,
            token_id,
            settings=ctx(request).settings,
            ip=request_ip(request),
            grace_days=forms.grace_days(form),
        )
        return integrations_page(request, sc, reveal=_reveal(minted, "rotated"))

    return attempt(request, sc, act, integrations_page)


# -- data view ----------------------------------------------------------------------------------
RANGES = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "365d": timedelta(days=365),
}
RANGE_LABELS = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days", "365d": "Last 365 days"}
CHART_POINTS = 300


@dataclass
class ChartView:
    chart: Chart
    info: dict[str, Any]
    table: list[tuple[datetime, float]]


def chart_view(
    db: Session, access: Access, entity: Entity, series: Series, start: datetime, end: datetime
) -> ChartView:
    """One series of ``entity`` over ``[start, end)``, read exactly as the time-series API reads it
    (the same service, the same clamping to what ``access`` may read)."""
    frame = entity_data(db, access, entity.entity_id, start, end, [series.attribute], CHART_POINTS, "avg")
    vals = frame.columns[0].values if frame.columns else np.array([])
    keep = ~np.isnan(vals)
    times = [from_us(int(t)) for t in frame.timestamps[keep]]
    values = [float(v) for v in vals[keep]]
    bucket_s = (frame.bucket_us or 0) // 1_000_000
    unit = f" ({series.unit})" if series.unit else ""
    chart = line_chart(times, values, start, end, f"{series.attribute}{unit} of {entity.entity_id}", bucket_s)
    info = {
        "attribute": series.attribute,
        "unit": series.unit,
        "start": start,
        "end": end,
        "bucket_seconds": bucket_s,
        "points": len(values),
    }
    return ChartView(chart, info, list(zip(times, values, strict=True)))


def chart_range(series: Series, range_key: str, start: str, end: str) -> tuple[datetime, datetime]:
    if range_key == "custom":
        lo, hi = forms.date(start, "From"), forms.date(end, "Until")
        if lo is None or hi is None:
            raise BadRequest("Choose both dates for a custom range.")
        if hi <= lo:
            raise BadRequest("The end of the range must be after its start.")
        if lo < MIN_TIME or hi > MAX_TIME:
            raise BadRequest(f"Choose dates inside the supported time range, {RANGE_TEXT}.")
        return lo, hi
    # Preset ranges end at the newest point (sensor data is often not live), else now; kept inside the
    # supported time range so that the arithmetic below never overflows.
    newest = from_us(clamp_us(series.last_ts)) if series.last_ts is not None else utcnow()
    newest = max(newest, MIN_TIME + RANGES[range_key])
    newest = (newest + timedelta(minutes=1)).replace(second=0, microsecond=0)
    return newest - RANGES[range_key], newest


@router.get("/data")
def data_view(
    request: Request,
    entity: str | None = None,
    attribute: str | None = None,
    range: str = "7d",
    start: str = "",
    end: str = "",
    sc: SessionContext = Depends(PAGE),
) -> Response:
    access = session_access(sc.db, sc.user)
    rows = list(
        sc.db.scalars(visible_entities_query(access).order_by(Entity.type, Entity.entity_id).limit(500))
    )
    ws_names = {
        w.id: w.name
        for w in sc.db.scalars(select(Workspace).where(Workspace.id.in_({e.workspace_id for e in rows})))
    }
    error = None
    chosen: Entity | None = None
    series: list[Series] = []
    view: ChartView | None = None
    if range not in RANGES and range != "custom":
        range = "7d"
    if entity:
        try:
            chosen = visible_entity(sc.db, access, entity)
        except SensorhubError as e:
            error = e.message
    if chosen is not None:
        series = list(
            sc.db.scalars(
                select(Series)
                .where(Series.entity_pk == chosen.pk, Series.topic == DEFAULT_TOPIC)
                .order_by(Series.attribute)
            )
        )
        pick = next((x for x in series if x.attribute == attribute), series[0] if series else None)
        if pick is not None:
            try:
                lo, hi = chart_range(pick, range, start, end)
                view = chart_view(sc.db, access, chosen, pick, lo, hi)
            except SensorhubError as e:
                error = e.message
    p = page(request, "Data", sc, active="data", error=error)
    return render(
        request,
        "data.html",
        p,
        entities=rows,
        ws_names=ws_names,
        chosen=chosen,
        series=series,
        chart=view.chart if view else None,
        info=view.info if view else {"attribute": attribute},
        table=view.table if view else [],
        range=range,
        start=start,
        end=end,
        ranges=RANGE_LABELS,
        attribute=attribute,
        latest={
            x.attribute: (x.last_value, display_time(x.last_ts) if x.last_ts is not None else None)
            for x in series
        },
    )
