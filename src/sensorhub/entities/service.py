"""Entities: NGSI-LD queries with keyset paging, session-authorised writes, bulk import, Akenza assets.

Reads take an :class:`~sensorhub.authz.access.Access` (what the token may read) and never look at
another tenant's rows: every SELECT, count and cursor goes through :func:`visible_entities_query`'s
filter. Writes take the logged-in user and are allowed by :func:`writable` (owners/admins org-wide,
members in their granted workspaces, viewers never). Services never commit.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import Select, and_, exists, false, func, literal, or_, select, true, tuple_, union_all
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from sensorhub.accounts import service as accounts
from sensorhub.accounts.models import Organisation, Role, User, Workspace
from sensorhub.audit.service import record
from sensorhub.authz.access import Access, AccessRule
from sensorhub.authz.entities import visible_entity
from sensorhub.authz.scope import visible_entities
from sensorhub.authz.subjects import user_reach
from sensorhub.entities.anchors import ANCHORS
from sensorhub.entities.geo import GeoQuery, entity_geometry
from sensorhub.entities.models import Entity, entity_scopes, entity_types
from sensorhub.entities.normalize import (
    MAX_SCOPES,
    EntityData,
    check_entity_id,
    check_type,
    normalize_entity,
    normalize_fragment,
)
from sensorhub.entities.ordering import Ordering, Sorter, from_json, raw_value, to_json
from sensorhub.entities.qlang import DatasetInstances, JsonAttrs, Link, Linked, Node, comparisons, compile_q
from sensorhub.entities.windows import attr_visible, is_bounded, visible_attrs, visible_instance, visible_sql
from sensorhub.errors import BadRequest, Conflict, Forbidden, NotFound
from sensorhub.kit.paging import (
    INVALID_CURSOR,
    MAX_CURSOR_LENGTH,
    OffsetBounds,
    decode_cursor,
    encode_cursor,
)
from sensorhub.kit.patterns import check_pattern

DEFAULT_LIMIT = 100
MAX_LIMIT = 500  # per page, for every token (Nekazari: "capped at 500")
MAX_LIST_ITEMS = 100  # ids or types in one query
MAX_SELECTORS = 100  # entity selectors in one Query body
MAX_OFFSET = 1_000_000_000  # far beyond any real listing; keeps every offset a small int64
MAX_ASSET_PAGE = 1_000_000  # Spring page number (times a page size of at most 500: below MAX_OFFSET)
# PostgreSQL evaluates users' (RE2-validated, so back-reference free) patterns itself; a statement that
# uses one may run this long, then it is cancelled and answered 400 (the pattern is the cause).
REGEX_STATEMENT_TIMEOUT_MS = 5_000


# --- reads -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    """One NGSI-LD EntitySelector: all given parts must match. The type part matches an entity that has
    one of ``types`` or every type of one of ``type_sets`` (``A;B``: both)."""

    types: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    id_pattern: str | None = None
    type_sets: tuple[frozenset[str], ...] = ()

    @property
    def typed(self) -> bool:
        return bool(self.types or self.type_sets)


@dataclass(frozen=True)
class EntityQuery:
    selectors: tuple[Selector, ...] = ()  # OR of selectors; empty = any entity
    q: Node | None = None
    attrs: frozenset[str] | None = None  # projection; entities need at least one of them
    workspace_ids: frozenset[str] | None = None  # assets: restrict to these workspaces
    none: bool = False  # the query can match no entity (e.g. a type expression no entity satisfies)
    geo: GeoQuery | None = None  # georel/geometry/coordinates/geoproperty (entities/geo.py)
    # scopeQ as an OR of ANDs of scope terms (``/a/b``, ``/a/+``, ``/a/#``, ``/#``); None: any entity
    scopes: tuple[frozenset[str], ...] | None = None
    order: Ordering | None = None  # orderBy (entities/ordering.py); None: by (id, organisation)


@dataclass(frozen=True, slots=True)
class EntityRow:
    """One listed entity, its attributes already cut to what the reader may see."""

    entity_id: str
    org_id: str
    workspace_id: str
    type: str
    attrs: dict[str, Any]
    location: dict[str, Any] | None
    created_at: datetime | None = None
    modified_at: datetime | None = None
    extra_types: list[str] | None = None
    scopes: list[str] | None = None
    datasets: dict[str, list[dict[str, Any]]] | None = None  # other instances of multi-attributes
    attr_times: dict[str, dict[str, list[int]]] | None = None  # attributes' createdAt/modifiedAt (sysAttrs)

    @property
    def types(self) -> list[str]:
        return [self.type, *(self.extra_types or [])]


@dataclass
class Page:
    rows: list[Any]  # rows with the fields of EntityRow (created_at/modified_at only with sysAttrs)
    count: int | None = None
    next_cursor: str | None = None
    next_offset: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def split_list(value: str | None, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    if not items:
        raise BadRequest(f"{what} is empty")
    if len(items) > MAX_LIST_ITEMS:
        raise BadRequest(f"{what} may list at most {MAX_LIST_ITEMS} values")
    return items


def make_selector(
    types: Sequence[str] = (),
    ids: Sequence[str] = (),
    id_pattern: str | None = None,
    *,
    pattern_param: str = "idPattern",
    type_sets: Sequence[frozenset[str]] = (),
) -> Selector:
    for t in (*types, *(t for c in type_sets for t in c)):
        check_type(t)
    for i in ids:
        check_entity_id(i, "id")
    return Selector(
        tuple(types),
        tuple(ids),
        check_pattern(id_pattern, pattern_param) if id_pattern is not None else None,
        tuple(type_sets),
    )


OFFSETS = OffsetBounds(MAX_OFFSET)


def entity_attrs(access: Access, e: Entity) -> dict[str, Any]:
    """The attributes of ``e`` that ``access`` may see: observations (``observedAt``) outside every
    window the access allows for ``e`` are left out (see :mod:`sensorhub.entities.windows`)."""
    return _readable(access, e.org_id, e.workspace_id, e.entity_id, e.attrs)


def entity_datasets(access: Access, e: Entity) -> dict[str, list[dict[str, Any]]] | None:
    """The other instances of ``e``'s multi-attributes that ``access`` may see (as :func:`entity_attrs`)."""
    return _readable_datasets(access, e.org_id, e.workspace_id, e.entity_id, e.datasets)


