"""Latest values (telemetry): devices with their attributes' latest points, and one row per sensor.

Latest points come from ``series.last_ts``/``last_value`` (one indexed query for a page of devices).
When a credential may read only some time windows and the latest point lies outside them, the latest
point inside them is looked up instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from sensorhub.audit.usage import touched
from sensorhub.authz.access import Access, Window
from sensorhub.authz.entities import visible_entity
from sensorhub.authz.scope import visible_entities
from sensorhub.entities.models import Entity
from sensorhub.errors import BadRequest, NotFound
from sensorhub.kit.time import iso, opt_us, parse_time, to_us
from sensorhub.timeseries.backends import store_for
from sensorhub.timeseries.models import Series
from sensorhub.timeseries.store import TimeseriesStore

MAX_PAGE = 1000
MAX_OFFSET = 1_000_000


def check_page(limit: int, offset: int) -> None:
    if limit < 1 or limit > MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE} (got {limit})")
    if offset < 0 or offset > MAX_OFFSET:
        raise BadRequest(f"offset must be between 0 and {MAX_OFFSET} (got {str(offset)[:30]})")


@dataclass(frozen=True, slots=True)
class Latest:
    ts: int | None
    value: float | None


def _unbounded(windows: Sequence[Window]) -> bool:
    return len(windows) == 1 and windows[0] == (None, None)


def _in_windows(ts: int, windows: Sequence[Window]) -> bool:
    for a, b in windows:
        lo, hi = opt_us(a), opt_us(b)
        if (lo is None or ts >= lo) and (hi is None or ts < hi):
            return True
    return False


def latest_point(
    store: TimeseriesStore,
    series_id: int,
    last_ts: int | None,
    last_value: float | None,
    windows: Sequence[Window],
) -> Latest:
    """The latest readable point of a series."""
    if last_ts is None or not windows:
        return Latest(None, None)
    if _unbounded(windows) or _in_windows(last_ts, windows):
        return Latest(last_ts, last_value)
    for a, b in sorted(windows, key=lambda w: opt_us(w[0]) or -(2**63), reverse=True):
        lo, hi = opt_us(a), opt_us(b)
        if lo is not None and lo > last_ts:
            continue
        hit = store.latest_in(series_id, lo, hi)
        if hit is not None:
            return Latest(*hit)
    return Latest(None, None)


def _state_visible(prop: Any, windows: Sequence[Window]) -> bool:
    if not isinstance(prop, dict) or "observedAt" not in prop or "value" not in prop:
        return False
    if _unbounded(windows):
        return True
    try:
        return _in_windows(to_us(parse_time(str(prop["observedAt"]), "observedAt")), windows)
    except BadRequest:
        return False


def _device(
    e: Any, series: list[Any], store: TimeseriesStore, access: Access, workspaces: dict[str, str]
) -> dict[str, Any]:
    touched(e.org_id)  # read through columns, not Entity rows: say which organisation's data was read
    windows = access.windows_for(e.org_id, e.workspace_id, e.entity_id)
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
    return {
        "id": e.entity_id,
        "type": e.type,
        "name": e.name or e.entity_id,
        "workspace": workspaces.get(e.workspace_id, e.workspace_id),
        "attributes": attributes,
    }


_SERIES_COLUMNS = (
    Series.id,
    Series.entity_pk,
    Series.attribute,
    Series.unit,
    Series.last_ts,
    Series.last_value,
)
_ENTITY_COLUMNS = (
    Entity.pk,
    Entity.entity_id,
    Entity.type,
    Entity.name,
    Entity.org_id,
    Entity.workspace_id,
    Entity.attrs,
)


def _series_by_entity(s: Session, pks: list[int]) -> dict[int, list[Any]]:
    """Series rows (plain rows, not ORM objects: this is the hot path of /api/devices) per entity."""
    out: dict[int, list[Any]] = {pk: [] for pk in pks}
    if pks:
        q = (
            select(*_SERIES_COLUMNS)
            .where(Series.entity_pk.in_(pks))
            .order_by(Series.entity_pk, Series.attribute)
        )
        for x in s.execute(q):
            out[x.entity_pk].append(x)
    return out


def list_devices(
    s: Session, access: Access, workspaces: dict[str, str], type_: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Visible entities that have series, ordered by creation, with their latest values."""
    check_page(limit, offset)
    q = select(*_ENTITY_COLUMNS).where(
        visible_entities(access).where(),
        exists().where(Series.entity_pk == Entity.pk),
    )
    if type_:
        q = q.where(Entity.type == type_)
    entities = list(s.execute(q.order_by(Entity.pk).limit(limit).offset(offset)))
    by_entity = _series_by_entity(s, [e.pk for e in entities])
    store = store_for(s)
    return [_device(e, by_entity[e.pk], store, access, workspaces) for e in entities]


def get_device(s: Session, access: Access, workspaces: dict[str, str], ref: str) -> dict[str, Any]:
    e = visible_entity(s, access, ref)
    return _device(e, _series_by_entity(s, [e.pk])[e.pk], store_for(s), access, workspaces)


def _sensor(e: Entity, x: Series, store: TimeseriesStore, access: Access) -> dict[str, Any]:
    touched(e.org_id)
    p = latest_point(
        store, x.id, x.last_ts, x.last_value, access.windows_for(e.org_id, e.workspace_id, e.entity_id)
    )
    return {
        "id": f"{e.entity_id}.{x.attribute}",
        "entity_id": e.entity_id,
        "attribute": x.attribute,
        "value": p.value,
        "unit": x.unit,
        "observedAt": None if p.ts is None else iso(p.ts),
    }


def list_sensors(s: Session, access: Access, limit: int, offset: int) -> list[dict[str, Any]]:
    check_page(limit, offset)
    rows = s.execute(
        select(Entity, Series)
        .join(Series, Series.entity_pk == Entity.pk)
        .where(visible_entities(access).where())
        .order_by(Entity.pk, Series.attribute)
        .limit(limit)
        .offset(offset)
    ).tuples()
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
        x = s.scalar(select(Series).where(Series.entity_pk == e.pk, Series.attribute == attribute))
        if x is not None:
            return _sensor(e, x, store_for(s), access)
    raise NotFound(f"sensor '{sensor_id}' not found (sensor ids are <entity_id>.<attribute>)")
