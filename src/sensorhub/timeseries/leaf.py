"""LEAF data API: ``/api/data`` (rows by scope, keyset-paged) and ``/api/data/recent``.

Rows are ``{time, entity, metric, value, tags: {unit, organisation, department}}`` ordered by
(time, entity, metric). Pages are cut with an opaque keyset cursor, so deep pages cost what the first
does: the server scans time slices forward from the cursor, sized from the day rollup, until it has a
page.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from sensorhub.audit.usage import touched
from sensorhub.auth.principal import OrgRef, Principal, WorkspaceRef
from sensorhub.authz.access import Access
from sensorhub.entities.models import Entity
from sensorhub.errors import BadRequest, NotFound
from sensorhub.kit.time import iso_array, opt_us, parse_time, to_us
from sensorhub.timeseries.backends import store_for
from sensorhub.timeseries.models import Series
from sensorhub.timeseries.reads import windows_us

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
DEFAULT_RECENT = 50
MAX_CURSOR_LENGTH = 2048
I64_MIN = -(2**62)  # far outside any real timestamp, and safe for arithmetic
I64_MAX = 2**62


def check_limit(limit: int, default_max: int = MAX_LIMIT) -> int:
    if limit < 1 or limit > default_max:
        raise BadRequest(f"limit must be between 1 and {default_max} (got {limit})")
    return limit


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    id: int
    entity_id: str
    attribute: str
    unit: str | None
    org_id: str
    workspace_id: str


def encode_cursor(ts: int, entity: str, metric: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([ts, entity, metric])).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[int, str, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        ts, entity, metric = orjson.loads(raw)
        if not isinstance(ts, int) or not isinstance(entity, str) or not isinstance(metric, str):
            raise ValueError
        if not I64_MIN <= ts <= I64_MAX:
            raise ValueError  # never a position we handed out, and not bindable as int64
        return ts, entity, metric
    except (ValueError, binascii.Error, orjson.JSONDecodeError, TypeError):
        raise BadRequest(
            'cursor is invalid; use the Link rel="next" URL of the previous page as is'
        ) from None


def _match(ref: str, slug: str, name: str) -> bool:
    return ref == slug or ref.lower() == name.lower()


def resolve_scope(
    principal: Principal, access: Access, organisation: str | None, department: str | None
) -> tuple[OrgRef | None, WorkspaceRef | None]:
    """Organisation (slug or name) and department (workspace slug or name) among those the credential
    reaches; unknown ones are 404 without saying whether they exist elsewhere."""
    org = None
    if organisation is not None:
        org = next(
            (
                o
                for o in principal.orgs.values()
                if o.id in access.org_ids and _match(organisation, o.slug, o.name)
            ),
            None,
        )
        if org is None:
            raise NotFound(f"organisation '{organisation}' not found")
    ws = None
    if department is not None:
        found = [
            w
            for w in principal.workspaces.values()
            if w.org_id in access.org_ids
            and (org is None or w.org_id == org.id)
            and _match(department, w.slug, w.name)
        ]
        if not found:
            raise NotFound(f"department '{department}' not found")
        if len(found) > 1:
            raise BadRequest(f"department '{department}' exists in several organisations; add organisation=")
        ws = found[0]
    return org, ws


def visible_series(
    s: Session,
    access: Access,
    org: OrgRef | None,
    ws: WorkspaceRef | None,
    entity: str | None,
    metric: str | None,
) -> list[SeriesInfo]:
    q = (
        select(Series.id, Entity.entity_id, Series.attribute, Series.unit, Entity.org_id, Entity.workspace_id)
        .join(Entity, Entity.pk == Series.entity_pk)
        .where(access.sql_filter(Entity.org_id, Entity.workspace_id, Entity.entity_id))
    )
    if org is not None:
        q = q.where(Entity.org_id == org.id)
    if ws is not None:
        q = q.where(Entity.workspace_id == ws.id)
    if entity is not None:
        q = q.where(or_(Entity.entity_id == entity, Entity.asset_id == entity))
    if metric is not None:
        q = q.where(Series.attribute == metric)
    out = [SeriesInfo(*r) for r in s.execute(q).tuples()]
    for org_id in {x.org_id for x in out}:
        touched(org_id)  # read through columns, not Entity rows: the audit log needs the organisations
    return out


def _rows(
    ts: np.ndarray, sids: np.ndarray, vals: np.ndarray, info: dict[int, SeriesInfo], principal: Principal
) -> list[dict[str, Any]]:
    times = iso_array(ts).tolist()
    out = []
    for t, sid, v in zip(times, sids.tolist(), vals.tolist(), strict=True):
        x = info[sid]
        o = principal.orgs.get(x.org_id)
        w = principal.workspaces.get(x.workspace_id)
        out.append(
            {
                "time": t,
                "entity": x.entity_id,
                "metric": x.attribute,
                "value": v,
                "tags": {
                    "unit": x.unit,
                    "organisation": o.slug if o else x.org_id,
                    "department": w.slug if w else x.workspace_id,
                },
            }
        )
    return out


def data(
    s: Session,
    principal: Principal,
    access: Access,
    *,
    organisation: str | None,
    department: str | None,
    entity: str | None,
    metric: str | None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of rows and the cursor of the next page (None on the last page)."""
    check_limit(limit)
    if start is not None and end is not None and end <= start:
        raise BadRequest("'to' must be after 'from' (from is inclusive, to is exclusive)")
    org, ws = resolve_scope(principal, access, organisation, department)
    series = visible_series(s, access, org, ws, entity, metric)
    after = decode_cursor(cursor) if cursor else None
    lo = opt_us(start) if start is not None else I64_MIN
    hi = opt_us(end) if end is not None else I64_MAX
    assert lo is not None and hi is not None
    per_series: dict[int, list[tuple[int, int]]] = {}
    for x in series:
        ws_ = windows_us(access.clamp(x.org_id, x.workspace_id, x.entity_id, start, end), lo, hi)
        if ws_:
            per_series[x.id] = ws_
    if not per_series:
        return [], None
    info = {x.id: x for x in series if x.id in per_series}
    # Order of series within one timestamp: (entity, metric).
    order_keys = sorted(info.values(), key=lambda x: (x.entity_id, x.attribute))
    ids_sorted = np.array(sorted(info), dtype=np.int64)
    rank_of_sorted = np.empty(len(ids_sorted), dtype=np.int64)
    rank_by_id = {x.id: i for i, x in enumerate(order_keys)}
    rank_of_sorted[:] = [rank_by_id[int(i)] for i in ids_sorted]
    cut_rank = _rank_after(order_keys, after[1], after[2]) if after is not None else 0
    t = lo if after is None else max(lo, after[0])
    # The data ends at the latest stored point of these series (or `to`).
    store = store_for(s)
    max_ts = s.scalar(select(func.max(Series.last_ts)).where(Series.id.in_(list(info))))
    if max_ts is None:
        return [], None
    hi = min(hi, int(max_ts) + 1)
    # Skip empty time before the first stored day (the day rollup is small and indexed).
    first_day = store.first_day(list(info), t)
    if first_day is None:
        return [], None
    t = max(t, first_day)
    want = limit + 1
    got_ts: list[np.ndarray] = []
    got_sid: list[np.ndarray] = []
    got_val: list[np.ndarray] = []
    have = 0
    total = store.count_points(list(info), t, hi)
    step = max(1_000_000, int((hi - t) * min(1.0, 2.0 * want / total))) if total else hi - t
    while t < hi and have < want:
        t2 = min(hi, t + step)
        conds = _conditions(per_series, t, t2)
        if conds:
            rows = store.scan_slice(conds).fetchall()
            if rows:
                ts = np.fromiter((r[0] for r in rows), np.int64, len(rows))
                sid = np.fromiter((r[1] for r in rows), np.int64, len(rows))
                val = np.fromiter((r[2] for r in rows), np.float64, len(rows))
                rk = rank_of_sorted[np.searchsorted(ids_sorted, sid)]
                if after is not None:
                    keep = (ts > after[0]) | ((ts == after[0]) & (rk >= cut_rank))
                    ts, sid, val, rk = ts[keep], sid[keep], val[keep], rk[keep]
                o = np.lexsort((rk, ts))
                got_ts.append(ts[o])
                got_sid.append(sid[o])
                got_val.append(val[o])
                have += len(ts)
        t = t2
        step *= 2
    if not got_ts:
        return [], None
    ts = np.concatenate(got_ts)[:want]
    sid = np.concatenate(got_sid)[:want]
    val = np.concatenate(got_val)[:want]
    rows_out = _rows(ts[:limit], sid[:limit], val[:limit], info, principal)
    next_cursor = None
    if len(ts) > limit:
        last = info[int(sid[limit - 1])]
        next_cursor = encode_cursor(int(ts[limit - 1]), last.entity_id, last.attribute)
    return rows_out, next_cursor


