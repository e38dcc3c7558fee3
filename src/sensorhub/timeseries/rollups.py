"""Vectorised aggregate arithmetic: rollup deltas on ingest and combining partial aggregates on read.

Everything here works on numpy arrays; no per-point Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sensorhub.errors import BadRequest

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

AGGREGATIONS = ("avg", "min", "max", "sum", "count", "first", "last")


def check_aggregation(agg: str) -> str:
    if agg not in AGGREGATIONS:
        raise BadRequest(f"unknown aggregation '{agg}'; use one of: {', '.join(AGGREGATIONS)}")
    return agg


def floor_to(ts: I64, width: int) -> I64:
    """Epoch-aligned bucket start of every timestamp (floor, also for times before 1970)."""
    return ts - np.mod(ts, width)


@dataclass(frozen=True, slots=True)
class RollupDelta:
    """Aggregates of a set of *new* points per bucket; merged into a rollup table with an upsert."""

    bucket_start: I64
    count: I64
    sum: F64
    min: F64
    max: F64
    first_ts: I64
    first: F64
    last_ts: I64
    last: F64
    sumsq: F64  # sum of squares (NGSI-LD stddev and sumsq)

    def __len__(self) -> int:
        return len(self.bucket_start)

    def select(self, mask: npt.NDArray[np.bool_]) -> RollupDelta:
        return RollupDelta(*(a[mask] for a in self.arrays()))

    def arrays(self) -> tuple[npt.NDArray[Any], ...]:
        """The columns in table order (:data:`ROLLUP_FIELDS`)."""
        return tuple(getattr(self, f) for f in ROLLUP_FIELDS)


# Column order of a rollup row after ``series_id`` (the tables, the stores' SQL and RollupDelta agree).
ROLLUP_FIELDS = (
    "bucket_start", "count", "sum", "min", "max", "first_ts", "first", "last_ts", "last", "sumsq",
)  # fmt: skip
# Quoted: count, sum, min, max, first and last are SQL keywords or function names.
ROLLUP_COLUMNS_SQL = (
    "(series_id, " + ", ".join(f if f.endswith(("_ts", "_start")) else f'"{f}"' for f in ROLLUP_FIELDS) + ")"
)


def rollup_delta(ts: I64, values: F64, width: int) -> RollupDelta:
    """Per-bucket aggregates of points sorted by ``ts`` (strictly increasing)."""
    buckets = floor_to(ts, width)
    if len(ts) == 0:
        e_i = np.empty(0, np.int64)
        e_f = np.empty(0, np.float64)
        return RollupDelta(e_i, e_i, e_f, e_f, e_f, e_i, e_f, e_i, e_f, e_f)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(buckets)) + 1))
    ends = np.concatenate((starts[1:], [len(ts)])) - 1
    return RollupDelta(
        bucket_start=buckets[starts],
        count=np.diff(np.concatenate((starts, [len(ts)]))).astype(np.int64),
        sum=np.add.reduceat(values, starts),
        min=np.minimum.reduceat(values, starts),
        max=np.maximum.reduceat(values, starts),
        first_ts=ts[starts],
        first=values[starts],
        last_ts=ts[ends],
        last=values[ends],
        sumsq=np.add.reduceat(values * values, starts),
    )


@dataclass(slots=True)
class Partial:
    """Partial aggregates of one series per output bucket, from one piece of the time range.

    ``val``/``aux`` depend on the aggregation: avg and sum → (sum, count); count → (count, count);
    min/max → (min, _); first/last → (value, its timestamp)."""

    bucket: I64
    val: F64
    aux: F64


def combine(partials: list[Partial], agg: str) -> tuple[I64, F64]:
    """Combine partial aggregates into one value per output bucket (sorted by bucket)."""
    parts = [p for p in partials if len(p.bucket)]
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    bucket = np.concatenate([p.bucket for p in parts])
    val = np.concatenate([p.val for p in parts])
    aux = np.concatenate([p.aux for p in parts])
    order = np.lexsort((aux, bucket)) if agg in ("first", "last") else np.argsort(bucket, kind="stable")
    bucket, val, aux = bucket[order], val[order], aux[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(bucket)) + 1))
    keys = bucket[starts]
    if agg == "avg":
        out = np.add.reduceat(val, starts) / np.add.reduceat(aux, starts)
    elif agg in ("sum", "count"):
        out = np.add.reduceat(val, starts)
    elif agg == "min":
        out = np.minimum.reduceat(val, starts)
    elif agg == "max":
        out = np.maximum.reduceat(val, starts)
    elif agg == "first":
        out = val[starts]
    else:  # last
        ends = np.concatenate((starts[1:], [len(bucket)])) - 1
        out = val[ends]
    return keys, out.astype(np.float64, copy=False)


def aggregate_points(ts: I64, values: F64, bucket_us: int, agg: str) -> tuple[I64, F64]:
    """Aggregate raw points (sorted by ts) into epoch-aligned buckets; the reference for tests too."""
    if len(ts) == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    d = rollup_delta(ts, values, bucket_us)
    field = {
        "avg": d.sum / d.count,
        "sum": d.sum,
        "count": d.count.astype(np.float64),
        "min": d.min,
        "max": d.max,
        "first": d.first,
        "last": d.last,
    }[agg]
    return d.bucket_start, np.asarray(field, dtype=np.float64)