def _readable(
    access: Access, org_id: str, workspace_id: str, entity_id: str, attrs: dict[str, Any] | None
) -> dict[str, Any]:
    if not is_bounded(access):
        return attrs or {}
    return visible_attrs(attrs or {}, access.windows_for(org_id, workspace_id, entity_id))


def _readable_datasets(
    access: Access,
    org_id: str,
    workspace_id: str,
    entity_id: str,
    datasets: dict[str, list[dict[str, Any]]] | None,
) -> dict[str, list[dict[str, Any]]] | None:
    if not datasets or not is_bounded(access):
        return datasets
    windows = access.windows_for(org_id, workspace_id, entity_id)
    kept = {n: [i for i in insts if attr_visible(i, windows)] for n, insts in datasets.items()}
    return {n: insts for n, insts in kept.items() if insts} or None


def _dialect(s: Session) -> str:
    return s.get_bind().dialect.name


def _extra_types_in_use(s: Session, selectors: Sequence[Selector]) -> frozenset[str]:
    """The queried types that some entity has beyond its first type (``entity_types``). For the others
    the ``type`` column alone answers, through the (organisation, type, id) index."""
    wanted = sorted({t for sel in selectors for t in (*sel.types, *(t for c in sel.type_sets for t in c))})
    if not wanted:
        return frozenset()
    found: set[str] = set()
    for i in range(0, len(wanted), 50):
        probes = [
            select(literal(t)).where(exists().where(entity_types.c.type == t)) for t in wanted[i : i + 50]
        ]
        found.update(s.scalars(union_all(*probes) if len(probes) > 1 else probes[0]))
    return frozenset(found)


def _has_type(t: str, extra: frozenset[str]) -> ColumnElement[bool]:
    if t not in extra:
        return Entity.type == t
    return or_(
        Entity.type == t, Entity.pk.in_(select(entity_types.c.entity_pk).where(entity_types.c.type == t))
    )


def _type_clause(sel: Selector, extra: frozenset[str]) -> ColumnElement[bool]:
    plain = [t for t in sel.types if t not in extra]
    alts: list[ColumnElement[bool]] = []
    if plain:
        alts.append(Entity.type.in_(plain) if len(plain) > 1 else Entity.type == plain[0])
    alts += [_has_type(t, extra) for t in sel.types if t in extra]
    alts += [and_(*(_has_type(t, extra) for t in sorted(c))) for c in sel.type_sets]
    return or_(*alts) if len(alts) > 1 else alts[0]


def _selector_clause(sel: Selector, extra: frozenset[str]) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    if sel.typed:
        parts.append(_type_clause(sel, extra))
    if sel.ids:
        parts.append(Entity.entity_id.in_(sel.ids) if len(sel.ids) > 1 else Entity.entity_id == sel.ids[0])
    if sel.id_pattern is not None:
        parts.append(Entity.entity_id.regexp_match(sel.id_pattern))
    return and_(*parts) if parts else true()


def _scope_term(term: str) -> ColumnElement[bool]:
    """An entity having a scope that ``term`` matches: ``/a/b`` exactly, ``/a/#`` it or below it, ``/#``
    any scope, ``+`` any one level (a regular expression, as idPattern is run)."""
    col = entity_scopes.c.scope
    if term == "/#":
        cond: ColumnElement[bool] = true()
    elif "+" in term:
        base, hashed = (term[:-2], True) if term.endswith("/#") else (term, False)
        levels = ["[^/]+" if p == "+" else re.escape(p) for p in base.split("/")[1:]]
        cond = col.regexp_match("^/" + "/".join(levels) + ("(/.*)?$" if hashed else "$"))
    elif term.endswith("/#"):
        cond = or_(col == term[:-2], col.startswith(term[:-1], autoescape=True))
    else:
        cond = col == term
    return exists().where(entity_scopes.c.entity_pk == Entity.pk, cond)


def _scope_clause(dnf: tuple[frozenset[str], ...]) -> ColumnElement[bool]:
    if not dnf:
        return false()
    alts = [and_(*(_scope_term(t) for t in sorted(c))) for c in dnf]
    return or_(*alts) if len(alts) > 1 else alts[0]


