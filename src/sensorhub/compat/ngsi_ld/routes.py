"""HTTP: NGSI-LD entities (``/ngsi-ld/v1/…``) over the entities service.

Reads take a token with the ``entities`` scope; writes take an interactive session (tokens are read-only
for entities). Errors under ``/ngsi-ld/`` are rendered as ETSI ProblemDetails by the one error handler
(:mod:`sensorhub.api.errors`). Paging and ``Link: rel="next"``/``rel="prev"`` come from :mod:`sensorhub.kit`;
JSON-LD contexts from :mod:`sensorhub.compat.ngsi_ld.contexts`; parameters from
:mod:`sensorhub.compat.ngsi_ld.schemas`; discovery from :mod:`sensorhub.entities.discovery`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.convertors import Convertor, register_url_convertor

from sensorhub.api.deps import ctx, get_read_db
from sensorhub.auth.dependencies import Public, RequireScope, RequireSession, SessionContext
from sensorhub.auth.principal import Principal
from sensorhub.authz.access import Access
from sensorhub.compat.ngsi_ld import schemas
from sensorhub.compat.ngsi_ld.contexts import (
    CONTEXTS_PATH,
    CORE,
    CORE_REQUEST,
    JSONLD_REL,
    ContextStore,
    RequestContext,
)
from sensorhub.compat.ngsi_ld.geo import GEOJSON, check_geometry_property, feature, wants_geojson
from sensorhub.compat.ngsi_ld.render import Projection, Representation, project, render_entity, types_of
from sensorhub.compat.ngsi_ld.schemas import Paging, QueryParams
from sensorhub.entities import discovery
from sensorhub.entities import service as entities
from sensorhub.entities.normalize import check_entity_id
from sensorhub.entities.service import EntityQuery, Selector
from sensorhub.errors import BadRequest, NotFound, TooManyResults, UnsupportedMediaType
from sensorhub.kit.paging import LimitPolicy
from sensorhub.kit.urls import base_url, next_link, prev_link


class _Name(Convertor[str]):
    """A type or attribute name in a path: may be an expanded IRI (``https%3A%2F%2F…%23Building`` arrives
    decoded, slashes included), never empty (``/types/`` is the list)."""

    regex = ".+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("ngsi_name", _Name())

router = APIRouter()
NGSI = "/ngsi-ld/v1"
ENTITIES = RequireScope("entities")
SESSION = RequireSession()
PUBLIC = Public()
TAGS_NGSI: list[str | Enum] = ["NGSI-LD"]
# Page sizes: 100 when absent; above 500 is 403 TooManyResults (ETSI GS CIM 009 V1.8.1 §5.5.9, and
# Nekazari: "capped at 500") — never a silently shorter page than the client asked for.
LIMITS = LimitPolicy(default=entities.DEFAULT_LIMIT, maximum=entities.MAX_LIMIT, minimum=0, clamp=True)
MAX_JOINED = 1000  # distinct linked entities one join fetches
MAX_INLINED = 10_000  # linked entities one join=inline answer may carry (one per path)
_ASSET_ID = re.compile(
    r"[0-9a-f]{16}"
)  # /v3/assets ids are accepted here too  # linked entities one answer may inline

_PAGING_DOC = (
    "Paging: `limit` (default 100, at most 500: a larger one is 403 `TooManyResults`), `offset`, "
    '`count=true` (→ `NGSILD-Results-Count`); `Link: <…>; rel="next"` while more results exist (with a '
    'keyset `cursor`, so following it costs the same at any depth) and `rel="prev"` after the first page.'
)


@lru_cache(maxsize=8)
def _store(allow: tuple[str, ...], directory: Path | None, timeout: float) -> ContextStore:
    return ContextStore(list(allow), directory, timeout)


def context_store(request: Request) -> ContextStore:
    st = ctx(request).settings
    return _store(tuple(st.ngsi_ld_context_allow), st.ngsi_ld_context_dir, st.ngsi_ld_context_timeout_seconds)


def request_context(request: Request, body: Any = None) -> RequestContext:
    """The JSON-LD context of the request: ``@context`` of an ``application/ld+json`` body, else the
    ``Link`` header, else the core context."""
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    store = context_store(request)
    if body is not None and request.method == "POST":
        has = isinstance(body, dict) and "@context" in body
        if ctype == "application/ld+json":
            if not has:
                raise BadRequest("an application/ld+json body needs an @context member")
            return store.for_request(None, body["@context"])
        if has:
            raise BadRequest(
                "@context in an application/json body is not allowed: send Content-Type: application/ld+json, "
                f'or name the context in a Link header with rel="{JSONLD_REL}"'
            )
        if ctype not in ("", "application/json"):
            raise UnsupportedMediaType("send the Query as application/json or application/ld+json")
    return store.for_request(request.headers.get("link"))


class Reader:
    """What the entity read routes take besides their own parameters: the request, its ``Accept``
    header, the token (``entities`` scope; narrowed by NGSILD-Tenant in the guard) and the session.
    Content negotiation and the request's context are worked out when the route asks (:meth:`wants_ld`,
    :meth:`context`): after FastAPI has checked the route's own parameters, as before."""

    def __init__(
        self,
        request: Request,
        accept: str | None = Header(None),
        principal: Principal = Depends(ENTITIES),
        db: Session = Depends(get_read_db),
    ) -> None:
        self.request = request
        self.accept = accept
        self.principal = principal
        self.db = db

    def wants_ld(self) -> bool:
        return schemas.wants_ld(self.accept)

    def context(self, body: Any = None) -> RequestContext:
        return request_context(self.request, body)

    def access(self) -> Access:
        return self.principal.access("entities")  # narrowed by NGSILD-Tenant in the guard


