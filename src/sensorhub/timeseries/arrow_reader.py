"""Raw points of several series as Arrow batches ordered by (ts, series_id), in bounded memory.

Two readers share the merge here:

- in the server process, through the session's own ``sqlite3`` connection (see ``SQLiteStore``);
- in a **separate process** (``python -m sensorhub.timeseries.arrow_reader``) that reads the database
  file with ``adbc-driver-sqlite`` (Arrow-native, about twice as fast as ``sqlite3`` rows) and streams
  Arrow IPC to the server on stdout.

Why a separate process: ``adbc-driver-sqlite`` brings its own SQLite library. Two SQLite libraries in
one process do not share their POSIX advisory locks, and closing one library's file descriptor drops
the locks of *every* connection of the process on that file (POSIX semantics). Another process (any
``sensorhub admin`` command) then believes nobody uses the database, checkpoints and deletes the
``-wal``/``-shm`` files the server still has open, and from then on the two see different databases.
A child process has its own locks, so it is as harmless as any other reader. This module therefore
imports the driver only in ``main`` (the child) and needs nothing but numpy and pyarrow otherwise; keep
it that way (it is also what makes the child start fast).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

TIMESTAMP_US_UTC = pa.timestamp("us", tz="UTC")
# Raw export batches, ordered by (ts, series_id): what this child streams, and what every store's reader
# yields (defined here, where the child can import it without the store).
BATCH_SCHEMA = pa.schema(
    [
        pa.field("ts", TIMESTAMP_US_UTC, nullable=False),
        pa.field("series_id", pa.int64(), nullable=False),
        pa.field("value", pa.float64()),
    ]
)

RAW_SQL = "SELECT ts, value FROM measurements WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts"


class SeriesChunks(Protocol):
    """One series' points inside its windows, by time, in chunks."""

    series_id: int

    def next_chunk(self) -> tuple[I64, F64] | None:
        """The next non-empty chunk ``(ts µs, value)``, or ``None`` at the end."""
        ...

    def close(self) -> None: ...


def union(windows: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
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


def _batch(ts: I64, sids: I64, vals: F64) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array(ts).view(TIMESTAMP_US_UTC), pa.array(sids), pa.array(vals)], schema=BATCH_SCHEMA
    )


