"""Export benchmark: an N-row export from the embedded store (SQLite), Parquet and CSV, with peak RSS;
DuckDB's ``COPY … TO`` on the same data as a reference.

    .venv/bin/python bench/exports/bench_exports.py --rows 10000000 --workdir /tmp/sensorhub-bench-exports

Each measurement runs in a fresh subprocess; its peak RSS is the process's VmHWM (Linux; falls back to\n``resource.getrusage``), reported next to the RSS just before the timed part.
The data (one series, one point per second) is created once in the work dir and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ENTITY = "urn:ngsi-ld:Device:bench-1"
CHUNK = 1_000_000


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Peak RSS of this process so far: VmHWM (per process image, so a parent's peak inherited through
    fork/exec does not count, unlike ``ru_maxrss``); ``getrusage`` where /proc is missing."""
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    cur = _status_mb("VmRSS")
    return cur if cur is not None else rss_mb()


def settings_for(workdir: Path) -> Any:
    from sensorhub.config import Settings

    return Settings(
        data_dir=workdir / "data", env="development", secret_key="bench-secret-key-not-for-production"
    )


def setup(workdir: Path, rows: int, series: int) -> None:
    """Create the database with ``rows`` timestamps × ``series`` series (skipped when already there)."""
    import numpy as np

    from sensorhub.accounts import service as accounts
    from sensorhub.db import Database
    from sensorhub.entities.models import Entity
    from sensorhub.kit.time import to_us
    from sensorhub.migrate import upgrade
    from sensorhub.timeseries.service import bulk_insert, get_or_create_series

    marker = workdir / f"ready-{rows}-{series}"
    if marker.exists():
        return
    workdir.mkdir(parents=True, exist_ok=True)
    for p in (workdir / "data").glob("sensorhub.db*"):
        p.unlink()
    s = settings_for(workdir)
    db = Database(s)
    upgrade(db)
    t = time.perf_counter()
    with db.transaction() as sess:
        org = accounts.create_org(sess, "bench", "Bench")
        ws = accounts.create_workspace(sess, org, "main", "Main")
        e = Entity(entity_id=ENTITY, org_id=org.id, workspace_id=ws.id, type="Device", attrs={})
        sess.add(e)
        sess.flush()
        ids = [get_or_create_series(sess, e, f"v{i}", "CEL").id for i in range(series)]
    base = to_us(T0)
    rng = np.random.default_rng(1)
    for sid in ids:
        for lo in range(0, rows, CHUNK):
            n = min(CHUNK, rows - lo)
            ts = base + (np.arange(lo, lo + n, dtype=np.int64) * 1_000_000)
            vals = np.round(rng.normal(20, 5, n), 3)
            with db.transaction() as sess:
                bulk_insert(sess, sid, ts, vals)
    db.dispose()
    print(
        f"setup: {rows:,} rows × {series} series ingested in {time.perf_counter() - t:.1f} s", file=sys.stderr
    )
    marker.touch()


def child_export(workdir: Path, fmt: str, rows: int, series: int) -> dict[str, Any]:
    """One export through the HTTP API with an org API key whose cap is the row count."""
    from fastapi.testclient import TestClient

    from sensorhub.accounts import service as accounts
    from sensorhub.app import create_app
    from sensorhub.tokens import service as tokens

    s = settings_for(workdir)
    app = create_app(s)
    with app.state.ctx.db.transaction() as sess:
        org = accounts.get_org(sess, "bench")
        key = tokens.create_api_key(
            sess,
            org,
            tokens.NewToken(f"bench-{fmt}-{time.time_ns()}", ["export"]),
            settings=s,
            created_by=None,
            export_row_cap=rows,
        ).token
    body = {
        "start_time": T0.isoformat(),
        "end_time": (T0 + timedelta(seconds=rows)).isoformat(),
        "series": [{"entity_id": ENTITY, "attribute": f"v{i}"} for i in range(series)],
        "format": fmt,
    }
    with TestClient(app) as client:
        before = current_rss_mb()
        t = time.perf_counter()
        r = client.post("/api/datahub/export", json=body, headers={"x-api-key": key})
        elapsed = time.perf_counter() - t
        assert r.status_code == 200, r.text
        out = r.json()
    path = s.data_dir / "exports" / f"{out['id']}.{fmt}"
    result = {
        "what": f"sensorhub {fmt}",
        "rows": out["rows"],
        "truncated": out["truncated"],
        "seconds": round(elapsed, 2),
        "rows_per_s": round(out["rows"] / elapsed),
        "rss_before_mb": round(before),
        "peak_rss_mb": round(rss_mb()),
        "file_mb": round(path.stat().st_size / 1e6, 1),
    }
    path.unlink()
    return result


