"""PostgreSQL ingest vs its floor: sensorhub's HTTP backfill against a raw binary COPY, same table, one run.

    .venv/bin/python bench/ingest/bench_copy_floor.py [--rounds 4]

One scratch PostgreSQL database (127.0.0.1:5432), one ``sensorhub serve`` on it, the month partitions of
2025 created first (``create_partitions_ahead``). Each round writes one year of 1-minute data (525,600
points) three ways, each into a series of its own in the same partitioned ``measurements`` table:

  sensorhub   — ``POST /v3/devices/{id}/backfill``, 5,000 JSON records per request (what bench.py does);
  copy_one    — the floor: the same (series_id, ts, value) rows in one
                ``COPY measurements (series_id, ts, value) FROM STDIN (FORMAT BINARY)`` and one commit
                (payload built by sensorhub's own ``_binary_copy``, inside the timing);
  copy_chunks — the fair floor for 5,000-record requests: the same COPY in 5,000-row chunks, a commit each.

The order alternates between rounds (sensorhub first, then last) so load changes hit both. Reported:
points/s (wall clock), the ratio sensorhub time / COPY time (the issue-17 target: ≤ 1.5×), and CPU per
million points — the sensorhub server process and the PostgreSQL backends of the scratch database
(``/proc/<pid>/stat`` of every backend in ``pg_stat_activity`` for it; of the COPY connection's
``pg_backend_pid()`` for the COPY paths), plus this process's own CPU for the COPY paths (payload build).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "timeseries"))
import _common
import bench as tsbench

from sensorhub.timeseries.postgres import _binary_copy, create_partitions_ahead

tsbench.VENV_BIN = Path(
    sys.executable
).parent  # the interpreter running this script (a worktree has no .venv)

YEAR_POINTS = tsbench.YEAR_POINTS
CHUNK = 5_000
COPY_SQL = "COPY measurements (series_id, ts, value) FROM STDIN (FORMAT BINARY)"
COPY_SERIES = 900_000  # series ids no sensorhub series uses (measurements has no foreign key)


def backend_cpu(conn: psycopg.Connection[tuple[object, ...]], db: str) -> dict[int, float]:
    """CPU seconds of every PostgreSQL backend connected to ``db`` (pid → seconds), but ``conn``'s own
    (an autocommit connection: pg_stat_activity is a snapshot per transaction)."""
    sql = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    pids = [r[0] for r in conn.execute(sql, (db,))]
    out = {}
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):  # a backend that just ended
            out[int(pid)] = _common.cpu_seconds(int(pid))
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float], skip: int) -> float:
    return sum(v - before.get(p, 0.0) for p, v in after.items() if p != skip)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sh-copy-floor-"))
    env = {**os.environ, "SENSORHUB_DATA_DIR": str(tmp / "sh"), "SENSORHUB_ENV": "development"}
    env["SENSORHUB_RATE_LIMIT_PER_MINUTE"] = "100000000"
    pg_db = _common.scratch_postgres(env, args.pg_admin, "sensorhub_copyfloor")
    url = env["SENSORHUB_DATABASE_URL"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        print("load average at start:", os.getloadavg(), flush=True)
        token = tsbench.setup_sensorhub(env, tmp / "sh")  # schema, owner, token, 100 devices
        start_us = int(tsbench.YEAR_START.timestamp()) * 1_000_000
        from sqlalchemy import create_engine

        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        create_partitions_ahead(engine, start_us, months=12)
        engine.dispose()
        sh_proc = tsbench.start_sensorhub(env, tmp / "sh", tmp / "server.log")
        procs.append(sh_proc)
        sh = httpx.Client(
            base_url=f"http://127.0.0.1:{tsbench.SH_PORT}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=300,
        )
        pg = psycopg.connect(url)
        pg_pid = int(pg.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        pg.commit()
        mon = psycopg.connect(url, autocommit=True)

        rng = np.random.default_rng(1)
        ts_us = start_us + np.arange(YEAR_POINTS, dtype=np.int64) * 60_000_000
        vals = np.round(
            15 + 10 * np.sin(np.arange(YEAR_POINTS) / 1440 * 2 * np.pi) + rng.normal(0, 1, YEAR_POINTS), 3
        )
        iso = np.datetime_as_string(ts_us.astype("datetime64[us]"), unit="s", timezone="UTC").tolist()
        vl = vals.tolist()
        bodies = [
            orjson.dumps(
                [
                    {"timestamp": iso[i], "data": {"temperature": vl[i]}}
                    for i in range(a, min(a + CHUNK, YEAR_POINTS))
                ]
            )
            for a in range(0, YEAR_POINTS, CHUNK)
        ]

        def run_sensorhub(r: int) -> dict[str, float]:
            dev = f"urn:ngsi-ld:Device:dev-{r}"
            b0, c0, t0 = backend_cpu(mon, pg_db), _common.cpu_seconds(sh_proc.pid), time.perf_counter()
            accepted = 0
            for b in bodies:
                resp = sh.post(
                    f"/v3/devices/{dev}/backfill", content=b, headers={"Content-Type": "application/json"}
                )
                resp.raise_for_status()
                accepted += resp.json()["accepted"]
            wall = time.perf_counter() - t0
            cpu = _common.cpu_seconds(sh_proc.pid) - c0
            be = cpu_delta(b0, backend_cpu(mon, pg_db), pg_pid)
            assert accepted == YEAR_POINTS, accepted
            return {"seconds": wall, "server_cpu_s": cpu, "backend_cpu_s": be}

        def run_copy(series_id: int, chunk: int) -> dict[str, float]:
            b0, c0, t0 = _common.cpu_seconds(pg_pid), time.process_time(), time.perf_counter()
            for a in range(0, YEAR_POINTS, chunk):
                sl = slice(a, a + chunk)
                payload = _binary_copy(
                    [
                        ("series_id", np.full(len(ts_us[sl]), series_id, np.int64)),
                        ("ts", ts_us[sl]),
                        ("value", vals[sl]),
                    ]
                )
                with pg.cursor() as cur, cur.copy(COPY_SQL) as cp:
                    cp.write(payload)
                pg.commit()
            wall = time.perf_counter() - t0
            out = {
                "seconds": wall,
                "client_cpu_s": time.process_time() - c0,
                "backend_cpu_s": _common.cpu_seconds(pg_pid) - b0,
            }
            n = pg.execute("SELECT count(*) FROM measurements WHERE series_id = %s", (series_id,)).fetchone()
            pg.commit()
            assert n is not None and n[0] == YEAR_POINTS, n
            return out

        rounds = []
        for r in range(args.rounds):
            steps = [
                ("sensorhub", lambda r=r: run_sensorhub(r)),
                ("copy_one", lambda r=r: run_copy(COPY_SERIES + 2 * r, YEAR_POINTS)),
                ("copy_chunks", lambda r=r: run_copy(COPY_SERIES + 2 * r + 1, CHUNK)),
            ]
            if r % 2:
                steps.reverse()
            res: dict[str, object] = {"load_average": os.getloadavg()}
            for name, fn in steps:
                res[name] = fn()
                print(f"round {r + 1} {name}: {res[name]}", flush=True)
            rounds.append(res)
        report(rounds)
        pg.close()
        mon.close()
    finally:
        _common.stop(procs)
        _common.drop_scratch_postgres(args.pg_admin, pg_db)
        shutil.rmtree(tmp, ignore_errors=True)


def report(rounds: list[dict[str, object]]) -> None:
    m = 1e6 / YEAR_POINTS
    print(orjson.dumps(rounds, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
    print(f"\nload average at the end: {os.getloadavg()} on {os.cpu_count()} CPUs")
    for i, r in enumerate(rounds, 1):
        s, one, ch = r["sensorhub"], r["copy_one"], r["copy_chunks"]  # type: ignore[index]
        print(
            f"round {i} (load {r['load_average'][0]:.1f}): "  # type: ignore[index]
            f"sensorhub {YEAR_POINTS / s['seconds']:,.0f} pts/s "
            f"(server {s['server_cpu_s'] * m:.2f} + backend {s['backend_cpu_s'] * m:.2f} s CPU/M pts); "
            f"COPY one {YEAR_POINTS / one['seconds']:,.0f} pts/s (backend {one['backend_cpu_s'] * m:.2f}, "
            f"client {one['client_cpu_s'] * m:.2f} s/M) → ratio {s['seconds'] / one['seconds']:.2f}×; "
            f"COPY 5,000-row chunks {YEAR_POINTS / ch['seconds']:,.0f} pts/s (backend "
            f"{ch['backend_cpu_s'] * m:.2f}, client {ch['client_cpu_s'] * m:.2f} s/M) → ratio "
            f"{s['seconds'] / ch['seconds']:.2f}× (target ≤ 1.5×); total CPU ratio vs chunks "
            f"{(s['server_cpu_s'] + s['backend_cpu_s']) / (ch['backend_cpu_s'] + ch['client_cpu_s']):.1f}×"
        )


if __name__ == "__main__":
    sys.exit(main())