def _json(
    body: Any,
    ld: bool,
    rc: RequestContext,
    status: int = 200,
    headers: dict[str, str] | None = None,
    media: str | None = None,
) -> Response:
    h = dict(headers or {})
    links = [h.pop("Link")] if "Link" in h else []
    if not ld:
        links.append(f'<{rc.link_url}>; rel="{JSONLD_REL}"; type="application/ld+json"')
    if links:
        h["Link"] = ", ".join(links)
    return Response(
        orjson.dumps(body),
        status_code=status,
        headers=h,
        media_type=media or ("application/ld+json" if ld else "application/json"),
    )


def _geojson(request: Request, params: QueryParams) -> str | None:
    """The GeoProperty of GeoJSON Features when the client asks for ``application/geo+json``."""
    if wants_geojson(request.headers.get("accept")):
        return check_geometry_property(params.geometryProperty)
    if params.geometryProperty is not None:
        raise BadRequest("geometryProperty needs Accept: application/geo+json")
    return None


def _limit(limit: int | None, count: bool) -> int:
    if limit is not None and limit > entities.MAX_LIMIT:
        raise TooManyResults(
            f"limit {str(limit)[:20]} is more than this server hands out per page ({entities.MAX_LIMIT}): "
            f'ask for at most {entities.MAX_LIMIT} and follow the Link rel="next" URL (or raise offset)'
        )
    lim = LIMITS.resolve(limit)
    if lim == 0 and not count:
        raise BadRequest("limit=0 is only allowed with count=true")
    return lim


@router.get(
    f"{NGSI}/entities",
    tags=TAGS_NGSI,
    summary="Query entities",
    description=_PAGING_DOC,
    openapi_extra=schemas.REFUSED_EXTRA,
)
def list_entities(
    params: QueryParams = Depends(schemas.query_params),
    limit: int | None = Query(None, description="Page size; default 100, at most 500"),
    offset: int = Query(0, ge=0),
    count: bool = Query(False, description="Send the total as NGSILD-Results-Count"),
    cursor: str | None = Query(None, description="Opaque keyset cursor from a Link rel=next URL"),
    r: Reader = Depends(),
) -> Response:
    ld = r.wants_ld()
    return _query_response(r, r.context(), params, ld, Paging(limit, offset, count, cursor))


