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

from sqlalchemy import case, func, select, true
from sqlalchemy.orm import Session

from sensorhub.authz.access import Access
from sensorhub.authz.scope import visible_entities
from sensorhub.entities.models import Entity
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
            )
            .where(where)
            .limit(MAX_BOUNDED_ROWS)
        )
        for t, org, ws, eid, attrs, loc in rows:
            ts = out[t]
            ts.entity_count += 1
            for name, attr in visible_attrs(attrs or {}, access.windows_for(org, ws, eid)).items():
                ts.attributes[name].add(_attr_type(attr))
                ts.attribute_counts[name] += 1
            if isinstance(loc, dict):
                ts.attributes["location"].add("GeoProperty")
                ts.attribute_counts["location"] += 1
        return dict(out)
    pg = s.get_bind().dialect.name == "postgresql"
    # A missing location is stored as JSON null (not SQL NULL): ask the JSON type.
    has_loc = func.coalesce(
        JsonAttrs(Entity.location, "postgresql" if pg else "sqlite").json_type(()), "null"
    )
    located_n = func.sum(case((has_loc != "null", 1), else_=0))
    for t, n, located in s.execute(
        select(Entity.type, func.count(), located_n).where(where).group_by(Entity.type)
    ):
        out[t].entity_count = int(n)
        if located:
            out[t].attributes["location"].add("GeoProperty")
            out[t].attribute_counts["location"] = int(located)
    each = func.json_each(Entity.attrs).table_valued("key", "value").alias("a")
    atype = (
        func.json_extract_path_text(each.c.value, "type") if pg else func.json_extract(each.c.value, "$.type")
    )
    q = (
        select(Entity.type, each.c.key, atype, func.count())
        .select_from(Entity)
        .join(each, true())
        .where(where)
        .group_by(Entity.type, each.c.key, atype)
    )
    for t, key, kind, n in s.execute(q):
        out[t].attributes[key].add(str(kind or "Property"))
        out[t].attribute_counts[key] += int(n)
    return dict(out)


def _attr_type(attr: object) -> str:
    t = attr.get("type") if isinstance(attr, dict) else None
    return str(t) if isinstance(t, str) else "Property"