def entity_filter(s: Session, access: Access, query: EntityQuery) -> ColumnElement[bool]:
    """The complete WHERE clause: tenancy first, then the caller's query."""
    parts: list[ColumnElement[bool]] = [
        visible_entities(access).within(workspace_ids=query.workspace_ids).where()
    ]
    if query.none:
        parts.append(false())
    if query.selectors:
        extra = _extra_types_in_use(s, query.selectors)
        clauses = [_selector_clause(sel, extra) for sel in query.selectors]
        parts.append(or_(*clauses) if len(clauses) > 1 else clauses[0])
    if query.scopes is not None:
        parts.append(_scope_clause(query.scopes))
    dialect = _dialect(s)
    # A time-limited credential's q and attrs see only the attributes it may read (observations inside
    # its windows), exactly like the rendering does.
    visible = visible_sql(access, Entity.org_id, Entity.workspace_id, Entity.entity_id, Entity.attrs, dialect)
    if query.q is not None:
        parts.append(_q_clause(query.q, Entity, access, dialect, visible))
    if query.geo is not None and query.geo.geoproperty == "location":
        parts.append(_geo_prefilter(s, query.geo))
    if query.attrs is not None:
        j = JsonAttrs(Entity.attrs, dialect)
        have = [
            j.exists((a,)) if visible is None else and_(j.exists((a,)), visible(a))
            for a in sorted(query.attrs)
            if a != "location"
        ]
        if "location" in query.attrs:
            loc = JsonAttrs(Entity.location, dialect)
            have.append(func.coalesce(loc.json_type(()), "null") != "null")
        parts.append(or_(*have))
    return and_(*parts)


ORDER = (Entity.entity_id, Entity.org_id)  # unique: (org_id, entity_id) is a unique key
ORDER_DESC = (Entity.entity_id.desc(), Entity.org_id.desc())  # orderBy=id;desc: the same index, backwards
# Located entities a geo-query may test exactly in one request (after the bounding-box prefilter).
MAX_GEO_CANDIDATES = 250_000
# Matching entities an orderBy on values (anything but id) sorts in one request.
MAX_ORDER_CANDIDATES = 250_000


def _q_clause(
    q: Node,
    e: Any,
    access: Access,
    dialect: str,
    visible: Callable[[str], ColumnElement[bool]] | None,
) -> ColumnElement[bool]:
    """``q`` on the rows of ``e`` (the entity table, or an alias of it for linked entities), with the
    attributes (and instances) the reader may see."""
    others = DatasetInstances(
        e.datasets, dialect, visible_instance(access, e.org_id, e.workspace_id, e.entity_id, dialect)
    )
    return compile_q(q, JsonAttrs(e.attrs, dialect), visible, others, _linked_entities(access, dialect))


def _linked_entities(access: Access, dialect: str) -> Link:
    """How ``rel{…}`` in ``q`` is answered (ETSI GS CIM 009 §4.9): the row's Relationship ``rel`` links to
    an entity the reader may read — the same ones ``join`` shows, through authz — of the type
    ``{Type:…}`` names (if any) for which the inner comparison holds, on the attributes the reader may
    see of it. One correlated EXISTS per linked comparison, each linked id an index probe on
    (organisation, entity id); ``q`` holds at most MAX_TERMS comparisons, nested at most joinLevel deep."""
    reach = visible_entities(access)

    def resolve(node: Linked, ids: Any) -> ColumnElement[bool]:
        t = aliased(Entity)
        vis = visible_sql(access, t.org_id, t.workspace_id, t.entity_id, t.attrs, dialect)
        parts = [reach.where(t), _q_clause(node.node, t, access, dialect, vis)]
        if node.type is not None:
            typed = exists().where(entity_types.c.entity_pk == t.pk, entity_types.c.type == node.type)
            parts.append(or_(t.type == node.type, typed))
        if dialect == "postgresql":
            # The row's few linked ids first, each an index probe on (organisation, id): as a filter
            # (IN), PostgreSQL would scan the organisation's candidates once and test each row against
            # them, with an estimate that turns JIT on.
            linked = ids.lateral()
            found = select(literal(1)).select_from(linked).join(t, t.entity_id == linked.c[0])
            return found.where(*parts).exists()
        return select(literal(1)).select_from(t).where(t.entity_id.in_(ids), *parts).exists()

    return resolve


def _geo_prefilter(s: Session, geo: GeoQuery) -> ColumnElement[bool]:
    """The bounding-box part of a geo-query on ``location``, served by the (geo_min_lat, geo_min_lon)
    index: an entity whose box overlaps the query's box has ``geo_min_lat`` within the largest stored
    latitude span below it."""
    box = geo.bbox()
    if box is None:
        return Entity.geo_min_lat.is_not(None)
    lo_x, lo_y, hi_x, hi_y = box
    span = float(s.scalar(select(func.max(Entity.geo_lat_span))) or 0.0)
    return and_(
        Entity.geo_min_lat >= lo_y - span,
        Entity.geo_min_lat <= hi_y,
        Entity.geo_max_lat >= lo_y,
        Entity.geo_min_lon <= hi_x,
        Entity.geo_max_lon >= lo_x,
    )


def _rows_by_key(s: Session, chosen: Sequence[Any], sys_attrs: bool) -> list[Any]:
    """The full rows of a page's ``chosen`` candidates (each with ``pk``, ``entity_id`` and ``org_id``),
    read by key in the candidates' order; one deleted since the candidates were read is left out."""
    found = {
        (r.entity_id, r.org_id): r
        for r in s.execute(_rows_query(Entity.pk.in_([c.pk for c in chosen]), sys_attrs))
    }
    return [found[k] for k in ((c.entity_id, c.org_id) for c in chosen) if k in found]


_M = TypeVar("_M")  # one match of a query held in memory (a candidate row, or its sort key with it)


