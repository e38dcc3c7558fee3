"""The streaming pivot and the file writers, on synthetic long batches (no database)."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sensorhub.export.pivot import WidePivot, wide_schema
from sensorhub.export.writers import BackgroundWriter, csv_chunks, iso_timestamps, open_writer

LONG = pa.schema([("ts", pa.timestamp("us", tz="UTC")), ("series_id", pa.int64()), ("value", pa.float64())])


def long_batches(points: list[tuple[int, int, float]], size: int) -> Iterator[pa.RecordBatch]:
    """Points (ts_us, series_id, value) sorted by (ts, series_id), cut into batches of ``size``."""
    points = sorted(points)
    for i in range(0, len(points), size):
        chunk = points[i : i + size]
        yield pa.RecordBatch.from_arrays(
            [
                pa.array([p[0] for p in chunk], pa.int64()).view(pa.timestamp("us", tz="UTC")),
                pa.array([p[1] for p in chunk], pa.int64()),
                pa.array([p[2] for p in chunk], pa.float64()),
            ],
            schema=LONG,
        )


def pivot(
    points: list[tuple[int, int, float]], ids: list[int], size: int, cap: int | None = None
) -> tuple[pa.Table, WidePivot]:
    schema = wide_schema([f"s{i}" for i in ids])
    p = WidePivot(long_batches(points, size), ids, schema, cap)
    return pa.Table.from_batches(list(p), schema=schema), p


SPARSE = [(t * 1_000_000, sid, float(t * 10 + sid)) for t in range(50) for sid in (7, 3, 11) if (t + sid) % 4]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64, 1000])
def test_pivot_is_the_same_whatever_the_batch_size(size: int) -> None:
    table, p = pivot(SPARSE, [3, 7, 11], size)
    expected = pd.DataFrame(SPARSE, columns=["ts", "sid", "v"]).pivot(index="ts", columns="sid", values="v")
    assert table.num_rows == len(expected) == p.rows
    assert not p.truncated
    got = table.to_pandas()
    assert list(got.columns) == ["timestamp", "s3", "s7", "s11"]
    assert table.column("timestamp").combine_chunks().view(pa.int64()).to_pylist() == expected.index.tolist()
    for sid in (3, 7, 11):
        a = got[f"s{sid}"].to_numpy()
        b = expected[sid].to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b))
        assert np.array_equal(a[~np.isnan(a)], b[~np.isnan(b)])


@pytest.mark.parametrize("size", [1, 4, 7, 1000])
@pytest.mark.parametrize("cap", [1, 10, 29, 30, 31, 100])
def test_cap_is_exact_and_flagged(size: int, cap: int) -> None:
    # 30 distinct timestamps, two series each.
    points = [(t, sid, 1.0) for t in range(30) for sid in (1, 2)]
    table, p = pivot(points, [1, 2], size, cap)
    assert table.num_rows == p.rows == min(cap, 30)
    assert p.truncated is (cap < 30)
    # Rows are complete: no half-filled row at the cut.
    assert table.column("s1").null_count == 0 and table.column("s2").null_count == 0


def test_cap_stops_reading() -> None:
    pulled = 0

    def endless() -> Iterator[pa.RecordBatch]:
        nonlocal pulled
        t = 0
        while True:
            pulled += 1
            yield from long_batches([(t + i, 1, 0.5) for i in range(100)], 100)
            t += 100

    p = WidePivot(endless(), [1], wide_schema(["a"]), 250)
    assert sum(b.num_rows for b in p) == 250
    assert p.truncated and pulled <= 4


def test_empty_input() -> None:
    table, p = pivot([], [1], 10, 5)
    assert table.num_rows == 0 and p.rows == 0 and not p.truncated


def test_iso_timestamps() -> None:
    us = pa.array([0, 1_700_000_000_123_456], pa.int64()).view(pa.timestamp("us", tz="UTC"))
    assert iso_timestamps(us, seconds=False).to_pylist() == [
        "1970-01-01T00:00:00.000000Z",
        "2023-11-14T22:13:20.123456Z",
    ]
    assert iso_timestamps(us, seconds=True).to_pylist() == ["1970-01-01T00:00:00Z", "2023-11-14T22:13:20Z"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_writers_round_trip(tmp_path: Path, fmt: str) -> None:
    schema = wide_schema(
        ["urn:a.temperature", "urn:b.humidity"],
        [{"unit": "CEL"}, {"unit": "P1"}],
    )
    points = [(t * 1_000_000, sid, t + sid / 10) for t in range(1000) for sid in (1, 2) if t % 3 or sid == 1]
    path = tmp_path / f"out.{fmt}"
    w = open_writer(fmt, path, schema, seconds=False)
    for b in WidePivot(long_batches(points, 97), [1, 2], schema):
        w.write(b)
    w.close()
    if fmt == "parquet":
        t = pq.read_table(path)
        assert t.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
        assert t.schema.field("urn:a.temperature").metadata == {b"unit": b"CEL"}
        df = t.to_pandas()
    else:
        df = pd.read_csv(path, parse_dates=["timestamp"])
        assert str(df["timestamp"].dt.tz) == "UTC"
    assert len(df) == 1000
    assert df["urn:a.temperature"].tolist() == [t + 0.1 for t in range(1000)]
    hum = df["urn:b.humidity"]
    assert hum.isna().sum() == 334 and hum[1] == 1.2


def test_csv_chunks() -> None:
    schema = wide_schema(["x"])
    body = b"".join(
        csv_chunks(
            WidePivot(long_batches([(0, 1, 1.5), (1_000_000, 1, 2.0)], 1), [1], schema), schema, seconds=True
        )
    )
    assert body.decode().splitlines() == [
        '"timestamp","x"',
        '"1970-01-01T00:00:00Z",1.5',
        '"1970-01-01T00:00:01Z",2',
    ]
    df = pd.read_csv(io.BytesIO(body))
    assert df["x"].tolist() == [1.5, 2.0]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_memory_does_not_grow_with_the_export(tmp_path: Path, fmt: str) -> None:
    """6 M rows (96 MB of values and timestamps) through the pivot and a writer: memory in use (numpy via
    tracemalloc + Arrow's pool) stays bounded by a row group / batch, not by the export. The benchmark
    measures process RSS on 10 M rows."""
    batch = 65_536
    total = 6_000_000

    def source() -> Iterator[pa.RecordBatch]:
        for lo in range(0, total, batch):
            n = min(batch, total - lo)
            ts = np.arange(lo, lo + n, dtype=np.int64) * 1_000_000
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(ts).view(pa.timestamp("us", tz="UTC")),
                    pa.array(np.ones(n, np.int64)),
                    pa.array(ts / 7.0),
                ],
                schema=LONG,
            )

    schema = wide_schema(["x"])
    base = pa.total_allocated_bytes()
    arrow_peak = 0
    tracemalloc.start()
    try:
        w = open_writer(fmt, tmp_path / f"big.{fmt}", schema, seconds=False)
        pivot = WidePivot(source(), [1], schema)
        for b in pivot:
            w.write(b)
            arrow_peak = max(arrow_peak, pa.total_allocated_bytes() - base)
        w.close()
        numpy_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert pivot.rows == total
    # A Parquet row group buffers ~1 M rows × 16 bytes; everything else is per batch.
    assert arrow_peak + numpy_peak < 48 * 1024 * 1024, (arrow_peak, numpy_peak)
    assert (tmp_path / f"big.{fmt}").stat().st_size > total  # the data really went to disk


def test_background_writer_writes_everything_and_reports_failures(tmp_path: Path) -> None:
    schema = wide_schema(["x"])
    points = [(t * 1_000_000, 1, float(t)) for t in range(5000)]
    w = BackgroundWriter(open_writer("parquet", tmp_path / "a.parquet", schema, seconds=False), depth=2)
    for b in WidePivot(long_batches(points, 100), [1], schema):
        w.write(b)
    w.close()
    assert pq.read_table(tmp_path / "a.parquet").column("x").to_pylist() == [float(t) for t in range(5000)]

    class Broken:
        def write(self, batch: pa.RecordBatch) -> None:
            raise OSError("disk full")

        def close(self) -> None:
            pass

    bw = BackgroundWriter(Broken(), depth=1)
    with pytest.raises(OSError, match="disk full"):
        try:
            for b in WidePivot(long_batches(points, 10), [1], schema):
                bw.write(b)
        finally:
            bw.close()  # as the service does; the failure surfaces in the caller's thread
