"""Entity ordering (ETSI GS CIM 009 V1.9 §4.23): ``orderBy``, ``collation``, ``orderFrom``/``orderGeometry``.

Grammar (§4.23.3; attribute paths as in ``q``, §4.9)::

    orderBy   := term ( "," term )*
    term      := member [ ";" ( "asc" | "desc" | "dist-asc" | "dist-desc" ) ]     # asc by default
    member    := "id" | "type" | "scope" | "createdAt" | "modifiedAt"            # the entity's own
               | attr_path                                                        # an attribute
    attr_path := name ( "." name )* ( "[" key ( "." key )* "]" )*

A term compares the attribute's value (``object`` of a Relationship, ``vocab``, ``valueList``, ``json``,
``languageMap`` by the attribute's type), a sub-attribute's (``name.subProperty``) or a metadata member
(``name.observedAt``, ``name.unitCode``), or a key inside a compound value (``address[city]``). Mixed
types compare in the order of §4.23.2: numbers, strings, objects, arrays, booleans, Time, Date, DateTime
(``{"@type": "DateTime", "@value": …}``; the entity's createdAt/modifiedAt and ``observedAt`` are
DateTimes), then null, then entities without the attribute (objects and arrays are not compared by content). ``desc`` reverses the values but keeps null
and missing values last (the entities without the attribute are never the first page of a descending
order). ``dist-asc``/``dist-desc`` order by the distance of a GeoProperty from ``orderFrom`` (a GeoJSON
geometry, a Point unless ``orderGeometry`` says otherwise), entities without that GeoProperty after, by
value. Ties are broken by entity id, then organisation, so an order is total and a page boundary is exact.

Strings compare by Unicode code point unless ``collation`` names the root collation (``und``,
``und-x-icu`` or ``root``): the Unicode Collation Algorithm with its default table (pyuca), which ranks
``á`` with ``a``. Other collations (``de-u-co-phonebk`` …) are a 400 naming them, as is anything malformed.
Types compare as the answer writes them (compacted with the request's context).

``name.createdAt``/``name.modifiedAt`` order by the attribute's system attributes (its instance in the
entity's state: ``Entity.attr_times``), DateTimes like the entity's. Sub-attributes' createdAt/modifiedAt
and attributes' deletedAt are not kept: ordering by them is a 400 saying so, rather than an order by
values that do not exist.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from shapely.geometry.base import BaseGeometry

from sensorhub.entities.geo import distance_m, parse_geometry
from sensorhub.entities.models import times_of
from sensorhub.entities.normalize import VALUE_MEMBER
from sensorhub.errors import BadRequest
from sensorhub.kit.time import from_us

MAX_ORDER_TERMS = 10
MAX_ORDER_BY = 2000  # characters
ENTITY_MEMBERS = frozenset({"id", "type", "scope", "createdAt", "modifiedAt"})
DIRECTIONS = ("asc", "desc", "dist-asc", "dist-desc")
# Metadata members a path may end at (their own value).
METADATA = frozenset({"observedAt", "unitCode", "datasetId", "lang"})
# An attribute's system attributes (``name.createdAt``: kept for attributes, not for sub-attributes).
SYSTEM = frozenset({"createdAt", "modifiedAt"})
NOT_KEPT = frozenset({"createdAt", "modifiedAt", "deletedAt"})
ROOT_COLLATIONS = frozenset({"und", "root", "und-x-icu"})
_KEY = re.compile(r"[^\[\].;,]+")
_MEMBER = re.compile(
    r"([A-Za-z_@][A-Za-z0-9_:/#@\-]*(?:\.[A-Za-z_@][A-Za-z0-9_:/#@\-]*)*)((?:\[[^\[\]]+\])*)"
)
_BCP47 = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
_TYPED = {"Time": 5, "Date": 6, "DateTime": 7}
MISSING: Any = object()  # an entity without the attribute (or the key) a term names


@dataclass(frozen=True)
class Distance:
    """A distance term's raw value for an entity that has the GeoProperty: metres from the origin."""

    metres: float


@dataclass(frozen=True)
class OrderTerm:
    name: str  # an entity member (ENTITY_MEMBERS) or an attribute's stored name
    path: tuple[str, ...] = ()  # sub-attributes, then at most one metadata member (``name.observedAt``)
    inner: tuple[str, ...] = ()  # keys inside the value (``address[city]``)
    desc: bool = False
    distance: bool = False

    @property
    def system(self) -> str | None:
        """``createdAt``/``modifiedAt`` for a term on an attribute's system attribute (``name.createdAt``)."""
        return self.path[0] if len(self.path) == 1 and self.path[0] in SYSTEM and not self.inner else None

    @property
    def attribute(self) -> str | None:
        """The attribute (stored name) the term reads, ``None`` for an entity member."""
        return None if self.name in ENTITY_MEMBERS and not self.path and not self.inner else self.name