@dataclass(frozen=True, slots=True)
class _Want:
    """The page one call of :func:`query_entities` asks for, as each way of answering it reads it."""

    limit: int
    offset: int
    cursor: str | None
    count: bool
    sys_attrs: bool


def _page_of_matches(
    s: Session,
    want: _Want,
    matches: Sequence[_M],
    start: int,
    key_row: Callable[[_M], Any],
    next_cursor: Callable[[_M, int], str],
) -> Page:
    """The page from ``start`` of all of a query's ``matches``, held here in their order: the count is
    over all of them, the page's rows are read by key (``key_row``: a match's ``pk``, ``entity_id`` and
    ``org_id``), and ``next_cursor`` (of the page's last match and where the next page starts) links on."""
    page = Page([], len(matches) if want.count else None)
    end = start + want.limit
    chosen = matches[start:end]
    if want.limit == 0 or not chosen:
        return page
    page.rows = _rows_by_key(s, [key_row(m) for m in chosen], want.sys_attrs)
    if len(matches) > end:
        page.next_cursor = next_cursor(chosen[-1], end)
        page.next_offset = want.offset + want.limit
    return page


def _query_geo(s: Session, access: Access, query: EntityQuery, want: _Want) -> Page:
    """A page of a geo-query: the prefiltered candidates' geometries are tested exactly (shapely), then
    the page's rows are read by key. Counts and offsets are over the exact matches."""
    geo = query.geo
    assert geo is not None
    cols: list[Any] = [Entity.pk, Entity.entity_id, Entity.org_id, Entity.location]
    if geo.geoproperty != "location":
        cols.append(Entity.attrs)
    q = select(*cols).where(entity_filter(s, access, query)).order_by(*ORDER).limit(MAX_GEO_CANDIDATES + 1)
    if geo.geoproperty == "location" and geo.bbox() is not None:
        # SQLite's planner would rather walk the (org, type, id) index in output order and test every
        # row's JSON; the box is far more selective.
        q = q.with_hint(Entity, "INDEXED BY ix_entities_geo_lat", "sqlite")
    cand = s.execute(q).all()
    if len(cand) > MAX_GEO_CANDIDATES:
        raise BadRequest(
            f"georel: this geo-query would test more than {MAX_GEO_CANDIDATES} entities exactly; narrow it "
            "(type, q, a smaller area or maxDistance)"
        )
    ok = geo.matches(
        [entity_geometry(r.location, r.attrs if len(r) > 4 else None, geo.geoproperty) for r in cand]
    )
    hits = [r for r, m in zip(cand, ok, strict=True) if m]
    if want.cursor is not None:
        anchor = decode_entity_cursor(want.cursor)
        start = next((i for i, r in enumerate(hits) if (r.entity_id, r.org_id) > anchor), len(hits))
    else:
        start = want.offset
    return _page_of_matches(
        s, want, hits, start, lambda r: r, lambda last, _end: encode_cursor(last.entity_id, last.org_id)
    )


def _query_ordered(s: Session, access: Access, query: EntityQuery, want: _Want) -> Page:
    """A page of a query with ``orderBy`` on values (entities/ordering.py): the matching entities' keys
    and the members the order names are read (at most :data:`MAX_ORDER_CANDIDATES`), sorted here — the
    same comparison on SQLite and PostgreSQL, whatever their collations — and the page's rows read by key.
    The cursor carries the last entity's sort values and key, so the next page starts right after it even
    when entities were added, changed or removed meanwhile (no repeats, no gaps among the others)."""
    order = query.order
    assert order is not None
    names, cand = _order_candidates(s, access, query, order)
    raws, rows = _sort_values(access, query, order, names, cand)
    sorter = Sorter(order, raws)
    keyed = sorted(
        ((sorter.key(rw, r.entity_id, r.org_id), rw, r) for rw, r in zip(raws, rows, strict=True)),
        key=lambda k: k[0],
    )
    if want.cursor is not None:
        at = _ordered_cursor_key(sorter, order, want.cursor)
        start = at if isinstance(at, int) else bisect_right(keyed, at, key=lambda k: k[0])
    else:
        start = want.offset
    return _page_of_matches(s, want, keyed, start, lambda k: k[2], _ordered_next_cursor)


def _ordered_next_cursor(last: tuple[Any, list[Any], Any], end: int) -> str:
    """The cursor after an ordered page's ``last`` (sort key, raw sort values, row): its sort values and
    key, or — for a long sort value — the position ``end`` the next page starts at."""
    _key, last_raws, row = last
    values = orjson.dumps([to_json(v) for v in last_raws]).decode()
    cursor = encode_cursor("o", values, row.entity_id, row.org_id)
    if len(cursor) > MAX_CURSOR_LENGTH:  # a long sort value: a position, not a key
        return encode_cursor("n", str(end), "", "")
    return cursor


