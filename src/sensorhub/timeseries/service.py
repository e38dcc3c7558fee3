"""Time-series services: series, bulk ingest with rollups, raw and bucketed reads (exports).

Other domains code against the functions here (names and signatures are a contract):

- :func:`get_or_create_series`
- :func:`bulk_insert`
- :func:`iter_raw_batches`
- :func:`iter_bucket_batches`

Services take a :class:`~sqlalchemy.orm.Session` and never commit; the caller's edge does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

import numpy as np
import pyarrow as pa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sensorhub.audit.service import record as record_audit
from sensorhub.authz.access import Access
from sensorhub.authz.entities import visible_entity
from sensorhub.authz.scope import windows_to_us
from sensorhub.entities.models import Entity
from sensorhub.errors import BadRequest, NotFound
from sensorhub.kit.time import check_points_in_range, iso, to_us
from sensorhub.timeseries.arrow_reader import BATCH_SCHEMA
from sensorhub.timeseries.backends import store_for
from sensorhub.timeseries.models import DEFAULT_TOPIC, ROLLUP_LEVELS, Series
from sensorhub.timeseries.names import check_attribute_name
from sensorhub.timeseries.query import WindowUS, read_aggregated
from sensorhub.timeseries.repository import series_by_attribute
from sensorhub.timeseries.rollups import F64, I64, check_aggregation, rollup_delta
from sensorhub.timeseries.store import TimeseriesStore

__all__ = [
    "BATCH_SCHEMA",
    "bulk_insert",
    "get_or_create_series",
    "insert_new_points",
    "iter_bucket_batches",
    "iter_raw_batches",
]

MAX_UNIT_LENGTH = 64


def get_or_create_series(
    session: Session, entity: Entity, attribute: str, unit: str | None, topic: str = DEFAULT_TOPIC
) -> Series:
    """The series (entity, attribute, topic); created on first use. A unit is recorded when the series
    has none."""
    series = series_by_attribute(session, entity.pk, attribute, topic)
    if series is None:
        # Every path that creates a series (backfill, import, future adapters) ends here: a name
        # outside the grammar never becomes a series, whatever the caller checked before.
        check_attribute_name(attribute, "attribute")
    if unit is not None and len(unit) > MAX_UNIT_LENGTH:
        raise BadRequest(f"unit '{unit[:20]}…' is longer than {MAX_UNIT_LENGTH} characters")
    if series is None:
        try:
            with session.begin_nested():
                series = Series(entity_pk=entity.pk, attribute=attribute, unit=unit, topic=topic)
                session.add(series)
        except IntegrityError:
            # Another transaction created it meanwhile.
            series = series_by_attribute(session, entity.pk, attribute, topic)
            assert series is not None
    if unit is not None and series.unit is None:
        series.unit = unit
        session.flush()
    return series


def _as_points(timestamps_us: Sequence[int] | I64, values: Sequence[float] | F64) -> tuple[I64, F64]:
    ts = np.asarray(timestamps_us, dtype=np.int64)
    vals = np.asarray(values, dtype=np.float64)
    if ts.shape != vals.shape or ts.ndim != 1:
        raise BadRequest("timestamps and values must be one-dimensional and of the same length")
    return ts, vals


def _check_points(ts: I64, vals: F64) -> None:
    check_points_in_range(ts, lambda i: f"point {i}")
    if not np.isfinite(vals).all():
        bad = int(np.flatnonzero(~np.isfinite(vals))[0])
        raise BadRequest(f"value {bad} is {vals[bad]}; send finite numbers")


def _sorted_first_occurrences(ts: I64, vals: F64) -> tuple[I64, F64]:
    """Points in timestamp order; of a repeated timestamp only its first occurrence is kept."""
    if len(ts) > 1 and not (np.diff(ts) > 0).all():
        order = np.argsort(ts, kind="stable")
        ts, vals = ts[order], vals[order]
        keep = np.concatenate(([True], np.diff(ts) != 0))
        ts, vals = ts[keep], vals[keep]
    return ts, vals


def _drop_stored(
    store: TimeseriesStore, series_id: int, last_ts: int | None, ts: I64, vals: F64
) -> tuple[I64, F64]:
    """The (sorted) points whose timestamp the series does not hold yet."""
    if last_ts is not None and ts[0] <= last_ts:
        existing = store.existing_ts(series_id, int(ts[0]), int(ts[-1]))
        if len(existing):
            new = ~np.isin(ts, existing, assume_unique=True)
            ts, vals = ts[new], vals[new]
    return ts, vals


def _store_new_points(
    store: TimeseriesStore, series_id: int, last_ts: int | None, ts: I64, vals: F64
) -> None:
    """Insert new (sorted, non-empty) points, fold them into every rollup level, move the series' last point."""
    store.insert_points(series_id, ts, vals)
    for width, table in ROLLUP_LEVELS:
        delta = rollup_delta(ts, vals, width)
        if last_ts is None:
            store.insert_rollup(table, series_id, delta)
            continue
        # Buckets after the one holding the latest stored point cannot exist yet: plain insert.
        fresh = delta.bucket_start > last_ts - (last_ts % width)
        store.merge_rollup(table, series_id, delta.select(~fresh))
        store.insert_rollup(table, series_id, delta.select(fresh))
    store.update_last(series_id, int(ts[-1]), float(vals[-1]))