def _rank_after(order_keys: Sequence[SeriesInfo], entity: str, metric: str) -> int:
    """The rank of the first series that sorts after (entity, metric)."""
    keys = [(x.entity_id, x.attribute) for x in order_keys]
    return bisect.bisect_right(keys, (entity, metric))


def _conditions(
    per_series: dict[int, list[tuple[int, int]]], lo: int, hi: int
) -> list[tuple[list[int], int, int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for sid, ws in per_series.items():
        for a, b in ws:
            a2, b2 = max(a, lo), min(b, hi)
            if a2 < b2:
                groups.setdefault((a2, b2), []).append(sid)
    return [(sids, a, b) for (a, b), sids in groups.items()]


def recent(s: Session, principal: Principal, access: Access, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` newest readings across everything readable, newest first."""
    check_limit(limit)
    series = visible_series(s, access, None, None, None, None)
    last = (
        dict(
            s.execute(select(Series.id, Series.last_ts).where(Series.id.in_([x.id for x in series])))
            .tuples()
            .all()
        )
        if series
        else {}
    )
    store = store_for(s)
    cands = sorted((x for x in series if last.get(x.id) is not None), key=lambda x: -int(last[x.id] or 0))
    heap: list[tuple[int, _Desc, int, float]] = []  # min-heap of the best `limit` rows
    for x in cands:
        if len(heap) >= limit and int(last[x.id] or 0) < heap[0][0]:
            break  # every remaining series is older than what we have
        windows = access.windows_for(x.org_id, x.workspace_id, x.entity_id)
        floor = heap[0][0] if len(heap) >= limit else None
        for a, b in sorted(windows, key=lambda w: opt_us(w[0]) or I64_MIN, reverse=True):
            lo, hi = opt_us(a), opt_us(b)
            if floor is not None:
                lo = floor if lo is None else max(lo, floor)
            ts, vals = store.fetch_recent(x.id, lo, hi, limit)
            for t, v in zip(ts.tolist(), vals.tolist(), strict=True):
                item = (t, _Desc((x.entity_id, x.attribute)), x.id, v)
                if len(heap) < limit:
                    heapq.heappush(heap, item)
                elif item > heap[0]:
                    heapq.heapreplace(heap, item)
    items = sorted(heap, reverse=True)  # newest first, then by (entity, metric)
    info = {x.id: x for x in series}
    if not items:
        return []
    return _rows(
        np.array([r[0] for r in items], np.int64),
        np.array([r[2] for r in items], np.int64),
        np.array([r[3] for r in items], np.float64),
        info,
        principal,
    )


@dataclass(frozen=True, slots=True)
class _Desc:
    """Orders (entity, metric) descending, so that at equal times the heap keeps the first by name."""

    key: tuple[str, str]

    def __lt__(self, other: _Desc) -> bool:
        return self.key > other.key


def parse_bound(value: str | None, what: str) -> datetime | None:
    """``from``/``to``: ISO 8601 or a date, inside the supported time range (else 400)."""
    return None if value is None or value == "" else parse_time(value, what)


__all__ = ["data", "decode_cursor", "encode_cursor", "parse_bound", "recent", "to_us"]