def _order_candidates(
    s: Session, access: Access, query: EntityQuery, order: Ordering
) -> tuple[list[str], Sequence[Any]]:
    """The matching entities with only the columns the order (and a geo-query) needs; each named
    attribute as its JSON text (``a0``, ``a1``, …)."""
    members = {t.name for t in order.terms if t.attribute is None}
    geo = query.geo
    names = [a for a in order.attributes() if a != "location"]
    if geo is not None and geo.geoproperty != "location":
        names.append(geo.geoproperty)
    names = list(dict.fromkeys(names))
    cols: list[Any] = [Entity.pk, Entity.entity_id, Entity.org_id]
    if is_bounded(access):
        cols.append(Entity.workspace_id)
    if "type" in members:
        cols += [Entity.type, Entity.extra_types]
    cols += [c for m, c in (("scope", Entity.scopes), ("createdAt", Entity.created_at),
                            ("modifiedAt", Entity.modified_at)) if m in members]  # fmt: skip
    if "location" in order.attributes() or (geo is not None and geo.geoproperty == "location"):
        cols.append(Entity.location)
    if any(t.system for t in order.terms):
        cols.append(Entity.attr_times)
    cols += [Entity.attrs[n].as_string().label(f"a{i}") for i, n in enumerate(names)]
    q = select(*cols).where(entity_filter(s, access, query)).limit(MAX_ORDER_CANDIDATES + 1)
    cand = s.execute(q).all()
    if len(cand) > MAX_ORDER_CANDIDATES:
        raise BadRequest(
            f"orderBy: this query matches more than {MAX_ORDER_CANDIDATES} entities, more than this server "
            "sorts by value in one request; narrow it (type, q, …) or order by id"
        )
    return names, cand


def _sort_values(
    access: Access, query: EntityQuery, order: Ordering, names: list[str], cand: Sequence[Any]
) -> tuple[list[list[Any]], list[Any]]:
    """The raw values of the order's terms for each candidate that passes the geo-query (if any), and
    those candidates."""
    bounded = is_bounded(access)
    first = len(cand[0]) - len(names) if cand else 0
    attrs_of: list[dict[str, Any]] = []
    for r in cand:
        attrs = {n: orjson.loads(r[first + i]) for i, n in enumerate(names) if r[first + i] is not None}
        if bounded:  # a time-limited credential orders by what it may read, nothing else
            attrs = _readable(access, r.org_id, r.workspace_id, r.entity_id, attrs)
        attrs_of.append(attrs)
    geo = query.geo
    if geo is not None:
        ok = geo.matches([entity_geometry(getattr(r, "location", None), a, geo.geoproperty)
                          for r, a in zip(cand, attrs_of, strict=True)])  # fmt: skip
    else:
        ok = [True] * len(cand)
    raws: list[list[Any]] = []
    rows: list[Any] = []
    for r, attrs, m in zip(cand, attrs_of, ok, strict=True):
        if m:
            raws.append([raw_value(t, order, r, attrs) for t in order.terms])
            rows.append(r)
    return raws, rows


def _ordered_cursor_key(sorter: Sorter, order: Ordering, cursor: str) -> tuple[Any, ...] | int:
    """The sort key an ordered cursor ends at (``"o"``), or the position it names (``"n"``: a cursor
    that would have been longer than :data:`MAX_CURSOR_LENGTH`, for a long string value)."""
    tag, values, eid, oid = decode_cursor(cursor, str, str, str, str)
    if tag == "n" and str(values).isdigit() and len(str(values)) < 10:
        return int(values)
    try:
        raws = [from_json(v) for v in orjson.loads(str(values))]
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise BadRequest(INVALID_CURSOR) from None
    if tag != "o" or len(raws) != len(order.terms):
        raise BadRequest(INVALID_CURSOR)
    try:
        return sorter.key(raws, str(eid), str(oid))
    except (TypeError, ValueError, KeyError):
        raise BadRequest(INVALID_CURSOR) from None


def decode_entity_cursor(cursor: str) -> tuple[str, str]:
    """The (entity id, organisation id) key a listing cursor encodes."""
    eid, oid = decode_cursor(cursor, str, str)
    return str(eid), str(oid)


def _after(anchor: tuple[str, str], desc: bool = False) -> ColumnElement[bool]:
    # The leading ">=" lets an index on (org_id, entity_id) serve the range directly.
    eid, oid = anchor
    if desc:
        return and_(Entity.entity_id <= eid, tuple_(Entity.entity_id, Entity.org_id) < tuple_(eid, oid))
    return and_(Entity.entity_id >= eid, tuple_(Entity.entity_id, Entity.org_id) > tuple_(eid, oid))


def _rows_query(where: ColumnElement[bool], sys_attrs: bool, desc: bool = False) -> Select[Any]:
    cols: list[Any] = [
        Entity.entity_id,
        Entity.org_id,
        Entity.workspace_id,
        Entity.type,
        Entity.attrs,
        Entity.location,
        Entity.extra_types,
        Entity.scopes,
        Entity.datasets,
    ]
    if sys_attrs:
        cols += [Entity.created_at, Entity.modified_at, Entity.attr_times]
    return select(*cols).where(where).order_by(*(ORDER_DESC if desc else ORDER))


def _uses_regex(query: EntityQuery) -> bool:
    def in_q(n: Node | None) -> bool:
        return n is not None and any(c.op in ("~=", "!~=") for c in comparisons(n))

    in_scopes = any("+" in t for c in query.scopes or () for t in c)
    return any(sel.id_pattern is not None for sel in query.selectors) or in_q(query.q) or in_scopes