def _expire_cached_series(session: Session, series_id: int) -> None:
    # The ORM may hold a stale Series row; make it re-read last_ts/last_value on next access.
    cached = session.identity_map.get(session.identity_key(Series, (series_id,)))
    if cached is not None:
        session.expire(cached, ["last_ts", "last_value"])


def bulk_insert(
    session: Session,
    series_id: int,
    timestamps_us: Sequence[int] | I64,
    values: Sequence[float] | F64,
    *,
    overwrite: bool = False,
) -> tuple[int, int]:
    """Insert points into a series and maintain its rollups, in the session's transaction.

    Idempotent on (series, timestamp): a timestamp already stored (or repeated within the call, after
    its first occurrence) is not overwritten and is counted as a duplicate. Returns
    ``(accepted, duplicates)``. Values must be finite.

    With ``overwrite``, a stored point at a timestamp of the call takes the call's value instead
    (rollup buckets recomputed, see :func:`_overwrite`); the second number is then the count of
    points replaced."""
    ts, _vals, other = insert_new_points(session, series_id, timestamps_us, values, overwrite=overwrite)
    return len(ts) - (other if overwrite else 0), other


def insert_new_points(
    session: Session,
    series_id: int,
    timestamps_us: Sequence[int] | I64,
    values: Sequence[float] | F64,
    *,
    overwrite: bool = False,
) -> tuple[I64, F64, int]:
    """:func:`bulk_insert`, returning the points it stored (sorted by timestamp, the duplicates left
    out: what the outbox records) and the number of duplicates — with ``overwrite``, every point of
    the call (all are stored) and the number of stored points they replaced."""
    ts, vals = _as_points(timestamps_us, values)
    n = len(ts)
    if n == 0:
        return ts, vals, 0
    _check_points(ts, vals)
    ts, vals = _sorted_first_occurrences(ts, vals)
    store = store_for(session)
    last_ts = store.lock_series(series_id)
    if overwrite:
        replaced = _overwrite(store, series_id, last_ts, ts, vals)
        _expire_cached_series(session, series_id)
        return ts, vals, replaced
    ts, vals = _drop_stored(store, series_id, last_ts, ts, vals)
    if len(ts):
        _store_new_points(store, series_id, last_ts, ts, vals)
    _expire_cached_series(session, series_id)
    return ts, vals, n - len(ts)


def _overwrite(store: TimeseriesStore, series_id: int, last_ts: int | None, ts: I64, vals: F64) -> int:
    """Store (sorted, unique) points, replacing stored ones at the same timestamps; the rollup buckets
    they fall in are recomputed from the raw points (a min, max, first or last cannot be taken back
    out of a partial aggregate). Returns how many stored points were replaced."""
    existing = (
        store.existing_ts(series_id, int(ts[0]), int(ts[-1]))
        if last_ts is not None and ts[0] <= last_ts
        else np.empty(0, np.int64)
    )
    if not len(existing):
        _store_new_points(store, series_id, last_ts, ts, vals)
        return 0
    replaced = ts[np.isin(ts, existing, assume_unique=True)]
    store.delete_points(series_id, replaced)
    store.insert_points(series_id, ts, vals)
    recompute_rollups(store, series_id, ts)
    store.refresh_last(series_id)
    return len(replaced)


