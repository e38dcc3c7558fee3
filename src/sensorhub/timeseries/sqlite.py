"""SQLite time-series store: WITHOUT ROWID tables, multi-row inserts, upserts for rollups, and an
Arrow-native raw reader for exports (``adbc-driver-sqlite``)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Mapping, Sequence
from itertools import chain
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa

from sensorhub.timeseries.rollups import F64, I64, ROLLUP_COLUMNS_SQL, RollupDelta
from sensorhub.timeseries.store import BATCH_SCHEMA, RAW, TIMESTAMP_US_UTC, TimeseriesStore

log = logging.getLogger(__name__)

# Key of the connection's ``info`` where db.py records ``total_changes`` at BEGIN (see ``_sqlite_begin``).
CHANGES_AT_BEGIN = "sqlite_changes_at_begin"
_RAW_SQL = "SELECT ts, value FROM measurements WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts"

# Up to this many bound parameters per INSERT statement: many rows per statement cost about half as much
# per row as executemany of one-row statements (fewer statement steps), and SQLite ≥ 3.32 allows 32,766.
PARAMS_PER_STATEMENT = 900

_ROLLUP_COLUMNS = ROLLUP_COLUMNS_SQL
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
    return [a.tolist() for a in delta.arrays()]


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

    # --- Arrow-native raw reads (exports) -----------------------------------------------------------

    def database_file(self) -> str | None:
        """Path of the session's main database file; ``None`` for in-memory and temporary databases."""
        for _seq, name, file in self.execute("PRAGMA database_list").fetchall():
            if name == "main":
                return str(file) if file else None
        return None

    def has_uncommitted_writes(self) -> bool:
        """Whether the session's transaction changed rows (another connection would not see them).
        Unknown (no count recorded at BEGIN) counts as yes."""
        at_begin = self.session.connection().info.get(CHANGES_AT_BEGIN)
        return at_begin is None or self.dbapi.total_changes != at_begin

    def iter_raw_arrow(
        self, windows: Mapping[int, Sequence[tuple[int, int]]], batch_rows: int
    ) -> Iterator[pa.RecordBatch] | None:
        """Raw points read by ``adbc-driver-sqlite`` on a second, read-only connection to the same file
        (WAL: it reads the latest committed data, in one snapshot). Each series is read in its key order
        (``(series_id, ts)``: no sort in SQLite) and the series are merged by time here. ``None`` without
        the driver, for in-memory databases, or when the session has uncommitted writes."""
        if self.has_uncommitted_writes():
            return None
        adbc = adbc_sqlite()
        if adbc is None:
            return None
        path = self.database_file()
        if path is None:
            return None
        spans = {sid: _union(ws) for sid, ws in sorted(windows.items())}
        spans = {sid: ws for sid, ws in spans.items() if ws}
        try:
            # Read-only, one transaction (autocommit off): every series is read from the same snapshot.
            con = adbc.connect(f"file:{quote(path)}?mode=ro")
        except Exception:
            log.warning("adbc-driver-sqlite cannot open %s; reading through sqlite3", path, exc_info=True)
            return None
        return _arrow_batches(con, spans, batch_rows)


@functools.cache
def adbc_sqlite() -> Any:
    """``adbc_driver_sqlite.dbapi``, or ``None`` when it is not installed (the sqlite3 path still works).
    Imported on first use: it pulls in ``pyarrow.dataset`` (and pandas when present), ~0.1-0.4 s that
    only exports need to pay."""
    try:
        import adbc_driver_sqlite.dbapi
    except ImportError:
        return None
    return adbc_driver_sqlite.dbapi


def _union(windows: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, disjoint windows covering the same points (overlaps would read a point twice)."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(windows):
        if lo >= hi:
            continue
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(hi, out[-1][1]))
        else:
            out.append((lo, hi))
    return out


class _SeriesReader:
    """One series' points in its windows, by time, as numpy chunks from ADBC record batches."""

    def __init__(self, con: Any, series_id: int, windows: list[tuple[int, int]], batch_rows: int) -> None:
        self.series_id = series_id
        self.windows = iter(windows)
        self.batch_rows = batch_rows
        self.cur = con.cursor()
        self.cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(batch_rows)})
        self.reader: Any = None

    def next_batch(self) -> pa.RecordBatch | None:
        """The next non-empty batch (columns ts int64, value float64), or ``None`` at the end."""
        while True:
            if self.reader is None:
                window = next(self.windows, None)
                if window is None:
                    return None
                self.cur.execute(_RAW_SQL, (self.series_id, *window))
                self.reader = self.cur.fetch_record_batch()
            try:
                b = self.reader.read_next_batch()
            except StopIteration:
                self.reader.close()
                self.reader = None
                continue
            if b.num_rows:
                return _typed(b)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        self.cur.close()