@contextmanager
def _regex_guard(s: Session, query: EntityQuery) -> Iterator[None]:
    """Bound the database's work on users' regular expressions.

    SQLite runs them in RE2 (linear time; :mod:`sensorhub.kit.patterns`). PostgreSQL runs them in
    its own engine: the patterns are RE2-valid (no back-references, the one feature that makes it
    exponential), and the statements of this query additionally run under a statement timeout of
    :data:`REGEX_STATEMENT_TIMEOUT_MS` — a cancelled statement is the caller's 400. PostgreSQL's syntax
    also differs in details (e.g. named groups): what it refuses is a 400 too, not our 500."""
    pg = _dialect(s) == "postgresql" and _uses_regex(query)
    if pg:
        old = s.scalar(select(func.current_setting("statement_timeout")))
        s.execute(select(func.set_config("statement_timeout", str(REGEX_STATEMENT_TIMEOUT_MS), True)))
    try:
        yield
    except DBAPIError as e:
        state = getattr(e.orig, "sqlstate", None)
        if state == "2201B":
            raise BadRequest(
                "idPattern or q: the regular expression is not supported here: use POSIX-style syntax "
                "(no named groups)"
            ) from None
        if state == "57014":
            raise BadRequest(
                f"idPattern or q: the query with a regular expression took longer than "
                f"{REGEX_STATEMENT_TIMEOUT_MS / 1000:g} s; simplify the pattern or narrow the query"
            ) from None
        raise
    if pg:
        s.execute(select(func.set_config("statement_timeout", old, True)))


def query_entities(
    s: Session,
    access: Access,
    query: EntityQuery,
    *,
    limit: int,
    offset: int = 0,
    cursor: str | None = None,
    count: bool = False,
    sys_attrs: bool = False,
    reader: str = "",
) -> Page:
    """One page of the entities ``access`` may read that match ``query``, ordered by (id, organisation).

    Paging never degrades with depth: a ``cursor`` (from the previous page's Link) seeks straight to the
    next key; a bare ``offset`` is translated to a key when an earlier page ended there (see
    :mod:`sensorhub.entities.anchors`), else resolved on the key columns alone (an index-only skip) and
    then read by key, so no JSON of skipped rows is ever fetched."""
    OFFSETS.check(offset)
    if access.is_empty:
        return Page([], 0 if count else None)
    by_id = query.order.id_only if query.order is not None else False
    want = _Want(limit, offset, cursor, count, sys_attrs)
    with _regex_guard(s, query):
        if query.order is not None and (by_id is None or query.geo is not None):
            page = _query_ordered(s, access, query, want)
        elif query.geo is not None:
            page = _query_geo(s, access, query, want)
        else:
            page = _query_entities(s, access, query, want, reader, bool(by_id))
    if is_bounded(access):
        page.rows = [
            EntityRow(
                **{
                    **r._asdict(),
                    "attrs": _readable(access, r.org_id, r.workspace_id, r.entity_id, r.attrs),
                    "datasets": _readable_datasets(access, r.org_id, r.workspace_id, r.entity_id, r.datasets),
                }
            )
            for r in page.rows
        ]
    return page


def _query_entities(
    s: Session, access: Access, query: EntityQuery, want: _Want, reader: str, desc: bool = False
) -> Page:
    limit, offset, cursor = want.limit, want.offset, want.cursor
    where = entity_filter(s, access, query)
    order = ORDER_DESC if desc else ORDER
    page = Page([])
    if want.count:
        page.count = int(s.scalar(select(func.count()).select_from(Entity).where(where)) or 0)
    if limit == 0:
        return page
    # Per credential as well: a client that pairs a cursor with a made-up offset only misleads itself.
    anchor_key = (str(s.get_bind().engine.url), reader, access.rules, query)
    if cursor is not None:
        anchor: tuple[str, str] | None = decode_entity_cursor(cursor)
    elif offset > 0:
        anchor = ANCHORS.get((*anchor_key, offset))
        if anchor is None:
            row = s.execute(select(*ORDER).where(where).order_by(*order).offset(offset - 1).limit(1)).first()
            if row is None:
                return page
            anchor = (row[0], row[1])
    else:
        anchor = None
    q = _rows_query(and_(where, _after(anchor, desc)) if anchor else where, want.sys_attrs, desc)
    q = q.limit(limit + 1)
    rows = list(s.execute(q))
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        page.next_cursor = encode_cursor(last.entity_id, last.org_id)
        page.next_offset = offset + limit
        ANCHORS.put((*anchor_key, page.next_offset), (last.entity_id, last.org_id))
    page.rows = rows
    return page


def get_entity(s: Session, access: Access, ref: str) -> Entity:
    """An entity by NGSI-LD id or asset id; 404 (the same) when unknown or not readable."""
    return visible_entity(s, access, ref)


# --- writes (interactive sessions only) ----------------------------------------------------------------


def writable(s: Session, user: User) -> tuple[Access, Access]:
    """``(readable, writable)`` for a logged-in user: owners and admins everywhere in their organisation,
    members where a grant covers the workspace (or the entity); viewers read but never write."""
    if user.disabled:
        return Access(()), Access(())
    reach = user_reach(s, user.id)
    read = tuple(dict.fromkeys(AccessRule(r.org_id, r.workspace_id, r.entity_id) for r in reach.rules))
    write = tuple(r for r in read if Role(reach.roles.get(r.org_id, "viewer")) != Role.viewer)
    return Access(read), Access(write)


def target_workspace(
    s: Session, user: User, workspace: str | None, tenant: str | None
) -> tuple[Organisation, Workspace]:
    """The workspace a new entity goes to: ``workspace=<org>/<ws>``, or ``NGSILD-Tenant: <org>`` plus
    ``workspace=<ws>``, or just ``workspace=<ws>`` when the user belongs to one organisation."""
    if not workspace:
        raise BadRequest(
            "say where the entity goes: add the query parameter workspace=<org>/<workspace> "
            "(or send NGSILD-Tenant: <org> with workspace=<workspace>)"
        )
    org_ref, _, ws_ref = workspace.rpartition("/")
    if tenant and org_ref and tenant != org_ref:
        raise BadRequest(f"NGSILD-Tenant '{tenant}' and workspace '{workspace}' name different organisations")
    org_ref = org_ref or (tenant or "")
    reach = user_reach(s, user.id)
    if not org_ref:
        if len(reach.roles) != 1:
            raise BadRequest("you belong to several organisations: use workspace=<org>/<workspace>")
        org_ref = next(iter(reach.roles))
    org = accounts.find_org(s, org_ref)
    if org is None or org.id not in reach.roles:
        raise NotFound(f"organisation '{org_ref}' not found")
    return org, accounts.get_workspace(s, org, ws_ref)