@dataclass(frozen=True)
class Ordering:
    terms: tuple[OrderTerm, ...]
    collation: str | None = None  # None: code points; "und": the Unicode root collation
    origin: BaseGeometry | None = None  # orderFrom/orderGeometry, for dist-asc/dist-desc
    # How the request writes a stored type name: ``type`` orders by the names the answer shows.
    shown: Callable[[str], str] | None = field(default=None, compare=False, hash=False)

    @property
    def id_only(self) -> bool | None:
        """``False``/``True`` when the order is by id alone (ascending/descending), which the key index
        serves; ``None`` otherwise."""
        if len(self.terms) == 1 and self.terms[0].attribute is None and self.terms[0].name == "id":
            return self.terms[0].desc
        return None

    def attributes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.attribute for t in self.terms if t.attribute is not None))


def parse_ordering(
    order_by: str | list[str] | None,
    collation: str | None,
    geometry: str | None,
    coordinates: Any,
    stored: Callable[[str], str],
    what: tuple[str, str, str, str] = ("orderBy", "collation", "orderGeometry", "orderFrom"),
    shown: Callable[[str], str] | None = None,
) -> Ordering | None:
    """An :class:`Ordering` from ``orderBy`` (text, or a Query body's list of terms) and its companions;
    ``what`` names them as the request does (``ordering.coordinates`` in a body). Attribute names are
    mapped onto stored names by ``stored`` (the request's context)."""
    ob, coll, geom, coords = what
    if order_by is None:
        for name, v in ((coll, collation), (geom, geometry), (coords, coordinates)):
            if v is not None:
                raise BadRequest(f"{name} needs {ob}")
        return None
    if isinstance(order_by, str):
        if len(order_by) > MAX_ORDER_BY:
            raise BadRequest(f"{ob} is longer than {MAX_ORDER_BY} characters")
        items = order_by.split(",")
    elif isinstance(order_by, list) and all(isinstance(i, str) for i in order_by):
        items = [p for i in order_by for p in i.split(",")]
    else:
        raise BadRequest(f'{ob} must be a list of strings such as "name;desc"')
    if not items or len(items) > MAX_ORDER_TERMS:
        raise BadRequest(f"{ob} must name 1 to {MAX_ORDER_TERMS} terms")
    terms = tuple(_term(i.strip(), ob, stored) for i in items)
    origin = _origin(any(t.distance for t in terms), geometry, coordinates, what)
    return Ordering(terms, check_collation(collation, coll), origin, shown)


def _origin(
    distance: bool, geometry: Any, coordinates: Any, what: tuple[str, str, str, str]
) -> BaseGeometry | None:
    """The reference geometry of dist-asc/dist-desc (``orderFrom``, ``orderGeometry``: Point by default)."""
    ob, _, geom, coords = what
    if not distance:
        if coordinates is not None or geometry is not None:
            raise BadRequest(f"{coords} and {geom} are only for {ob} with dist-asc or dist-desc")
        return None
    if coordinates is None:
        raise BadRequest(f"{ob} orders by distance (dist-asc/dist-desc): it needs {coords}, e.g. [8,40]")
    if geometry is not None and not isinstance(geometry, str):
        raise BadRequest(f"{geom} must be a GeoJSON geometry type such as Point")
    try:
        return parse_geometry(geometry or "Point", coordinates)
    except BadRequest as e:
        raise BadRequest(f"{coords}/{geom}: {e.message}") from None


def check_collation(value: Any, what: str = "collation") -> str | None:
    """``None`` (code points) or ``"und"`` (the root collation); anything else a 400 naming it."""
    if value is None:
        return None
    if not isinstance(value, str) or not _BCP47.match(value):
        raise BadRequest(f"{what} must be a BCP 47 language tag such as und (got {str(value)[:40]!r})")
    if value.lower() not in ROOT_COLLATIONS:
        raise BadRequest(
            f"{what} '{value[:40]}' is not offered: strings are ordered by code point, or by the Unicode "
            "root collation with collation=und"
        )
    return "und"