def merge_by_time(readers: list[SeriesChunks], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """:data:`BATCH_SCHEMA` batches of at most ``batch_rows`` rows ordered by (ts, series_id), from
    readers ordered by series id. Closes the readers."""
    try:
        if len(readers) == 1:
            yield from _single(readers[0], batch_rows)
        elif readers:
            yield from _merged(readers, batch_rows)
    finally:
        for r in readers:
            r.close()


def _single(reader: SeriesChunks, batch_rows: int) -> Iterator[pa.RecordBatch]:
    sids = np.full(batch_rows, reader.series_id, np.int64)
    while (chunk := reader.next_chunk()) is not None:
        ts, val = chunk
        for off in range(0, len(ts), batch_rows):
            part = slice(off, off + batch_rows)
            n = len(ts[part])
            yield _batch(ts[part], sids[:n], val[part])


def _merged(readers: list[SeriesChunks], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Several series, each by time: emit everything up to the earliest last timestamp buffered by any
    series still being read, ordered by (ts, series_id) — a stable sort by ts of the pieces laid out in
    series order, i.e. a merge of sorted runs. Holds at most one chunk per series."""
    bufs: dict[int, tuple[I64, F64]] = {}  # reader index → unread (ts, value), non-empty
    live = list(range(len(readers)))  # readers ordered by series id
    while live:
        for i in list(live):
            if i not in bufs:
                chunk = readers[i].next_chunk()
                if chunk is None:
                    live.remove(i)
                    continue
                bufs[i] = chunk
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
            yield _batch(ts_all[sl], sid_all[sl], val_all[sl])


def per_reader_rows(batch_rows: int, n_series: int) -> int:
    return batch_rows if n_series == 1 else max(1024, batch_rows // n_series)


# --- the child process ----------------------------------------------------------------------------------


def request_json(path: str, windows: dict[int, list[tuple[int, int]]], batch_rows: int) -> bytes:
    """What the server writes to the child's stdin."""
    return json.dumps(
        {"path": path, "batch_rows": batch_rows, "windows": [[sid, ws] for sid, ws in windows.items()]}
    ).encode()


class _AdbcSeries:
    """One series read by ``adbc-driver-sqlite`` (only ever in the child process)."""

    def __init__(self, manager: Any, con: Any, series_id: int, windows: list[tuple[int, int]], rows: int):
        self.series_id = series_id
        self.windows = iter(windows)
        self.manager = manager
        self.con = con
        self.rows = rows
        self.stmt: Any = None
        self.reader: Any = None

    def next_chunk(self) -> tuple[I64, F64] | None:
        while True:
            if self.reader is None:
                window = next(self.windows, None)
                if window is None:
                    return None
                lo, hi = window
                self._close_stmt()
                self.stmt = self.manager.AdbcStatement(self.con)
                self.stmt.set_options(**{"adbc.sqlite.query.batch_rows": str(self.rows)})
                # Only integers we computed are inlined (the low-level API binds Arrow data only).
                self.stmt.set_sql_query(
                    RAW_SQL.replace("?", "{}").format(int(self.series_id), int(lo), int(hi))
                )
                handle, _ = self.stmt.execute_query()
                self.reader = pa.RecordBatchReader.from_stream(handle)
            try:
                b = self.reader.read_next_batch()
            except StopIteration:
                self.reader.close()
                self.reader = None
                continue
            if b.num_rows:
                # The driver infers column types from the values; ts is INTEGER and value REAL, but be sure.
                ts, value = b.column(0), b.column(1)
                if ts.type != pa.int64():
                    ts = ts.cast(pa.int64())
                if value.type != pa.float64():
                    value = value.cast(pa.float64())
                return ts.to_numpy(zero_copy_only=False), value.to_numpy(zero_copy_only=False)

    def _close_stmt(self) -> None:
        if self.stmt is not None:
            self.stmt.close()
            self.stmt = None

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        self._close_stmt()


def main() -> int:
    """Child: read the request from stdin, stream :data:`BATCH_SCHEMA` as Arrow IPC to stdout."""
    import adbc_driver_manager
    import adbc_driver_sqlite

    req = json.loads(sys.stdin.buffer.read())
    windows = {int(sid): union([(int(a), int(b)) for a, b in ws]) for sid, ws in req["windows"]}
    windows = {sid: ws for sid, ws in sorted(windows.items()) if ws}
    batch_rows = int(req["batch_rows"])
    from urllib.parse import quote

    db = adbc_driver_sqlite.connect(f"file:{quote(req['path'])}?mode=ro")
    con = adbc_driver_manager.AdbcConnection(db)
    out = sys.stdout.buffer
    try:
        stmt = adbc_driver_manager.AdbcStatement(con)
        stmt.set_sql_query("PRAGMA busy_timeout = 30000")
        stmt.execute_update()
        stmt.close()
        # One read transaction: every series comes from the same snapshot.
        con.set_autocommit(False)
        rows = per_reader_rows(batch_rows, len(windows))
        readers: list[SeriesChunks] = [
            _AdbcSeries(adbc_driver_manager, con, sid, ws, rows) for sid, ws in windows.items()
        ]
        with pa.ipc.new_stream(out, BATCH_SCHEMA) as w:
            for b in merge_by_time(readers, batch_rows):
                w.write_batch(b)
        out.flush()
    except BrokenPipeError:
        return 0  # the server stopped reading (row cap reached, client gone)
    finally:
        try:
            con.rollback()
        finally:
            con.close()
            db.close()
    # Done and flushed (the stream ended with its end-of-stream marker): skip the interpreter's
    # teardown, which the server would otherwise wait for (~0.1-0.4 s of module cleanup).
    out.close()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