def create_entity(s: Session, user: User, org: Organisation, ws: Workspace, body: Any) -> Entity:
    data = normalize_entity(body)
    _, write = writable(s, user)
    if not write.allows(org.id, ws.id, data.entity_id):
        raise Forbidden(
            f"you may not create entities in workspace '{ws.slug}': owners, admins and members with a "
            "grant on the workspace can"
        )
    # tenancy: write access to org/ws was decided above; ids are unique per organisation
    if s.scalar(select(Entity.pk).where(Entity.org_id == org.id, Entity.entity_id == data.entity_id)):
        raise Conflict(f"entity '{data.entity_id}' already exists")
    e = _new_entity(org.id, ws.id, data)
    s.add(e)
    s.flush()
    ANCHORS.clear()
    record(s, "entity.create", org_id=org.id, actor_user_id=user.id, target=e.entity_id)
    return e


def _new_entity(org_id: str, ws_id: str, data: EntityData) -> Entity:
    e = Entity(
        entity_id=data.entity_id,
        org_id=org_id,
        workspace_id=ws_id,
        type=data.type,
        extra_types=list(data.extra_types) or None,
        scopes=list(data.scopes) or None,
        name=data.name,
        attrs=data.attrs,
        datasets=data.datasets or None,
        location=data.location,
    )
    e.set_location(data.location, data.location_observed_at)
    return e


def entity_for_write(s: Session, user: User, ref: str, tenant: str | None) -> Entity:
    """The entity ``ref`` for a change by ``user``: 404 when the user cannot see it, 403 when they can
    see but not change it."""
    read, write = writable(s, user)
    if tenant:
        org = accounts.find_org(s, tenant.partition("/")[0])  # NGSILD-Tenant: <org> or <org>/<workspace>
        read = read.for_orgs([org.id] if org else [])
        write = write.for_orgs([org.id] if org else [])
    e = visible_entity(s, read, ref)
    if not write.allows(e.org_id, e.workspace_id, e.entity_id):
        raise Forbidden(
            f"you may read entity '{ref}' but not change it (viewers and members without a grant "
            "on its workspace cannot)"
        )
    return e


def update_attrs(s: Session, user: User, e: Entity, body: Any) -> tuple[list[str], list[dict[str, str]]]:
    """NGSI-LD *Update Attributes*: replace attributes the entity already has; others are reported. A
    ``scope`` replaces the entity's scopes."""
    frag = normalize_fragment(body)
    updated: list[str] = []
    not_updated: list[dict[str, str]] = []
    new = dict(e.attrs)
    datasets = dict(e.datasets or {})
    for name, attr in frag.attrs.items():
        if name in new:
            new[name] = attr
            _replace_instances(datasets, name, frag.datasets.get(name))
            updated.append(name)
        else:
            not_updated.append(
                {"attributeName": name, "reason": "the entity has no such attribute; use POST /attrs"}
            )
    if frag.has_location:
        if e.location is not None:
            e.set_location(frag.location, frag.location_observed_at)
            updated.append("location")
        else:
            not_updated.append(
                {"attributeName": "location", "reason": "the entity has no location; use POST /attrs"}
            )
    if frag.scopes is not None:
        e.scopes = list(frag.scopes)
        updated.append("scope")
    if updated:
        _save_attrs(s, user, e, new, datasets)
    return updated, not_updated


def append_attrs(s: Session, user: User, e: Entity, body: Any) -> list[str]:
    """NGSI-LD *Append Attributes*: add or replace the given attributes; a ``scope`` adds to the entity's
    scopes."""
    frag = normalize_fragment(body)
    new = dict(e.attrs)
    new.update(frag.attrs)
    datasets = dict(e.datasets or {})
    for name in frag.attrs:
        _replace_instances(datasets, name, frag.datasets.get(name))
    if frag.has_location:
        e.set_location(frag.location, frag.location_observed_at)
    if frag.scopes is not None:
        scopes = list(dict.fromkeys([*(e.scopes or []), *frag.scopes]))
        if len(scopes) > MAX_SCOPES:
            raise BadRequest(f"scope: an entity may have at most {MAX_SCOPES} scopes")
        e.scopes = scopes
    _save_attrs(s, user, e, new, datasets)
    return list(frag.attrs) + (["location"] if frag.has_location else []) + (["scope"] if frag.scopes else [])


def delete_attr(s: Session, user: User, e: Entity, name: str) -> None:
    """NGSI-LD *Delete Attribute* (``scope``: the entity's scopes)."""
    if name == "location" and e.location is not None:
        e.set_location(None)
        _save_attrs(s, user, e, dict(e.attrs))
    elif name == "scope" and e.scopes:
        e.scopes = None
        _save_attrs(s, user, e, dict(e.attrs))
    elif name in e.attrs:
        datasets = {k: v for k, v in (e.datasets or {}).items() if k != name}
        _save_attrs(s, user, e, {k: v for k, v in e.attrs.items() if k != name}, datasets)
    else:
        raise NotFound(f"entity '{e.entity_id}' has no attribute '{name[:100]}'")


