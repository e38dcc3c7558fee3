"""File writers fed with wide Arrow record batches: Parquet (pyarrow ParquetWriter) and CSV
(pyarrow.csv.CSVWriter). Both write as they go, so memory does not grow with the export.

CSV timestamps are ISO 8601 UTC with ``T`` and ``Z`` (``2026-01-01T00:00:00.000000Z`` for raw data,
``2026-01-01T00:00:00Z`` for bucketed data, consistent within a file); Parquet timestamps are
``TIMESTAMP(MICROS, isAdjustedToUTC=true)``.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

FORMATS = ("csv", "parquet")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
EXTENSIONS = {"csv": "csv", "parquet": "parquet"}

# Parquet row groups: big enough for fast scans, bounded in bytes so that wide exports stay small in memory.
ROW_GROUP_ROWS = 1 << 20
ROW_GROUP_BYTES = 64 << 20


class ExportWriter(Protocol):
    def write(self, batch: pa.RecordBatch) -> None: ...

    def close(self) -> None: ...


def iso_timestamps(ts: pa.Array, *, seconds: bool) -> pa.Array:
    """UTC timestamps as ISO 8601 strings ending in ``Z`` (vectorised: ~20 M values/s).

    Arrow's timezone-aware formatting is slow (~1 M/s), so the zone is dropped (values are UTC) and
    the naive cast's ``YYYY-MM-DD HH:MM:SS[.ffffff]`` gets its ``T`` and ``Z``."""
    naive = ts.view(pa.int64()).view(pa.timestamp("us"))
    if seconds:
        naive = naive.cast(pa.timestamp("s"), safe=False)
    text = naive.cast(pa.string())
    text = pc.binary_replace_slice(text, start=10, stop=11, replacement="T")
    return pc.binary_join_element_wise(text, "Z", "")


def csv_schema(schema: pa.Schema) -> pa.Schema:
    return schema.set(0, pa.field(schema.field(0).name, pa.string(), nullable=False))


def csv_batch(batch: pa.RecordBatch, schema: pa.Schema, *, seconds: bool) -> pa.RecordBatch:
    cols = [iso_timestamps(batch.column(0), seconds=seconds), *batch.columns[1:]]
    return pa.RecordBatch.from_arrays(cols, schema=schema)


class CsvFileWriter:
    """CSV with a header row; empty fields for missing values; shortest round-trip float text."""

    def __init__(self, sink: str | Path | BinaryIO, schema: pa.Schema, *, seconds: bool = False) -> None:
        self._schema = csv_schema(schema).remove_metadata()
        self._seconds = seconds
        self._writer = pcsv.CSVWriter(
            str(sink) if isinstance(sink, Path) else sink,
            self._schema,
            write_options=pcsv.WriteOptions(include_header=True, quoting_style="needed"),
        )

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._writer.write_batch(csv_batch(batch, self._schema, seconds=self._seconds))

    def close(self) -> None:
        self._writer.close()


class ParquetFileWriter:
    """Parquet (snappy, the codec every BI tool reads) with row groups of up to ~1 M rows / 64 MB;
    units and series identity live in the column metadata."""

    def __init__(self, sink: str | Path | BinaryIO, schema: pa.Schema) -> None:
        self._schema = schema
        self._writer = pq.ParquetWriter(
            str(sink) if isinstance(sink, Path) else sink,
            schema,
            compression="snappy",
            use_dictionary=False,
            write_statistics=True,
        )
        self._buffer: list[pa.RecordBatch] = []
        self._rows = 0
        self._bytes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self._buffer.append(batch)
        self._rows += batch.num_rows
        self._bytes += batch.nbytes
        if self._rows >= ROW_GROUP_ROWS or self._bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            table = pa.Table.from_batches(self._buffer, schema=self._schema)
            self._writer.write_table(table, row_group_size=max(1, table.num_rows))
            self._buffer, self._rows, self._bytes = [], 0, 0

    def close(self) -> None:
        self._flush()
        self._writer.close()


class BackgroundWriter:
    """Runs another writer in a thread so that encoding and disk writes (Arrow releases the GIL) overlap
    the read from the store. At most ``depth`` batches wait in between, so memory stays bounded."""

    def __init__(self, inner: ExportWriter, depth: int = 4) -> None:
        self._inner = inner
        self._queue: queue.Queue[pa.RecordBatch | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sensorhub-export-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            if self._error is None:  # after a failure keep draining, so that the producer never blocks
                try:
                    self._inner.write(batch)
                except BaseException as e:  # re-raised in the caller's thread
                    self._error = e

    def write(self, batch: pa.RecordBatch) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(batch)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        try:
            self._inner.close()
        finally:
            if self._error is not None:
                raise self._error


def open_writer(fmt: str, sink: str | Path | BinaryIO, schema: pa.Schema, *, seconds: bool) -> ExportWriter:
    if fmt == "parquet":
        return ParquetFileWriter(sink, schema)
    if fmt == "csv":
        return CsvFileWriter(sink, schema, seconds=seconds)
    raise ValueError(f"unknown export format {fmt!r}")


def csv_chunks(batches: Iterable[pa.RecordBatch], schema: pa.Schema, *, seconds: bool) -> Iterator[bytes]:
    """CSV bytes, header first, one chunk per batch (for a streamed HTTP response)."""
    out_schema = csv_schema(schema).remove_metadata()
    header = io.BytesIO()
    pcsv.write_csv(out_schema.empty_table(), header, pcsv.WriteOptions(include_header=True))
    yield header.getvalue()
    opts = pcsv.WriteOptions(include_header=False, quoting_style="needed")
    for batch in batches:
        if not batch.num_rows:
            continue
        buf = io.BytesIO()
        pcsv.write_csv(csv_batch(batch, out_schema, seconds=seconds), buf, opts)
        yield buf.getvalue()
