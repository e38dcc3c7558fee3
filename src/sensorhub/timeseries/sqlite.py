"""SQLite time-series store: WITHOUT ROWID tables, multi-row inserts, upserts for rollups."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any

from sensorhub.timeseries.rollups import F64, I64, RollupDelta
from sensorhub.timeseries.store import RAW, TimeseriesStore

# Up to this many bound parameters per INSERT statement: many rows per statement cost about half as much
# per row as executemany of one-row statements (fewer statement steps), and SQLite ≥ 3.32 allows 32,766.
PARAMS_PER_STATEMENT = 900

_ROLLUP_COLUMNS = (
    '(series_id, bucket_start, "count", "sum", "min", "max", first_ts, "first", last_ts, "last")'
)
_ROLLUP_MERGE = """
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


def _rollup_columns(delta: RollupDelta) -> list[list[Any]]:
    return [
        delta.bucket_start.tolist(),
        delta.count.tolist(),
        delta.sum.tolist(),
        delta.min.tolist(),
        delta.max.tolist(),
        delta.first_ts.tolist(),
        delta.first.tolist(),
        delta.last_ts.tolist(),
        delta.last.tolist(),
    ]


class SQLiteStore(TimeseriesStore):
    dialect = "sqlite"

    def lock_series(self, series_id: int) -> int | None:
        # A write takes SQLite's database write lock now, so nobody can add points between our read of
        # the existing timestamps and our insert.
        self.execute("UPDATE series SET last_ts = last_ts WHERE id = ?", (series_id,))
        row = self.execute("SELECT last_ts FROM series WHERE id = ?", (series_id,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _insert_rows(
        self, table: str, columns: str, series_id: int, values: Sequence[list[Any]], suffix: str = ""
    ) -> None:
        """INSERT rows ``(series_id, *values[i])`` with many rows per statement."""
        n = len(values[0])
        if not n:
            return
        width = len(values)
        per = max(1, PARAMS_PER_STATEMENT // width)
        row = "(" + ",".join([str(int(series_id))] + ["?"] * width) + ")"
        flat = list(chain.from_iterable(zip(*values, strict=True)))
        head = f"INSERT INTO {table} {columns} VALUES "  # noqa: S608 (names are ours; values are bound)
        cur = self.dbapi.cursor()
        full = (n // per) * per
        if full:
            step = per * width
            cur.executemany(
                head + ",".join([row] * per) + suffix,
                (flat[i : i + step] for i in range(0, full * width, step)),
            )
        if full < n:
            cur.execute(head + ",".join([row] * (n - full)) + suffix, flat[full * width :])

    def insert_points(self, series_id: int, ts: I64, values: F64) -> None:
        self._insert_rows("measurements", "(series_id, ts, value)", series_id, [ts.tolist(), values.tolist()])

    def merge_rollup(self, table: str, series_id: int, delta: RollupDelta) -> None:
        self._insert_rows(
            table, _ROLLUP_COLUMNS, series_id, _rollup_columns(delta), _ROLLUP_MERGE.format(t=table)
        )

    def insert_rollup(self, table: str, series_id: int, delta: RollupDelta) -> None:
        self._insert_rows(table, _ROLLUP_COLUMNS, series_id, _rollup_columns(delta))

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
