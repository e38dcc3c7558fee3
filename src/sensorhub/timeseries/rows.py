"""Readings of many series as rows ordered by (time, entity, attribute): keyset pages and the newest.

Used by the LEAF data API (:mod:`sensorhub.compat.leaf`). Pages seek from a :data:`Position` (the key of
the last row handed out), so deep pages cost what the first does: the scan walks time slices forward
from the position, sized from the day rollup, until it has a page. Only points inside each series'
readable windows (``Access.clamp`` / ``Access.windows_for``) are read.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy.orm import Session

from sensorhub.audit.usage import touched
from sensorhub.authz.access import Access
from sensorhub.authz.scope import readable_windows_us, visible_entities, windows_to_us
from sensorhub.kit.paging import CURSOR_INT_MAX, CURSOR_INT_MIN
from sensorhub.kit.time import to_us
from sensorhub.timeseries import repository
from sensorhub.timeseries.backends import store_for
from sensorhub.timeseries.query import WindowUS
from sensorhub.timeseries.repository import SeriesInfo
from sensorhub.timeseries.rollups import F64, I64
from sensorhub.timeseries.service import slice_conditions
from sensorhub.timeseries.store import TimeseriesStore

Position = tuple[int, str, str]  # (time µs, entity id, attribute) of a row


@dataclass(frozen=True, slots=True)
class Rows:
    """Rows as columns: time (µs), series id and value, with the listed series by id."""

    ts: I64
    series_ids: I64
    values: F64
    series: dict[int, SeriesInfo]

    @classmethod
    def empty(cls) -> Rows:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64), {})


def series_in_scope(
    s: Session,
    access: Access,
    *,
    org_id: str | None = None,
    workspace_id: str | None = None,
    entity: str | None = None,
    attribute: str | None = None,
) -> list[SeriesInfo]:
    """The series ``access`` may list, narrowed as given; the audit log learns whose data was read."""
    visible = visible_entities(access).within(
        org_id=org_id, workspace_ids=None if workspace_id is None else [workspace_id]
    )
    out = repository.listable_series(s, visible, entity=entity, attribute=attribute)
    for org in {x.org_id for x in out}:
        touched(org)  # read through columns, not Entity rows: the audit log needs the organisations
    return out


@dataclass(slots=True)
class _Order:
    """The series of a scan with their rank in (entity, attribute) order."""

    info: dict[int, SeriesInfo]
    keys: list[tuple[str, str]]
    ids_sorted: I64
    rank_of_sorted: I64

    @classmethod
    def of(cls, info: dict[int, SeriesInfo]) -> _Order:
        ordered = sorted(info.values(), key=lambda x: (x.entity_id, x.attribute))
        rank_by_id = {x.id: i for i, x in enumerate(ordered)}
        ids_sorted = np.array(sorted(info), dtype=np.int64)
        ranks = np.array([rank_by_id[int(i)] for i in ids_sorted], dtype=np.int64)
        return cls(info, [(x.entity_id, x.attribute) for x in ordered], ids_sorted, ranks)

    def ranks(self, sids: I64) -> I64:
        out: I64 = self.rank_of_sorted[np.searchsorted(self.ids_sorted, sids)]
        return out

    def rank_after(self, entity: str, attribute: str) -> int:
        """The rank of the first series that sorts after (entity, attribute)."""
        return bisect.bisect_right(self.keys, (entity, attribute))


def _bounds(start: datetime | None, end: datetime | None) -> tuple[int, int]:
    """``[start, end)`` in µs; an open end is far outside any stored time."""
    return (
        to_us(start) if start is not None else CURSOR_INT_MIN,
        to_us(end) if end is not None else CURSOR_INT_MAX,
    )


def _readable(
    access: Access, series: Sequence[SeriesInfo], start: datetime | None, end: datetime | None
) -> dict[int, list[WindowUS]]:
    lo, hi = _bounds(start, end)
    out: dict[int, list[WindowUS]] = {}
    for x in series:
        ws = windows_to_us(access.clamp(x.org_id, x.workspace_id, x.entity_id, start, end), lo, hi)
        if ws:
            out[x.id] = ws
    return out


def page_after(
    s: Session,
    access: Access,
    series: Sequence[SeriesInfo],
    *,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    after: Position | None,
) -> tuple[Rows, Position | None]:
    """Up to ``limit`` rows in ``[start, end)`` after ``after``, and the position of the last row
    when more rows follow (else ``None``)."""
    per_series = _readable(access, series, start, end)
    if not per_series:
        return Rows.empty(), None
    order = _Order.of({x.id: x for x in series if x.id in per_series})
    max_ts = repository.latest_ts(s, list(order.info))
    if max_ts is None:
        return Rows.empty(), None
    lo, hi = _bounds(start, end)
    hi = min(hi, max_ts + 1)
    t = lo if after is None else max(lo, after[0])
    store = store_for(s)
    # Skip empty time before the first stored day (the day rollup is small and indexed).
    first_day = store.first_day(list(order.info), t)
    if first_day is None:
        return Rows.empty(), None
    ts, sid, val = _scan(store, per_series, order, max(t, first_day), hi, limit + 1, after)
    rows = Rows(ts[:limit], sid[:limit], val[:limit], order.info)
    if len(ts) <= limit:
        return rows, None
    last = order.info[int(sid[limit - 1])]
    return rows, (int(ts[limit - 1]), last.entity_id, last.attribute)


def _scan(
    store: TimeseriesStore,
    per_series: dict[int, list[WindowUS]],
    order: _Order,
    t: int,
    hi: int,
    want: int,
    after: Position | None,
) -> tuple[I64, I64, F64]:
    """At least ``want`` rows from ``t`` on (when there are), in (time, entity, attribute) order."""
    cut_rank = order.rank_after(after[1], after[2]) if after is not None else 0
    got: list[tuple[I64, I64, F64]] = []
    have = 0
    total = store.count_points(list(order.info), t, hi)
    step = max(1_000_000, int((hi - t) * min(1.0, 2.0 * want / total))) if total else hi - t
    while t < hi and have < want:
        t2 = min(hi, t + step)
        conds = slice_conditions(per_series, t, t2)
        rows = store.scan_slice(conds).fetchall() if conds else []
        if rows:
            ts = np.fromiter((r[0] for r in rows), np.int64, len(rows))
            sid = np.fromiter((r[1] for r in rows), np.int64, len(rows))
            val = np.fromiter((r[2] for r in rows), np.float64, len(rows))
            rk = order.ranks(sid)
            if after is not None:
                keep = (ts > after[0]) | ((ts == after[0]) & (rk >= cut_rank))
                ts, sid, val, rk = ts[keep], sid[keep], val[keep], rk[keep]
            o = np.lexsort((rk, ts))
            got.append((ts[o], sid[o], val[o]))
            have += len(ts)
        t = t2
        step *= 2
    if not got:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)
    return tuple(np.concatenate([g[i] for g in got])[:want] for i in range(3))  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class _Desc:
    """Orders (entity, attribute) descending, so that at equal times the heap keeps the first by name."""

    key: tuple[str, str]

    def __lt__(self, other: _Desc) -> bool:
        return self.key > other.key


_Item = tuple[int, _Desc, int, float]


def newest(s: Session, access: Access, series: Sequence[SeriesInfo], limit: int) -> Rows:
    """The ``limit`` newest readable readings of ``series``, newest first (then by entity, attribute)."""
    last = repository.last_ts_by_series(s, [x.id for x in series])
    store = store_for(s)
    cands = sorted((x for x in series if last.get(x.id) is not None), key=lambda x: -int(last[x.id] or 0))
    heap: list[_Item] = []  # min-heap of the best `limit` rows
    for x in cands:
        if len(heap) >= limit and int(last[x.id] or 0) < heap[0][0]:
            break  # every remaining series is older than what we have
        _newest_of(store, access, x, limit, heap)
    items = sorted(heap, reverse=True)
    if not items:
        return Rows.empty()
    return Rows(
        np.array([r[0] for r in items], np.int64),
        np.array([r[2] for r in items], np.int64),
        np.array([r[3] for r in items], np.float64),
        {x.id: x for x in series},
    )


def _newest_of(store: TimeseriesStore, access: Access, x: SeriesInfo, limit: int, heap: list[_Item]) -> None:
    """Offer the newest readable readings of one series to the heap of the ``limit`` best."""
    floor = heap[0][0] if len(heap) >= limit else None
    for lo, hi in sorted(readable_windows_us(access, x), reverse=True):
        if floor is not None:
            lo = max(lo, floor)
        ts, vals = store.fetch_recent(x.id, lo, hi, limit)
        for t, v in zip(ts.tolist(), vals.tolist(), strict=True):
            item = (t, _Desc((x.entity_id, x.attribute)), x.id, v)
            if len(heap) < limit:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
