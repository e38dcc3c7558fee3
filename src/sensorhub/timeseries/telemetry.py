"""Latest values (telemetry): devices with their attributes' latest points, and one row per sensor.

Latest points come from ``series.last_ts``/``last_value`` (one indexed query for a page of devices).
When a credential may read only some time windows and the latest point lies outside them, the latest
point inside them is looked up instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from sensorhub.audit.usage import touched
from sensorhub.authz.access import Access
from sensorhub.authz.entities import visible_entity
from sensorhub.authz.scope import (
    US_MAX,
    US_MIN,
    ReadableWindows,
    WindowUS,
    readable_windows_us,
    visible_entities,
)
from sensorhub.entities.models import Entity
from sensorhub.errors import BadRequest, NotFound
from sensorhub.kit.paging import LimitPolicy, OffsetBounds
from sensorhub.kit.time import iso, iso_many, parse_time, to_us
from sensorhub.timeseries import repository
from sensorhub.timeseries.backends import store_for
from sensorhub.timeseries.models import Series
from sensorhub.timeseries.store import TimeseriesStore

# Paging of /api/devices and /api/sensors (declared on the routes too, so OpenAPI shows the bounds).
LIMITS = LimitPolicy(default=100, maximum=1000)
OFFSETS = OffsetBounds(1_000_000)


@dataclass(frozen=True, slots=True)
class Latest:
    ts: int | None
    value: float | None


_UNBOUNDED: list[WindowUS] = [(US_MIN, US_MAX)]


def _unbounded(windows: Sequence[WindowUS]) -> bool:
    return windows == _UNBOUNDED


def _in_windows(ts: int, windows: Sequence[WindowUS]) -> bool:
    return any(lo <= ts < hi for lo, hi in windows)


def latest_point(
    store: TimeseriesStore,
    series_id: int,
    last_ts: int | None,
    last_value: float | None,
    windows: Sequence[WindowUS],
) -> Latest:
    """The latest point of a series inside its readable ``windows`` (from :func:`readable_windows_us`)."""
    if last_ts is None or not windows:
        return Latest(None, None)
    if _in_windows(last_ts, windows):
        return Latest(last_ts, last_value)
    for lo, hi in sorted(windows, reverse=True):
        if lo > last_ts:
            continue
        hit = store.latest_in(series_id, lo, hi)
        if hit is not None:
            return Latest(*hit)
    return Latest(None, None)


def _state_visible(prop: Any, windows: Sequence[WindowUS]) -> bool:
    if not isinstance(prop, dict) or "observedAt" not in prop or "value" not in prop:
        return False
    if _unbounded(windows):
        return True
    try:
        return _in_windows(to_us(parse_time(str(prop["observedAt"]), "observedAt")), windows)
    except BadRequest:
        return False


def latest_attributes(e: Any, series: list[Any], store: TimeseriesStore, access: Access) -> dict[str, Any]:
    """A device's latest readable values ``{attribute: {value, unit, observedAt}}``: its series' latest
    points inside the readable windows, then its latest-state properties observed inside them. ``e`` is
    a row with the entity's ids and ``attrs``; ``series`` its series rows (:data:`SERIES_COLUMNS`)."""
    return latest_attributes_of([e], {e.pk: series}, store, access)[0]


def latest_attributes_of(
    entities: Sequence[Any], series: dict[int, list[Any]], store: TimeseriesStore, access: Access
) -> list[dict[str, Any]]:
    """:func:`latest_attributes` of many devices at once (``series`` by entity pk)."""
    rows = itertools.chain.from_iterable(series[e.pk] for e in entities)
    return _latest_attributes(entities, rows, store, access)


def _latest_attributes(
    entities: Sequence[Any], series_rows: Iterable[Sequence[Any]], store: TimeseriesStore, access: Access
) -> list[dict[str, Any]]:
    """The work of :func:`latest_attributes_of` in one pass over the page's series rows
    (:data:`SERIES_COLUMNS` order, entity by entity, each by name): the readable windows computed once
    per tenant (:class:`ReadableWindows`), the windows' check skipped where they are unbounded, each
    distinct ``observedAt`` made once, in one vectorised pass."""
    windows = ReadableWindows(access)
    # entity pk -> its attributes and its readable windows, None where they are unbounded
    by_pk: dict[int, tuple[dict[str, Any], list[WindowUS] | None]] = {}
    out: list[dict[str, Any]] = []
    for e in entities:
        touched(e.org_id)  # read through columns, not Entity rows: say which organisation's data was read
        readable = windows.of(e)
        attributes: dict[str, Any] = {}
        by_pk[e.pk] = (attributes, None if _unbounded(readable) else readable)
        out.append(attributes)
    stamped: list[dict[str, Any]] = []  # the attribute dicts whose observedAt is (for now) a timestamp
    for sid, pk, attribute, unit, ts, value in series_rows:
        attributes, bounded = by_pk[pk]
        if ts is None:
            value = None
        elif bounded is not None and not _in_windows(ts, bounded):
            p = latest_point(store, sid, ts, value, bounded)
            ts, value = p.ts, p.value
        item = attributes[attribute] = {"value": value, "unit": unit, "observedAt": ts}
        if ts is not None:
            stamped.append(item)
    _observed_at(stamped)
    _add_states(entities, out, by_pk)
    return out


