"""NGSI-LD discovery: which entity types and attributes exist — among what the reader may see only.

Every statement is filtered by :func:`sensorhub.authz.scope.visible_entities`, so a type or attribute
name that exists only in another tenant's data (or outside a token's entity restriction) never appears.
A time-limited credential sees an attribute only where one of its observations is inside its windows
(:mod:`sensorhub.entities.windows`); for such credentials the summary is computed from the rows it may
read, in Python, exactly as the entity reads cut them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select, true
from sqlalchemy.orm import Session

from sensorhub.authz.access import Access
from sensorhub.authz.scope import visible_entities
from sensorhub.entities.models import Entity, entity_types
from sensorhub.entities.qlang import JsonAttrs
from sensorhub.entities.windows import is_bounded, visible_attrs

MAX_BOUNDED_ROWS = 200_000  # a time-limited token's summary reads its rows; beyond this it is refused


@dataclass
class TypeSummary:
    """One entity type: how many entities, and per attribute its NGSI-LD attribute types and count."""

    entity_count: int = 0
    attributes: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    attribute_counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def summary(s: Session, access: Access) -> dict[str, TypeSummary]:
    """Entity type → :class:`TypeSummary` over the entities ``access`` may read."""
    out: dict[str, TypeSummary] = defaultdict(TypeSummary)
    if access.is_empty:
        return {}
    where = visible_entities(access).where()
    if is_bounded(access):
        rows = s.execute(
            select(
                Entity.type,
                Entity.org_id,
                Entity.workspace_id,
                Entity.entity_id,
                Entity.attrs,
                Entity.location,
                Entity.extra_types,
            )
            .where(where)
            .limit(MAX_BOUNDED_ROWS)
        )
        for t, org, ws, eid, attrs, loc, extra in rows:
            seen = visible_attrs(attrs or {}, access.windows_for(org, ws, eid))
            for typ in dict.fromkeys([t, *(extra or [])]):
                ts = out[typ]
                ts.entity_count += 1
                for name, attr in seen.items():
                    ts.attributes[name].add(_attr_type(attr))
                    ts.attribute_counts[name] += 1
                if isinstance(loc, dict):
                    ts.attributes["location"].add("GeoProperty")
                    ts.attribute_counts["location"] += 1
        return dict(out)
    pg = s.get_bind().dialect.name == "postgresql"
    # Each type counts its entities: the first type (the column), then the others (entity_types, empty
    # unless entities have several types), so an entity of types A and B counts once under each.
    for typ, extra in ((Entity.type, False), (entity_types.c.type, True)):
        _count_types(s, out, where, typ, extra, pg)
    return dict(out)


def _count_types(
    s: Session, out: dict[str, TypeSummary], where: Any, typ: Any, extra: bool, pg: bool
) -> None:
    def base(*cols: Any) -> Any:
        q = select(typ, *cols).select_from(Entity)
        if extra:
            q = q.join(entity_types, entity_types.c.entity_pk == Entity.pk)
        return q

    # A missing location is stored as JSON null (not SQL NULL): ask the JSON type.
    has_loc = func.coalesce(
        JsonAttrs(Entity.location, "postgresql" if pg else "sqlite").json_type(()), "null"
    )
    located_n = func.sum(case((has_loc != "null", 1), else_=0))
    for t, n, located in s.execute(base(func.count(), located_n).where(where).group_by(typ)):
        out[t].entity_count += int(n)
        if located:
            out[t].attributes["location"].add("GeoProperty")
            out[t].attribute_counts["location"] += int(located)
    each = func.json_each(Entity.attrs).table_valued("key", "value").alias("a")
    atype = (
        func.json_extract_path_text(each.c.value, "type") if pg else func.json_extract(each.c.value, "$.type")
    )
    q = base(each.c.key, atype, func.count()).join(each, true()).where(where).group_by(typ, each.c.key, atype)
    for t, key, kind, n in s.execute(q):
        out[t].attributes[key].add(str(kind or "Property"))
        out[t].attribute_counts[key] += int(n)


def _attr_type(attr: object) -> str:
    t = attr.get("type") if isinstance(attr, dict) else None
    return str(t) if isinstance(t, str) else "Property"
