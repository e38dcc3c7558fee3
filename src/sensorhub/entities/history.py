"""Reads of the attribute history the time-series store does not keep (``attribute_instances``, see
:mod:`sensorhub.entities.models`): the instances of one attribute of one entity inside the half-open
microsecond windows it may be read in — the same windows, page sizes and result shape
(:class:`sensorhub.timeseries.temporal.Instances`) as the numeric reads, so the NGSI-LD temporal API cuts,
pages and clamps both alike. The caller has selected the entity through ``visible_entities``.

Aggregation: ``totalCount`` and ``distinctCount`` apply to any value; the numeric methods (``sum``,
``avg``, ``min``, ``max``, ``stddev``, ``sumsq``) do not and are left out for these attributes. They read
the instances themselves, at most :data:`MAX_AGGREGATE_SCAN` per attribute (counted first; beyond, a 400).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from sensorhub.authz.scope import VisibleEntities
from sensorhub.entities.models import LOCATION, Entity, attribute_instances, is_series_value
from sensorhub.entities.normalize import VALUE_MEMBER
from sensorhub.errors import BadRequest
from sensorhub.timeseries.query import WindowUS
from sensorhub.timeseries.rollups import I64
from sensorhub.timeseries.temporal import Aggregated, Instances

# Methods that apply to values of any type; the others are numeric.
ANY_VALUE_METHODS = ("totalCount", "distinctCount")
MAX_AGGREGATE_SCAN = 100_000  # instances an aggregation of one non-numeric attribute may read

_T = attribute_instances.c


@dataclass(frozen=True, slots=True)
class HistoryKey:
    """One attribute of one entity; ``deleted``: its deletion instances instead of its values;
    ``created``: its instances by createdAt (when each was written) instead of observedAt — the times
    read and returned are then createdAt, and each instance's observedAt (its key) is in ``ids``."""

    entity_pk: int
    attribute: str
    deleted: bool = False
    created: bool = False

    @property
    def time(self) -> Any:
        return _T.created_us if self.created else _T.ts


def history_attributes(attrs: dict[str, Any] | None, location: dict[str, Any] | None) -> list[str]:
    """The attributes of an entity (its stored state) whose temporal evolution ``attribute_instances``
    keeps: every attribute that is not a number-valued Property, and ``location``."""
    names = [n for n, a in (attrs or {}).items() if not is_series_value(a)]
    return [*names, LOCATION] if location is not None else names


def deleted_attributes(s: Session, entity_pks: Sequence[int]) -> dict[int, list[str]]:
    """The attributes of each entity that have deletion instances (``timeproperty=deletedAt``)."""
    if not entity_pks:
        return {}
    q = (
        select(_T.entity_pk, _T.attribute)
        .where(_T.entity_pk.in_(list(entity_pks)), _T.deleted.is_(True))
        .group_by(_T.entity_pk, _T.attribute)
        .order_by(_T.entity_pk, _T.attribute)
    )
    out: dict[int, list[str]] = {}
    for pk, name in s.execute(q).tuples():
        out.setdefault(pk, []).append(name)
    return out


@dataclass(frozen=True, slots=True)
class ListedEntity:
    pk: int
    entity_id: str
    org_id: str
    attrs: dict[str, Any]
    location: dict[str, Any] | None


def listed_entities(s: Session, visible: VisibleEntities, entity_ids: Sequence[str]) -> list[ListedEntity]:
    """The stored state of the listed entities (by NGSI-LD id) among ``visible``: which attributes have
    a history (the reads then apply the time windows)."""
    if not entity_ids:
        return []
    q = select(Entity.pk, Entity.entity_id, Entity.org_id, Entity.attrs, Entity.location).where(
        visible.where(), Entity.entity_id.in_(list(entity_ids))
    )
    return [ListedEntity(*r) for r in s.execute(q).tuples()]


def _where(key: HistoryKey, lo: int, hi: int) -> ColumnElement[bool]:
    return and_(
        _T.entity_pk == key.entity_pk,
        _T.attribute == key.attribute,
        _T.deleted.is_(key.deleted),
        key.time >= lo,
        key.time < hi,
    )


def _columns(key: HistoryKey) -> tuple[Any, ...]:
    return (_T.created_us, _T.ts, _T.instance) if key.created else (_T.ts, _T.instance)


# One instance read: (its time as read, by ``key.time``; its observedAt, the instance's key; the instance).
_Row = tuple[int, int, Any]


def _row(key: HistoryKey, r: Any) -> _Row:
    return (int(r[0]), int(r[1]), r[2]) if key.created else (int(r[0]), int(r[0]), r[1])


def _objects(items: list[Any]) -> npt.NDArray[Any]:
    out = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):  # one by one: a list value must stay one element
        out[i] = x
    return out


