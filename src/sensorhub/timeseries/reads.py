"""Time-series reads for the API: an entity's attributes, and multi-series queries on one time axis.

Every read resolves the entity through :func:`visible_entity` and clamps the requested range to the
access windows (``Access.clamp``), so a point outside what the credential may read never leaves here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from sensorhub.authz.access import Access
from sensorhub.authz.entities import visible_entity
from sensorhub.authz.scope import Tenanted, readable_windows_us, visible_entities
from sensorhub.entities.models import Entity
from sensorhub.errors import BadRequest, NotFound
from sensorhub.kit.time import to_us
from sensorhub.timeseries.backends import store_for
from sensorhub.timeseries.models import DEFAULT_TOPIC
from sensorhub.timeseries.query import WindowUS, check_resolution, fill_previous, read_series
from sensorhub.timeseries.repository import (
    EntityRow,
    SeriesRow,
    series_by_attribute,
    series_of_entities,
    visible_entity_series,
)
from sensorhub.timeseries.rollups import F64, I64, check_aggregation

MAX_QUERY_SERIES = 100
MAX_READ_ATTRIBUTES = 100  # `attribute` parameters of one entity read


@dataclass(slots=True)
class Column:
    name: str
    values: F64
    entity_id: str = ""
    attribute: str = ""
    unit: str | None = None
    aggregation: str | None = None


@dataclass(slots=True)
class Frame:
    """A read result: one time axis (µs) and named float columns (NaN = no value)."""

    start_us: int
    end_us: int
    bucket_us: int | None
    aggregation: str | None
    timestamps: I64
    columns: list[Column] = field(default_factory=list)
    entity_id: str | None = None


def check_range(start: datetime, end: datetime) -> tuple[int, int]:
    s, e = to_us(start), to_us(end)
    if e <= s:
        raise BadRequest("end_time must be after start_time (the range is half-open: [start_time, end_time))")
    return s, e


def _entity_windows(access: Access, e: Tenanted, start: datetime, end: datetime) -> list[WindowUS]:
    return readable_windows_us(access, e, start, end)


def entity_data(
    s: Session,
    access: Access,
    ref: str,
    start: datetime,
    end: datetime,
    attributes: Sequence[str] | None,
    resolution: int,
    aggregation: str,
    topic: str = DEFAULT_TOPIC,
) -> Frame:
    """The numeric attributes of one entity on one topic (the default one unless named) over
    [start, end), with at most ``resolution`` points."""
    start_us, end_us = check_range(start, end)
    check_resolution(resolution)
    check_aggregation(aggregation)
    if attributes and len(attributes) > MAX_READ_ATTRIBUTES:
        raise BadRequest(
            f"at most {MAX_READ_ATTRIBUTES} attribute parameters per request (got {len(attributes)}); "
            "omit attribute to read every numeric attribute"
        )
    store = store_for(s)
    # Plain rows, not ORM objects, in one statement: this is the hot path. Where no entity or several
    # match, the general lookup decides (404, the exact id among several, or 409).
    found = visible_entity_series(s, visible_entities(access), ref, topic)
    if found is None:
        entity = visible_entity(s, access, ref)
        e = EntityRow(entity.pk, entity.entity_id, entity.org_id, entity.workspace_id)
        all_series = [
            SeriesRow(x.id, x.attribute, x.unit) for x in series_of_entities(s, [e.pk], topic)[e.pk]
        ]
    else:
        e, all_series = found
    by_name = {x.attribute: x for x in all_series}
    if attributes:
        wanted = list(dict.fromkeys(attributes))
        missing = [a for a in wanted if a not in by_name]
        if missing:
            raise NotFound(
                f"entity '{ref}' has no numeric attribute {', '.join(repr(m) for m in missing)}"
                + (f"; it has: {', '.join(sorted(by_name))}" if by_name else "; it has no time series yet")
            )
        chosen = [by_name[a] for a in wanted]
    else:
        chosen = all_series
    windows = _entity_windows(access, e, start, end)
    res = read_series(store, [(x.id, windows, aggregation) for x in chosen], start_us, end_us, resolution)
    cols = [
        Column(x.attribute, d.values, e.entity_id, x.attribute, x.unit)
        for x, d in zip(chosen, res.series, strict=True)
    ]
    return Frame(
        start_us,
        end_us,
        res.bucket_us,
        aggregation if res.bucket_us is not None else None,
        res.timestamps,
        cols,
        entity_id=e.entity_id,
    )


@dataclass(frozen=True, slots=True)
class SeriesRef:
    entity_id: str
    attribute: str
    aggregation: str | None = None
    topic: str = DEFAULT_TOPIC

    @property
    def name(self) -> str:
        """The series' key in answers: ``<entity_id>.<attribute>``, plus ``@<topic>`` off the default
        topic."""
        base = f"{self.entity_id}.{self.attribute}"
        return base if self.topic == DEFAULT_TOPIC else f"{base}@{self.topic}"


def _mask_outside(timestamps: I64, bucket_us: int | None, windows: list[WindowUS]) -> np.ndarray:
    """True where a timestamp (or its bucket) does not overlap the readable windows."""
    width = bucket_us or 1
    inside = np.zeros(len(timestamps), bool)
    for lo, hi in windows:
        inside |= (timestamps + width > lo) & (timestamps < hi)
    return ~inside


def query(
    s: Session,
    access: Access,
    start: datetime,
    end: datetime,
    resolution: int,
    refs: Sequence[SeriesRef],
    default_aggregation: str = "avg",
    fill: str | None = None,
) -> Frame:
    """Several series (possibly of several entities) on one aligned time axis, keyed by name."""
    start_us, end_us = check_range(start, end)
    check_resolution(resolution)
    if not refs:
        raise BadRequest("series must list at least one {entity_id, attribute}")
    if len(refs) > MAX_QUERY_SERIES:
        raise BadRequest(f"at most {MAX_QUERY_SERIES} series per query (got {len(refs)})")
    if fill not in (None, "previous"):
        raise BadRequest(f"unknown fill '{fill}'; use null or \"previous\"")
    check_aggregation(default_aggregation)
    entities: dict[str, Entity] = {}
    requests: list[tuple[int, list[WindowUS], str]] = []
    meta: list[tuple[str, Entity, Any, str, list[WindowUS]]] = []
    seen: set[str] = set()
    for i, r in enumerate(refs):
        name = r.name
        if name in seen:
            raise BadRequest(f"series[{i}]: '{name}' is requested twice")
        seen.add(name)
        agg = check_aggregation(r.aggregation or default_aggregation)
        e = entities.get(r.entity_id) or visible_entity(s, access, r.entity_id)
        entities[r.entity_id] = e
        x = series_by_attribute(s, e.pk, r.attribute, r.topic)
        if x is None:
            on = "" if r.topic == DEFAULT_TOPIC else f" on topic '{r.topic}'"
            raise NotFound(
                f"series[{i}]: entity '{r.entity_id}' has no numeric attribute '{r.attribute}'{on}"
            )
        w = _entity_windows(access, e, start, end)
        requests.append((x.id, w, agg))
        meta.append((name, e, x, agg, w))
    res = read_series(store_for(s), requests, start_us, end_us, resolution)
    cols: list[Column] = []
    for (name, e, x, agg, w), d in zip(meta, res.series, strict=True):
        values = d.values
        if fill == "previous":
            values = fill_previous(values)
            # Never carry a value to a time the credential may not read.
            values = np.where(_mask_outside(res.timestamps, res.bucket_us, w), np.nan, values)
        cols.append(Column(name, values, e.entity_id, x.attribute, x.unit, agg if res.bucket_us else None))
    return Frame(start_us, end_us, res.bucket_us, None, res.timestamps, cols)