def recompute_rollups(store: TimeseriesStore, series_id: int, touched: I64) -> None:
    """Rebuild every rollup bucket of a series that holds one of the ``touched`` timestamps (sorted)
    from the raw points now stored, so rollups stay exactly what the raw points give."""
    for width, table in ROLLUP_LEVELS:
        buckets = np.unique(touched - np.mod(touched, width))
        # Contiguous runs of touched buckets, each rebuilt from one raw read.
        breaks = np.flatnonzero(np.diff(buckets) != width) + 1
        for run in np.split(buckets, breaks):
            _rebuild_rollup(store, series_id, table, width, int(run[0]), int(run[-1]) + width)


def _rebuild_rollup(store: TimeseriesStore, series_id: int, table: str, width: int, lo: int, hi: int) -> None:
    """Rebuild the buckets of ``table`` (``width`` µs) starting in ``[lo, hi)`` (bucket-aligned) from the
    raw points now stored; a bucket left without points is gone."""
    store.delete_rollup_range(table, series_id, lo, hi)
    raw_ts, raw_vals = store.fetch_raw(series_id, lo, hi)
    if len(raw_ts):
        store.insert_rollup(table, series_id, rollup_delta(raw_ts, raw_vals, width))


def delete_range(session: Session, series_id: int, lo: int, hi: int) -> int:
    """Delete the points of a series in ``[lo, hi)`` (µs), keep its rollups exact (the buckets at both
    edges rebuilt from what remains, the ones inside emptied) and its latest point right. Returns the
    number of points deleted."""
    store = store_for(session)
    store.lock_series(series_id)
    deleted = store.delete_range(series_id, lo, hi)
    if deleted:
        for width, table in ROLLUP_LEVELS:
            blo, bhi = lo - lo % width, hi - hi % width + (width if hi % width else 0)
            _rebuild_rollup(store, series_id, table, width, blo, bhi)
        store.refresh_last(series_id)
    _expire_cached_series(session, series_id)
    return deleted


# --- exports ----------------------------------------------------------------------------------------


def _windows_us(
    series_ids: Sequence[int],
    windows: dict[int, list[tuple[datetime | None, datetime | None]]],
    start: datetime,
    end: datetime,
) -> dict[int, list[WindowUS]]:
    """Per series, its readable windows cut to [start, end) in microseconds (missing = unreadable)."""
    lo0, hi0 = to_us(start), to_us(end)
    out: dict[int, list[WindowUS]] = {}
    for sid in series_ids:
        out[sid] = windows_to_us(windows.get(sid, []), lo0, hi0)
    return out


def _batch(ts: I64, sids: I64, vals: F64) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [
            pa.array(ts.astype("datetime64[us]"), type=pa.timestamp("us", tz="UTC")),
            pa.array(sids),
            pa.array(vals),
        ],
        schema=BATCH_SCHEMA,
    )


def slice_conditions(
    per_series: dict[int, list[WindowUS]], lo: int, hi: int
) -> list[tuple[list[int], int, int]]:
    """Group series by identical clamped windows inside [lo, hi) for one SQL WHERE."""
    groups: dict[tuple[int, int], list[int]] = {}
    for sid, ws in per_series.items():
        for a, b in ws:
            a2, b2 = max(a, lo), min(b, hi)
            if a2 < b2:
                groups.setdefault((a2, b2), []).append(sid)
    return [(sids, a, b) for (a, b), sids in groups.items()]


