"""SQLite time-series store: WITHOUT ROWID tables, multi-row inserts, upserts for rollups, and the raw
reader for exports (one SQLite library per process: see :mod:`sensorhub.timeseries.arrow_reader`)."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

import numpy as np
import pyarrow as pa

from sensorhub.db import take_write_lock
from sensorhub.timeseries import arrow_reader
from sensorhub.timeseries.arrow_reader import (
    BATCH_SCHEMA,
    SeriesChunks,
    merge_by_time,
    per_reader_rows,
    request_json,
    union,
)
from sensorhub.timeseries.rollups import F64, I64, ROLLUP_COLUMNS_SQL, RollupDelta
from sensorhub.timeseries.store import RAW, TimeseriesStore

log = logging.getLogger(__name__)

# Key of the connection's ``info`` where db.py records ``total_changes`` at BEGIN (see ``_sqlite_begin``).
CHANGES_AT_BEGIN = "sqlite_changes_at_begin"
_RAW_SQL = arrow_reader.RAW_SQL
_first, _second = itemgetter(0), itemgetter(1)

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
  last_ts = max({t}.last_ts, excluded.last_ts),
  "sumsq" = {t}."sumsq" + excluded."sumsq"
"""


def _rollup_columns(delta: RollupDelta) -> list[list[Any]]:
    return [a.tolist() for a in delta.arrays()]


class SQLiteStore(TimeseriesStore):
    dialect = "sqlite"

    def lock_series(self, series_id: int) -> int | None:
        # A write takes SQLite's database write lock now, so nobody can add points between our read of
        # the existing timestamps and our insert (a request session that has not written yet first
        # turns its deferred transaction into a write transaction: see db.take_write_lock).
        take_write_lock(self.session)
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

    # --- raw reads for exports ------------------------------------------------------------------------

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
    ) -> Iterator[pa.RecordBatch]:
        """Raw points, each series read in its key order (``(series_id, ts)``: no sort in SQLite) and
        merged by time here.

        Large reads of committed data go to a child process that reads the file with
        ``adbc-driver-sqlite`` and streams Arrow (see :mod:`sensorhub.timeseries.arrow_reader` for why
        never in this process); everything else — small reads, sessions with uncommitted writes,
        in-memory databases, or no driver — is read through the session's own ``sqlite3`` connection."""
        spans = {sid: union(ws) for sid, ws in sorted(windows.items())}
        spans = {sid: ws for sid, ws in spans.items() if ws}
        if not spans:
            return iter(())
        path = None if self.has_uncommitted_writes() else self.database_file()
        if path is not None and child_reader_available():
            lo = min(w[0][0] for w in spans.values())
            hi = max(w[-1][1] for w in spans.values())
            if self.count_points(list(spans), lo, hi) >= CHILD_READER_MIN_POINTS:
                return _child_or_local(path, spans, batch_rows, lambda: self._local(spans, batch_rows))
        return self._local(spans, batch_rows)

    def _local(self, spans: dict[int, list[tuple[int, int]]], batch_rows: int) -> Iterator[pa.RecordBatch]:
        rows = per_reader_rows(batch_rows, len(spans))
        readers: list[SeriesChunks] = [_Sqlite3Series(self.dbapi, sid, ws, rows) for sid, ws in spans.items()]
        return merge_by_time(readers, batch_rows)


# Below this many points (estimated from the day rollup) the in-process sqlite3 read is as fast as
# starting the child (~0.2-0.4 s to import pyarrow and the driver).
CHILD_READER_MIN_POINTS = 300_000
CHILD_MODULE = "sensorhub.timeseries.arrow_reader"


@functools.cache
def child_reader_available() -> bool:
    """Whether ``adbc-driver-sqlite`` is installed (found without importing it here)."""
    return importlib.util.find_spec("adbc_driver_sqlite") is not None


class _Sqlite3Series:
    """One series' points through the server's own ``sqlite3`` connection (a cursor per series)."""

    def __init__(self, dbapi: Any, series_id: int, windows: list[tuple[int, int]], rows: int) -> None:
        self.series_id = series_id
        self.windows = iter(windows)
        self.rows = rows
        self.cur = dbapi.cursor()
        self.active = False

    def next_chunk(self) -> tuple[I64, F64] | None:
        while True:
            if not self.active:
                window = next(self.windows, None)
                if window is None:
                    return None
                self.cur.execute(_RAW_SQL, (self.series_id, *window))
                self.active = True
            rows = self.cur.fetchmany(self.rows)
            if not rows:
                self.active = False
                continue
            n = len(rows)
            return (
                np.fromiter(map(_first, rows), np.int64, n),
                np.fromiter(map(_second, rows), np.float64, n),
            )

    def close(self) -> None:
        self.cur.close()


def _child_or_local(
    path: str,
    spans: dict[int, list[tuple[int, int]]],
    batch_rows: int,
    local: Callable[[], Iterator[pa.RecordBatch]],
) -> Iterator[pa.RecordBatch]:
    """The child's batches; the local reader instead when the child fails before its first batch.
    A child that fails later fails the read (never a silently short export)."""
    proc = None
    with tempfile.TemporaryFile() as stderr:
        try:
            try:
                # Our own interpreter and module, no shell, no user input in the command line.
                proc = subprocess.Popen(  # noqa: S603
                    [sys.executable, "-P", "-m", CHILD_MODULE],
                    close_fds=True,  # never hand the server's database descriptors to the child
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                )
                assert proc.stdin is not None and proc.stdout is not None
                _widen_pipe(proc.stdout)
                proc.stdin.write(request_json(path, spans, batch_rows))
                proc.stdin.close()
                reader = pa.ipc.open_stream(proc.stdout)
                if not reader.schema.equals(BATCH_SCHEMA):
                    raise RuntimeError(f"unexpected schema from the reader process: {reader.schema}")
                first = next(iter(reader), None)
                if first is None and proc.wait() != 0:
                    raise RuntimeError("the reader process exited without data")
            except Exception:
                log.warning(
                    "export reader process failed (%s); reading through sqlite3", _tail(stderr), exc_info=True
                )
                if proc is not None:
                    _stop(proc)
                yield from local()
                return
            if first is not None:
                yield first
                yield from reader
            if proc.wait() != 0:
                raise RuntimeError(f"the export reader process failed: {_tail(stderr)}")
        finally:
            if proc is not None:
                _stop(proc)


def _widen_pipe(f: Any) -> None:
    """A 1 MiB pipe instead of 64 KiB: far fewer wake-ups of both processes per batch (Linux only)."""
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if setpipe is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(f.fileno(), setpipe, 1 << 20)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for f in (proc.stdin, proc.stdout):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()


def _tail(f: Any) -> str:
    with contextlib.suppress(OSError, ValueError):
        f.seek(0)
        text: str = f.read().decode(errors="replace").strip()
        return text[-2000:] or "no output"
    return "no output"
