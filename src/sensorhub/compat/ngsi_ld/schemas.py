"""NGSI-LD wire shapes: query parameters, ``Query`` bodies, options, content negotiation, entity JSON."""

from __future__ import annotations

from typing import Any

from sensorhub.entities.models import Entity
from sensorhub.entities.normalize import check_context, render
from sensorhub.entities.qlang import parse_q
from sensorhub.entities.service import (
    MAX_LIST_ITEMS,
    MAX_SELECTORS,
    EntityQuery,
    Selector,
    make_selector,
    split_list,
)
from sensorhub.errors import BadRequest, NotAcceptable

UNSUPPORTED_QUERY_MEMBERS = ("geoQ", "temporalQ", "scopeQ", "csf", "lang")
UNSUPPORTED_PARAMS = ("georel", "geometry", "coordinates", "geoproperty", "csf", "scopeQ", "lang")


def wants_ld(accept: str | None) -> bool:
    """Content negotiation: ``True`` for ``application/ld+json``, ``False`` for ``application/json``
    (or anything JSON-compatible such as ``*/*``); 406 otherwise."""
    if not accept or not accept.strip():
        return False
    offers: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if q > 0:
            offers.append((-q, i, media.lower()))
    for _, _, media in sorted(offers):
        if media == "application/ld+json":
            return True
        if media in ("application/json", "*/*", "application/*", "application/geo+json"):
            return False
    raise NotAcceptable("this endpoint returns application/json or application/ld+json")


def parse_options(options: str | None, fmt: str | None) -> tuple[bool, bool]:
    """``(key_values, sys_attrs)`` from ``options=keyValues,sysAttrs`` and ``format=simplified``."""
    opts = {o.strip() for o in (options or "").split(",") if o.strip()}
    unknown = opts - {"keyValues", "simplified", "normalized", "sysAttrs", "concise"}
    if unknown:
        raise BadRequest(
            f"unknown option(s) {', '.join(sorted(unknown))}: use keyValues, normalized or sysAttrs"
        )
    key_values = bool(opts & {"keyValues", "simplified"})
    if fmt is not None:
        if fmt not in ("keyValues", "simplified", "normalized"):
            raise BadRequest("format must be normalized, keyValues or simplified")
        key_values = fmt in ("keyValues", "simplified")
    return key_values, "sysAttrs" in opts


def attrs_projection(value: str | list[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    items = split_list(value, "attrs") if isinstance(value, str) else tuple(value)
    if len(items) > MAX_LIST_ITEMS:
        raise BadRequest(f"attrs may list at most {MAX_LIST_ITEMS} values")
    if not items or not all(isinstance(a, str) and a for a in items):
        raise BadRequest("attrs must list attribute names")
    return frozenset(items)


def query_from_params(
    *, type_: str | None, id_: str | None, id_pattern: str | None, attrs: str | None, q: str | None
) -> EntityQuery:
    sel = make_selector(split_list(type_, "type"), split_list(id_, "id"), id_pattern)
    has = bool(sel.types or sel.ids or sel.id_pattern is not None)
    return EntityQuery(
        selectors=(sel,) if has else (),
        q=parse_q(q) if q is not None else None,
        attrs=attrs_projection(attrs),
    )


# What a Query body may hold (refused members are listed in UNSUPPORTED_QUERY_MEMBERS and answered apart):
# a misspelt member is a 400, never a silently wider query.
QUERY_MEMBERS = frozenset({"type", "entities", "attrs", "q", "@context"})
SELECTOR_MEMBERS = frozenset({"type", "id", "idPattern"})


def query_from_body(body: Any) -> EntityQuery:
    """An NGSI-LD ``Query`` body: ``{type: "Query", entities: [{type, id?, idPattern?}], attrs?, q?}``."""
    _check_query_members(body)
    selectors = _selectors(body.get("entities"))
    q = body.get("q")
    if q is not None and not isinstance(q, str):
        raise BadRequest("'q' must be a string")
    attrs = body.get("attrs")
    if attrs is not None and not isinstance(attrs, list):
        raise BadRequest("'attrs' must be a list of attribute names")
    if not selectors and q is None and attrs is None:
        raise BadRequest("the Query needs at least one of entities, attrs or q")
    return EntityQuery(
        selectors=selectors, q=parse_q(q) if q is not None else None, attrs=attrs_projection(attrs)
    )


def _check_query_members(body: Any) -> None:
    if not isinstance(body, dict):
        raise BadRequest("the body must be an NGSI-LD Query object")
    if body.get("type") != "Query":
        raise BadRequest('the body must have "type": "Query"')
    for k in UNSUPPORTED_QUERY_MEMBERS:
        if k in body:
            raise BadRequest(f"'{k}' is not supported by this server")
    if "@context" in body:
        check_context(body["@context"])
    unknown = sorted(set(body) - QUERY_MEMBERS)
    if unknown:
        raise BadRequest(
            f"unknown Query member {unknown[0]!r}; a Query may hold {', '.join(sorted(QUERY_MEMBERS))}"
        )


def _selectors(ents: Any) -> tuple[Selector, ...]:
    if ents is None:
        return ()
    if not isinstance(ents, list):
        raise BadRequest("'entities' must be a list of entity selectors")
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
    for name, v in (("type", t), ("id", eid), ("idPattern", pat)):
        if v is not None and not isinstance(v, str):
            raise BadRequest(f"entities[{i}].{name} must be a string")
    if t is None and eid is None and pat is None:
        raise BadRequest(f"entities[{i}] needs at least one of type, id, idPattern")
    return make_selector(
        split_list(t, f"entities[{i}].type"),
        (eid,) if eid else (),
        pat,
        pattern_param=f"entities[{i}].idPattern",
    )


def entity_json(
    e: Entity,
    attrs: dict[str, Any],
    *,
    pick: frozenset[str] | None,
    key_values: bool,
    context: bool,
    sys_attrs: bool,
) -> dict[str, Any]:
    """``e`` as NGSI-LD JSON with ``attrs`` (what the reader may see of ``e.attrs``)."""
    return render(
        e.entity_id,
        e.type,
        attrs,
        e.location,
        pick=pick,
        key_values=key_values,
        context=context,
        sys_attrs=(e.created_at, e.modified_at) if sys_attrs else None,
    )
