"""Latest values (telemetry): devices with their attributes' latest points, and one row per sensor.

Latest points come from ``series.last_ts``/``last_value`` (one indexed query for a page of devices).
When a credential may read only some time windows and the latest point lies outside them, the latest
point inside them is looked up instead.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def _unbounded(windows: Sequence[WindowUS]) -> bool:
    return windows == [(US_MIN, US_MAX)]


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
    """:func:`latest_attributes` of many devices at once: the readable windows computed once per tenant
    (:class:`ReadableWindows`), the ``observedAt`` strings of all series in one vectorised pass."""
    windows = ReadableWindows(access)
    out: list[dict[str, Any]] = []
    stamped: list[dict[str, Any]] = []  # the attribute dicts whose observedAt is a timestamp, in order
    stamps: list[int] = []
    for e in entities:
        touched(e.org_id)  # read through columns, not Entity rows: say which organisation's data was read
        readable = windows.of(e)
        everything = _unbounded(readable)
        attributes: dict[str, Any] = {}
        for x in series[e.pk]:
            if everything:  # what latest_point answers for unbounded windows, without the call
                ts, value = (x.last_ts, x.last_value) if x.last_ts is not None else (None, None)
            else:
                p = latest_point(store, x.id, x.last_ts, x.last_value, readable)
                ts, value = p.ts, p.value
            item = attributes[x.attribute] = {"value": value, "unit": x.unit, "observedAt": None}
            if ts is not None:
                stamped.append(item)
                stamps.append(ts)
        for name, prop in (e.attrs or {}).items():
            if name not in attributes and _state_visible(prop, readable):
                attributes[name] = {
                    "value": prop["value"],
                    "unit": prop.get("unitCode"),
                    "observedAt": prop["observedAt"],
                }
        out.append(attributes)
    for item, text in zip(stamped, iso_many(stamps), strict=True):
        item["observedAt"] = text
    return out


def _devices(
    entities: Sequence[Any],
    series: dict[int, list[Any]],
    store: TimeseriesStore,
    access: Access,
    workspaces: dict[str, str],
) -> list[dict[str, Any]]:
    attributes = latest_attributes_of(entities, series, store, access)
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
    """Visible entities that have series, ordered by creation, with their latest values."""
    LIMITS.resolve(limit)
    OFFSETS.check(offset)
    entities = repository.devices_page(s, visible_entities(access), type_, limit, offset)
    by_entity = repository.series_of_entities(s, [e.pk for e in entities])
    return _devices(entities, by_entity, store_for(s), access, workspaces)


def get_device(s: Session, access: Access, workspaces: dict[str, str], ref: str) -> dict[str, Any]:
    e = visible_entity(s, access, ref)
    return _devices([e], repository.series_of_entities(s, [e.pk]), store_for(s), access, workspaces)[0]


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