def _term(text: str, ob: str, stored: Callable[[str], str]) -> OrderTerm:
    member, sep, direction = text.partition(";")
    member = member.strip()
    direction = direction.strip() if sep else "asc"
    if direction not in DIRECTIONS:
        raise BadRequest(
            f"{ob}: '{direction[:20]}' in '{text[:60]}' is not a direction; use {', '.join(DIRECTIONS)}"
        )
    m = _MEMBER.fullmatch(member)
    if m is None:
        raise BadRequest(
            f"{ob}: '{text[:60]}' is not an attribute path (name, name.sub, name[key]) nor one of id, type, "
            "scope, createdAt, modifiedAt"
        )
    names = m.group(1).split(".")
    inner = [k for group in re.findall(r"\[([^\[\]]+)\]", m.group(2)) for k in group.split(".")]
    if not all(_KEY.fullmatch(k) for k in inner):
        raise BadRequest(f"{ob}: '{text[:60]}' has an empty key inside [ ]")
    distance = direction.startswith("dist-")
    first, path = names[0], tuple(names[1:])
    if first in ENTITY_MEMBERS and not path and not inner:
        if distance:
            raise BadRequest(f"{ob}: {direction} orders by a GeoProperty, not by {first}")
        return OrderTerm(first, desc=direction == "desc")
    if first in ENTITY_MEMBERS:
        raise BadRequest(
            f"{ob}: '{text[:60]}': {first} is a member of the entity, with no sub-attributes or keys"
        )
    _check_path(text, ob, path)
    if distance and (path or inner):
        raise BadRequest(f"{ob}: {direction} orders by a GeoProperty: name it alone (location;{direction})")
    return OrderTerm(
        first if first == "location" else stored(first),
        tuple(p if p in METADATA or (p in SYSTEM and len(path) == 1) else stored(p) for p in path),
        tuple(inner),
        desc=direction.endswith("desc"),
        distance=distance,
    )


def _check_path(text: str, ob: str, path: tuple[str, ...]) -> None:
    for i, p in enumerate(path):
        if p in SYSTEM and i == 0 and len(path) == 1:
            continue  # the attribute's own createdAt/modifiedAt
        if p in NOT_KEPT:
            raise BadRequest(
                f"{ob}: '{text[:60]}': {p} is not kept by this server for sub-attributes (nor deletedAt "
                f"for attributes): order by the entity's ({ob}=createdAt) or an attribute's "
                f"({ob}=name.createdAt)"
            )
        if p in METADATA and i != len(path) - 1:
            raise BadRequest(f"{ob}: '{text[:60]}': {p} is a metadata member, it ends a path")


# --- sort keys -----------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _collator() -> Any:
    from pyuca import Collator

    return Collator()


@lru_cache(maxsize=65536)
def _root_key(s: str) -> tuple[tuple[int, ...], str]:
    return (tuple(_collator().sort_key(s)), s)  # code points break the collation's ties


def _codepoints(s: str) -> str:
    return s


def string_key(collation: str | None) -> Callable[[str], Any]:
    return _root_key if collation == "und" else _codepoints


def _strings(v: Any) -> str | None:
    """The string a value is compared by, if any (a string, or a typed value's ``@value``)."""
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and v.get("@type") in _TYPED and isinstance(v.get("@value"), str):
        return str(v["@value"])
    return None


class Sorter:
    """Sort keys of one ordering over one set of entities: flat tuples of numbers, then (id, organisation),
    which sort in C and bisect. Strings become their position among the set's distinct strings (by code
    point or the collation), so that a descending term is a negation like a numeric one; objects and
    arrays tie within their rank (§4.23 defines no order inside them)."""

    def __init__(self, ordering: Ordering, raws: list[list[Any]]) -> None:
        self.ordering = ordering
        strkey = string_key(ordering.collation)
        self.strkey = strkey
        self.sorted: list[list[Any]] = []
        self.index: list[dict[str, int]] = []
        for i in range(len(ordering.terms)):
            distinct = {x for r in raws if (x := _strings(r[i])) is not None}
            keys = sorted((strkey(x), x) for x in distinct)
            self.sorted.append([k for k, _ in keys])
            self.index.append({x: n for n, (_, x) in enumerate(keys)})

    def _position(self, i: int, text: str) -> float:
        n = self.index[i].get(text)
        if n is not None:
            return n
        return bisect_left(self.sorted[i], self.strkey(text)) - 0.5  # a cursor's string not in the set

    def _parts(self, i: int, v: Any) -> tuple[float, float, float]:
        """(group, rank, value): group -1 a distance, 0 a value, 1 null, 2 no such attribute."""
        if v is MISSING:
            return (2, 0, 0)
        if v is None:
            return (1, 0, 0)
        if isinstance(v, Distance):
            return (-1, 0, v.metres)
        if isinstance(v, bool):
            return (0, 4, int(v))
        if isinstance(v, int | float):
            return (0, 0, v)
        if isinstance(v, str):
            return (0, 1, self._position(i, v))
        if isinstance(v, dict):
            text = _strings(v)
            if text is not None:
                return (0, _TYPED[v["@type"]], self._position(i, text))
            return (0, 2, 0)
        return (0, 3, 0)

    def key(self, raws: list[Any], entity_id: str, org_id: str) -> tuple[Any, ...]:
        out: list[Any] = []
        for i, (t, v) in enumerate(zip(self.ordering.terms, raws, strict=True)):
            g, r, x = self._parts(i, v)
            out += (g, -r, -x) if t.desc else (g, r, x)
        return (*out, entity_id, org_id)


