"""HTTP: NGSI-LD entities (``/ngsi-ld/v1/…``) over the entities service.

Reads take a token with the ``entities`` scope; writes take an interactive session (tokens are read-only
for entities). Errors under ``/ngsi-ld/`` are rendered as ETSI ProblemDetails by the one error handler
(:mod:`sensorhub.api.errors`). Paging and ``Link: rel="next"`` come from :mod:`sensorhub.kit`.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, NamedTuple
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from sensorhub.api.deps import ctx, get_db
from sensorhub.auth.dependencies import RequireScope, RequireSession, SessionContext
from sensorhub.auth.principal import Principal
from sensorhub.compat.ngsi_ld import schemas
from sensorhub.entities import service as entities
from sensorhub.entities.normalize import CONTEXT_LINK, render
from sensorhub.entities.service import EntityQuery, Page
from sensorhub.errors import BadRequest
from sensorhub.kit.paging import LimitPolicy
from sensorhub.kit.urls import next_link

router = APIRouter()
NGSI = "/ngsi-ld/v1"
ENTITIES = RequireScope("entities")
SESSION = RequireSession()
TAGS_NGSI: list[str | Enum] = ["NGSI-LD"]
# Page sizes: 100 when absent, values above 500 are clamped to 500 (Nekazari: "capped at 500").
LIMITS = LimitPolicy(default=entities.DEFAULT_LIMIT, maximum=entities.MAX_LIMIT, minimum=0, clamp=True)

_PAGING_DOC = (
    "Paging: `limit` (default 100, values above 500 are clamped to 500), `offset`, `count=true` "
    '(→ `NGSILD-Results-Count`); while more results exist, `Link: <…>; rel="next"` carries the next '
    "page's URL (with a keyset `cursor`, so following it costs the same at any depth)."
)


def _json(body: Any, ld: bool, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    h = dict(headers or {})
    links = [h.pop("Link")] if "Link" in h else []
    if not ld:
        links.append(CONTEXT_LINK)
    if links:
        h["Link"] = ", ".join(links)
    return Response(
        orjson.dumps(body),
        status_code=status,
        headers=h,
        media_type="application/ld+json" if ld else "application/json",
    )


def _page_response(
    request: Request,
    page: Page,
    limit: int,
    *,
    ld: bool,
    key_values: bool,
    pick: frozenset[str] | None,
    sys_attrs: bool,
) -> Response:
    body = [
        render(
            r.entity_id,
            r.type,
            r.attrs or {},
            r.location,
            pick=pick,
            key_values=key_values,
            context=ld,
            sys_attrs=(r.created_at, r.modified_at) if sys_attrs else None,
        )
        for r in page.rows
    ]
    headers: dict[str, str] = {}
    if page.count is not None:
        headers["NGSILD-Results-Count"] = str(page.count)
    if page.next_cursor is not None:
        headers["Link"] = next_link(
            request,
            ctx(request).settings.base_url,
            limit=limit,
            offset=page.next_offset,
            cursor=page.next_cursor,
        )
    return _json(body, ld, headers=headers)


def _reject_unsupported(request: Request) -> None:
    for p in schemas.UNSUPPORTED_PARAMS:
        if p in request.query_params:
            raise BadRequest(f"the query parameter '{p}' is not supported by this server")


@router.get(f"{NGSI}/entities", tags=TAGS_NGSI, summary="Query entities", description=_PAGING_DOC)
def list_entities(
    request: Request,
    type: str | None = Query(None, description="Entity types, comma-separated"),
    id: str | None = Query(None, description="Entity ids, comma-separated"),
    idPattern: str | None = Query(None, description="Regular expression on the entity id"),
    attrs: str | None = Query(None, description="Attributes to return, comma-separated"),
    q: str | None = Query(None, description='Filter on attribute values, e.g. temperature>20;crop=="wheat"'),
    options: str | None = Query(None, description="keyValues and/or sysAttrs"),
    format: str | None = Query(None, description="normalized | keyValues | simplified"),
    limit: int | None = Query(None, description="Page size; default 100, at most 500"),
    offset: int = Query(0, ge=0),
    count: bool = Query(False, description="Send the total as NGSILD-Results-Count"),
    cursor: str | None = Query(None, description="Opaque keyset cursor from a Link rel=next URL"),
    accept: str | None = Header(None),
    principal: Principal = Depends(ENTITIES),
    db: Session = Depends(get_db),
) -> Response:
    _reject_unsupported(request)
    paging = _Paging(limit, offset, count, cursor)
    return _query_response(
        request,
        db,
        principal,
        lambda: schemas.query_from_params(type_=type, id_=id, id_pattern=idPattern, attrs=attrs, q=q),
        accept=accept,
        options=(options, format),
        paging=paging,
    )


@router.post(
    f"{NGSI}/entityOperations/query",
    tags=TAGS_NGSI,
    summary="Query entities (POST body)",
    description="An NGSI-LD `Query` body; paging parameters in the query string. " + _PAGING_DOC,
)
def post_query(
    request: Request,
    body: Any = Body(..., examples=[{"type": "Query", "entities": [{"type": "AgriParcel"}], "q": "area>2"}]),
    options: str | None = Query(None),
    format: str | None = Query(None),
    limit: int | None = Query(None),
    offset: int = Query(0, ge=0),
    count: bool = Query(False),
    cursor: str | None = Query(None),
    accept: str | None = Header(None),
    principal: Principal = Depends(ENTITIES),
    db: Session = Depends(get_db),
) -> Response:
    paging = _Paging(limit, offset, count, cursor)
    return _query_response(
        request,
        db,
        principal,
        lambda: schemas.query_from_body(body),
        accept=accept,
        options=(options, format),
        paging=paging,
    )


class _Paging(NamedTuple):
    limit: int | None
    offset: int
    with_count: bool
    cursor: str | None


def _query_response(
    request: Request,
    db: Session,
    principal: Principal,
    build: Callable[[], EntityQuery],
    *,
    accept: str | None,
    options: tuple[str | None, str | None],
    paging: _Paging,
) -> Response:
    """The answer of both query routes: the representation from ``Accept`` and ``options``/``format``,
    then the query ``build`` parses, then one page of the matching entities."""
    ld = schemas.wants_ld(accept)
    key_values, sys_attrs = schemas.parse_options(*options)
    query = build()
    access = principal.access("entities")  # narrowed by NGSILD-Tenant in the guard
    limit, offset, count, cursor = paging.limit, paging.offset, paging.with_count, paging.cursor
    lim = LIMITS.resolve(limit)
    if lim == 0 and not count:
        raise BadRequest("limit=0 is only allowed with count=true")
    page = entities.query_entities(
        db,
        access,
        query,
        limit=lim,
        offset=offset,
        cursor=cursor,
        count=count,
        sys_attrs=sys_attrs,
        reader=principal.credential_id,
    )
    return _page_response(
        request, page, lim, ld=ld, key_values=key_values, pick=query.attrs, sys_attrs=sys_attrs
    )


@router.get(f"{NGSI}/entities/{{entity_id}}", tags=TAGS_NGSI, summary="Retrieve an entity")
def get_entity(
    entity_id: str,
    attrs: str | None = Query(None),
    options: str | None = Query(None),
    format: str | None = Query(None),
    accept: str | None = Header(None),
    principal: Principal = Depends(ENTITIES),
    db: Session = Depends(get_db),
) -> Response:
    ld = schemas.wants_ld(accept)
    key_values, sys_attrs = schemas.parse_options(options, format)
    access = principal.access("entities")  # narrowed by NGSILD-Tenant in the guard
    e = entities.get_entity(db, access, entity_id)
    pick = schemas.attrs_projection(attrs)
    body = schemas.entity_json(
        e,
        entities.entity_attrs(access, e),
        pick=pick,
        key_values=key_values,
        context=ld,
        sys_attrs=sys_attrs,
    )
    return _json(body, ld)


# --- writes: interactive sessions only ------------------------------------------------------------------


@router.post(
    f"{NGSI}/entities",
    tags=TAGS_NGSI,
    status_code=201,
    summary="Create an entity (session)",
    description="Needs a web session (tokens are read-only). The target workspace is "
    "`workspace=<org>/<workspace>`, or `NGSILD-Tenant: <org>` with `workspace=<workspace>`.",
)
def create_entity(
    body: Any = Body(...),
    workspace: str | None = Query(None, description="<org>/<workspace> (slugs or ids)"),
    tenant: str | None = Header(None, alias="NGSILD-Tenant"),
    sc: SessionContext = Depends(SESSION),
) -> Response:
    org, ws = entities.target_workspace(sc.db, sc.user, workspace, tenant)
    e = entities.create_entity(sc.db, sc.user, org, ws, body)
    return Response(status_code=201, headers={"Location": f"{NGSI}/entities/{quote(e.entity_id, safe=':')}"})


@router.patch(f"{NGSI}/entities/{{entity_id}}/attrs", tags=TAGS_NGSI, summary="Update attributes (session)")
def update_attrs(
    entity_id: str,
    body: Any = Body(...),
    tenant: str | None = Header(None, alias="NGSILD-Tenant"),
    sc: SessionContext = Depends(SESSION),
) -> Response:
    e = entities.entity_for_write(sc.db, sc.user, entity_id, tenant)
    updated, not_updated = entities.update_attrs(sc.db, sc.user, e, body)
    if not_updated:
        return _json({"updated": updated, "notUpdated": not_updated}, False, status=207)
    return Response(status_code=204)


@router.post(
    f"{NGSI}/entities/{{entity_id}}/attrs",
    tags=TAGS_NGSI,
    status_code=204,
    summary="Append attributes (session)",
)
def append_attrs(
    entity_id: str,
    body: Any = Body(...),
    tenant: str | None = Header(None, alias="NGSILD-Tenant"),
    sc: SessionContext = Depends(SESSION),
) -> Response:
    e = entities.entity_for_write(sc.db, sc.user, entity_id, tenant)
    entities.append_attrs(sc.db, sc.user, e, body)
    return Response(status_code=204)


@router.delete(
    f"{NGSI}/entities/{{entity_id}}/attrs/{{attr}}",
    tags=TAGS_NGSI,
    status_code=204,
    summary="Delete an attribute (session)",
)
def delete_attr(
    entity_id: str,
    attr: str,
    tenant: str | None = Header(None, alias="NGSILD-Tenant"),
    sc: SessionContext = Depends(SESSION),
) -> Response:
    e = entities.entity_for_write(sc.db, sc.user, entity_id, tenant)
    entities.delete_attr(sc.db, sc.user, e, attr)
    return Response(status_code=204)


@router.delete(
    f"{NGSI}/entities/{{entity_id}}", tags=TAGS_NGSI, status_code=204, summary="Delete an entity (session)"
)
def delete_entity(
    entity_id: str,
    tenant: str | None = Header(None, alias="NGSILD-Tenant"),
    sc: SessionContext = Depends(SESSION),
) -> Response:
    e = entities.entity_for_write(sc.db, sc.user, entity_id, tenant)
    entities.delete_entity(sc.db, sc.user, e)
    return Response(status_code=204)