def _observed_at(stamped: list[dict[str, Any]]) -> None:
    """Each ``observedAt`` timestamp made its ISO string, each distinct one once (devices of one
    gateway often share their last time)."""
    if not stamped:
        return
    distinct = list(dict.fromkeys(item["observedAt"] for item in stamped))
    texts = dict(zip(distinct, iso_many(distinct), strict=True))
    for item in stamped:
        item["observedAt"] = texts[item["observedAt"]]


def _add_states(
    entities: Sequence[Any],
    out: list[dict[str, Any]],
    by_pk: dict[int, tuple[dict[str, Any], list[WindowUS] | None]],
) -> None:
    """The latest-state properties observed inside the readable windows, after the series."""
    for e, attributes in zip(entities, out, strict=True):
        if not e.attrs:
            continue
        bounded = by_pk[e.pk][1]
        readable = _UNBOUNDED if bounded is None else bounded
        for name, prop in e.attrs.items():
            if name not in attributes and _state_visible(prop, readable):
                attributes[name] = {
                    "value": prop["value"],
                    "unit": prop.get("unitCode"),
                    "observedAt": prop["observedAt"],
                }


def _devices(
    entities: Sequence[Any],
    attributes: list[dict[str, Any]],
    workspaces: dict[str, str],
) -> list[dict[str, Any]]:
    return [
        {
            "id": e.entity_id,
            "type": e.type,
            "name": e.name or e.entity_id,
            "workspace": workspaces.get(e.workspace_id, e.workspace_id),
            "attributes": a,
        }
        for e, a in zip(entities, attributes, strict=True)
    ]


def list_devices(
    s: Session, access: Access, workspaces: dict[str, str], type_: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Visible entities that have series, ordered by creation, with their latest values: read through
    the driver (:func:`repository.devices_with_series`), plain tuples rendered in one pass."""
    LIMITS.resolve(limit)
    OFFSETS.check(offset)
    entities, series = repository.devices_with_series(s, visible_entities(access), type_, limit, offset)
    return _devices(entities, _latest_attributes(entities, series, store_for(s), access), workspaces)


def get_device(s: Session, access: Access, workspaces: dict[str, str], ref: str) -> dict[str, Any]:
    e = visible_entity(s, access, ref)
    series = repository.series_of_entities(s, [e.pk])
    return _devices([e], latest_attributes_of([e], series, store_for(s), access), workspaces)[0]


def _sensor(e: Entity, x: Series, store: TimeseriesStore, access: Access) -> dict[str, Any]:
    touched(e.org_id)
    p = latest_point(store, x.id, x.last_ts, x.last_value, readable_windows_us(access, e))
    return {
        "id": f"{e.entity_id}.{x.attribute}",
        "entity_id": e.entity_id,
        "attribute": x.attribute,
        "value": p.value,
        "unit": x.unit,
        "observedAt": None if p.ts is None else iso(p.ts),
    }


def list_sensors(s: Session, access: Access, limit: int, offset: int) -> list[dict[str, Any]]:
    LIMITS.resolve(limit)
    OFFSETS.check(offset)
    rows = repository.sensors_page(s, visible_entities(access), limit, offset)
    store = store_for(s)
    return [_sensor(e, x, store, access) for e, x in rows]


def get_sensor(s: Session, access: Access, sensor_id: str) -> dict[str, Any]:
    """A sensor by ``<entity_id>.<attribute>`` (entity ids may contain dots: every split is tried)."""
    parts = sensor_id.split(".")
    for i in range(len(parts) - 1, 0, -1):
        ref, attribute = ".".join(parts[:i]), ".".join(parts[i:])
        try:
            e = visible_entity(s, access, ref)
        except NotFound:
            continue
        x = repository.series_by_attribute(s, e.pk, attribute)
        if x is not None:
            return _sensor(e, x, store_for(s), access)
    raise NotFound(f"sensor '{sensor_id}' not found (sensor ids are <entity_id>.<attribute>)")
