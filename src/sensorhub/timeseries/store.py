"""The time-series store: the SQL behind ingest and reads, one implementation per dialect.

Services never write measurement SQL themselves; they ask
:func:`sensorhub.timeseries.backends.store_for` for the store of their session's dialect. Methods work on numpy arrays and the session's DBAPI connection (inside the
session's transaction) so that bulk paths create no per-point Python objects beyond what the driver needs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy.orm import Session

from sensorhub.timeseries.rollups import F64, I64, Partial, RollupDelta

RAW = "measurements"

# The partial aggregates a GROUP BY bucket carries for each aggregation, as (val, aux): the parts
# named here, each as SQL over the raw table or over a rollup (min and max carry no aux: "0").
_PARTIALS: dict[str, tuple[str, str | None]] = {
    "avg": ("sum", "count"),
    "sum": ("sum", "count"),
    "count": ("count", "count"),
    "min": ("min", None),
    "max": ("max", None),
}
_RAW_PARTS = {"sum": "sum(value)", "count": "count(*)", "min": "min(value)", "max": "max(value)"}
_ROLLUP_PARTS = {"sum": 'sum("sum")', "count": 'sum("count")', "min": 'min("min")', "max": 'max("max")'}

_TS_VALUE = np.dtype([("ts", np.int64), ("value", np.float64)])
_BUCKET_VAL_AUX = np.dtype([("bucket", np.int64), ("val", np.float64), ("aux", np.float64)])


def bucket_expr(col: str, width: int) -> str:
    """SQL for the epoch-aligned bucket start of ``col`` (floor, also before 1970). ``width`` is an int."""
    w = int(width)
    return f"({col} - ((({col} % {w}) + {w}) % {w}))"


def _empty_ts_values() -> tuple[I64, F64]:
    return np.empty(0, np.int64), np.empty(0, np.float64)


class TimeseriesStore:
    """SQL shared by both dialects, written with ``?`` placeholders; subclasses adapt what differs."""

    dialect = "generic"

    def __init__(self, session: Session) -> None:
        self.session = session
        # The DBAPI connection of the session's current transaction (begins it if needed).
        self.dbapi: Any = session.connection().connection.driver_connection

    # --- plumbing ---------------------------------------------------------------------------------

    def sql(self, text: str) -> str:
        return text

    def execute(self, text: str, params: Sequence[Any] = ()) -> Any:
        cur = self.dbapi.cursor()
        cur.execute(self.sql(text), params)
        return cur

    def fetch_ts_values(self, text: str, params: Sequence[Any]) -> tuple[I64, F64]:
        rows = self.execute(text, params).fetchall()
        if not rows:
            return _empty_ts_values()
        arr = np.fromiter(map(tuple, rows), dtype=_TS_VALUE, count=len(rows))
        return arr["ts"].copy(), arr["value"].copy()

    # --- ingest -------------------------------------------------------------------------------------

    def lock_series(self, series_id: int) -> int | None:
        """Serialise writers of one series for the rest of the transaction; returns its ``last_ts``."""
        raise NotImplementedError

    def existing_ts(self, series_id: int, lo: int, hi: int) -> I64:
        """Stored timestamps of a series in ``[lo, hi]`` (inclusive)."""
        rows = self.execute(
            "SELECT ts FROM measurements WHERE series_id = ? AND ts >= ? AND ts <= ?", (series_id, lo, hi)
        ).fetchall()
        return np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=len(rows))

    def insert_points(self, series_id: int, ts: I64, values: F64) -> None:
        raise NotImplementedError

    def merge_rollup(self, table: str, series_id: int, delta: RollupDelta) -> None:
        """Add ``delta`` into existing buckets (upsert)."""
        raise NotImplementedError

    def insert_rollup(self, table: str, series_id: int, delta: RollupDelta) -> None:
        """Insert buckets known not to exist yet (fast path for appends)."""
        raise NotImplementedError

    def delete_points(self, series_id: int, ts: I64) -> None:
        """Delete the points of a series at the given timestamps."""
        cur = self.dbapi.cursor()
        cur.executemany(
            self.sql("DELETE FROM measurements WHERE series_id = ? AND ts = ?"),
            [(series_id, t) for t in ts.tolist()],
        )

    def delete_range(self, series_id: int, lo: int, hi: int) -> int:
        """Delete the points of a series in ``[lo, hi)``; how many there were."""
        cur = self.execute(
            "DELETE FROM measurements WHERE series_id = ? AND ts >= ? AND ts < ?", (series_id, lo, hi)
        )
        return int(cur.rowcount)

    def delete_rollup_range(self, table: str, series_id: int, lo: int, hi: int) -> None:
        """Delete the rollup buckets of a series starting in ``[lo, hi)``."""
        self.execute(
            f"DELETE FROM {table} WHERE series_id = ? AND bucket_start >= ? AND bucket_start < ?",  # noqa: S608 (table names are ours)
            (series_id, lo, hi),
        )

    def refresh_last(self, series_id: int) -> None:
        """Set the series' latest point from the stored points (after an overwrite or a delete)."""
        latest = self.latest_in(series_id, None, None)
        self.execute(
            "UPDATE series SET last_ts = ?, last_value = ? WHERE id = ?",
            (None, None, series_id) if latest is None else (*latest, series_id),
        )

    def update_last(self, series_id: int, ts: int, value: float) -> None:
        self.execute(
            "UPDATE series SET last_ts = ?, last_value = ? WHERE id = ? AND (last_ts IS NULL OR last_ts < ?)",
            (ts, value, series_id, ts),
        )

    # --- reads --------------------------------------------------------------------------------------

    def fetch_raw(self, series_id: int, lo: int, hi: int, limit: int | None = None) -> tuple[I64, F64]:
        """Raw points of a series in ``[lo, hi)``, by time."""
        q = "SELECT ts, value FROM measurements WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts"
        params: tuple[int, ...] = (series_id, lo, hi)
        if limit is not None:
            q += " LIMIT ?"
            params += (limit,)
        return self.fetch_ts_values(q, params)

    def fetch_recent(
        self, series_id: int, lo: int | None, hi: int | None, limit: int | None = None
    ) -> tuple[I64, F64]:
        """The newest ``limit`` points of a series in ``[lo, hi)`` (all with ``None``), newest first."""
        q, params = _newest_first(series_id, lo, hi)
        if limit is None:
            return self.fetch_ts_values(q, params)
        return self.fetch_ts_values(q + " LIMIT ?", [*params, limit])

    def latest_in(self, series_id: int, lo: int | None, hi: int | None) -> tuple[int, float] | None:
        """The latest point of a series in ``[lo, hi)`` (either bound may be open)."""
        q, params = _newest_first(series_id, lo, hi)
        row = self.execute(q + " LIMIT 1", params).fetchone()
        return (int(row[0]), float(row[1])) if row else None

    def _partial_columns(self, table: str, agg: str) -> tuple[str, str]:
        """SQL for (val, aux) of a GROUP BY bucket over ``table`` (raw or rollup) for ``agg``."""
        sql = _RAW_PARTS if table == RAW else _ROLLUP_PARTS
        val, aux = _PARTIALS[agg]
        return sql[val], sql[aux] if aux is not None else "0"

    def _first_last_sql(self, table: str, agg: str, bucket: str, time_col: str) -> str:
        raise NotImplementedError

    def partial(self, series_id: int, table: str, lo: int, hi: int, bucket_us: int, agg: str) -> Partial:
        """Partial aggregates per output bucket of one series over ``[lo, hi)`` read from ``table``
        (``measurements`` or a rollup whose width divides ``bucket_us`` and aligns with lo/hi)."""
        time_col = "ts" if table == RAW else "bucket_start"
        bucket = bucket_expr(time_col, bucket_us)
        if agg in ("first", "last"):
            q = self._first_last_sql(table, agg, bucket, time_col)
        else:
            val, aux = self._partial_columns(table, agg)
            q = (
                f"SELECT {bucket} AS b, {val}, {aux} FROM {table} "  # noqa: S608 (names and placeholders are ours)
                f"WHERE series_id = ? AND {time_col} >= ? AND {time_col} < ? GROUP BY 1 ORDER BY 1"
            )
        rows = self.execute(q, (series_id, lo, hi)).fetchall()
        if not rows:
            e = np.empty(0, np.float64)
            return Partial(np.empty(0, np.int64), e, e)
        arr = np.fromiter(map(tuple, rows), dtype=_BUCKET_VAL_AUX, count=len(rows))
        return Partial(arr["bucket"].copy(), arr["val"].copy(), arr["aux"].copy())

    def fetch_stats(
        self, series_id: int, table: str, lo: int, hi: int
    ) -> tuple[I64, F64, F64, F64, F64, F64]:
        """``(time, count, sum, sum of squares, min, max)`` rows of a series in ``[lo, hi)`` by time: one
        per point from ``measurements``, one per bucket from a rollup table (its ``bucket_start``)."""
        if table == RAW:
            q = (
                "SELECT ts, 1, value, value * value, value, value FROM measurements "
                "WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts"
            )
        else:
            q = (
                f'SELECT bucket_start, "count", "sum", sumsq, "min", "max" FROM {table} '  # noqa: S608 (names are ours)
                "WHERE series_id = ? AND bucket_start >= ? AND bucket_start < ? ORDER BY bucket_start"
            )
        rows = self.execute(q, (series_id, lo, hi)).fetchall()
        arr = np.array(rows, dtype=np.float64).reshape(len(rows), 6)
        return (
            np.array([r[0] for r in rows], dtype=np.int64),
            arr[:, 1].copy(),
            arr[:, 2].copy(),
            arr[:, 3].copy(),
            arr[:, 4].copy(),
            arr[:, 5].copy(),
        )

    def count_points(self, series_ids: Sequence[int], lo: int, hi: int) -> int:
        """Number of raw points of the given series in [lo, hi), from the day rollup (approximate at
        day edges; used to size export slices)."""
        if not series_ids:
            return 0
        marks = ",".join("?" * len(series_ids))
        row = self.execute(
            f'SELECT coalesce(sum("count"), 0) FROM rollup_1d WHERE series_id IN ({marks}) '  # noqa: S608 (names and placeholders are ours)
            "AND bucket_start >= ? AND bucket_start < ?",
            (*series_ids, lo - 86_400_000_000, hi),
        ).fetchone()
        return int(row[0] or 0)

    def points_in_whole_buckets(self, series_id: int, table: str, width: int, lo: int, hi: int) -> int:
        """Number of points of a series in the buckets of rollup ``table`` (``width`` µs) that lie wholly
        inside ``[lo, hi)``: a lower bound of the points in ``[lo, hi)`` that costs one index range on
        the rollup."""
        a, b = -(-lo // width) * width, (hi // width) * width
        if a >= b:
            return 0
        row = self.execute(
            f'SELECT coalesce(sum("count"), 0) FROM {table} '  # noqa: S608 (table names are ours)
            "WHERE series_id = ? AND bucket_start >= ? AND bucket_start < ?",
            (series_id, a, b),
        ).fetchone()
        return int(row[0] or 0)

    def first_day(self, series_ids: Sequence[int], lo: int) -> int | None:
        """Start of the first day (UTC) at or after the day of ``lo`` holding points of these series."""
        if not series_ids:
            return None
        marks = ",".join("?" * len(series_ids))
        day = 86_400_000_000
        row = self.execute(
            f"SELECT min(bucket_start) FROM rollup_1d WHERE series_id IN ({marks}) AND bucket_start >= ?",  # noqa: S608 (names and placeholders are ours)
            (*series_ids, lo - (lo % day)),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def iter_raw_arrow(
        self, windows: Mapping[int, Sequence[tuple[int, int]]], batch_rows: int
    ) -> Iterator[pa.RecordBatch] | None:
        """An Arrow-native reader of raw points (batches of
        :data:`~sensorhub.timeseries.arrow_reader.BATCH_SCHEMA`, at most ``batch_rows`` rows each, ordered
        by (ts, series_id)) of each series inside its half-open windows, or ``None`` when this store has
        none for the session (callers then page through :meth:`scan_slice`)."""
        return None

    def scan_slice(self, conditions: Iterable[tuple[Sequence[int], int, int]]) -> Any:
        """A cursor over raw rows ``(ts, series_id, value)`` ordered by (ts, series_id) for a union of
        ``(series_ids, lo, hi)`` conditions (half-open time ranges)."""
        parts: list[str] = []
        params: list[int] = []
        for sids, lo, hi in conditions:
            marks = ",".join("?" * len(sids))
            parts.append(f"(series_id IN ({marks}) AND ts >= ? AND ts < ?)")
            params.extend(sids)
            params.extend((lo, hi))
        where = " OR ".join(parts) if parts else "1 = 0"
        return self.execute(
            f"SELECT ts, series_id, value FROM measurements WHERE {where} ORDER BY ts, series_id",  # noqa: S608
            params,
        )


def _newest_first(series_id: int, lo: int | None, hi: int | None) -> tuple[str, list[int]]:
    """``SELECT ts, value`` of a series in ``[lo, hi)`` (either bound may be open), newest first, and
    its parameters."""
    q = "SELECT ts, value FROM measurements WHERE series_id = ?"
    params: list[int] = [series_id]
    if lo is not None:
        q += " AND ts >= ?"
        params.append(lo)
    if hi is not None:
        q += " AND ts < ?"
        params.append(hi)
    return q + " ORDER BY ts DESC", params
