"""SQLite time-series store: WITHOUT ROWID tables, executemany inserts, upserts for rollups."""

from __future__ import annotations

from itertools import repeat

from sensorhub.timeseries.rollups import F64, I64, RollupDelta
from sensorhub.timeseries.store import RAW, TimeseriesStore

_ROLLUP_UPSERT = """
INSERT INTO {t} (series_id, bucket_start, "count", "sum", "min", "max", first_ts, "first", last_ts, "last")
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (series_id, bucket_start) DO UPDATE SET
  "count" = {t}."count" + excluded."count",
  "sum" = {t}."sum" + excluded."sum",
  "min" = min({t}."min", excluded."min"),
  "max" = max({t}."max", excluded."max"),
  "first" = CASE WHEN excluded.first_ts < {t}.first_ts THEN excluded."first" ELSE {t}."first" END,
  first_ts = min({t}.first_ts, excluded.first_ts),
  "last" = CASE WHEN excluded.last_ts > {t}.last_ts THEN excluded."last" ELSE {t}."last" END,
  last_ts = max({t}.last_ts, excluded.last_ts)
"""


class SQLiteStore(TimeseriesStore):
    dialect = "sqlite"

    def lock_series(self, series_id: int) -> int | None:
        # A write takes SQLite's database write lock now, so nobody can add points between our read of
        # the existing timestamps and our insert.
        self.execute("UPDATE series SET last_ts = last_ts WHERE id = ?", (series_id,))
        row = self.execute("SELECT last_ts FROM series WHERE id = ?", (series_id,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def insert_points(self, series_id: int, ts: I64, values: F64) -> None:
        cur = self.dbapi.cursor()
        cur.executemany(
            "INSERT INTO measurements (series_id, ts, value) VALUES (?, ?, ?)",
            zip(repeat(series_id), ts.tolist(), values.tolist()),
        )

    def merge_rollup(self, table: str, series_id: int, delta: RollupDelta) -> None:
        if not len(delta):
            return
        cur = self.dbapi.cursor()
        cur.executemany(_ROLLUP_UPSERT.format(t=table), delta.rows(series_id))

    def insert_rollup(self, table: str, series_id: int, delta: RollupDelta) -> None:
        if not len(delta):
            return
        cur = self.dbapi.cursor()
        cur.executemany(
            f'INSERT INTO {table} (series_id, bucket_start, "count", "sum", "min", "max", first_ts, "first", '  # noqa: S608 (names and placeholders are ours)
            'last_ts, "last") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
            delta.rows(series_id),
        )

    def _first_last_sql(self, table: str, agg: str, bucket: str, time_col: str) -> str:
        # SQLite: with a single min()/max() aggregate, bare columns come from the row holding it.
        if table == RAW:
            fn, val, t = ("min" if agg == "first" else "max"), "value", "ts"
        else:
            fn = "min" if agg == "first" else "max"
            val, t = ('"first"', "first_ts") if agg == "first" else ('"last"', "last_ts")
        return (
            f"SELECT {bucket} AS b, {val}, {fn}({t}) FROM {table} "  # noqa: S608 (names and placeholders are ours)
            f"WHERE series_id = ? AND {time_col} >= ? AND {time_col} < ? GROUP BY 1 ORDER BY 1"
        )
