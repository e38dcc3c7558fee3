"""Temporal evolution of series (the NGSI-LD temporal API's reads): instances and aggregated periods.

Everything here works on one series and the half-open microsecond windows in which it may be read (the
caller gets them from :func:`sensorhub.authz.scope.readable_windows_us`, already cut to the query's time
range), so no instant outside a credential's windows is ever read.

- :func:`first_instances` / :func:`last_instances`: raw points, at most a page of them.
- :func:`aggregate`: ``totalCount, distinctCount, sum, avg, min, max, stddev, sumsq`` per period of
  ``aggrPeriodDuration`` (periods start at the query's start), answered from the coarsest rollup level
  whose width divides every period boundary (day rows for ``P1D`` or ``P1M``, hour rows for ``PT1H``…)
  plus finer levels at the ragged edges of the readable windows. Raw rows are read only for sub-minute
  edges — or when the periods are not whole minutes, which is allowed only while the range holds at most
  :data:`MAX_RAW_AGGREGATE` points. ``distinctCount`` needs the values themselves: it reads the raw points,
  at most :data:`MAX_DISTINCT_SCAN` of them (counted from the rollups first), else a 400.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import isodate
import numpy as np
import numpy.typing as npt

from sensorhub.errors import BadRequest
from sensorhub.kit.time import from_us, to_us
from sensorhub.timeseries.models import ROLLUP_LEVELS
from sensorhub.timeseries.query import WindowUS, pieces, read_raw, read_recent
from sensorhub.timeseries.rollups import F64, I64
from sensorhub.timeseries.store import RAW, TimeseriesStore

AGGR_METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
MAX_BUCKETS = 10_000  # periods per attribute in one answer
MAX_DISTINCT_SCAN = 100_000  # raw points distinctCount may read for one attribute
MAX_RAW_AGGREGATE = 100_000  # raw points an aggregation over periods that are not whole minutes may read

# ISO 8601 durations in the designator form only (P[n]Y[n]M[n]W[n]DT[n]H[n]M[n]S), as NGSI-LD requires;
# this only gates the form, isodate parses it.
_DURATION = re.compile(r"P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d{1,6})?S)?)?")


@dataclass(frozen=True, slots=True)
class Period:
    """An ``aggrPeriodDuration``: calendar months plus a fixed part (µs); both zero = the whole range."""

    text: str
    months: int = 0
    fixed_us: int = 0

    @property
    def whole_range(self) -> bool:
        return self.months == 0 and self.fixed_us == 0


def parse_period(text: str | None) -> Period:
    """``aggrPeriodDuration`` (default ``PT0S``, the whole range): a 400 naming it when malformed."""
    if text is None:
        return Period("PT0S")
    if not _DURATION.fullmatch(text):
        raise BadRequest(
            f"aggrPeriodDuration '{text[:40]}' is not an ISO 8601 duration of the form "
            "P[n]Y[n]M[n]W[n]DT[n]H[n]M[n]S, e.g. PT1H, P1D, P1M (PT0S = the whole time range)"
        )
    try:
        d = isodate.parse_duration(text)
    except (isodate.ISO8601Error, ValueError, OverflowError):
        raise BadRequest(f"aggrPeriodDuration '{text[:40]}' is not a valid ISO 8601 duration") from None
    if isinstance(d, timedelta):
        months, fixed = 0, d
    else:
        months = int(d.years) * 12 + int(d.months)
        fixed = d.tdelta
    fixed_us = (fixed.days * 86_400 + fixed.seconds) * 1_000_000 + fixed.microseconds
    if months > 12 * 300 or fixed_us > 300 * 366 * 86_400_000_000:
        raise BadRequest(f"aggrPeriodDuration '{text}' is longer than the supported time range")
    return Period(text, months, fixed_us)


def period_bounds(origin_us: int, end_us: int, period: Period) -> I64:
    """Boundaries ``[b0 = origin, b1, …, bn]`` of the periods covering ``[origin, end)`` (``bn >= end``).
    More than :data:`MAX_BUCKETS` periods is a 400 naming ``aggrPeriodDuration``."""
    if end_us <= origin_us:
        return np.array([origin_us, origin_us + max(1, period.fixed_us)], dtype=np.int64)
    if period.whole_range:
        return np.array([origin_us, end_us], dtype=np.int64)
    span = end_us - origin_us
    # The shortest a period can be (a month is at least 28 days) bounds the count before any arithmetic.
    shortest = period.months * 28 * 86_400_000_000 + period.fixed_us
    if -(-span // shortest) > MAX_BUCKETS:
        raise BadRequest(
            f"aggrPeriodDuration {period.text} cuts the time range into more than {MAX_BUCKETS} periods; "
            "use a longer period or a shorter range (timeAt/endTimeAt)"
        )
    if period.months == 0:
        n = -(-span // period.fixed_us)
        return origin_us + np.arange(n + 1, dtype=np.int64) * period.fixed_us
    origin = from_us(origin_us)
    step = isodate.Duration(months=period.months) if period.months else None
    out = [origin_us]
    k = 1
    while out[-1] < end_us:
        # Each boundary from the origin (never by repeated addition): month ends do not drift.
        dt = origin + step * k if step is not None else origin
        out.append(to_us(dt) + k * period.fixed_us)
        k += 1
    return np.array(out, dtype=np.int64)


@dataclass(slots=True)
class Instances:
    """Raw points of one series, by time; ``truncated`` when more exist beyond them in the query. (The
    non-numeric attribute history, sensorhub.entities.history, answers in the same shape: ``values`` an
    object array of the stored instances; read by createdAt, ``ids`` holds each one's observedAt, the
    key its instanceId is made of — otherwise ``ts`` is that key.)"""

    ts: I64
    values: npt.NDArray[Any]
    truncated: bool = False
    ids: I64 | None = None


def first_instances(
    store: TimeseriesStore, series_id: int, windows: Sequence[WindowUS], limit: int
) -> Instances:
    """The oldest ``limit`` points in the windows."""
    ts, vals = read_raw(store, series_id, windows, limit + 1)
    if len(ts) > limit:
        return Instances(ts[:limit], vals[:limit], True)
    return Instances(ts, vals)


def last_instances(
    store: TimeseriesStore, series_id: int, windows: Sequence[WindowUS], n: int, limit: int
) -> Instances:
    """The newest ``n`` points in the windows, by time, at most ``limit`` of them (the newest ones):
    ``truncated`` when ``n`` asked for more than ``limit`` and more exist."""
    ts, vals = read_recent(store, series_id, windows, min(n, limit) + (1 if n > limit else 0))
    truncated = len(ts) > min(n, limit)
    ts, vals = ts[: min(n, limit)], vals[: min(n, limit)]
    return Instances(ts[::-1].copy(), vals[::-1].copy(), truncated)


def first_point(store: TimeseriesStore, series_id: int, windows: Sequence[WindowUS]) -> int | None:
    ts, _ = read_raw(store, series_id, windows, 1)
    return int(ts[0]) if len(ts) else None


def last_point(store: TimeseriesStore, series_id: int, windows: Sequence[WindowUS]) -> int | None:
    for lo, hi in reversed(windows):
        got = store.latest_in(series_id, lo, hi)
        if got is not None:
            return got[0]
    return None


@dataclass(slots=True)
class Aggregated:
    """Per non-empty period: its start and end (µs) and one value per requested method."""

    starts: I64
    ends: I64
    values: dict[str, F64] = field(default_factory=dict)


def _usable_levels(bounds: I64) -> list[tuple[int, str]]:
    return [(w, t) for w, t in ROLLUP_LEVELS if not np.any(bounds % w)]


@dataclass(slots=True)
class _Stats:
    """Rollup or raw rows of one series, each assigned to its period ``idx``."""

    idx: npt.NDArray[np.intp]
    count: F64
    sum: F64
    sumsq: F64
    min: F64
    max: F64


def _gather(store: TimeseriesStore, series_id: int, cut: Sequence[WindowUS], bounds: I64) -> _Stats:
    levels = _usable_levels(bounds)
    lo_all, hi_all = int(bounds[0]), int(bounds[-1])
    if not levels:
        total = store.count_points([series_id], lo_all, hi_all)
        if total > MAX_RAW_AGGREGATE:
            raise BadRequest(
                f"aggrPeriodDuration/timeAt: periods that are not whole minutes are aggregated from raw "
                f"points, at most {MAX_RAW_AGGREGATE} of them (this range holds about {total}); start "
                "timeAt on a whole minute and use a period of whole minutes to aggregate from the rollups"
            )
    parts = [
        store.fetch_stats(series_id, table, pa_, pb)
        for a, b in cut
        for table, pa_, pb in pieces(a, b, 0, levels)
    ]
    if not parts:
        e = np.empty(0, np.float64)
        return _Stats(np.empty(0, np.intp), e, e, e, e, e)
    t = np.concatenate([p[0] for p in parts])
    cols = [np.concatenate([p[i] for p in parts]) for i in range(1, 6)]
    idx = np.searchsorted(bounds, t, side="right") - 1
    ok = (idx >= 0) & (idx < len(bounds) - 1)
    return _Stats(idx[ok], *(c[ok] for c in cols))


def _per_period(st: _Stats, n: int, method: str, keep: npt.NDArray[np.bool_]) -> F64:
    if method in ("totalCount", "sum", "sumsq"):
        w = {"totalCount": st.count, "sum": st.sum, "sumsq": st.sumsq}[method]
        return np.asarray(np.bincount(st.idx, weights=w, minlength=n)[keep], dtype=np.float64)
    if method in ("min", "max"):
        v = np.full(n, np.inf if method == "min" else -np.inf)
        (np.minimum if method == "min" else np.maximum).at(v, st.idx, st.min if method == "min" else st.max)
        return v[keep]
    cnt = np.bincount(st.idx, weights=st.count, minlength=n)[keep]
    total = np.bincount(st.idx, weights=st.sum, minlength=n)[keep]
    if method == "avg":
        return np.asarray(total / cnt, dtype=np.float64)
    # stddev: the sample standard deviation (n - 1), like PostgreSQL's stddev; 0 for a single instance.
    sq = np.bincount(st.idx, weights=st.sumsq, minlength=n)[keep]
    var = np.where(cnt > 1, (sq - total * total / cnt) / np.maximum(cnt - 1, 1), 0.0)
    return np.asarray(np.sqrt(np.maximum(var, 0.0)), dtype=np.float64)


def aggregate(
    store: TimeseriesStore,
    series_id: int,
    windows: Sequence[WindowUS],
    bounds: I64,
    methods: Sequence[str],
) -> Aggregated:
    """The requested aggregation ``methods`` of the points in ``windows`` per period ``[bounds[i],
    bounds[i+1])``; periods without points are left out."""
    n = len(bounds) - 1
    lo_all, hi_all = int(bounds[0]), int(bounds[-1])
    cut = [(max(a, lo_all), min(b, hi_all)) for a, b in windows if max(a, lo_all) < min(b, hi_all)]
    st = _gather(store, series_id, cut, bounds)
    count = np.bincount(st.idx, weights=st.count, minlength=n)
    keep = count > 0
    out = Aggregated(bounds[:-1][keep].copy(), bounds[1:][keep].copy())
    for m in methods:
        if m == "distinctCount":
            out.values[m] = _distinct(store, series_id, cut, bounds, int(count.sum()))[keep]
        else:
            out.values[m] = _per_period(st, n, m, keep)
    return out


def _distinct(
    store: TimeseriesStore, series_id: int, windows: Sequence[WindowUS], bounds: I64, total: int
) -> F64:
    """Distinct values per period, from the raw points (at most :data:`MAX_DISTINCT_SCAN`)."""
    if total > MAX_DISTINCT_SCAN:
        raise BadRequest(
            f"aggrMethods: distinctCount reads the raw points, at most {MAX_DISTINCT_SCAN} per attribute, and "
            f"this query holds {total}; narrow the time range or leave distinctCount out"
        )
    n = len(bounds) - 1
    ts, vals = read_raw(store, series_id, windows, None)
    idx = np.searchsorted(bounds, ts, side="right") - 1
    ok = (idx >= 0) & (idx < n)
    idx, vals = idx[ok], vals[ok]
    if not len(idx):
        return np.zeros(n)
    order = np.lexsort((vals, idx))
    idx, vals = idx[order], vals[order]
    new = np.concatenate(([True], (np.diff(idx) != 0) | (np.diff(vals) != 0)))
    return np.bincount(idx[new], minlength=n).astype(np.float64)


def check_methods(text: str | None) -> tuple[str, ...]:
    """``aggrMethods``: a comma-separated list of :data:`AGGR_METHODS` (400 naming what is unknown)."""
    if text is None or not text.strip():
        raise BadRequest(
            f"aggrMethods is required with aggregatedValues: one or more of {', '.join(AGGR_METHODS)}"
        )
    items = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = [m for m in items if m not in AGGR_METHODS]
    if unknown or not items:
        raise BadRequest(
            f"aggrMethods: unknown method {unknown[0][:40]!r}; use {', '.join(AGGR_METHODS)}"
            if unknown
            else "aggrMethods is empty"
        )
    return items


def finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


__all__ = [
    "AGGR_METHODS",
    "MAX_BUCKETS",
    "RAW",
    "Aggregated",
    "Instances",
    "Period",
    "aggregate",
    "check_methods",
    "first_instances",
    "first_point",
    "last_instances",
    "last_point",
    "parse_period",
    "period_bounds",
]