def _instances(key: HistoryKey, rows: list[_Row], truncated: bool = False) -> Instances:
    ts = np.array([r[0] for r in rows], dtype=np.int64)
    ids = np.array([r[1] for r in rows], dtype=np.int64) if key.created else None
    return Instances(ts, _objects([r[2] for r in rows]), truncated, ids)


def _read(s: Session, key: HistoryKey, windows: Sequence[WindowUS], limit: int | None) -> list[_Row]:
    rows: list[_Row] = []
    for lo, hi in windows:
        q = select(*_columns(key)).where(_where(key, lo, hi)).order_by(key.time, _T.ts)
        if limit is not None:
            q = q.limit(limit - len(rows))
        rows += [_row(key, r) for r in s.execute(q)]
        if limit is not None and len(rows) >= limit:
            break
    return rows


def first_instances(s: Session, key: HistoryKey, windows: Sequence[WindowUS], limit: int) -> Instances:
    """The oldest ``limit`` instances in the windows (``truncated`` when more exist)."""
    rows = _read(s, key, windows, limit + 1)
    return _instances(key, rows[:limit], len(rows) > limit)


def last_instances(s: Session, key: HistoryKey, windows: Sequence[WindowUS], n: int, limit: int) -> Instances:
    """The newest ``n`` instances in the windows, by time, at most ``limit`` of them (the newest):
    ``truncated`` when ``n`` asked for more than ``limit`` and more exist."""
    want = min(n, limit) + (1 if n > limit else 0)
    rows: list[_Row] = []
    for lo, hi in reversed(windows):
        q = (
            select(*_columns(key))
            .where(_where(key, lo, hi))
            .order_by(key.time.desc(), _T.ts.desc())
            .limit(want - len(rows))
        )
        rows += [_row(key, r) for r in s.execute(q)]
        if len(rows) >= want:
            break
    truncated = len(rows) > min(n, limit)
    return _instances(key, rows[: min(n, limit)][::-1], truncated)


def first_time(s: Session, key: HistoryKey, windows: Sequence[WindowUS]) -> int | None:
    rows = _read(s, key, windows, 1)
    return rows[0][0] if rows else None


def last_time(s: Session, key: HistoryKey, windows: Sequence[WindowUS]) -> int | None:
    got = last_instances(s, key, windows, 1, 1)
    return int(got.ts[0]) if len(got.ts) else None


def value_of(instance: Any) -> Any:
    """The value an instance carries (its type's member: ``languageMap``, ``json``, ``object``…)."""
    if not isinstance(instance, dict):
        return instance
    return instance.get(VALUE_MEMBER.get(str(instance.get("type", "Property")), "value"))


def aggregate(
    s: Session, key: HistoryKey, windows: Sequence[WindowUS], bounds: I64, methods: Sequence[str]
) -> Aggregated:
    """``totalCount``/``distinctCount`` (of the methods asked for; the numeric ones do not apply) per
    period ``[bounds[i], bounds[i+1])``; periods without instances are left out."""
    n = len(bounds) - 1
    lo_all, hi_all = int(bounds[0]), int(bounds[-1])
    cut = [(max(a, lo_all), min(b, hi_all)) for a, b in windows if max(a, lo_all) < min(b, hi_all)]
    total = sum(
        int(s.scalar(select(func.count()).select_from(attribute_instances).where(_where(key, a, b))) or 0)
        for a, b in cut
    )
    if total > MAX_AGGREGATE_SCAN:
        raise BadRequest(
            f"aggrMethods: the aggregation of the non-numeric attribute '{key.attribute[:100]}' reads its "
            f"instances, at most {MAX_AGGREGATE_SCAN}, and this query holds {total}; narrow the time range"
        )
    rows = _read(s, key, cut, None)
    ts = np.array([r[0] for r in rows], dtype=np.int64)
    idx = np.searchsorted(bounds, ts, side="right") - 1
    count = np.bincount(idx, minlength=n).astype(np.float64) if len(idx) else np.zeros(n)
    keep = count > 0
    out = Aggregated(bounds[:-1][keep].copy(), bounds[1:][keep].copy())
    for m in methods:
        if m == "totalCount":
            out.values[m] = count[keep]
        elif m == "distinctCount":
            seen: list[set[bytes]] = [set() for _ in range(n)]
            for i, (_, _, inst) in zip(idx.tolist(), rows, strict=True):
                seen[i].add(orjson.dumps(value_of(inst), option=orjson.OPT_SORT_KEYS))
            out.values[m] = np.array([len(x) for x in seen], dtype=np.float64)[keep]
    return out


__all__ = [
    "ANY_VALUE_METHODS",
    "MAX_AGGREGATE_SCAN",
    "HistoryKey",
    "ListedEntity",
    "aggregate",
    "deleted_attributes",
    "first_instances",
    "first_time",
    "history_attributes",
    "last_instances",
    "last_time",
    "listed_entities",
    "value_of",
]