def child_read_only(workdir: Path, rows: int, series: int, mode: str = "child") -> dict[str, Any]:
    """The store's raw batch reader alone (the floor under both formats). ``mode``: ``child`` (large
    reads: a reader process with ``adbc-driver-sqlite`` streaming Arrow), ``local`` (the server's own
    ``sqlite3`` connection, per series), ``generic`` (the time-sliced ``sqlite3`` cursor scan that
    PostgreSQL also uses)."""
    from sqlalchemy import select

    from sensorhub.db import Database
    from sensorhub.timeseries import sqlite as sqlite_store
    from sensorhub.timeseries.models import Series
    from sensorhub.timeseries.service import iter_raw_batches

    if mode == "local":
        sqlite_store.CHILD_READER_MIN_POINTS = 1 << 62
    elif mode == "generic":
        sqlite_store.SQLiteStore.iter_raw_arrow = lambda *args: None  # type: ignore[method-assign,assignment,return-value]
    db = Database(settings_for(workdir))
    with db.session() as sess:
        ids = list(sess.scalars(select(Series.id).order_by(Series.id)))[:series]
        before = current_rss_mb()
        t = time.perf_counter()
        n = sum(
            b.num_rows
            for b in iter_raw_batches(
                sess, ids, {i: [(None, None)] for i in ids}, T0, T0 + timedelta(seconds=rows)
            )
        )
        elapsed = time.perf_counter() - t
    return {
        "what": f"store read only (iter_raw_batches), {mode}",
        "rows": n // series,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(n // series / elapsed),
        "rss_before_mb": round(before),
        "peak_rss_mb": round(rss_mb()),
    }


def child_adbc(workdir: Path, fmt: str, rows: int, series: int) -> dict[str, Any]:
    """The original prototype, kept for comparison (in this benchmark process only; the server never
    loads the driver itself, see ``sensorhub.timeseries.arrow_reader``): the same pivot and writers fed
    by one ADBC query ``ORDER BY ts, series_id`` (SQLite sorts when there are several series)."""
    import sqlite3

    import adbc_driver_sqlite.dbapi as adbc
    import pyarrow as pa

    from sensorhub.export.pivot import TIMESTAMP_TYPE, WidePivot, wide_schema
    from sensorhub.export.writers import open_writer

    con = adbc.connect(str(workdir / "data" / "sensorhub.db"))
    cur = con.cursor()
    cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": "65536"})
    src = sqlite3.connect(workdir / "data" / "sensorhub.db")
    ids = [r[0] for r in src.execute("SELECT id FROM series ORDER BY id LIMIT ?", (series,))]
    src.close()
    marks = ",".join("?" * series)
    before = current_rss_mb()
    t = time.perf_counter()
    cur.execute(
        f"SELECT ts, series_id, value FROM measurements WHERE series_id IN ({marks}) ORDER BY ts, series_id",
        ids,
    )
    reader = cur.fetch_record_batch()

    def batches() -> Any:
        for b in reader:
            yield pa.RecordBatch.from_arrays(
                [b.column(0).view(TIMESTAMP_TYPE), b.column(1), b.column(2)],
                names=["ts", "series_id", "value"],
            )

    schema = wide_schema([f"v{i}" for i in range(series)])
    pivot = WidePivot(batches(), ids, schema)
    out = workdir / f"adbc.{fmt}"
    writer = open_writer(fmt, out, schema, seconds=False)
    for b in pivot:
        writer.write(b)
    writer.close()
    elapsed = time.perf_counter() - t
    reader.close()
    cur.close()
    con.close()
    result = {
        "what": f"prototype: ADBC read → {fmt}",
        "rows": pivot.rows,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(pivot.rows / elapsed),
        "rss_before_mb": round(before),
        "peak_rss_mb": round(rss_mb()),
        "file_mb": round(out.stat().st_size / 1e6, 1),
    }
    out.unlink()
    return result


