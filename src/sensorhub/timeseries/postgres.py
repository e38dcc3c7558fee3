"""PostgreSQL time-series store: monthly range partitions created on demand, binary COPY ingest."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from sensorhub.timeseries.rollups import F64, I64, ROLLUP_COLUMNS_SQL, ROLLUP_FIELDS, RollupDelta
from sensorhub.timeseries.store import RAW, TimeseriesStore

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)


def _binary_copy(columns: list[tuple[str, np.ndarray]]) -> bytes:
    """PostgreSQL binary COPY payload for int64/float64 columns, built with one numpy structured array."""
    n = len(columns[0][1])
    fields: list[tuple[str, str]] = [("nfields", ">i2")]
    for i, (_name, arr) in enumerate(columns):
        fields.append((f"l{i}", ">i4"))
        fields.append((f"c{i}", ">i8" if arr.dtype.kind == "i" else ">f8"))
    rec = np.empty(n, dtype=np.dtype(fields))
    rec["nfields"] = len(columns)
    for i, (_name, arr) in enumerate(columns):
        rec[f"l{i}"] = 8
        rec[f"c{i}"] = arr
    return _COPY_HEADER + rec.tobytes() + _COPY_TRAILER


def month_bounds(ts: I64) -> list[tuple[str, int, int]]:
    """(partition name, lo, hi) of every calendar month (UTC) the timestamps fall in."""
    months = np.unique(ts.astype("datetime64[us]").astype("datetime64[M]"))
    out = []
    for m in months:
        lo = int(m.astype("datetime64[us]").astype(np.int64))
        hi = int((m + 1).astype("datetime64[us]").astype(np.int64))
        name = "measurements_p" + str(m).replace("-", "")
        out.append((name, lo, hi))
    return out


def months_ahead(now_us: int, months: int = 2) -> I64:
    """One instant in each of the ``months`` calendar months (UTC) from ``now_us``'s on: the partitions
    :func:`create_partitions_ahead` makes before live data needs them."""
    start = np.datetime64(int(now_us), "us").astype("datetime64[M]")
    instants: I64 = (start + np.arange(months)).astype("datetime64[us]").astype(np.int64)
    return instants


def create_partitions_ahead(engine: Any, now_us: int, months: int = 2) -> list[str]:
    """Create the partitions of this month and the next (``months`` in all) that do not exist yet, in a
    short transaction of their own; the names created.

    Without it the first write of a month creates that month's partition, and under many concurrent
    writers at the turn of the month ``CREATE TABLE … PARTITION OF`` waits for the lock every open
    ingest transaction holds on ``measurements``: writers would get 503 until one of them wins. A job
    (:mod:`sensorhub.background`) runs this hourly and at start, so live data always finds its month;
    a backfill into an old month still creates that one on demand (:meth:`PostgresStore.ensure_partitions`)."""
    bounds = month_bounds(months_ahead(now_us, months))
    with engine.connect() as conn, conn.begin():
        have = {
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT relname FROM pg_class WHERE relname = ANY(%(names)s) AND relkind = 'r'",
                {"names": [b[0] for b in bounds]},
            )
        }
        missing = [b for b in bounds if b[0] not in have]
        if missing:
            conn.exec_driver_sql(
                "SELECT pg_advisory_xact_lock(hashtext('sensorhub.measurements.partitions'))"
            )
            for name, lo, hi in missing:
                conn.exec_driver_sql(_create_partition_sql(name, lo, hi))
    return [b[0] for b in missing]


def _create_partition_sql(name: str, lo: int, hi: int) -> str:
    return f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF measurements FOR VALUES FROM ({int(lo)}) TO ({int(hi)})"


_ROLLUP_MERGE = """
INSERT INTO {t} AS r (series_id, bucket_start, "count", "sum", "min", "max", first_ts, "first", last_ts, "last", "sumsq")
SELECT series_id, bucket_start, "count", "sum", "min", "max", first_ts, "first", last_ts, "last", "sumsq"
FROM _sh_rollup_in
ON CONFLICT (series_id, bucket_start) DO UPDATE SET
  "count" = r."count" + excluded."count",
  "sum" = r."sum" + excluded."sum",
  "min" = least(r."min", excluded."min"),
  "max" = greatest(r."max", excluded."max"),
  "first" = CASE WHEN excluded.first_ts < r.first_ts THEN excluded."first" ELSE r."first" END,
  first_ts = least(r.first_ts, excluded.first_ts),
  "last" = CASE WHEN excluded.last_ts > r.last_ts THEN excluded."last" ELSE r."last" END,
  last_ts = greatest(r.last_ts, excluded.last_ts),
  "sumsq" = r."sumsq" + excluded."sumsq"