def iter_raw_batches(
    session: Session,
    series_ids: list[int],
    windows: dict[int, list[tuple[datetime | None, datetime | None]]],
    start: datetime,
    end: datetime,
    batch_rows: int = 65536,
) -> Iterator[pa.RecordBatch]:
    """Raw points of the series in [start, end) as Arrow batches (``ts``, ``series_id``, ``value``),
    ordered by (ts, series_id), in bounded memory. Only points inside each series' readable windows
    (``windows[series_id]``, half-open, ``None`` = unbounded; a series without windows yields nothing)
    are returned.

    Stores with a faster reader use it (SQLite: each series by key, merged by time; large reads in a
    separate reader process, see :mod:`sensorhub.timeseries.arrow_reader`); otherwise rows are paged
    through the session's DBAPI cursor by time slice."""
    store = store_for(session)
    per_series = {sid: ws for sid, ws in _windows_us(series_ids, windows, start, end).items() if ws}
    if not per_series:
        return
    fast = store.iter_raw_arrow(per_series, batch_rows)
    if fast is not None:
        yield from fast
        return
    lo = min(w[0][0] for w in per_series.values())
    hi = max(w[-1][1] for w in per_series.values())
    # Time slices sized from the day rollup so that one slice holds about one batch; adapted as we go.
    total = store.count_points(list(per_series), lo, hi)
    step = max(1_000_000, int((hi - lo) * batch_rows / total) if total else hi - lo)
    t = lo
    while t < hi:
        t2 = min(hi, t + step)
        cur = store.scan_slice(slice_conditions(per_series, t, t2))
        got = 0
        while True:
            rows = cur.fetchmany(batch_rows)
            if not rows:
                break
            got += len(rows)
            arr = np.fromiter(
                map(tuple, rows),
                dtype=np.dtype([("ts", np.int64), ("sid", np.int64), ("v", np.float64)]),
                count=len(rows),
            )
            yield _batch(arr["ts"], arr["sid"], arr["v"])
        t = t2
        if got > 2 * batch_rows:
            step = max(1_000_000, step // 2)
        elif got < batch_rows // 2:
            step = step * 2


def iter_bucket_batches(
    session: Session,
    series_ids: list[int],
    windows: dict[int, list[tuple[datetime | None, datetime | None]]],
    start: datetime,
    end: datetime,
    bucket_seconds: int,
    aggregation: str = "avg",
    batch_rows: int = 65536,
) -> Iterator[pa.RecordBatch]:
    """Like :func:`iter_raw_batches` but aggregated into epoch-aligned buckets of ``bucket_seconds``
    (``ts`` = bucket start; only buckets with data), read from rollups where they fit."""
    check_aggregation(aggregation)
    if bucket_seconds < 1:
        raise BadRequest("bucket_seconds must be at least 1")
    bucket_us = bucket_seconds * 1_000_000
    store: TimeseriesStore = store_for(session)
    per_series = {sid: ws for sid, ws in _windows_us(series_ids, windows, start, end).items() if ws}
    if not per_series:
        return
    lo = min(w[0][0] for w in per_series.values())
    hi = max(w[-1][1] for w in per_series.values())
    # Chunks of whole buckets, about batch_rows output rows each.
    per_chunk = max(1, batch_rows // max(1, len(per_series)))
    chunk = per_chunk * bucket_us
    t = lo - (lo % bucket_us)
    while t < hi:
        t2 = t + chunk
        parts_ts: list[I64] = []
        parts_sid: list[I64] = []
        parts_val: list[F64] = []
        for sid, ws in per_series.items():
            cut = [(max(a, t), min(b, t2)) for a, b in ws if max(a, t) < min(b, t2)]
            if not cut:
                continue
            bts, bvals = read_aggregated(store, sid, cut, bucket_us, aggregation)
            parts_ts.append(bts)
            parts_sid.append(np.full(len(bts), sid, np.int64))
            parts_val.append(bvals)
        if parts_ts:
            ts_all = np.concatenate(parts_ts)
            sid_all = np.concatenate(parts_sid)
            val_all = np.concatenate(parts_val)
            order = np.lexsort((sid_all, ts_all))
            ts_all, sid_all, val_all = ts_all[order], sid_all[order], val_all[order]
            for i in range(0, len(ts_all), batch_rows):
                sl = slice(i, i + batch_rows)
                yield _batch(ts_all[sl], sid_all[sl], val_all[sl])
        t = t2


def delete_series_range(
    session: Session,
    access: Access,
    entity_ref: str,
    attribute: str,
    topic: str,
    start: datetime,
    end: datetime,
    *,
    actor_user_id: str,
    ip: str | None = None,
) -> dict[str, object]:
    """Delete the points of one series (entity, attribute, topic) in ``[start, end)`` — a correction by
    an organisation owner or admin, whose session ``access`` decides which entities it reaches —
    keeping rollups exact, and record it in the audit log."""
    lo, hi = to_us(start), to_us(end)
    if lo >= hi:
        raise BadRequest("start_time must be before end_time")
    entity = visible_entity(session, access, entity_ref)
    series = series_by_attribute(session, entity.pk, attribute, topic)
    if series is None:
        on = "" if topic == DEFAULT_TOPIC else f" on topic '{topic}'"
        raise NotFound(f"entity '{entity_ref}' has no series '{attribute}'{on}")
    deleted = delete_range(session, series.id, lo, hi)
    details = {
        "entity_id": entity.entity_id,
        "attribute": attribute,
        "topic": topic,
        "start_time": iso(lo),
        "end_time": iso(hi),
        "deleted": deleted,
    }
    record_audit(
        session,
        "timeseries.delete_range",
        org_id=entity.org_id,
        actor_user_id=actor_user_id,
        target=f"{entity.entity_id}.{attribute}",
        ip=ip,
        details=details,
    )
    return details
