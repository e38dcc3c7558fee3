"""Reading series: raw or downsampled, clamped to access windows, answered from the coarsest rollup.

A downsampled read splits every readable window into pieces: the part aligned to the coarsest usable
rollup level is read from that level, the ragged edges from finer levels, and only sub-minute edges from
raw rows. Partial aggregates of all pieces are combined per output bucket with numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from sensorhub.errors import BadRequest
from sensorhub.timeseries.models import HOUR_US, ROLLUP_LEVELS
from sensorhub.timeseries.rollups import F64, I64, Partial, combine
from sensorhub.timeseries.store import RAW, TimeseriesStore

SECOND_US = 1_000_000
# Standard bucket widths in seconds; beyond the last one, whole multiples of it.
STANDARD_BUCKETS_S: tuple[int, ...] = (
    1, 5, 10, 30,
    60, 300, 600, 900, 1800,
    3600, 7200, 10800, 21600, 43200,
    86400, 604800,
)  # fmt: skip
MAX_RESOLUTION = 100_000
DEFAULT_RESOLUTION = 1000

WindowUS = tuple[int, int]  # half-open [lo, hi) in microseconds


def check_resolution(resolution: int) -> int:
    if resolution < 1 or resolution > MAX_RESOLUTION:
        raise BadRequest(f"resolution must be between 1 and {MAX_RESOLUTION} points (got {resolution})")
    return resolution


def choose_bucket_us(span_us: int, resolution: int) -> int:
    """The smallest standard bucket that fits ``span_us`` into at most ``resolution`` buckets' worth."""
    target = -(-span_us // resolution)  # ceil
    for s in STANDARD_BUCKETS_S:
        if s * SECOND_US >= target:
            return s * SECOND_US
    week = STANDARD_BUCKETS_S[-1] * SECOND_US
    return -(-target // week) * week


def _ceil(x: int, w: int) -> int:
    return -((-x) // w) * w


def _floor(x: int, w: int) -> int:
    return (x // w) * w


def pieces(
    lo: int, hi: int, bucket_us: int, levels: Sequence[tuple[int, str]] | None = None
) -> list[tuple[str, int, int]]:
    """Split ``[lo, hi)`` into (table, lo, hi) pieces, each read from the coarsest table that fits
    (among ``levels``, finest first; default: the rollup levels whose width divides ``bucket_us``)."""
    if levels is None:
        levels = [(w, t) for w, t in ROLLUP_LEVELS if bucket_us % w == 0]
    levels = list(levels)

    def split(a: int, b: int, lv: list[tuple[int, str]]) -> list[tuple[str, int, int]]:
        if a >= b:
            return []
        if not lv:
            return [(RAW, a, b)]
        w, table = lv[-1]
        ia, ib = _ceil(a, w), _floor(b, w)
        if ia >= ib:
            return split(a, b, lv[:-1])
        return [*split(a, ia, lv[:-1]), (table, ia, ib), *split(ib, b, lv[:-1])]

    return split(lo, hi, levels)


@dataclass(slots=True)
class SeriesData:
    """One series' values on the shared axis of a :class:`ReadResult` (NaN where there is no value)."""

    series_id: int
    values: F64


@dataclass(slots=True)
class ReadResult:
    bucket_us: int | None  # None = raw points
    timestamps: I64
    series: list[SeriesData]


def read_raw(
    store: TimeseriesStore, series_id: int, windows: Sequence[WindowUS], limit: int | None
) -> tuple[I64, F64]:
    """Raw points in the (sorted, disjoint) windows, at most ``limit``: the oldest, by time."""
    return _read_windows(windows, limit, lambda lo, hi, n: store.fetch_raw(series_id, lo, hi, n))


def read_recent(
    store: TimeseriesStore, series_id: int, windows: Sequence[WindowUS], limit: int
) -> tuple[I64, F64]:
    """Raw points in the (sorted, disjoint) windows, at most ``limit``: the newest, newest first."""
    return _read_windows(reversed(windows), limit, lambda lo, hi, n: store.fetch_recent(series_id, lo, hi, n))


def _read_windows(
    windows: Iterable[WindowUS], limit: int | None, fetch: Callable[[int, int, int | None], tuple[I64, F64]]
) -> tuple[I64, F64]:
    """Points ``fetch``ed window by window, in the windows' order, until ``limit`` are read."""
    ts_parts: list[I64] = []
    val_parts: list[F64] = []
    left = limit
    for lo, hi in windows:
        ts, vals = fetch(lo, hi, left)
        ts_parts.append(ts)
        val_parts.append(vals)
        if left is not None:
            left -= len(ts)
            if left <= 0:
                break
    if not ts_parts:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    return np.concatenate(ts_parts), np.concatenate(val_parts)


def read_aggregated(
    store: TimeseriesStore, series_id: int, windows: Sequence[WindowUS], bucket_us: int, agg: str
) -> tuple[I64, F64]:
    partials: list[Partial] = []
    for lo, hi in windows:
        for table, a, b in pieces(lo, hi, bucket_us):
            partials.append(store.partial(series_id, table, a, b, bucket_us, agg))
    return combine(partials, agg)


def align(per_series: list[tuple[int, I64, F64]]) -> tuple[I64, list[SeriesData]]:
    """One time axis (union of all timestamps) with NaN where a series has no value."""
    non_empty = [ts for _, ts, _ in per_series if len(ts)]
    axis = np.unique(np.concatenate(non_empty)) if non_empty else np.empty(0, np.int64)
    out: list[SeriesData] = []
    for sid, ts, vals in per_series:
        if len(ts) == len(axis):
            out.append(SeriesData(sid, vals))  # already on the axis (ts is sorted and unique)
            continue
        col = np.full(len(axis), np.nan)
        col[np.searchsorted(axis, ts)] = vals
        out.append(SeriesData(sid, col))
    return axis, out


def _surely_more_than(store: TimeseriesStore, series_id: int, windows: Sequence[WindowUS], n: int) -> bool:
    """Whether a rollup alone proves the series has more than ``n`` points in ``windows`` (the points of
    the whole days, or hours, inside each window longer than two of them). Then the raw probe is
    skipped: on a long range it is the one read whose cost depends on the planner (on PostgreSQL,
    partitions without statistics made it read millions of rows), and on a day it reads ``n + 1`` raw
    rows where the hour rollup sums 24; a range under two hours, where no rollup proves anything, holds
    at most two hours of points for the probe to read."""
    total = 0
    for lo, hi in windows:
        level = next(((w, t) for w, t in _PROOF_LEVELS if hi - lo > 2 * w), None)
        if level is not None:
            total += store.points_in_whole_buckets(series_id, level[1], level[0], lo, hi)
            if total > n:
                return True
    return False


# The rollups that can prove "more than n points", coarsest first.
_PROOF_LEVELS = tuple((w, t) for w, t in reversed(ROLLUP_LEVELS) if w >= HOUR_US)


def read_series(
    store: TimeseriesStore,
    requests: Sequence[tuple[int, Sequence[WindowUS], str]],
    start_us: int,
    end_us: int,
    resolution: int,
) -> ReadResult:
    """Read several series ``(series_id, readable windows, aggregation)`` over ``[start, end)`` with at
    most ``resolution`` points: raw when the union of raw timestamps fits, else aggregated into the
    smallest standard bucket ≥ range/resolution (epoch-aligned bucket starts)."""
    raw: list[tuple[int, I64, F64]] = []
    fits = True
    for sid, windows, _agg in requests:
        if _surely_more_than(store, sid, windows, resolution):
            fits = False
            break
        ts, vals = read_raw(store, sid, windows, resolution + 1)
        if len(ts) > resolution:
            fits = False
            break
        raw.append((sid, ts, vals))
    if fits:
        axis, data = align(raw)
        if len(axis) <= resolution:
            return ReadResult(None, axis, data)
    bucket_us = choose_bucket_us(end_us - start_us, resolution)
    agg_rows = [
        (sid, *read_aggregated(store, sid, windows, bucket_us, agg)) for sid, windows, agg in requests
    ]
    axis, data = align(agg_rows)
    return ReadResult(bucket_us, axis, data)


def fill_previous(values: F64) -> F64:
    """Carry the last non-missing value forward over NaNs."""
    mask = np.isnan(values)
    if not mask.any():
        return values
    idx = np.where(~mask, np.arange(len(values)), 0)
    np.maximum.accumulate(idx, out=idx)
    out = values[idx]
    # Leading NaNs stay NaN (index 0 may itself be NaN, which maps to itself).
    return out