@router.post(
    f"{NGSI}/entityOperations/query",
    tags=TAGS_NGSI,
    summary="Query entities (POST body)",
    description="An NGSI-LD `Query` body; paging parameters in the query string. " + _PAGING_DOC,
    openapi_extra=schemas.REFUSED_EXTRA,
)
def post_query(
    body: Any = Body(..., examples=[{"type": "Query", "entities": [{"type": "AgriParcel"}], "q": "area>2"}]),
    base: QueryParams = Depends(schemas.representation_params),
    # Not Depends(Paging): the route's own parameters are listed before base's, but checked after them.
    limit: int | None = Query(None),
    offset: int = Query(0, ge=0),
    count: bool = Query(False),
    cursor: str | None = Query(None),
    r: Reader = Depends(),
) -> Response:
    ld = r.wants_ld()
    params = schemas.with_body(base, body)
    return _query_response(r, r.context(body), params, ld, Paging(limit, offset, count, cursor))


def _query_response(r: Reader, rc: RequestContext, params: QueryParams, ld: bool, paging: Paging) -> Response:
    """The answer of both query routes: the representation, the query (names through the request's
    context), then one page of the matching entities, with the linked entities ``join`` asks for."""
    rep = params.representation(rc)
    join = params.join_spec()
    query = params.query(rc)
    request, db = r.request, r.db
    gprop = _geojson(request, params)
    access = r.access()
    lim = _limit(paging.limit, paging.count)
    entities.OFFSETS.check(paging.offset)
    # Last of the checks, so that a malformed parameter is named rather than the missing selection.
    params.require_selective("the Query" if params.selectors is not None else "a query")
    page = entities.query_entities(
        db,
        access,
        query,
        limit=lim,
        offset=paging.offset,
        cursor=paging.cursor,
        count=paging.count,
        sys_attrs=rep.sys_attrs,
        reader=r.principal.credential_id,
    )
    context = rc.ref if ld else None
    body = [_render_row(r, rep, rc, context) for r in page.rows]
    if join[0] is not None:
        body = _join(db, access, page.rows, body, rep, rc, context, join)
    headers: dict[str, str] = {}
    if page.count is not None:
        headers["NGSILD-Results-Count"] = str(page.count)
    links: list[str] = []
    configured = ctx(request).settings.base_url
    if page.next_cursor is not None:
        links.append(
            next_link(request, configured, limit=lim, offset=page.next_offset, cursor=page.next_cursor)
        )
    if paging.offset > 0 and lim > 0:
        links.append(
            prev_link(request, configured, drop=("cursor",), limit=lim, offset=max(0, paging.offset - lim))
        )
    if links:
        headers["Link"] = ", ".join(links)
    if gprop is not None and join[0] != "flat":
        fc = {
            "type": "FeatureCollection",
            "features": [
                feature(b, r.location, r.attrs, rc.stored(gprop))
                for b, r in zip(body, page.rows, strict=True)
                if _has_members(b)
            ],
        }
        return _json(fc, False, rc, headers=headers, media=GEOJSON)
    return _json([b for b in body if _has_members(b)], ld, rc, headers=headers)


def _has_members(entity: dict[str, Any]) -> bool:
    """An entity that ``pick``/``omit`` leave without any member is not part of a query's answer."""
    return any(k != "@context" for k in entity)


def _render_row(r: Any, rep: Representation, rc: RequestContext, context: Any) -> dict[str, Any]:
    return render_entity(
        r.entity_id,
        types_of(r),
        r.attrs or {},
        r.location,
        rep,
        rc.shown,
        sys_attrs=_sys(r, rep),
        context=context,
        scopes=r.scopes,
        datasets=getattr(r, "datasets", None),
        attr_times=getattr(r, "attr_times", None),
    )


def _sys(r: Any, rep: Representation) -> Any:
    if not rep.sys_attrs:
        return None
    return (r.created_at, r.modified_at)


