"""HTTP: LEAF's ``/api/data`` (rows by scope, keyset-paged), ``/api/data/recent`` and ``/api/managements``.

Rows are ordered by (time, entity, metric). Pages are cut with an opaque keyset cursor
(:mod:`sensorhub.kit.paging`); while more rows exist the response carries ``Link: <…>; rel="next"``,
absolute against ``SENSORHUB_BASE_URL`` (:mod:`sensorhub.kit.urls`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from sensorhub.api.deps import ctx
from sensorhub.auth.dependencies import AnyToken, RequireScope
from sensorhub.auth.principal import OrgRef, Principal, WorkspaceRef
from sensorhub.authz.access import Access
from sensorhub.compat.leaf.schemas import data_rows
from sensorhub.errors import BadRequest, NotFound
from sensorhub.kit.paging import MAX_CURSOR_LENGTH, LimitPolicy, decode_cursor, encode_cursor
from sensorhub.kit.time import parse_time
from sensorhub.kit.urls import next_link
from sensorhub.timeseries import formats, rows
from sensorhub.tokens.introspection import effective_grants

router = APIRouter()
DATA_LIMITS = LimitPolicy(default=1000, maximum=10_000)
RECENT_LIMITS = LimitPolicy(default=50, maximum=10_000)


def _match(ref: str, slug: str, name: str) -> bool:
    return ref == slug or ref.lower() == name.lower()


def _organisation(principal: Principal, access: Access, ref: str) -> OrgRef:
    org = next(
        (o for o in principal.orgs.values() if o.id in access.org_ids and _match(ref, o.slug, o.name)),
        None,
    )
    if org is None:
        raise NotFound(f"organisation '{ref}' not found")
    return org


def resolve_scope(
    principal: Principal, access: Access, organisation: str | None, department: str | None
) -> tuple[OrgRef | None, WorkspaceRef | None]:
    """Organisation (slug or name) and department (workspace slug or name) among those the credential
    reaches; unknown ones are 404 without saying whether they exist elsewhere."""
    org = _organisation(principal, access, organisation) if organisation is not None else None
    if department is None:
        return org, None
    found = [
        w
        for w in principal.workspaces.values()
        if w.org_id in access.org_ids
        and (org is None or w.org_id == org.id)
        and _match(department, w.slug, w.name)
    ]
    if not found:
        raise NotFound(f"department '{department}' not found")
    if len(found) > 1:
        raise BadRequest(f"department '{department}' exists in several organisations; add organisation=")
    return org, found[0]


def parse_bound(value: str | None, what: str) -> datetime | None:
    """``from``/``to``: ISO 8601 or a date, inside the supported time range (else 400)."""
    return None if value is None or value == "" else parse_time(value, what)


def data_page(
    s: Session,
    principal: Principal,
    access: Access,
    *,
    organisation: str | None = None,
    department: str | None = None,
    entity: str | None = None,
    metric: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = DATA_LIMITS.default,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of LEAF rows and the cursor of the next page (None on the last page)."""
    DATA_LIMITS.resolve(limit)
    if start is not None and end is not None and end <= start:
        raise BadRequest("'to' must be after 'from' (from is inclusive, to is exclusive)")
    org, ws = resolve_scope(principal, access, organisation, department)
    series = rows.series_in_scope(
        s,
        access,
        org_id=org.id if org else None,
        workspace_id=ws.id if ws else None,
        entity=entity,
        attribute=metric,
    )
    after = cast(rows.Position, decode_cursor(cursor, int, str, str)) if cursor else None
    page, last = rows.page_after(s, access, series, start=start, end=end, limit=limit, after=after)
    return data_rows(page, principal), (encode_cursor(*last) if last else None)


def recent_rows(s: Session, principal: Principal, access: Access, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` newest readings across everything readable, newest first."""
    RECENT_LIMITS.resolve(limit)
    return data_rows(rows.newest(s, access, rows.series_in_scope(s, access), limit), principal)


@router.get("/api/data/recent", tags=["leaf"])
async def data_recent(
    request: Request,
    limit: Annotated[
        int, Query(ge=1, le=RECENT_LIMITS.maximum, description=RECENT_LIMITS.range_text)
    ] = RECENT_LIMITS.default,
    principal: Principal = Depends(RequireScope("telemetry")),
) -> Response:
    """The most recent readings across everything the credential may read, newest first."""
    access = principal.access("telemetry")
    return formats.json_response(
        await ctx(request).db.read_off_loop(lambda s: recent_rows(s, principal, access, limit))
    )


@router.get("/api/data", tags=["leaf"])
async def data(
    request: Request,
    organisation: str | None = None,
    department: str | None = None,
    entity: str | None = None,
    metric: str | None = None,
    from_: Annotated[str | None, Query(alias="from", description="ISO 8601 or a date, inclusive")] = None,
    to: Annotated[str | None, Query(description="ISO 8601 or a date, exclusive")] = None,
    limit: Annotated[
        int, Query(ge=1, le=DATA_LIMITS.maximum, description=DATA_LIMITS.range_text)
    ] = DATA_LIMITS.default,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH)] = None,
    principal: Principal = Depends(RequireScope("timeseries")),
) -> Response:
    """Rows ``{time, entity, metric, value, tags}`` ordered by (time, entity, metric). While more rows
    exist the response carries ``Link: <…&cursor=…>; rel="next"``."""
    start = parse_bound(from_, "from")
    end = parse_bound(to, "to")
    access = principal.access("timeseries")

    def fn(s: Session) -> tuple[list[dict[str, Any]], str | None]:
        return data_page(
            s,
            principal,
            access,
            organisation=organisation,
            department=department,
            entity=entity,
            metric=metric,
            start=start,
            end=end,
            limit=limit,
            cursor=cursor,
        )

    body, next_cursor = await ctx(request).db.read_off_loop(fn)
    headers = {}
    if next_cursor is not None:
        headers["Link"] = next_link(request, ctx(request).settings.base_url, cursor=next_cursor)
    return formats.json_response(body, headers=headers)


@router.get("/api/managements", tags=["tokens"])
async def managements(principal: Principal = Depends(AnyToken())) -> Response:
    """The access grants this token can use (LEAF "managements")."""
    return formats.json_response(effective_grants(principal))
