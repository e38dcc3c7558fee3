"""NGSI-LD wire shapes: the query parameters and ``Query`` bodies (one model, :class:`QueryParams`, that
every entity-query route — and the temporal routes — parse with), options, content negotiation.

What the standard defines and sensorhub does not build is listed in :data:`REFUSED_PARAMS` (501
``NotImplemented`` naming it, through the routes' ``x-refused-parameters``) and :data:`REFUSED_MEMBERS`;
anything else unknown is a 400 ``BadRequestData`` naming it. Nothing is silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from fastapi import Depends, Query

from sensorhub.compat.ngsi_ld.contexts import RequestContext
from sensorhub.compat.ngsi_ld.geo import accepted_media, geo_from_body, geo_params, refuse_unknown_members
from sensorhub.compat.ngsi_ld.render import Projection, Representation
from sensorhub.entities.geo import GeoQuery
from sensorhub.entities.normalize import SCOPE_LEVEL, check_dataset_id, check_entity_id
from sensorhub.entities.ordering import Ordering, parse_ordering
from sensorhub.entities.qlang import (
    BoolOp,
    Linked,
    Node,
    QSyntaxError,
    expand_values,
    linked_depth,
    parse_q,
    rename,
)
from sensorhub.entities.service import (
    MAX_LIST_ITEMS,
    MAX_SELECTORS,
    EntityQuery,
    Selector,
    make_selector,
    split_list,
)
from sensorhub.errors import BadRequest, InvalidRequest, NotAcceptable, NotImplementedFeature
from sensorhub.kit.patterns import check_pattern

MAX_JOIN_LEVEL = 3
MAX_TYPE_EXPR = 2000
MAX_DNF = 10_000  # conjunctions while expanding a type expression or scopeQ (before the final bound)

# Parameters of the standard that sensorhub does not implement: 501 NotImplemented naming them. ``csf``
# is declared (and checked, see check_csf) where the standard defines it for a query; elsewhere it is
# refused unread.
NO_CONTEXT_SOURCES = "sensorhub has no context source registrations (no distributed operations)"
REFUSED_PARAMS: dict[str, str] = {
    "csf": NO_CONTEXT_SOURCES,
    "entityMap": "entity maps (snapshots of a distributed query) are not offered",
    "doNotCompact": "every answer is compacted against the request's context",
}
REFUSED_EXTRA: dict[str, Any] = {"x-refused-parameters": REFUSED_PARAMS}
# Query body members of the standard that sensorhub does not implement.
REFUSED_MEMBERS: dict[str, str] = {
    "temporalQ": "temporal queries go to /ngsi-ld/v1/temporalEntityOperations/query",
}
QUERY_MEMBERS = frozenset(
    {
        "type", "entities", "attrs", "pick", "omit", "q", "scopeQ", "lang", "@context", "id", "geoQ",
        "join", "joinLevel", "containedBy", "geometryProperty", "ordering", "datasetId", "csf",
        "expandValues",
    }
)  # fmt: skip
ORDERING_MEMBERS = frozenset({"orderBy", "collation", "geometry", "coordinates"})  # V1.9 OrderingParams
# How the ordering parameters are named in a query string and in a Query body's ``ordering``.
ORDER_NAMES = ("orderBy", "collation", "orderGeometry", "orderFrom")
BODY_ORDER_NAMES = ("ordering.orderBy", "ordering.collation", "ordering.geometry", "ordering.coordinates")
# Entity members that are not attributes: ``attrs`` cannot name them (pick/omit can).
NOT_ATTRIBUTES = frozenset({"id", "type", "scope", "@id", "@type", "@context"})
ANY_TYPE = "*"  # type=*: every entity type (ETSI GS CIM 009 §4.17)
SELECTOR_MEMBERS = frozenset({"type", "id", "idPattern"})
FORMS = {
    "keyValues": "keyValues",
    "simplified": "keyValues",
    "concise": "concise",
    "normalized": "normalized",
}

_LANG = re.compile(r"^(\*|[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*)$")
_SCOPE = re.compile(rf"^(/#|/(?:{SCOPE_LEVEL}|\+)(?:/(?:{SCOPE_LEVEL}|\+))*(?:/#)?)$")
_TYPE_TOKEN = re.compile(r"\s*([(),;|]|[^(),;|\s]+)")


def wants_ld(accept: str | None) -> bool:
    """Content negotiation: ``True`` for ``application/ld+json``, ``False`` for ``application/json``
    (or anything JSON-compatible such as ``*/*``); 406 otherwise."""
    if not accept or not accept.strip():
        return False
    for media in accepted_media(accept):
        if media == "application/ld+json":
            return True
        if media in ("application/json", "*/*", "application/*", "application/geo+json"):
            return False  # GeoJSON: see compat/ngsi_ld/geo.py (wants_geojson)
    raise NotAcceptable("this endpoint returns application/json or application/ld+json")


# --- the parameter model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderingParams:
    """Entity ordering (V1.9 §4.23) as a request asks for it: ``orderBy``, ``collation``, ``orderGeometry``
    and ``orderFrom`` in a query string, or a Query body's ``ordering`` (``names``: how the request names
    them, for its errors)."""

    order_by: str | list[str] | None = None
    collation: str | None = None
    geometry: str | None = None
    coordinates: Any = None
    names: tuple[str, str, str, str] = ORDER_NAMES

    def parse(self, ctx: RequestContext) -> Ordering | None:
        """The service's ordering: attribute names mapped onto stored names through ``ctx``."""
        return parse_ordering(
            self.order_by,
            self.collation,
            self.geometry,
            self.coordinates,
            ctx.stored,
            self.names,
            shown=ctx.shown,
        )


@dataclass(frozen=True)
class QueryParams:
    """The entity-query parameters of a request (query string, or a ``Query`` body plus the query string)."""

    type: str | None = None
    id: str | None = None
    idPattern: str | None = None
    attrs: str | list[str] | None = None
    pick: str | list[str] | None = None
    omit: str | list[str] | None = None
    q: str | None = None
    scopeQ: str | None = None
    options: str | None = None
    format: str | None = None
    lang: str | None = None
    join: str | None = None
    joinLevel: int | None = None
    containedBy: str | None = None
    local: bool | None = None
    selectors: tuple[Selector, ...] | None = None  # from a Query body's ``entities``
    geo: GeoQuery | None = None  # georel/geometry/coordinates/geoproperty or a body's geoQ
    geometryProperty: str | None = None  # with Accept: application/geo+json
    ordering: OrderingParams = OrderingParams()  # orderBy, collation, … (or a body's ordering)
    datasetId: str | None = None  # multi-attributes: the instances to show (``@none``: the default one)
    csf: str | None = None  # a context source filter: checked, then refused (check_csf)
    expandValues: str | list[str] | None = None  # attributes whose string values q expands as IRIs
    extra: dict[str, Any] = field(default_factory=dict)

    def require_selective(self, what: str = "a query", *, takes_local: bool = True) -> None:
        """§5.7.2.4 (and 5.7.4.4 for temporal queries): a query over every entity must say so
        (``local=true`` or ``type=*``), not arrive by omission — else 400 BadRequestData. ``id`` and
        ``idPattern`` alone do not select enough, nor ``attrs`` or ``q`` naming only system attributes
        (``createdAt``, ``modifiedAt``, ``deletedAt``: every entity has them). A ``Query`` body (one with
        ``selectors``) is told what selects in its own members' names; ``takes_local``: whether the
        route reads ``local`` (the temporal ``Query`` body's route does not)."""
        attrs = names(self.attrs, "attrs") if self.attrs is not None else frozenset()
        selective = (
            self.type is not None
            or bool(self.selectors)
            or any(not _is_system(a) for a in attrs or ())
            or (self.q is not None and not _only_system(parse_q(self.q)))
            or self.scopeQ is not None
            or self.geo is not None
            or bool(self.local)
        )
        if not selective:
            needs = (
                "entities, attrs, q, scopeQ or geoQ"
                if self.selectors is not None
                else "type (type=* for every type), attrs, q, scopeQ or a geo-query (georel)"
            )
            every = ", or local=true to ask for every entity" if takes_local else ""
            raise BadRequest(
                f"{what} needs at least one of {needs}{every}; id or idPattern alone is not enough, nor "
                "attrs or q naming only system attributes (createdAt, modifiedAt, deletedAt)"
            )

    def query(self, ctx: RequestContext) -> EntityQuery:
        """The service's query: names mapped onto stored names through ``ctx``."""
        check_csf(self.csf)
        none = False
        if self.selectors is not None:
            kept = [k for k in (_in_context(s, ctx) for s in self.selectors) if k is not None]
            none = bool(self.selectors) and not kept
            sels = tuple(kept)
        else:
            tm = TypeMatch((), ())
            if self.type is not None and self.type.strip() == ANY_TYPE:
                if self.local is False:
                    raise BadRequest("type=* implies local=true: it cannot be combined with local=false")
            elif self.type is not None:
                tm = parse_types(self.type, ctx)
                none = tm.none
            sel = make_selector(tm.types, split_list(self.id, "id"), self.idPattern, type_sets=tm.sets)
            sels = (sel,) if (sel.typed or sel.ids or sel.id_pattern is not None) else ()
        q = parse_q(self.q, prefixes=ctx.prefixes) if self.q is not None else None
        if q is not None:
            _refuse_linked_q(q, self.join_spec())
            q = rename(q, ctx.stored)
        expand = names(self.expandValues, "expandValues")
        if expand is not None:
            if q is None:
                raise BadRequest("expandValues names attributes whose values q compares: it needs q")
            q = expand_values(q, frozenset(ctx.stored(a) for a in expand), ctx.stored)
        scopes = parse_scope_q(self.scopeQ) if self.scopeQ is not None else None
        attrs = attribute_names(self.attrs)
        geo = self.geo
        if geo is not None and geo.geoproperty != "location":
            geo = replace(geo, geoproperty=ctx.stored(geo.geoproperty))
        order = self.ordering.parse(ctx)
        return EntityQuery(
            selectors=sels,
            q=q,
            attrs=frozenset(ctx.stored(a) for a in attrs) if attrs is not None else None,
            none=none,
            geo=geo,
            scopes=scopes,
            order=order,
        )

    def representation(self, ctx: RequestContext) -> Representation:
        form, sys_attrs = parse_options(self.options, self.format)
        attrs, pick, omit = self.members(ctx)
        hops = max(_depth(pick), _depth(omit))
        if hops:
            join, level, _ = self.join_spec()
            if join is None:
                raise BadRequest("pick/omit with braces (rel{…}) project linked entities: they need join")
            if hops > level:
                raise BadRequest(f"pick/omit nest {hops} linked entities deep, more than joinLevel={level}")
        return Representation(
            form=form,
            sys_attrs=sys_attrs,
            lang=parse_lang(self.lang),
            pick=pick,
            omit=omit,
            attrs=attrs,
            datasets=parse_dataset_ids(self.datasetId),
        )

    def members(
        self, ctx: RequestContext
    ) -> tuple[frozenset[str] | None, Projection | None, Projection | None]:
        """``(attrs, pick, omit)``: ``attrs`` as stored names; ``pick`` and ``omit`` exclusive, and
        neither with ``attrs`` (the entity and the temporal routes alike)."""
        pick = projection(self.pick, "pick")
        omit = projection(self.omit, "omit")
        if pick is not None and omit is not None:
            raise BadRequest("pick and omit cannot be used together")
        attrs = attribute_names(self.attrs)
        if attrs is not None and (pick is not None or omit is not None):
            raise BadRequest(f"attrs cannot be used together with {'pick' if pick is not None else 'omit'}")
        return (frozenset(ctx.stored(a) for a in attrs) if attrs is not None else None), pick, omit

    def join_spec(self) -> tuple[str | None, int, frozenset[str]]:
        """``(join, joinLevel, containedBy)``: ``join`` is ``inline``, ``flat`` or ``None``."""
        join = self.join
        if join is not None and join not in ("inline", "flat", "@none"):
            raise BadRequest("join must be inline, flat or @none")
        if join == "@none":
            join = None
        level = 1 if self.joinLevel is None else self.joinLevel
        if self.joinLevel is not None and join is None:
            raise BadRequest("joinLevel needs join=inline or join=flat")
        if not 1 <= level <= MAX_JOIN_LEVEL:
            raise BadRequest(f"joinLevel must be between 1 and {MAX_JOIN_LEVEL}")
        contained = frozenset(split_list(self.containedBy, "containedBy"))
        for i in contained:
            check_entity_id(i, "containedBy")
        if contained and join is None:
            raise BadRequest("containedBy needs join=inline or join=flat")
        return join, level, contained


def check_csf(value: str | None, what: str = "csf") -> None:
    """A context source filter (``csf``, the ``q`` grammar over registration information, ETSI GS CIM 009
    §4.9): a malformed one is a 400 BadRequestData naming it (§5.7.2.4: "the query, geoquery or context
    source filter are not syntactically valid"), a well-formed one a 501 NotImplemented — sensorhub has no
    context source registrations to filter, and a local answer would not be what the filter asked for."""
    if value is None:
        return
    try:
        parse_q(value, what)
    except BadRequest as e:  # InvalidRequest for q itself; BadRequestData for csf, as §5.7.2.4 says
        raise BadRequest(e.message) from None
    raise NotImplementedFeature(f"{what} is not implemented by this server: {NO_CONTEXT_SOURCES}")


def parse_dataset_ids(value: str | None) -> frozenset[str | None] | None:
    """``datasetId``: a comma-separated list of datasetIds (URIs); ``@none`` names the default instance
    (the one without datasetId). None: every instance."""
    if value is None:
        return None
    return frozenset(None if d == "@none" else check_dataset_id(d) for d in split_list(value, "datasetId"))


_GEOMETRY_PROPERTY = "With Accept: application/geo+json: the GeoProperty of each Feature (default location)"
# Query-string parameters several routes declare alike (one description each).
Types = Annotated[str | None, Query(description="Entity types: `A,B` or `A|B` (either), `A;B` (both), `(…)`")]
Ids = Annotated[str | None, Query(description="Entity ids, comma-separated")]
ScopeQ = Annotated[str | None, Query(description="Scope query, e.g. /farm/#")]
Pick = Annotated[str | None, Query(description="Members to keep (id, type, attribute names)")]
Omit = Annotated[str | None, Query(description="Members to leave out")]
Options = Annotated[str | None, Query(description="keyValues | concise | normalized, and sysAttrs")]
Format = Annotated[str | None, Query(description="normalized | concise | keyValues | simplified")]
Lang = Annotated[str | None, Query(description="Language of LanguageProperties (`*` for all)")]
Join = Annotated[str | None, Query(description="inline | flat | @none: linked entities")]
JoinLevel = Annotated[int | None, Query(description=f"Depth of join, 1-{MAX_JOIN_LEVEL}")]
ContainedBy = Annotated[str | None, Query(description="Entity ids already traversed (join)")]
Local = Annotated[bool | None, Query(description="Accepted: sensorhub has only local entities")]
GeometryProperty = Annotated[str | None, Query(description=_GEOMETRY_PROPERTY)]
ExpandValues = Annotated[
    str | None,
    Query(
        description="Attributes (comma-separated) whose string values in q are expanded as IRIs against "
        "the request's @context before comparing, e.g. expandValues=category with q=category==commercial"
    ),
]
Csf = Annotated[
    str | None,
    # Read (a malformed one is 400; sensorhub has no context source registrations, so a well-formed one
    # is 501 NotImplemented) but not offered in the OpenAPI document: it names no feature a client can use.
    Query(include_in_schema=False),
]
DatasetId = Annotated[
    str | None,
    Query(
        description="Multi-attributes: the instances to return, by datasetId (comma-separated; `@none`: the default instance)"
    ),
]


@dataclass(frozen=True)
class Paging:
    """One page of a query route. As a dependency (``Depends(Paging)``) its query-string parameters, without
    descriptions; a dependency's parameters are listed after the route's own (and checked before them)."""

    limit: int | None = Query(None)
    offset: int = Query(0, ge=0)
    count: bool = Query(False)
    cursor: str | None = Query(None)


def representation_params(
    options: Options = None,
    format: Format = None,
    lang: Lang = None,
    join: Join = None,
    joinLevel: JoinLevel = None,
    containedBy: ContainedBy = None,
    local: Local = None,
    geometryProperty: GeometryProperty = None,
) -> QueryParams:
    """How the entities are to be rendered (and joined): the query-string part of
    ``POST /entityOperations/query`` (the rest is in the body), and a part of :func:`query_params`."""
    return QueryParams(
        options=options,
        format=format,
        lang=lang,
        join=join,
        joinLevel=joinLevel,
        containedBy=containedBy,
        local=local,
        geometryProperty=geometryProperty,
    )


_ORDER_BY = "Entity ordering (V1.9 §4.23): `name`, `name;desc`, `type,name.sub;desc`, `address[city]`, `location;dist-asc`"


def ordering_params(
    orderBy: str | None = Query(None, description=_ORDER_BY),
    collation: str | None = Query(
        None, description="`und`: the Unicode root collation (default: code points)"
    ),
    orderGeometry: str | None = Query(
        None, description="With dist-asc/dist-desc: Point (default), LineString, …"
    ),
    orderFrom: str | None = Query(None, description="With dist-asc/dist-desc: coordinates, e.g. [8,40]"),
) -> OrderingParams:
    """The entity-ordering parameters of a query string (checked with the request's context later)."""
    return OrderingParams(orderBy, collation, orderGeometry, orderFrom)


def query_params(
    type: Types = None,
    id: Ids = None,
    idPattern: str | None = Query(None, description="Regular expression (RE2) on the entity id"),
    attrs: str | None = Query(None, description="Attributes to return (entities need one of them)"),
    pick: Pick = None,
    omit: Omit = None,
    q: str | None = Query(None, description='Query language, e.g. temperature>20;crop=="wheat"'),
    scopeQ: ScopeQ = None,
    datasetId: DatasetId = None,
    expandValues: ExpandValues = None,
    csf: Csf = None,
    shown: QueryParams = Depends(representation_params),
    geo: GeoQuery | None = Depends(geo_params),
    ordering: OrderingParams = Depends(ordering_params),
) -> QueryParams:
    """A dependency's parameters follow the function's own in the OpenAPI document: ``shown`` (then
    ``geo``) lists its parameters after ``scopeQ``, as the standard orders them."""
    return replace(
        shown,
        geo=geo,
        ordering=ordering,
        type=type,
        id=id,
        idPattern=idPattern,
        attrs=attrs,
        pick=pick,
        omit=omit,
        q=q,
        scopeQ=scopeQ,
        datasetId=datasetId,
        expandValues=expandValues,
        csf=csf,
    )


def retrieve_params(
    attrs: str | None = Query(None, description="Attributes to return"),
    pick: Pick = None,
    omit: Omit = None,
    options: Options = None,
    format: Format = None,
    lang: Lang = None,
    join: Join = None,
    joinLevel: JoinLevel = None,
    containedBy: ContainedBy = None,
    type: str | None = Query(None, description="The entity's type (404 when it has another)"),
    local: Local = None,
    geometryProperty: GeometryProperty = None,
    datasetId: DatasetId = None,
) -> QueryParams:
    """``type`` stands between ``containedBy`` and ``local`` in the document, so these are listed here
    rather than taken from :func:`representation_params` (whose parameters would follow ``type``)."""
    shown = representation_params(
        options, format, lang, join, joinLevel, containedBy, local, geometryProperty
    )
    return replace(shown, type=type, attrs=attrs, pick=pick, omit=omit, datasetId=datasetId)


def with_body(base: QueryParams, body: Any) -> QueryParams:
    """``base`` (the query string) with an NGSI-LD ``Query`` body:
    ``{type: "Query", entities: [{type, id?, idPattern?}], attrs?, pick?, omit?, q?, scopeQ?, lang?}``."""
    _check_query_members(body)
    selectors = _selectors(body.get("entities"))
    for k in ("q", "scopeQ", "lang", "csf"):
        if body.get(k) is not None and not isinstance(body[k], str):
            raise BadRequest(f"'{k}' must be a string")
    for k in ("attrs", "pick", "omit", "expandValues"):
        v = body.get(k)
        if v is not None and not isinstance(v, (list, str)):
            raise BadRequest(f"'{k}' must be a list of names")
        if v == []:
            raise BadRequest(f"'{k}' must not be an empty list")
    join, level = _body_join(body, base)
    return QueryParams(
        attrs=body.get("attrs"),
        pick=body.get("pick"),
        omit=body.get("omit"),
        q=body.get("q"),
        scopeQ=body.get("scopeQ"),
        lang=body.get("lang") if body.get("lang") is not None else base.lang,
        options=base.options,
        format=base.format,
        join=join,
        joinLevel=level,
        containedBy=_body_member(body, "containedBy", base.containedBy),
        local=base.local,
        selectors=selectors,
        geo=geo_from_body(body.get("geoQ")),
        geometryProperty=_body_member(body, "geometryProperty", base.geometryProperty),
        datasetId=_body_dataset_ids(body.get("datasetId")),
        csf=body.get("csf"),
        expandValues=body.get("expandValues"),
        ordering=_body_ordering(body.get("ordering")),
    )


def _body_ordering(ordering: Any) -> OrderingParams:
    """A Query body's ``ordering`` (V1.9 OrderingParams: orderBy, collation, geometry, coordinates)."""
    if ordering is None:
        return OrderingParams()
    if not isinstance(ordering, dict):
        raise BadRequest("'ordering' must be an object with orderBy, collation, geometry, coordinates")
    refuse_unknown_members(ordering, ORDERING_MEMBERS, "ordering")
    if ordering.get("orderBy") is None:
        raise BadRequest("'ordering' needs orderBy, a list such as [\"name;desc\"]")
    coords = ordering.get("coordinates")
    if coords is not None and not isinstance(coords, list):
        raise BadRequest("ordering.coordinates must be an array of coordinates, e.g. [8, 40]")
    return OrderingParams(
        ordering["orderBy"], ordering.get("collation"), ordering.get("geometry"), coords, BODY_ORDER_NAMES
    )


def _body_dataset_ids(v: Any) -> str | None:
    """A Query body's ``datasetId``: a datasetId or an array of them (``@none``: the default instance)."""
    if v is None:
        return None
    items = v if isinstance(v, list) else [v]
    if not items or not all(isinstance(i, str) and "," not in i for i in items):
        raise BadRequest("'datasetId' must be a datasetId (a URI, or @none) or a non-empty array of them")
    return ",".join(items)


def _body_member(body: dict[str, Any], key: str, default: str | None) -> str | None:
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, list) and key == "containedBy" and all(isinstance(i, str) for i in v) and v:
        return ",".join(v)
    if not isinstance(v, str):
        raise BadRequest(f"'{key}' must be a string")
    return v


def _body_join(body: dict[str, Any], base: QueryParams) -> tuple[str | None, int | None]:
    """``join``/``joinLevel`` of a Query body (V1.8.1 Table 5.2.23-1), else of the query string."""
    join = _body_member(body, "join", base.join)
    level = body.get("joinLevel")
    if level is None:
        return join, base.joinLevel
    if isinstance(level, bool) or not isinstance(level, int) or level < 1:
        raise BadRequest("'joinLevel' must be a positive integer")
    return join, level


def _check_query_members(body: Any) -> None:
    if not isinstance(body, dict):
        raise BadRequest("the body must be an NGSI-LD Query object")
    if body.get("type") != "Query":
        raise BadRequest('the body must have "type": "Query"')
    for k, why in REFUSED_MEMBERS.items():
        if k in body:
            if k == "temporalQ":
                raise BadRequest(f"'{k}' is not a member of an entity Query: {why}")
            raise NotImplementedFeature(f"the Query member '{k}' is not implemented by this server: {why}")
    unknown = sorted(set(body) - QUERY_MEMBERS)
    if unknown:
        raise BadRequest(
            f"unknown Query member {unknown[0]!r}; a Query may hold {', '.join(sorted(QUERY_MEMBERS))}"
        )


def _selectors(ents: Any) -> tuple[Selector, ...]:
    if ents is None:
        return ()
    if not isinstance(ents, list) or not ents:
        raise BadRequest("'entities' must be a non-empty list of entity selectors")
    if len(ents) > MAX_SELECTORS:
        raise BadRequest(f"'entities' may hold at most {MAX_SELECTORS} entity selectors")
    return tuple(_selector(i, sel) for i, sel in enumerate(ents))


def _selector(i: int, sel: Any) -> Selector:
    if not isinstance(sel, dict):
        raise BadRequest(f"entities[{i}] must be an object with type, id or idPattern")
    extra = sorted(set(sel) - SELECTOR_MEMBERS)
    if extra:
        raise BadRequest(f"unknown member entities[{i}].{extra[0]}; a selector may hold type, id, idPattern")
    t, eid, pat = sel.get("type"), sel.get("id"), sel.get("idPattern")
    for name, v in (("type", t), ("idPattern", pat)):
        if v is not None and not isinstance(v, str):
            raise BadRequest(f"entities[{i}].{name} must be a string")
    if not t:
        raise BadRequest(f"entities[{i}] needs a type (an EntitySelector's type is mandatory)")
    ids = eid if isinstance(eid, list) else [] if eid is None else [eid]
    if (
        (isinstance(eid, list) and not eid)
        or len(ids) > MAX_LIST_ITEMS
        or not all(isinstance(v, str) for v in ids)
    ):
        raise BadRequest(f"entities[{i}].id must be a URI or a non-empty list of URIs")
    if pat is not None:
        check_pattern(pat, f"entities[{i}].idPattern")
    checked = tuple(dict.fromkeys(check_entity_id(v, f"entities[{i}].id") for v in ids))
    # The type expression is kept as written and parsed with the request's context (see _in_context);
    # id takes precedence over idPattern (Table 5.2.33-1).
    return Selector((t,), checked, None if checked else pat)


def _in_context(sel: Selector, ctx: RequestContext) -> Selector | None:
    """The selector with its type expression read through ``ctx``; ``None`` when it can match nothing."""
    tm = TypeMatch((), ())
    if sel.types:
        tm = parse_types(sel.types[0], ctx)
        if tm.none:
            return None
    return make_selector(tm.types, sel.ids, sel.id_pattern, type_sets=tm.sets)


# --- small grammars ------------------------------------------------------------------------------------


def attribute_names(value: str | list[str] | None) -> frozenset[str] | None:
    """``attrs``: attribute names (``id``, ``type`` and other entity members are not attributes)."""
    out = names(value, "attrs")
    bad = sorted((out or frozenset()) & NOT_ATTRIBUTES)
    if bad:
        raise BadRequest(f"attrs lists attribute names; '{bad[0]}' is not an attribute (use pick for it)")
    return out


def _depth(p: Projection | None) -> int:
    """How many linked entities deep a ``pick``/``omit`` projection reaches (``a{b{c}}``: 2)."""
    return max((1 + _depth(sub) for sub in (p or {}).values() if sub is not None), default=0)


def _refuse_linked_q(q: Node, join: tuple[str | None, int, frozenset[str]]) -> None:
    """``q`` on linked entities (``rel{attr}==…``, ``rel{sub{attr}}``): BadRequestData without ``join`` or
    deeper than ``joinLevel`` (§5.7.2.4: "the use of Linked Entity retrieval is not specified", "the
    Linked Entity attribute query depth exceeds the Linked Entity retrieval depth")."""
    depth = linked_depth(q)
    if not depth:
        return
    mode, level, _ = join
    if mode is None:
        raise BadRequest("q on linked entities (rel{attr}) needs join=inline or join=flat")
    if depth > level:
        raise BadRequest(f"q reaches {depth} linked entities deep, more than joinLevel={level}")


SYSTEM_ATTRIBUTES = frozenset({"createdAt", "modifiedAt", "deletedAt"})
_CORE_IRI = "https://uri.etsi.org/ngsi-ld/"


def _is_system(name: str) -> bool:
    return name in SYSTEM_ATTRIBUTES or (
        name.startswith(_CORE_IRI) and name[len(_CORE_IRI) :] in SYSTEM_ATTRIBUTES
    )


def _only_system(node: Node) -> bool:
    if isinstance(node, BoolOp):
        return all(_only_system(n) for n in node.items)
    if isinstance(node, Linked):
        return False  # a Relationship of the entity is not a system attribute
    return _is_system(node.path[0])


def names(value: str | list[str] | None, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    items = split_list(value, what) if isinstance(value, str) else tuple(value)
    if len(items) > MAX_LIST_ITEMS:
        raise BadRequest(f"{what} may list at most {MAX_LIST_ITEMS} values")
    if not items or not all(isinstance(a, str) and a for a in items):
        raise BadRequest(f"{what} must list attribute names")
    return frozenset(items)


_PROJ_TOKEN = re.compile(r"\s*([{},|]|[^{},|\s]+)")
_PROJ_NAME = re.compile(r"^[A-Za-z0-9_:/#@.\-]+$")
MAX_PROJECTION = 2000


class _ProjectionParser:
    """``items := item (("," | "|") item)*``, ``item := name ["{" items "}"]``."""

    def __init__(self, text: str, what: str) -> None:
        self.text, self.what = text, what
        self.toks = [m.group(1) for m in _PROJ_TOKEN.finditer(text)]
        self.pos = 0

    def fail(self, why: str) -> BadRequest:
        return BadRequest(f"{self.what}: {why} in '{self.text[:100]}'")

    def at(self, tok: str) -> bool:
        return self.pos < len(self.toks) and self.toks[self.pos] == tok

    def parse(self) -> Projection:
        out = self.items(0)
        if self.pos != len(self.toks):
            raise self.fail(f"unexpected '{self.toks[self.pos]}'")
        return out

    def items(self, depth: int) -> Projection:
        out: Projection = {}
        while True:
            if self.pos >= len(self.toks) or self.toks[self.pos] in "{},|":
                raise self.fail(f"expected a name at item {len(out) + 1}")
            name = self.toks[self.pos]
            if not _PROJ_NAME.match(name):
                raise self.fail(f"'{name[:50]}' is not a member name")
            self.pos += 1
            out[name] = self.nested(depth) if self.at("{") else None
            if len(out) > MAX_LIST_ITEMS:
                raise self.fail(f"at most {MAX_LIST_ITEMS} names")
            if not (self.at(",") or self.at("|")):
                return out
            self.pos += 1

    def nested(self, depth: int) -> Projection:
        if depth >= MAX_JOIN_LEVEL:
            raise self.fail(f"braces nest at most {MAX_JOIN_LEVEL} deep")
        self.pos += 1
        sub = self.items(depth + 1)
        if not self.at("}"):
            raise self.fail("missing '}'")
        self.pos += 1
        return sub


def projection(value: str | list[str] | None, what: str) -> Projection | None:
    """``pick``/``omit``: ``name,name{name,name},…`` (braces project the entity a Relationship links to,
    for ``join``); a Query body may give a list of such items."""
    if value is None:
        return None
    text = value if isinstance(value, str) else ",".join(v if isinstance(v, str) else "\x00" for v in value)
    if len(text) > MAX_PROJECTION or "\x00" in text:
        raise BadRequest(f"{what} must list member names (at most {MAX_PROJECTION} characters)")
    return _ProjectionParser(text, what).parse()


def parse_options(options: str | None, fmt: str | None) -> tuple[str, bool]:
    """``(form, sys_attrs)`` from ``options=keyValues|concise|normalized,sysAttrs`` and ``format=``."""
    opts = {o.strip() for o in (options or "").split(",") if o.strip()}
    unknown = opts - {*FORMS, "sysAttrs"}
    if unknown:
        raise InvalidRequest(
            f"unknown option(s) {', '.join(sorted(unknown))}: use keyValues, concise, normalized or sysAttrs"
        )
    forms = {FORMS[o] for o in opts if o in FORMS}
    if len(forms) > 1:
        raise BadRequest("options may name only one of keyValues, concise and normalized")
    form = forms.pop() if forms else "normalized"
    if fmt is not None:
        if fmt not in FORMS:
            raise InvalidRequest("format must be normalized, concise, keyValues or simplified")
        form = FORMS[fmt]
    return form, "sysAttrs" in opts


_QVALUE = re.compile(r"^q=(0(\.\d{0,3})?|1(\.0{0,3})?)$")


def parse_lang(value: str | None) -> tuple[str, ...] | None:
    """``lang``: a language tag, ``*``, or a priority list as in ``Accept-Language``
    (``fr-CH,fr;q=0.9,en;q=0.8,*;q=0.5``): the tags by falling quality (``q=0`` ones dropped)."""
    if value is None:
        return None
    ranked: list[tuple[float, int, str]] = []
    for i, item in enumerate(value.split(",")):
        tag, _, q = (p.strip() for p in item.partition(";"))
        if not _LANG.match(tag) or (q and not _QVALUE.match(q)):
            raise BadRequest(
                "lang must be a language tag such as en or de-CH, *, or a list such as fr-CH,fr;q=0.9,*;q=0.5"
            )
        weight = float(q[2:]) if q else 1.0
        if weight > 0:
            ranked.append((-weight, i, tag))
    if not ranked:
        raise BadRequest("lang accepts no language (every entry has q=0)")
    return tuple(tag for _w, _i, tag in sorted(ranked))


def parse_scope_q(text: str) -> tuple[frozenset[str], ...]:
    """A scope query as the scope terms an entity must have: an OR of ANDs (see :func:`check_scope_q`)."""
    check_scope_q(text)
    m = _dnf(text, ("scopeQ", "scopeQ", "scopes"), lambda tok: tok)
    return tuple(frozenset({t}) for t in m.types) + m.sets


def check_scope_q(text: str) -> None:
    """A scope query: scopes (``/a/b``, ``/a/+``, ``/a/#``) joined by ``;`` (and), ``,`` or ``|`` (or),
    with parentheses. A malformed one is a 400 ``InvalidRequest`` naming where."""
    if len(text) > MAX_TYPE_EXPR:
        raise BadRequest(f"scopeQ is longer than {MAX_TYPE_EXPR} characters")
    depth = 0
    for m in re.finditer(r"[();,|]|[^();,|]+", text):
        tok = m.group(0)
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
            if depth < 0:
                raise QSyntaxError(f"invalid scopeQ at position {m.start()}: unbalanced ')'")
        elif tok not in ";,|" and not _SCOPE.match(tok.strip()):
            raise QSyntaxError(
                f"invalid scopeQ at position {m.start()} (near '{tok[:20]}'): a scope is /name/name…, "
                "with + for one level and a final /# for any below"
            )
    if depth:
        raise QSyntaxError("invalid scopeQ: missing ')'")
    if not text.strip() or re.search(r"(^|[(;,|])\s*([);,|]|$)", text):
        raise QSyntaxError("invalid scopeQ: an empty scope")


class _TypeParser:
    """``or := and (("," | "|") and)*``, ``and := atom (";" atom)*``, ``atom := "(" or ")" | name``, each
    node as its disjunctive normal form (a set of conjunctions of names, each as ``name`` gives it: the
    stored type names of a type expression, the scopes of a scopeQ)."""

    def __init__(self, text: str, what: str, name: Callable[[str], str]) -> None:
        self.text = text
        self.what = what
        self.name = name
        self.toks = [m.group(1) for m in _TYPE_TOKEN.finditer(text)]
        self.pos = 0

    def fail(self, what: str) -> QSyntaxError:
        return QSyntaxError(f"invalid {self.what} '{self.text[:100]}': {what}")

    def at(self, *toks: str) -> bool:
        return self.pos < len(self.toks) and self.toks[self.pos] in toks

    def parse(self) -> set[frozenset[str]]:
        dnf = self.or_expr(0)
        if self.pos != len(self.toks):
            raise self.fail(f"unexpected '{self.toks[self.pos]}'")
        return dnf

    def or_expr(self, depth: int) -> set[frozenset[str]]:
        out = self.and_expr(depth)
        while self.at(",", "|"):
            self.pos += 1
            out |= self.and_expr(depth)
        return out

    def and_expr(self, depth: int) -> set[frozenset[str]]:
        out = self.atom(depth)
        while self.at(";"):
            self.pos += 1
            right = self.atom(depth)
            if len(out) * len(right) > MAX_DNF:
                raise self.fail("too many alternatives")
            out = {a | b for a in out for b in right}
        return out

    def atom(self, depth: int) -> set[frozenset[str]]:
        if self.pos >= len(self.toks):
            raise self.fail("expected a type name")
        tok = self.toks[self.pos]
        self.pos += 1
        if tok == "(":
            if depth > 20:
                raise self.fail("too deeply nested")
            out = self.or_expr(depth + 1)
            if not self.at(")"):
                raise self.fail("missing ')'")
            self.pos += 1
            return out
        if tok in "),;|":
            raise self.fail(f"unexpected '{tok}'")
        return {frozenset({self.name(tok)})}


@dataclass(frozen=True)
class TypeMatch:
    """A type expression as stored types: an entity matches when it has one of ``types`` or every type
    of one of ``sets``."""

    types: tuple[str, ...]
    sets: tuple[frozenset[str], ...]

    @property
    def none(self) -> bool:
        return not self.types and not self.sets

    def matches(self, entity_types: list[str] | tuple[str, ...]) -> bool:
        have = set(entity_types)
        return bool(have & set(self.types)) or any(c <= have for c in self.sets)


def parse_types(text: str, ctx: RequestContext) -> TypeMatch:
    """A type expression (``A,B``/``A|B`` either, ``A;B`` both, parentheses; ETSI GS CIM 009 V1.8
    §4.17) as the stored types and type sets that match."""
    if len(text) > MAX_TYPE_EXPR:
        raise BadRequest(f"type is longer than {MAX_TYPE_EXPR} characters")
    return _dnf(text, ("type expression", "type", "types"), ctx.stored)


def _dnf(text: str, what: tuple[str, str, str], name: Callable[[str], str]) -> TypeMatch:
    """The names and conjunctions of names an expression of the type grammar matches; ``what``: the
    expression, the parameter and its names, for messages."""
    dnf = _TypeParser(text, what[0], name).parse()
    if len(dnf) > MAX_LIST_ITEMS or sum(len(c) for c in dnf) > MAX_LIST_ITEMS:
        raise BadRequest(f"{what[1]} may name at most {MAX_LIST_ITEMS} {what[2]}")
    singles = tuple(sorted({next(iter(c)) for c in dnf if len(c) == 1}))
    # A conjunction that contains a single alternative adds nothing (A | A;B is A).
    sets = tuple(sorted((c for c in dnf if len(c) > 1 and not c & set(singles)), key=lambda c: sorted(c)))
    sets = tuple(c for c in sets if not any(o < c for o in sets))
    return TypeMatch(singles, sets)