def _targets(attrs: dict[str, Any]) -> dict[str, list[str]]:
    """Relationship (and ListRelationship) name → the entity ids it points at."""
    out: dict[str, list[str]] = {}
    for name, a in attrs.items():
        if not isinstance(a, dict):
            continue
        t = a.get("type")
        if t == "Relationship":
            obj = a.get("object")
            ids = obj if isinstance(obj, list) else [obj]
        elif t == "ListRelationship":
            ids = [o.get("object") if isinstance(o, dict) else o for o in a.get("objectList") or []]
        else:
            continue
        out[name] = [i for i in ids if isinstance(i, str)]
    return out


# One entity of a join frontier: its rendered (projected) member dict, its row, the pick/omit that
# projected it (its Relationships' nested projections apply to the entities they link to), and the ids on
# its path from the page (not followed again: no loops).
_Reached = tuple[dict[str, Any], Any, Projection | None, Projection | None, frozenset[str]]


def _join(
    db: Session,
    access: Access,
    rows: list[Any],
    body: list[dict[str, Any]],
    rep: Representation,
    rc: RequestContext,
    context: Any,
    spec: tuple[str | None, int, frozenset[str]],
) -> list[dict[str, Any]]:
    """``join=inline``: each Relationship gets an ``entity`` member (``entityList`` for several objects);
    in keyValues the id itself is replaced by the entity. ``join=flat``: the linked entities follow the
    page's, once each. Only entities the reader may see are joined, only through Relationships the
    projection keeps, each projected by the braces of the Relationship that reached it
    (``locatedAt{id,name,isInCountry{id}}``); ``containedBy`` and the ids already on the way are not
    followed again (no loops), down to ``joinLevel``."""
    mode, level, contained = spec
    # Linked entities are rendered without projection here: each is projected for the path that reached it.
    inner = Representation(form=rep.form, sys_attrs=rep.sys_attrs, lang=rep.lang, datasets=rep.datasets)
    seen = set(contained) | {r.entity_id for r in rows}
    flat: list[dict[str, Any]] = []
    frontier: list[_Reached] = [
        (o, r, rep.pick, rep.omit, frozenset({r.entity_id})) for o, r in zip(body, rows, strict=True)
    ]
    budget = MAX_JOINED
    for _ in range(level):
        links = [(reached, key, ids) for reached in frontier for key, ids in _kept_links(reached, rc)]
        wanted = [i for _r, _k, ids in links for i in ids]
        wanted = [i for i in dict.fromkeys(wanted) if i not in contained][:budget]
        if not wanted:
            break
        found = _fetch(db, access, wanted)
        budget -= len(found)
        rendered = {
            eid: render_entity(
                r.entity_id,
                types_of(r),
                r.attrs or {},
                r.location,
                inner,
                rc.shown,
                sys_attrs=_sys(r, inner),
                scopes=r.scopes,
                datasets=getattr(r, "datasets", None),
                attr_times=getattr(r, "attr_times", None),
            )
            for eid, r in found.items()
        }
        frontier = _attach(links, rendered, found, seen, mode == "flat", rep)
        if mode == "flat":
            flat += [reached[0] for reached in frontier]
    if context is not None:
        for out in flat:
            out["@context"] = context
    return body + flat


def _attach(
    links: list[tuple[_Reached, str, list[str]]],
    rendered: dict[str, dict[str, Any]],
    found: dict[str, Any],
    seen: set[str],
    flat: bool,
    rep: Representation,
) -> list[_Reached]:
    """One join level: each link's entities projected for its path, and what the next level follows.
    ``flat``: each entity once (the first path that reached it), not one already on the page. Inline:
    attached to the Relationship, each followed further unless it is on its own path."""
    nxt: list[_Reached] = []
    for (out, _row, pick, omit, path), key, ids in links:
        sub_pick = pick.get(key) if pick is not None else None
        sub_omit = omit.get(key) if omit is not None else None
        linked = []
        for i in (i for i in ids if i in rendered):
            child = _copy(project(rendered[i], sub_pick, sub_omit))
            linked.append(child)
            if (i not in seen) if flat else (i not in path):
                nxt.append((child, found[i], sub_pick, sub_omit, path | {i}))
            seen.add(i)
        if not flat and linked:
            _inline(out, key, ids, linked, rep)
        if len(nxt) > MAX_INLINED:
            raise BadRequest(
                f"join would carry more than {MAX_INLINED} linked entities: lower joinLevel or narrow the query"
            )
    return nxt