def _typed(b: pa.RecordBatch) -> pa.RecordBatch:
    # The driver infers column types from the values; ts is always INTEGER and value REAL, but be sure.
    ts, value = b.column(0), b.column(1)
    if ts.type != pa.int64():
        ts = ts.cast(pa.int64())
    if value.type != pa.float64():
        value = value.cast(pa.float64())
    return pa.RecordBatch.from_arrays([ts, value], names=["ts", "value"])


def _arrow_batches(
    con: Any, windows: dict[int, list[tuple[int, int]]], batch_rows: int
) -> Iterator[pa.RecordBatch]:
    readers: list[_SeriesReader] = []
    try:
        if not windows:
            return
        cur = con.cursor()
        cur.execute("PRAGMA busy_timeout = 30000")
        cur.close()
        per_reader = batch_rows if len(windows) == 1 else max(1024, batch_rows // len(windows))
        readers = [_SeriesReader(con, sid, ws, per_reader) for sid, ws in windows.items()]
        if len(readers) == 1:
            yield from _single(readers[0], batch_rows)
        else:
            yield from _merged(readers, batch_rows)
    finally:
        for r in readers:
            r.close()
        con.close()


def _single(reader: _SeriesReader, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """One series: the driver's batches as they come (zero-copy ts → timestamp, a shared id column)."""
    sids = pa.array(np.full(batch_rows, reader.series_id, np.int64))
    while (b := reader.next_batch()) is not None:
        for off in range(0, b.num_rows, batch_rows):
            part = b.slice(off, batch_rows)
            yield pa.RecordBatch.from_arrays(
                [part.column(0).view(TIMESTAMP_US_UTC), sids.slice(0, part.num_rows), part.column(1)],
                schema=BATCH_SCHEMA,
            )


def _merged(readers: list[_SeriesReader], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Several series, each by time: emit everything up to the earliest last timestamp buffered by any
    series still being read, ordered by (ts, series_id) — a stable sort by ts of the pieces laid out in
    series order, i.e. a merge of sorted runs. Holds at most one driver batch per series."""
    bufs: dict[int, tuple[I64, F64]] = {}  # reader index → unread (ts, value), non-empty
    live = list(range(len(readers)))  # readers ordered by series id
    while live:
        for i in list(live):
            if i not in bufs:
                b = readers[i].next_batch()
                if b is None:
                    live.remove(i)
                    continue
                bufs[i] = (
                    b.column(0).to_numpy(zero_copy_only=True),
                    b.column(1).to_numpy(zero_copy_only=True),
                )
        if not bufs:
            return
        # Series not yet exhausted have nothing at or before their buffer's last ts left to read.
        cutoff = min(bufs[i][0][-1] for i in live)
        parts_ts: list[I64] = []
        parts_sid: list[I64] = []
        parts_val: list[F64] = []
        for i in sorted(bufs):
            ts, val = bufs[i]
            k = len(ts) if ts[-1] <= cutoff else int(np.searchsorted(ts, cutoff, side="right"))
            if not k:
                continue
            parts_ts.append(ts[:k])
            parts_val.append(val[:k])
            parts_sid.append(np.full(k, readers[i].series_id, np.int64))
            if k == len(ts):
                del bufs[i]
            else:
                bufs[i] = (ts[k:], val[k:])
        ts_all = np.concatenate(parts_ts)
        order = np.argsort(ts_all, kind="stable")
        ts_all = ts_all[order]
        sid_all = np.concatenate(parts_sid)[order]
        val_all = np.concatenate(parts_val)[order]
        for off in range(0, len(ts_all), batch_rows):
            sl = slice(off, off + batch_rows)
            yield pa.RecordBatch.from_arrays(
                [pa.array(ts_all[sl]).view(TIMESTAMP_US_UTC), pa.array(sid_all[sl]), pa.array(val_all[sl])],
                schema=BATCH_SCHEMA,
            )
