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
from sensorhub.authz.scope import US_MAX, US_MIN, WindowUS, readable_windows_us, visible_entities
from sensorhub.entities.models import Entity
from sensorhub.errors import BadRequest, NotFound
from sensorhub.kit.paging import LimitPolicy, OffsetBounds
from sensorhub.kit.time import iso, parse_time, to_us
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
    touched(e.org_id)  # read through columns, not Entity rows: say which organisation's data was read
    windows = readable_windows_us(access, e)
    attributes: dict[str, Any] = {}
    for x in series:
        p = latest_point(store, x.id, x.last_ts, x.last_value, windows)
        attributes[x.attribute] = {
            "value": p.value,
            "unit": x.unit,
            "observedAt": None if p.ts is None else iso(p.ts),
        }
    for name, prop in (e.attrs or {}).items():
        if name not in attributes and _state_visible(prop, windows):
            attributes[name] = {
                "value": prop["value"],
                "unit": prop.get("unitCode"),
                "observedAt": prop["observedAt"],
            }
    return attributes


def _device(
    e: Any, series: list[Any], store: TimeseriesStore, access: Access, workspaces: dict[str, str]
) -> dict[str, Any]:
    attributes = latest_attributes(e, series, store, access)
    return {
        "id": e.entity_id,
        "type": e.type,
        "name": e.name or e.entity_id,
        "workspace": workspaces.get(e.workspace_id, e.workspace_id),
        "attributes": attributes,
    }


def list_devices(
    s: Session, access: Access, workspaces: dict[str, str], type_: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Visible entities that have series, ordered by creation, with their latest values."""
    LIMITS.resolve(limit)
    OFFSETS.check(offset)
    entities = repository.devices_page(s, visible_entities(access), type_, limit, offset)
    by_entity = repository.series_of_entities(s, [e.pk for e in entities])
    store = store_for(s)
    return [_device(e, by_entity[e.pk], store, access, workspaces) for e in entities]


def get_device(s: Session, access: Access, workspaces: dict[str, str], ref: str) -> dict[str, Any]:
    e = visible_entity(s, access, ref)
    return _device(e, repository.series_of_entities(s, [e.pk])[e.pk], store_for(s), access, workspaces)


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