def _kept_links(reached: _Reached, rc: RequestContext) -> list[tuple[str, list[str]]]:
    """The (shown) Relationships of a reached entity that its projection kept, with the ids they link to."""
    out, row = reached[0], reached[1]
    return [(key, ids) for name, ids in _targets(row.attrs or {}).items() if (key := rc.shown(name)) in out]


def _copy(entity: dict[str, Any]) -> dict[str, Any]:
    """A linked entity for one path: its attributes copied, so that joining below it (``entity`` members)
    does not show on the same entity reached through another path."""
    return {k: dict(v) if isinstance(v, dict) else v for k, v in entity.items()}


def _inline(
    out: dict[str, Any], key: str, ids: list[str], linked: list[dict[str, Any]], rep: Representation
) -> None:
    if rep.form == "keyValues":
        out[key] = linked[0] if len(ids) == 1 else linked
    elif isinstance(out[key], dict):
        out[key]["entity" if len(ids) == 1 else "entityList"] = linked[0] if len(ids) == 1 else linked


def _fetch(db: Session, access: Access, ids: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for i in range(0, len(ids), entities.MAX_LIST_ITEMS):
        chunk = tuple(ids[i : i + entities.MAX_LIST_ITEMS])
        page = entities.query_entities(
            db,
            access,
            EntityQuery(selectors=(Selector(ids=chunk),)),
            limit=entities.MAX_LIMIT,
            sys_attrs=True,
        )
        for r in page.rows:
            found.setdefault(r.entity_id, r)
    return found


@router.get(
    f"{NGSI}/entities/{{entity_id}}",
    tags=TAGS_NGSI,
    summary="Retrieve an entity",
    openapi_extra=schemas.REFUSED_EXTRA,
)
def get_entity(
    entity_id: str, params: QueryParams = Depends(schemas.retrieve_params), r: Reader = Depends()
) -> Response:
    ld = r.wants_ld()
    rc = r.context()
    rep = params.representation(rc)
    join = params.join_spec()
    access = r.access()
    db = r.db
    if not _ASSET_ID.fullmatch(entity_id):
        check_entity_id(entity_id, "the entity id in the path")  # not a URI: 400 BadRequestData
    e = entities.get_entity(db, access, entity_id)
    if params.type is not None and not schemas.parse_types(params.type, rc).matches(e.types):
        raise NotFound(f"entity '{entity_id}' not found")
    row = entities.EntityRow(
        e.entity_id,
        e.org_id,
        e.workspace_id,
        e.type,
        entities.entity_attrs(access, e),
        e.location,
        e.created_at,
        e.modified_at,
        e.extra_types,
        e.scopes,
        entities.entity_datasets(access, e),
        e.attr_times,
    )
    if rep.attrs is not None and not (
        rep.attrs & {*(row.attrs or {}), *(["location"] if row.location else [])}
    ):
        raise NotFound(f"entity '{entity_id}' has none of the attributes named by attrs")
    gprop = _geojson(r.request, params)
    context = rc.ref if ld and gprop is None else None
    body = _render_row(row, rep, rc, context)
    if not set(body) - {"@context"}:
        raise NotFound(f"entity '{entity_id}' has no member left after pick/omit")
    if join[0] is not None:
        out = _join(db, access, [row], [body], rep, rc, context, join)
        if join[0] == "flat" and len(out) > 1:  # nothing linked: the entity alone, as without join
            return _json(out, ld, rc)
    if gprop is not None:
        geo = feature(body, row.location, row.attrs, rc.stored(gprop))
        # A GeoJSON answer carries its context in the body (a Link header is not read by GeoJSON clients).
        return _json({**geo, "@context": rc.ref}, False, rc, media=GEOJSON)
    return _json(body, ld, rc)


# --- discovery -------------------------------------------------------------------------------------------


_S = TypeVar("_S")  # the summary of one name the discovery routes list (an entity type's, an attribute's)
# Each kind of name the discovery routes list: the summaries of the names the reader may see (from the
# entity types' summaries), and how one is shown in detail.
_Summaries = Callable[[dict[str, discovery.TypeSummary]], dict[str, _S]]
_Detail = Callable[[RequestContext, str, _S], dict[str, Any]]


def _discovery_list(
    r: Reader, details: bool, kind: str, member: str, summaries: _Summaries[_S], detail: _Detail[_S]
) -> Response:
    """``/types`` and ``/attributes``: the names the reader may see, as an ``EntityTypeList`` or
    ``AttributeList`` (``kind``, the names in ``member``; its id is a digest of the stored names), or
    with ``details`` each of them in detail."""
    ld = r.wants_ld()
    rc = r.context()
    found = summaries(discovery.summary(r.db, r.access()))
    names = sorted(found)
    body: Any
    if details:
        body = [detail(rc, n, found[n]) for n in names]
    else:
        digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
        body = {"id": f"urn:ngsi-ld:{kind}:{digest}", "type": kind, member: [rc.shown(n) for n in names]}
    return _discovery_json(body, ld, rc)


def _discovery_item(
    r: Reader, name: str, what: str, summaries: _Summaries[_S], detail: _Detail[_S]
) -> Response:
    """``/types/{type}`` and ``/attributes/{attr}``: one name (through the request's context) in detail."""
    ld = r.wants_ld()
    rc = r.context()
    stored = rc.stored(name)
    found = summaries(discovery.summary(r.db, r.access())).get(stored)
    if found is None:
        raise NotFound(f"{what} '{name[:200]}' not found")
    return _discovery_json(detail(rc, stored, found), ld, rc)


def _discovery_json(body: Any, ld: bool, rc: RequestContext) -> Response:
    if ld and isinstance(body, dict):
        body = {**body, "@context": rc.ref}
    elif ld and isinstance(body, list):
        body = [{**b, "@context": rc.ref} for b in body]
    return _json(body, ld, rc)


def _types(summ: dict[str, discovery.TypeSummary]) -> dict[str, discovery.TypeSummary]:
    return summ


def _entity_type(rc: RequestContext, name: str, summ: discovery.TypeSummary) -> dict[str, Any]:
    """An entity type in the spec's ``EntityType`` shape (``/types?details=true``)."""
    return {
        "id": CORE.expand(name),
        "type": "EntityType",
        "typeName": rc.shown(name),
        "attributeNames": sorted(rc.shown(a) for a in summ.attributes),
    }


def _entity_type_info(rc: RequestContext, name: str, summ: discovery.TypeSummary) -> dict[str, Any]:
    """An entity type in the spec's ``EntityTypeInfo`` shape (``/types/{type}``)."""
    return {
        "id": CORE.expand(name),
        "type": "EntityTypeInfo",
        "typeName": rc.shown(name),
        "entityCount": summ.entity_count,
        "attributeDetails": [
            {
                "id": CORE.expand(a),
                "type": "Attribute",
                "attributeName": rc.shown(a),
                "attributeTypes": sorted(summ.attributes[a]),
            }
            for a in sorted(summ.attributes)
        ],
    }


@router.get(f"{NGSI}/types", tags=TAGS_NGSI, summary="Available entity types")
def list_types(
    details: bool = Query(False, description="EntityType objects instead of an EntityTypeList"),
    local: schemas.Local = None,
    r: Reader = Depends(),
) -> Response:
    return _discovery_list(r, details, "EntityTypeList", "typeList", _types, _entity_type)


@router.get(f"{NGSI}/types/{{type_name:ngsi_name}}", tags=TAGS_NGSI, summary="Details of an entity type")
def get_type(type_name: str, local: schemas.Local = None, r: Reader = Depends()) -> Response:
    return _discovery_item(r, type_name, "entity type", _types, _entity_type_info)


_AttributeSummary = tuple[set[str], set[str], int]  # attribute types, entity types, entities having it


def _attributes(summ: dict[str, discovery.TypeSummary]) -> dict[str, _AttributeSummary]:
    """Attribute → (attribute types, entity types, number of entities having it)."""
    out: dict[str, _AttributeSummary] = {}
    for t, ts in summ.items():
        for a, kinds in ts.attributes.items():
            k, types, n = out.get(a, (set(), set(), 0))
            out[a] = (k | kinds, types | {t}, n + ts.attribute_counts.get(a, 0))
    return out


def _attribute_info(rc: RequestContext, name: str, found: _AttributeSummary) -> dict[str, Any]:
    """An attribute in the spec's ``Attribute`` shape (``/attributes/{attr}``, ``/attributes?details=true``)."""
    kinds, types, n = found
    return {
        "id": CORE.expand(name),
        "type": "Attribute",
        "attributeName": rc.shown(name),
        "attributeCount": n,
        "attributeTypes": sorted(kinds),
        "typeNames": sorted(rc.shown(t) for t in types),
    }


@router.get(f"{NGSI}/attributes", tags=TAGS_NGSI, summary="Available attributes")
def list_attributes(
    details: bool = Query(False, description="Attribute objects instead of an AttributeList"),
    local: schemas.Local = None,
    r: Reader = Depends(),
) -> Response:
    return _discovery_list(r, details, "AttributeList", "attributeList", _attributes, _attribute_info)


@router.get(f"{NGSI}/attributes/{{attr_name:ngsi_name}}", tags=TAGS_NGSI, summary="Details of an attribute")
def get_attribute(attr_name: str, local: schemas.Local = None, r: Reader = Depends()) -> Response:
    return _discovery_item(r, attr_name, "attribute", _attributes, _attribute_info)


# --- hosted JSON-LD contexts --------------------------------------------------------------------------------


@router.get(f"{NGSI}/jsonldContexts", tags=TAGS_NGSI, summary="JSON-LD contexts this server hosts")
def list_contexts(request: Request, details: bool = Query(False), _: None = Depends(PUBLIC)) -> Response:
    root = base_url(request, ctx(request).settings.base_url) + CONTEXTS_PATH
    names = context_store(request).hosted_names()
    body: Any = (
        [{"URL": root + n, "localId": n, "kind": "Hosted"} for n in names]
        if details
        else [root + n for n in names]
    )
    return Response(orjson.dumps(body), media_type="application/json")


@router.get(f"{NGSI}/jsonldContexts/{{name}}", tags=TAGS_NGSI, summary="A hosted JSON-LD context")
def get_context(request: Request, name: str, _: None = Depends(PUBLIC)) -> Response:
    doc = context_store(request).hosted(name)
    if doc is None:
        raise NotFound(f"context '{name[:100]}' not found")
    return Response(orjson.dumps(doc), media_type="application/ld+json")


# The standard writes collection resources with a trailing slash (``/entities/``): both spellings are
# served, neither redirects (a redirect would be built from the Host header).
for _path, _fn in (
    (f"{NGSI}/entities/", list_entities),
    (f"{NGSI}/types/", list_types),
    (f"{NGSI}/attributes/", list_attributes),
    (f"{NGSI}/jsonldContexts/", list_contexts),
):
    router.add_api_route(
        _path, _fn, methods=["GET"], include_in_schema=False, openapi_extra=schemas.REFUSED_EXTRA
    )


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
        return _json({"updated": updated, "notUpdated": not_updated}, False, CORE_REQUEST, status=207)
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