"""

_ROLLUP_COLUMNS = ROLLUP_COLUMNS_SQL

# Rollup deltas of up to this many rows go in one statement reading arrays (unnest), one round trip;
# COPY (and the temporary table of a merge) take several.
_ROWS_PER_STATEMENT = 1000
_UNNEST_ROLLUP = (
    "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::float8[], %s::float8[], "
    "%s::float8[], %s::bigint[], %s::float8[], %s::bigint[], %s::float8[], %s::float8[])"
)
_ROLLUP_MERGE_ARRAYS = _ROLLUP_MERGE.replace(
    "FROM _sh_rollup_in", "FROM (" + _UNNEST_ROLLUP + ") AS i " + _ROLLUP_COLUMNS
)


class PostgresStore(TimeseriesStore):
    dialect = "postgresql"

    def sql(self, text: str) -> str:
        return text.replace("%", "%%").replace("?", "%s")

    def lock_series(self, series_id: int) -> int | None:
        row = self.execute("SELECT last_ts FROM series WHERE id = ? FOR UPDATE", (series_id,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def ensure_partitions(self, ts: I64) -> None:
        bounds = month_bounds(ts)
        names = [b[0] for b in bounds]
        have = {
            r[0]
            for r in self.execute(
                "SELECT relname FROM pg_class WHERE relname = ANY(?) AND relkind = 'r'", (names,)
            ).fetchall()
        }
        missing = [b for b in bounds if b[0] not in have]
        if not missing:
            return
        if self._create_partitions_aside(missing):
            return
        # Fallback: create them in this transaction (serialised with concurrent ingests).
        self.execute("SELECT pg_advisory_xact_lock(hashtext('sensorhub.measurements.partitions'))")
        for name, lo, hi in missing:
            self.execute(_create_partition_sql(name, lo, hi))

    def _create_partitions_aside(self, missing: list[tuple[str, int, int]]) -> bool:
        """Create partitions in a short transaction of their own.

        ``CREATE TABLE … PARTITION OF`` locks the whole ``measurements`` table; inside the ingest
        transaction that lock would stall every read and write of measurements until the ingest commits.
        Aside, it is held for milliseconds. If this transaction already holds a conflicting lock (it read
        measurements before), the aside attempt times out quickly and the caller falls back."""
        engine = self.session.get_bind()
        try:
            with engine.connect() as conn, conn.begin():  # type: ignore[union-attr]
                conn.exec_driver_sql("SET LOCAL lock_timeout = '500ms'")
                conn.exec_driver_sql(
                    "SELECT pg_advisory_xact_lock(hashtext('sensorhub.measurements.partitions'))"
                )
                for name, lo, hi in missing:
                    conn.exec_driver_sql(_create_partition_sql(name, lo, hi))
            return True
        except Exception:  # lock timeout (or any failure): fall back to the in-transaction path
            return False

    def insert_points(self, series_id: int, ts: I64, values: F64) -> None:
        self.ensure_partitions(ts)
        payload = _binary_copy(
            [("series_id", np.full(len(ts), series_id, np.int64)), ("ts", ts), ("value", values)]
        )
        cur = self.dbapi.cursor()
        with cur.copy("COPY measurements (series_id, ts, value) FROM STDIN (FORMAT BINARY)") as cp:
            cp.write(payload)

    @staticmethod
    def _rollup_copy(series_id: int, delta: RollupDelta) -> bytes:
        series = ("series_id", np.full(len(delta), series_id, np.int64))
        return _binary_copy([series, *zip(ROLLUP_FIELDS, delta.arrays(), strict=True)])

    @staticmethod
    def _rollup_arrays(series_id: int, delta: RollupDelta) -> list[list[Any]]:
        return [[series_id] * len(delta), *(a.tolist() for a in delta.arrays())]

    def _few_rollup_rows(self, sql: str, series_id: int, delta: RollupDelta) -> bool:
        """Write a ``delta`` of few rows (hour and day buckets; for merges usually the one bucket holding
        the latest stored point) with the one statement ``sql`` over arrays, and say so; ``False`` for
        a larger delta (COPY it), nothing written."""
        if len(delta) > _ROWS_PER_STATEMENT:
            return False
        if len(delta):
            self.dbapi.cursor().execute(sql, self._rollup_arrays(series_id, delta))
        return True

    def insert_rollup(self, table: str, series_id: int, delta: RollupDelta) -> None:
        if self._few_rollup_rows(f"INSERT INTO {table} {_ROLLUP_COLUMNS} {_UNNEST_ROLLUP}", series_id, delta):
            return
        with self.dbapi.cursor().copy(f"COPY {table} {_ROLLUP_COLUMNS} FROM STDIN (FORMAT BINARY)") as cp:
            cp.write(self._rollup_copy(series_id, delta))

    def merge_rollup(self, table: str, series_id: int, delta: RollupDelta) -> None:
        if self._few_rollup_rows(_ROLLUP_MERGE_ARRAYS.format(t=table), series_id, delta):
            return
        cur = self.dbapi.cursor()
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _sh_rollup_in (series_id bigint, bucket_start bigint, "
            '"count" bigint, "sum" float8, "min" float8, "max" float8, first_ts bigint, "first" float8, '
            'last_ts bigint, "last" float8, "sumsq" float8) ON COMMIT DELETE ROWS'
        )
        cur.execute("DELETE FROM _sh_rollup_in")
        payload = self._rollup_copy(series_id, delta)
        with cur.copy(f"COPY _sh_rollup_in {_ROLLUP_COLUMNS} FROM STDIN (FORMAT BINARY)") as cp:
            cp.write(payload)
        cur.execute(_ROLLUP_MERGE.format(t=table))

    def _first_last_sql(self, table: str, agg: str, bucket: str, time_col: str) -> str:
        if table == RAW:
            val, t = "value", "ts"
        else:
            val, t = ('"first"', "first_ts") if agg == "first" else ('"last"', "last_ts")
        order = "ASC" if agg == "first" else "DESC"
        return (
            f"SELECT DISTINCT ON (b) {bucket} AS b, {val}, {t} FROM {table} "  # noqa: S608 (names and placeholders are ours)
            f"WHERE series_id = ? AND {time_col} >= ? AND {time_col} < ? ORDER BY b, {t} {order}"
        )