def _replace_instances(
    datasets: dict[str, list[dict[str, Any]]], name: str, others: list[dict[str, Any]] | None
) -> None:
    """A write of an attribute replaces all its instances with those it gives."""
    if others:
        datasets[name] = others
    else:
        datasets.pop(name, None)


def _save_attrs(
    s: Session,
    user: User | None,
    e: Entity,
    attrs: dict[str, Any],
    datasets: dict[str, list[dict[str, Any]]] | None = None,
) -> None:
    e.attrs = attrs  # a new dict, so that the ORM sees the change (and bumps modified_at)
    if datasets is not None:
        e.datasets = datasets or None
    name = attrs.get("name", {}).get("value")
    e.name = name[:300] if isinstance(name, str) else None
    from sensorhub.db import utcnow

    e.modified_at = utcnow()
    s.flush()
    if user is not None:
        record(s, "entity.update", org_id=e.org_id, actor_user_id=user.id, target=e.entity_id)


def delete_entity(s: Session, user: User, e: Entity) -> None:
    """Delete the entity; its series and measurements go with it (ON DELETE CASCADE)."""
    s.delete(e)
    s.flush()
    ANCHORS.clear()
    record(s, "entity.delete", org_id=e.org_id, actor_user_id=user.id, target=e.entity_id)


# --- import ----------------------------------------------------------------------------------------------


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0


def import_entities(
    s: Session, org: Organisation, ws: Workspace, items: Any, *, upsert: bool = False
) -> ImportResult:
    """Import an NGSI-LD JSON array (normalized or keyValues) into one workspace, all or nothing.

    Errors name the element index (0-based) so that the file can be fixed; nothing is written unless every
    element is valid (the caller commits)."""
    if not isinstance(items, list):
        raise BadRequest("the file must contain a JSON array of NGSI-LD entities")
    parsed: list[EntityData] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        try:
            data = normalize_entity(item)
        except BadRequest as err:
            raise BadRequest(f"element {i}: {err.message}") from None
        if data.entity_id in seen:
            raise BadRequest(f"element {i}: id '{data.entity_id}' repeats element {seen[data.entity_id]}")
        seen[data.entity_id] = i
        parsed.append(data)
    existing: dict[str, Entity] = {}
    ids = list(seen)
    for chunk in range(0, len(ids), 500):
        for found in s.scalars(
            # tenancy: an operator import (CLI) into the organisation it names
            select(Entity).where(Entity.org_id == org.id, Entity.entity_id.in_(ids[chunk : chunk + 500]))
        ):
            existing[found.entity_id] = found
    if existing and not upsert:
        first = min(existing, key=lambda k: seen[k])
        raise Conflict(
            f"element {seen[first]}: entity '{first}' already exists in '{org.slug}' "
            f"({len(existing)} of the {len(parsed)} exist); use --upsert to replace them"
        )
    result = ImportResult()
    for data in parsed:
        e = existing.get(data.entity_id)
        if e is None:
            s.add(_new_entity(org.id, ws.id, data))
            result.created += 1
        else:
            e.workspace_id = ws.id
            e.set_location(data.location, data.location_observed_at)
            e.set_types(data.types)
            e.scopes = list(data.scopes) or None
            _save_attrs(s, None, e, data.attrs, data.datasets)
            result.updated += 1
    s.flush()
    ANCHORS.clear()
    record(
        s,
        "entity.import",
        org_id=org.id,
        target=ws.id,
        details={"created": result.created, "updated": result.updated},
    )
    return result


# --- Akenza assets -----------------------------------------------------------------------------------------


def asset_workspaces(
    access: Access, workspaces: dict[str, Any], workspace_ref: str | None
) -> frozenset[str] | None:
    """The workspace ids an asset listing covers; ``None`` = all readable. A workspace the credential may
    not read at all (or that does not exist for it) is refused with Akenza's 403 "Permission denied"."""
    if workspace_ref is None:
        return None
    ws = workspaces.get(workspace_ref) or next(
        (w for w in workspaces.values() if w.slug == workspace_ref), None
    )
    if ws is None or not any(r.org_id == ws.org_id and r.workspace_id in (None, ws.id) for r in access.rules):
        raise Forbidden("Permission denied")
    return frozenset({ws.id})


def list_assets(
    s: Session, access: Access, query: EntityQuery, page: int, size: int
) -> tuple[list[Entity], int]:
    """Spring-style page (0-based) of entities as assets, ordered like the NGSI-LD listing."""
    if page < 0:
        raise BadRequest("page must be 0 or more")
    if page > MAX_ASSET_PAGE:
        raise BadRequest(f"page must be at most {MAX_ASSET_PAGE}")
    if size < 1:
        raise BadRequest("size must be at least 1")
    if access.is_empty:
        return [], 0
    where = entity_filter(s, access, query)
    total = int(s.scalar(select(func.count()).select_from(Entity).where(where)) or 0)
    offset = page * size
    if offset >= total:
        return [], total
    q = select(Entity).where(where).order_by(*ORDER)
    if offset:
        row = s.execute(select(*ORDER).where(where).order_by(*ORDER).offset(offset - 1).limit(1)).first()
        if row is None:
            return [], total
        q = q.where(_after((row[0], row[1])))
    return list(s.scalars(q.limit(size))), total