def child_duckdb(workdir: Path, fmt: str, rows: int, series: int) -> dict[str, Any]:
    """DuckDB ``COPY … TO`` from a DuckDB table holding the same wide data (loaded untimed)."""
    import sqlite3

    import duckdb
    import numpy as np
    import pyarrow as pa

    db_path = workdir / "data" / "sensorhub.db"
    duck_path = workdir / f"ref-{rows}-{series}.duckdb"
    con = duckdb.connect(str(duck_path))

    def q(sql: str) -> list[Any]:
        return con.execute(sql).fetchall()  # type: ignore[no-any-return]

    if not q("SELECT count(*) FROM information_schema.tables WHERE table_name = 'wide'")[0][0]:
        src = sqlite3.connect(db_path)
        sids = [r[0] for r in src.execute("SELECT id FROM series ORDER BY id LIMIT ?", (series,))]
        cols = ", ".join(f"v{i} DOUBLE" for i in range(series))
        q(f"CREATE TABLE wide (timestamp TIMESTAMPTZ, {cols})")
        cur = src.execute(
            "SELECT ts, "
            + ", ".join(f"max(CASE WHEN series_id = {sid} THEN value END)" for sid in sids)
            + " FROM measurements GROUP BY ts ORDER BY ts"
        )
        while True:
            chunk = cur.fetchmany(1_000_000)
            if not chunk:
                break
            arr = np.array(chunk, dtype=np.float64)
            batch = pa.table(
                {
                    "timestamp": pa.array(arr[:, 0].astype(np.int64)).view(pa.timestamp("us", tz="UTC")),
                    **{f"v{i}": arr[:, i + 1] for i in range(series)},
                }
            )
            con.register("batch", batch)
            q("INSERT INTO wide SELECT * FROM batch")
            con.unregister("batch")
        src.close()
        con.close()
        con = duckdb.connect(str(duck_path))
    out = workdir / f"ref.{fmt}"
    opts = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER"
    before = current_rss_mb()
    t = time.perf_counter()
    q(f"COPY (SELECT * FROM wide ORDER BY timestamp) TO '{out}' ({opts})")
    elapsed = time.perf_counter() - t
    result = {
        "what": f"duckdb COPY TO {fmt}",
        "rows": rows,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(rows / elapsed),
        "rss_before_mb": round(before),
        "peak_rss_mb": round(rss_mb()),
        "file_mb": round(out.stat().st_size / 1e6, 1),
        "threads": q("SELECT current_setting('threads')")[0][0],
    }
    out.unlink()
    return result


def run_child(args: list[str]) -> dict[str, Any]:
    p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--series", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/sensorhub-bench-exports"))
    ap.add_argument(
        "--child",
        choices=[
            "parquet",
            "csv",
            "read",
            "read-local",
            "read-generic",
            "duckdb-parquet",
            "duckdb-csv",
            "adbc-parquet",
            "adbc-csv",
        ],
    )
    a = ap.parse_args()
    if a.child:
        if a.child.startswith("read"):
            res = child_read_only(a.workdir, a.rows, a.series, mode=[*a.child.split("-", 1), "child"][1])
        elif a.child.startswith("adbc-"):
            res = child_adbc(a.workdir, a.child.split("-", 1)[1], a.rows, a.series)
        elif a.child.startswith("duckdb-"):
            res = child_duckdb(a.workdir, a.child.split("-", 1)[1], a.rows, a.series)
        else:
            res = child_export(a.workdir, a.child, a.rows, a.series)
        print(json.dumps(res))
        return
    setup(a.workdir, a.rows, a.series)
    common = ["--rows", str(a.rows), "--series", str(a.series), "--workdir", str(a.workdir)]
    children = ["parquet", "csv", "read", "read-local", "read-generic", "duckdb-parquet", "duckdb-csv"]
    try:
        import adbc_driver_sqlite  # noqa: F401

        children += ["adbc-parquet", "adbc-csv"]
    except ImportError:
        print("adbc-driver-sqlite not installed: skipping the Arrow-native read prototype", file=sys.stderr)
    results = [run_child(["--child", c, *common]) for c in children]
    print(f"{a.rows:,} rows × {a.series} series, SQLite, cpus={os.cpu_count()}")
    print(f"{'what':40} {'rows':>11} {'s':>7} {'rows/s':>11} {'RSS MB (start → peak)':>22}")
    for r in results:
        print(
            f"{r['what']:40} {r['rows']:>11,} {r['seconds']:>7} {r['rows_per_s']:>11,} "
            f"{r['rss_before_mb']:>10} → {r['peak_rss_mb']:<8}"
        )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
