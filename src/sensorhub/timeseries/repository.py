"""SQL of the time-series domain's catalogue: which series exist, for which entity, and which a reader
may list. (Points and rollups are read and written through :mod:`sensorhub.timeseries.store`.)

Listings require a :class:`~sensorhub.authz.scope.VisibleEntities` (only :mod:`sensorhub.authz` makes
one, from a request's ``Access``) and filter on it in SQL; a single entity is resolved by
:func:`sensorhub.authz.entities.visible_entity` before its series are looked up here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from sqlalchemy import (
    Integer,
    Row,
    Select,
    String,
    Text,
    and_,
    bindparam,
    cast,
    distinct,
    exists,
    func,
    or_,
    select,
)
from sqlalchemy.orm import Session

from sensorhub.authz.scope import VisibleEntities
from sensorhub.db import driver_rows
from sensorhub.entities.models import Entity
from sensorhub.timeseries.models import DEFAULT_TOPIC, Series

SERIES_COLUMNS = (
    Series.id,
    Series.entity_pk,
    Series.attribute,
    Series.unit,
    Series.last_ts,
    Series.last_value,
)
DEVICE_COLUMNS = (
    Entity.pk,
    Entity.entity_id,
    Entity.type,
    Entity.name,
    Entity.org_id,
    Entity.workspace_id,
    Entity.attrs,
)


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """A listed series with the entity and tenant it belongs to."""

    id: int
    entity_id: str
    attribute: str
    unit: str | None
    org_id: str
    workspace_id: str
    topic: str = DEFAULT_TOPIC


class EntityRow(NamedTuple):
    """An entity as the reads need it: its key and the ids its tenancy is decided by."""

    pk: int
    entity_id: str
    org_id: str
    workspace_id: str | None


class SeriesRow(NamedTuple):
    id: int
    attribute: str
    unit: str | None


def _entity_series_statement(visible: VisibleEntities) -> Select[*tuple[Any, ...]]:
    e, x = Entity.__table__.c, Series.__table__.c
    ref = bindparam("ref", "", String())
    topic = bindparam("topic", "", String())
    return (
        select(e.pk, e.entity_id, e.org_id, e.workspace_id, x.id, x.attribute, x.unit)
        .select_from(
            Entity.__table__.outerjoin(Series.__table__, and_(x.entity_pk == e.pk, x.topic == topic))
        )
        .where(visible.where(), or_(e.entity_id == ref, e.asset_id == ref))
        .order_by(e.pk, x.attribute)
    )


def visible_entity_series(
    s: Session, visible: VisibleEntities, ref: str, topic: str = DEFAULT_TOPIC
) -> tuple[EntityRow, list[SeriesRow]] | None:
    """The one ``visible`` entity with NGSI-LD id or asset id ``ref`` and its series of ``topic`` (by
    name), in one statement through the driver, compiled once per reach (:func:`driver_rows`: building
    and compiling it is most of what SQLAlchemy would cost per request, the SQL itself is a two-index
    lookup); None when no entity or several match (then :func:`sensorhub.authz.entities.visible_entity`
    decides, and words the error)."""
    if visible.is_empty:
        return None
    rows = driver_rows(
        s,
        ("visible_entity_series", visible.key),
        lambda: _entity_series_statement(visible),
        {"ref": ref, "topic": topic},
    )
    if not rows or any(r[0] != rows[0][0] for r in rows):
        return None
    first = rows[0]
    entity = EntityRow(first[0], first[1], first[2], first[3])
    return entity, [SeriesRow(r[4], r[5], r[6]) for r in rows if r[4] is not None]


def series_by_attribute(
    s: Session, entity_pk: int, attribute: str, topic: str = DEFAULT_TOPIC
) -> Series | None:
    """The series (entity, attribute, topic), or ``None``."""
    return s.scalar(
        select(Series).where(
            Series.entity_pk == entity_pk, Series.attribute == attribute, Series.topic == topic
        )
    )


def series_of_entities(
    s: Session, entity_pks: Sequence[int], topic: str = DEFAULT_TOPIC
) -> dict[int, list[Any]]:
    """Series rows (:data:`SERIES_COLUMNS`; plain rows, not ORM objects: hot paths) of one topic per
    entity, by name. Readers that name no topic see the default one."""
    out: dict[int, list[Any]] = {pk: [] for pk in entity_pks}
    if entity_pks:
        q = (
            select(*SERIES_COLUMNS)
            .where(Series.entity_pk.in_(list(entity_pks)), Series.topic == topic)
            .order_by(Series.entity_pk, Series.attribute)
        )
        for x in s.execute(q):
            out[x.entity_pk].append(x)
    return out


def listable_series(
    s: Session,
    visible: VisibleEntities,
    *,
    entity: str | None = None,
    attribute: str | None = None,
    topic: str = DEFAULT_TOPIC,
) -> list[SeriesInfo]:
    """The series of one topic (the default one unless named) of the ``visible`` entities, narrowed to
    an entity (id or asset id) and an attribute when given. Time windows are applied by the reads."""
    q = (
        select(Series.id, Entity.entity_id, Series.attribute, Series.unit, Entity.org_id, Entity.workspace_id)
        .join(Entity, Entity.pk == Series.entity_pk)
        .where(visible.where(), Series.topic == topic)
    )
    if entity is not None:
        q = q.where(or_(Entity.entity_id == entity, Entity.asset_id == entity))
    if attribute is not None:
        q = q.where(Series.attribute == attribute)
    return [SeriesInfo(*r) for r in s.execute(q).tuples()]


def latest_ts(s: Session, series_ids: Sequence[int]) -> int | None:
    """The time (µs) of the latest stored point among the series."""
    value = s.scalar(select(func.max(Series.last_ts)).where(Series.id.in_(list(series_ids))))
    return None if value is None else int(value)


def last_ts_by_series(s: Session, series_ids: Sequence[int]) -> dict[int, int | None]:
    if not series_ids:
        return {}
    q = select(Series.id, Series.last_ts).where(Series.id.in_(list(series_ids)))
    return dict(s.execute(q).tuples().all())


class DeviceRow(NamedTuple):
    """A device of a page read through the driver: :data:`DEVICE_COLUMNS`, ``attrs`` decoded."""

    pk: int
    entity_id: str
    type: str
    name: str | None
    org_id: str
    workspace_id: str
    attrs: dict[str, Any] | None


def _decode_attrs(text: str | None) -> dict[str, Any] | None:
    # What the JSON column type gives (json.loads of the stored text), without loading empty ones.
    return None if text is None or text == "{}" else json.loads(text)


def _devices_page_statement(visible: VisibleEntities, typed: bool) -> Select[*tuple[Any, ...]]:
    q = select(*DEVICE_COLUMNS[:-1], cast(Entity.attrs, Text)).where(
        _device_where(visible, DeviceSelection())
    )
    if typed:
        q = q.where(Entity.type == bindparam("type", "", String))
    return q.order_by(Entity.pk).limit(bindparam("limit", 0, Integer)).offset(bindparam("offset", 0, Integer))


def devices_page(
    s: Session, visible: VisibleEntities, type_: str | None, limit: int, offset: int
) -> list[DeviceRow]:
    """A page of the ``visible`` entities that have series, by creation (through the driver: the
    statement compiled once per visibility, no SQLAlchemy row processing)."""
    rows = driver_rows(
        s,
        ("devices_page", visible.key, bool(type_)),
        lambda: _devices_page_statement(visible, bool(type_)),
        {"type": type_, "limit": limit, "offset": offset} if type_ else {"limit": limit, "offset": offset},
    )
    return [
        DeviceRow(pk, entity_id, type_, name, org_id, workspace_id, _decode_attrs(attrs))
        for pk, entity_id, type_, name, org_id, workspace_id, attrs in rows
    ]


def _series_rows_statement(n: int) -> Select[*tuple[Any, ...]]:
    pks = [bindparam(f"pk{i}", 0, Integer) for i in range(n)]
    return (
        select(*SERIES_COLUMNS)
        .where(Series.entity_pk.in_(pks), Series.topic == bindparam("topic", "", String))
        .order_by(Series.entity_pk, Series.attribute)
    )


def series_rows_of_entities(
    s: Session, entity_pks: Sequence[int], topic: str = DEFAULT_TOPIC
) -> list[tuple[Any, ...]]:
    """The series of one topic of the entities as plain tuples (:data:`SERIES_COLUMNS`, through the
    driver), by entity and name: :func:`series_of_entities` for hot paths that read them once."""
    if not entity_pks:
        return []
    values: dict[str, Any] = {f"pk{i}": pk for i, pk in enumerate(entity_pks)}
    values["topic"] = topic
    n = len(entity_pks)
    return driver_rows(s, ("series_rows_of_entities", n), lambda: _series_rows_statement(n), values)


def _devices_with_series_statement(visible: VisibleEntities, typed: bool) -> Select[*tuple[Any, ...]]:
    page = _devices_page_statement(visible, typed).subquery()
    return (
        select(page, *SERIES_COLUMNS)
        .join(Series, Series.entity_pk == page.c.pk)
        .where(Series.topic == DEFAULT_TOPIC)
        .order_by(page.c.pk, Series.attribute)
    )


def devices_with_series(
    s: Session, visible: VisibleEntities, type_: str | None, limit: int, offset: int
) -> tuple[list[DeviceRow], list[tuple[Any, ...]]]:
    """:func:`devices_page` and the page's series of the default topic (:func:`series_rows_of_entities`).
    On PostgreSQL in one statement (a round trip costs more there than the entity columns repeated on
    each series row); on SQLite in two (there, making those repeated values costs more than a statement)."""
    if s.get_bind().dialect.name == "sqlite":
        entities = devices_page(s, visible, type_, limit, offset)
        return entities, series_rows_of_entities(s, [e.pk for e in entities])
    width = len(DEVICE_COLUMNS)
    rows = driver_rows(
        s,
        ("devices_with_series", visible.key, bool(type_)),
        lambda: _devices_with_series_statement(visible, bool(type_)),
        {"type": type_, "limit": limit, "offset": offset} if type_ else {"limit": limit, "offset": offset},
    )
    found: list[DeviceRow] = []
    last = None
    for r in rows:
        if r[0] != last:
            last = r[0]
            pk, entity_id, type_of, name, org_id, workspace_id, attrs = r[:width]
            found.append(DeviceRow(pk, entity_id, type_of, name, org_id, workspace_id, _decode_attrs(attrs)))
    return found, [r[width:] for r in rows]


def sensors_page(
    s: Session, visible: VisibleEntities, limit: int, offset: int
) -> list[tuple[Entity, Series]]:
    """A page of (entity, series) pairs of the ``visible`` entities, by entity creation then attribute."""
    q = (
        select(Entity, Series)
        .join(Series, Series.entity_pk == Entity.pk)
        .where(visible.where(), Series.topic == DEFAULT_TOPIC)
        .order_by(Entity.pk, Series.attribute)
        .limit(limit)
        .offset(offset)
    )
    return list(s.execute(q).tuples())


def series_of_listed(
    s: Session, visible: VisibleEntities, entity_ids: Sequence[str], *, every_topic: bool = False
) -> list[SeriesInfo]:
    """The series of the listed entities (by NGSI-LD id) among ``visible``, by entity and name (then
    topic); an entity id shared by several organisations yields each organisation's series (``org_id``
    tells them apart). The default topic's only, unless ``every_topic``. Time windows are applied by the
    reads."""
    if not entity_ids:
        return []
    q = (
        select(
            Series.id,
            Entity.entity_id,
            Series.attribute,
            Series.unit,
            Entity.org_id,
            Entity.workspace_id,
            Series.topic,
        )
        .join(Entity, Entity.pk == Series.entity_pk)
        .where(visible.where(), Entity.entity_id.in_(list(entity_ids)))
        .order_by(Entity.entity_id, Series.attribute, Series.topic)
    )
    if not every_topic:
        q = q.where(Series.topic == DEFAULT_TOPIC)
    return [SeriesInfo(*r) for r in s.execute(q).tuples()]


def series_of_entity_topics(s: Session, entity_pk: int) -> list[Any]:
    """Every series of one entity, on every topic: rows ``(id, attribute, unit, topic)`` by name, then
    topic (the NGSI-LD temporal API's multi-attributes, see compat/ngsi_ld/temporal.py)."""
    q = (
        select(Series.id, Series.attribute, Series.unit, Series.topic)
        .where(Series.entity_pk == entity_pk)
        .order_by(Series.attribute, Series.topic)
    )
    return list(s.execute(q))


Comparison = Literal["eq", "ne", "gt", "gte", "lt", "lte"]


@dataclass(frozen=True, slots=True)
class ValueFilter:
    """A device's latest value of ``attribute`` compared with ``value`` (``series.last_value``)."""

    attribute: str
    op: Comparison
    value: float


def _compare(column: Any, op: Comparison, value: float) -> Any:
    return {
        "eq": column == value,
        "ne": column != value,
        "gt": column > value,
        "gte": column >= value,
        "lt": column < value,
        "lte": column <= value,
    }[op]


@dataclass(frozen=True, slots=True)
class DeviceSelection:
    """Which devices (entities with series) a listing selects, beyond what the reader may see."""

    workspace_ids: frozenset[str] | None = None
    types: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    search: str | None = None  # case-insensitive substring of the name or the id
    values: tuple[ValueFilter, ...] = ()


def _device_where(visible: VisibleEntities, sel: DeviceSelection) -> Any:
    parts: list[Any] = [
        visible.within(workspace_ids=sel.workspace_ids).where(),
        exists().where(Series.entity_pk == Entity.pk, Series.topic == DEFAULT_TOPIC),
    ]
    if sel.types:
        parts.append(Entity.type.in_(sel.types))
    if sel.ids:
        parts.append(or_(Entity.entity_id.in_(sel.ids), Entity.asset_id.in_(sel.ids)))
    if sel.search:
        term = sel.search.lower()
        parts.append(
            or_(
                func.lower(func.coalesce(Entity.name, "")).contains(term, autoescape=True),
                func.lower(Entity.entity_id).contains(term, autoescape=True),
            )
        )
    for f in sel.values:
        parts.append(
            exists().where(
                Series.entity_pk == Entity.pk,
                Series.attribute == f.attribute,
                Series.topic == DEFAULT_TOPIC,
                _compare(Series.last_value, f.op, f.value),
            )
        )
    return and_(*parts)


def select_devices(
    s: Session, visible: VisibleEntities, sel: DeviceSelection, after_pk: int | None, limit: int
) -> list[Row[Any]]:
    """The ``visible`` devices that match ``sel`` (:data:`DEVICE_COLUMNS`), by creation, after a key."""
    q = select(*DEVICE_COLUMNS).where(_device_where(visible, sel))
    if after_pk is not None:
        q = q.where(Entity.pk > after_pk)
    return list(s.execute(q.order_by(Entity.pk).limit(limit)))


def count_devices(s: Session, visible: VisibleEntities, sel: DeviceSelection) -> int:
    return int(s.scalar(select(func.count()).select_from(Entity).where(_device_where(visible, sel))) or 0)


def workspaces_with_visible_entities(s: Session, visible: VisibleEntities) -> set[str]:
    """The workspaces holding at least one of the ``visible`` entities."""
    q = select(distinct(Entity.workspace_id)).where(visible.where())
    return {str(w) for w in s.scalars(q)}


def series_of_device(s: Session, entity_pk: int, topic: str | None = None) -> list[Series]:
    """Every series of one entity (of one topic when given), by topic then attribute."""
    q = select(Series).where(Series.entity_pk == entity_pk)
    if topic is not None:
        q = q.where(Series.topic == topic)
    return list(s.scalars(q.order_by(Series.topic, Series.attribute)))


def topics_of(s: Session, entity_pk: int) -> list[str]:
    """The topics an entity has series on, sorted."""
    q = select(Series.topic).where(Series.entity_pk == entity_pk).distinct().order_by(Series.topic)
    return list(s.scalars(q))
