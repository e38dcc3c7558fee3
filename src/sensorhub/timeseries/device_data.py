"""A device's data topic by topic (the reads behind Akenza's ``/v3/devices/{id}/query…``).

A *sample* is what one device reported at one timestamp on one topic: the values of every numeric
series of that topic at that instant, ``{attribute: value}``. Every read is cut to the windows the
credential may read (``authz``), as every other time-series read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy.orm import Session

from sensorhub.authz.access import Access
from sensorhub.authz.entities import visible_entity
from sensorhub.authz.scope import readable_windows_us
from sensorhub.entities.models import Entity
from sensorhub.errors import BadRequest, NotFound
from sensorhub.kit.time import to_us
from sensorhub.timeseries.backends import store_for
from sensorhub.timeseries.models import DEFAULT_TOPIC
from sensorhub.timeseries.query import WindowUS, read_aggregated, read_raw, read_recent
from sensorhub.timeseries.repository import series_by_attribute, series_of_device, topics_of
from sensorhub.timeseries.rollups import F64, I64, check_aggregation

MAX_SAMPLES = 10_000
MAX_SKIP = 1_000_000
MAX_BUCKETS = 100_000
DAY_US = 86_400_000_000


@dataclass(frozen=True, slots=True)
class SeriesRead:
    """One series of a device read over ``[start, end)``: the device (``ref``), the ``topic`` and the
    attribute (``key``), its points combined by ``aggregation``."""

    ref: str
    topic: str
    key: str
    aggregation: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Sample:
    timestamp_us: int
    topic: str
    data: dict[str, float]


def topics(s: Session, access: Access, ref: str) -> tuple[Entity, list[str]]:
    """The topics the device has data series on, sorted."""
    e = visible_entity(s, access, ref)
    return e, topics_of(s, e.pk)


def _windows(access: Access, e: Entity, start: datetime | None, end: datetime | None) -> list[WindowUS]:
    return readable_windows_us(access, e, start, end)


def samples(
    s: Session,
    access: Access,
    ref: str,
    topic: str,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    skip: int,
    newest_first: bool,
) -> tuple[Entity, list[Sample]]:
    """The device's samples on ``topic`` in ``[start, end)`` (either bound may be open), ``skip`` then
    at most ``limit`` of them, by time (newest first unless ``newest_first`` is false)."""
    if not 1 <= limit <= MAX_SAMPLES:
        raise BadRequest(f"limit must be between 1 and {MAX_SAMPLES}")
    if not 0 <= skip <= MAX_SKIP:
        raise BadRequest(f"skip must be between 0 and {MAX_SKIP}")
    e = visible_entity(s, access, ref)
    series = series_of_device(s, e.pk, topic)
    windows = _windows(access, e, start, end)
    if not series or not windows:
        return e, []
    store = store_for(s)
    want = skip + limit
    cols: list[tuple[str, I64, F64]] = []
    for x in series:
        read = read_recent if newest_first else read_raw
        ts, vals = read(store, x.id, windows, want)
        cols.append((x.attribute, ts, vals))
    non_empty = [ts for _a, ts, _v in cols if len(ts)]
    if not non_empty:
        return e, []
    axis = np.unique(np.concatenate(non_empty))
    if newest_first:
        axis = axis[::-1]
    axis = axis[skip:want]
    out: dict[int, dict[str, float]] = {int(t): {} for t in axis}
    for attr, ts, vals in cols:
        keep = np.isin(ts, axis)
        for t, v in zip(ts[keep].tolist(), vals[keep].tolist(), strict=True):
            out[t][attr] = v
    return e, [Sample(t, topic, d) for t, d in out.items()]


def latest_sample(s: Session, access: Access, ref: str, topic: str | None) -> tuple[Entity, Sample | None]:
    """The device's latest sample: on ``topic``, or on whichever topic reported last."""
    e = visible_entity(s, access, ref)
    windows = _windows(access, e, None, None)
    if not windows:
        return e, None
    store = store_for(s)
    best: tuple[int, str] | None = None
    for x in series_of_device(s, e.pk, topic):
        for lo, hi in reversed(windows):
            p = store.latest_in(x.id, lo, hi)
            if p is not None:
                if best is None or p[0] > best[0]:
                    best = (p[0], x.topic)
                break
    if best is None:
        return e, None
    t, on = best
    data: dict[str, float] = {}
    for x in series_of_device(s, e.pk, on):
        ts, vals = store.fetch_raw(x.id, t, t + 1)
        if len(ts):
            data[x.attribute] = float(vals[0])
    return e, Sample(t, on, data)


def _series_windows(
    s: Session, access: Access, read: SeriesRead
) -> tuple[Entity, int | None, list[WindowUS]]:
    if to_us(read.start) >= to_us(read.end):
        raise BadRequest("interval.from must be before interval.to")
    e = visible_entity(s, access, read.ref)
    x = series_by_attribute(s, e.pk, read.key, read.topic)
    if x is None:
        return e, None, []
    return e, x.id, _windows(access, e, read.start, read.end)


def time_series(s: Session, access: Access, read: SeriesRead, bucket_us: int) -> tuple[Entity, I64, F64]:
    """The series' ``aggregation`` per epoch-aligned bucket of ``bucket_us`` over ``[start, end)``;
    only buckets holding data."""
    check_aggregation(read.aggregation)
    if (to_us(read.end) - to_us(read.start)) // bucket_us > MAX_BUCKETS:
        raise BadRequest(f"the interval holds more than {MAX_BUCKETS} buckets; use a longer bucketInterval")
    e, sid, windows = _series_windows(s, access, read)
    if sid is None or not windows:
        return e, np.empty(0, np.int64), np.empty(0, np.float64)
    ts, vals = read_aggregated(store_for(s), sid, windows, bucket_us, read.aggregation)
    return e, ts, vals


def kpi(s: Session, access: Access, read: SeriesRead) -> tuple[Entity, float | None]:
    """One ``aggregation`` of the series over ``[start, end)`` (exact: combined from day, hour and
    minute rollups and raw edges). ``None`` when it holds no point."""
    aggregation = read.aggregation
    check_aggregation(aggregation)
    e, sid, windows = _series_windows(s, access, read)
    if sid is None or not windows:
        return e, None
    store = store_for(s)

    def per_day(agg: str) -> F64:
        return read_aggregated(store, sid, windows, DAY_US, agg)[1]

    if aggregation == "avg":
        sums, counts = per_day("sum"), per_day("count")
        return e, (float(sums.sum() / counts.sum()) if len(counts) else None)
    vals = per_day(aggregation)
    if not len(vals):
        return e, None
    if aggregation in ("sum", "count"):
        return e, float(vals.sum())
    if aggregation == "min":
        return e, float(vals.min())
    if aggregation == "max":
        return e, float(vals.max())
    return e, float(vals[0] if aggregation == "first" else vals[-1])


def check_topic_exists(s: Session, e: Entity, topic: str) -> None:
    if topic != DEFAULT_TOPIC and topic not in topics_of(s, e.pk):
        raise NotFound(f"device '{e.entity_id}' has no data on topic '{topic}'")