def attribute_value(attr: Any, term: OrderTerm) -> Any:
    """What ``term`` compares of an attribute (its normalized JSON): ``MISSING`` when it is not there."""
    if not isinstance(attr, dict):
        return MISSING
    for i, p in enumerate(term.path):
        if p in METADATA and i == len(term.path) - 1:
            got = attr.get(p, MISSING)
            if p == "observedAt" and isinstance(got, str):
                return {"@type": "DateTime", "@value": got}
            return got
        attr = attr.get(p)
        if not isinstance(attr, dict):
            return MISSING
    v = attr.get(VALUE_MEMBER.get(str(attr.get("type")), "value"), MISSING)
    for k in term.inner:
        if not isinstance(v, dict) or k not in v:
            return MISSING
        v = v[k]
    return v


def raw_value(term: OrderTerm, ordering: Ordering, row: Any, attrs: dict[str, Any]) -> Any:
    """A term's raw (JSON) value for an entity ``row`` (entity_id, type, extra_types, scopes,
    created_at, modified_at, location) whose readable attributes the term may name are ``attrs``."""
    if term.attribute is None:
        return _entity_member(term, ordering, row)
    if term.name == "location" and (not term.path or term.system):
        geo = row.location
        attr: Any = None if geo is None else {"type": "GeoProperty", "value": geo}
    else:
        attr = attrs.get(term.name)
    if term.system is not None:
        if not isinstance(attr, dict):
            return MISSING
        times = times_of(getattr(row, "attr_times", None), term.name, attr)
        if times is None:
            return MISSING
        return date_time(from_us(times[0] if term.system == "createdAt" else times[1]))
    if term.distance and isinstance(attr, dict) and attr.get("type") == "GeoProperty":
        d = _distance(attr.get("value"), ordering.origin)
        if d is not None:
            return Distance(d)
    return attribute_value(attr, term)


def _entity_member(term: OrderTerm, ordering: Ordering, row: Any) -> Any:
    if term.name == "id":
        return row.entity_id
    if term.name == "type":
        show = ordering.shown or _codepoints
        return [show(t) for t in (row.type, *row.extra_types)] if row.extra_types else show(row.type)
    if term.name == "scope":
        scopes = row.scopes or []
        return MISSING if not scopes else scopes[0] if len(scopes) == 1 else list(scopes)
    return date_time(row.created_at if term.name == "createdAt" else row.modified_at)


def date_time(at: datetime) -> dict[str, str]:
    """A system attribute as an order compares it: a DateTime with microseconds (so strings sort as times)."""
    return {"@type": "DateTime", "@value": at.isoformat(timespec="microseconds").replace("+00:00", "Z")}


def _distance(geometry: Any, origin: BaseGeometry | None) -> float | None:
    import shapely

    if origin is None or not isinstance(geometry, dict):
        return None
    shape = shapely.from_geojson(orjson.dumps(geometry), on_invalid="ignore")
    if shape is None or shape.is_empty:
        return None
    return distance_m(shape, origin)


def to_json(raw: Any) -> list[Any]:
    """A raw value as a cursor carries it: ``["m"]`` missing, ``["d", metres]``, ``["v", value]``."""
    if raw is MISSING:
        return ["m"]
    if isinstance(raw, Distance):
        return ["d", raw.metres]
    return ["v", raw]


def from_json(value: Any) -> Any:
    """The raw value of :func:`to_json`; ``ValueError`` when it is not one."""
    if value == ["m"]:
        return MISSING
    number = isinstance(value, list) and len(value) == 2 and type(value[1]) in (int, float)
    if number and value[0] == "d":
        return Distance(float(value[1]))
    if isinstance(value, list) and len(value) == 2 and value[0] == "v":
        return value[1]
    raise ValueError("not an ordering value")
