"""Time-series benchmark: sensorhub (real server process, token auth, HTTP) vs InfluxDB 1.6, same data.

    .venv/bin/python bench/timeseries/bench.py                 # embedded SQLite
    .venv/bin/python bench/timeseries/bench.py --postgres      # PostgreSQL at 127.0.0.1:5432 (scratch DB)

Scenarios (one run, same data in both systems):
  (a) one year of 1-minute data (525,600 points) of one attribute, read at resolution=200
      vs InfluxDB ``SELECT mean(value) … GROUP BY time(<same bucket>)``;
  (b) bulk backfill over HTTP (POST /v3/devices/{id}/backfill, chunks of 5,000 records)
      vs InfluxDB line-protocol /write (chunks of 5,000 points);
  (c) latest values of 100 devices (GET /api/devices?limit=100)
      vs InfluxDB ``SELECT last(value) … GROUP BY device``.
Plus, for reference, the same aggregation as raw SQL over the raw rows of the same database.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common
import _common

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
YEAR_POINTS = 525_600
CHUNK = 5_000
DEVICES = 100
DEVICE_POINTS = 1_440  # one day of 1-minute data per device for (c)
READ_REPEATS = 300
LATEST_REPEATS = 100
SH_PORT = 18000
INFLUX_PORT = 18086


def timeit(
    fn: Callable[[], object], repeats: int, warmup: int = 5, pid: int | None = None
) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    ts = []
    c0 = _common.cpu_seconds(pid)
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    cpu = _common.cpu_seconds(pid) - c0
    ts.sort()
    return {
        "median_ms": statistics.median(ts) * 1000,
        "p95_ms": ts[int(len(ts) * 0.95) - 1] * 1000,
        "per_s": len(ts) / sum(ts),
        "server_cpu_ms_per_req": cpu / repeats * 1000,
    }


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- InfluxDB ---------------------------------------------------------------------------------------


def start_influx(tmp: Path) -> subprocess.Popen[bytes]:
    conf = tmp / "influxdb.conf"
    conf.write_text(
        f"""
reporting-disabled = true
bind-address = "127.0.0.1:{INFLUX_PORT + 2}"
[meta]
  dir = "{tmp}/influx/meta"
[data]
  dir = "{tmp}/influx/data"
  wal-dir = "{tmp}/influx/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{INFLUX_PORT}"
  log-enabled = false
[logging]
  level = "warn"
"""
    )
    p = subprocess.Popen(
        ["influxd", "-config", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _common.wait_port(INFLUX_PORT)
    return p


# --- sensorhub ----------------------------------------------------------------------------------------


def sh_cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [str(VENV_BIN / "sensorhub"), *args], env=env, check=True, capture_output=True, text=True
    )
    return out.stdout


def setup_sensorhub(env: dict[str, str], data_dir: Path) -> str:
    """Schema, an owner, a token (via the CLI), and 100 device entities (directly: ingest never creates them)."""
    sh_cli(env, "init", "--data-dir", str(data_dir))
    sh_cli(
        env,
        "admin",
        "create-user",
        "--email",
        "bench@example.com",
        "--password",
        "bench-password-123",
        "--org",
        "bench",
        "--role",
        "owner",
        "--data-dir",
        str(data_dir),
    )
    out = sh_cli(
        env,
        "admin",
        "create-token",
        "--email",
        "bench@example.com",
        "--name",
        "bench",
        "--scopes",
        "timeseries,telemetry,ingest",
        "--data-dir",
        str(data_dir),
    )
    m = re.search(r"\b[a-z0-9]+_pat_[A-Za-z0-9]+", out)
    assert m, out
    code = f"""
import os
from sensorhub.config import Settings
from sensorhub.db import Database
from sensorhub.accounts import service as accounts
from sensorhub.entities.models import Entity
from pathlib import Path
db = Database(Settings(data_dir=Path({str(data_dir)!r})))
with db.transaction() as s:
    org = accounts.get_org(s, "bench")
    wss = accounts.list_workspaces(s, org) or [accounts.create_workspace(s, org, "main")]
    for i in range({DEVICES}):
        s.add(Entity(entity_id=f"urn:ngsi-ld:Device:dev-{{i}}", org_id=org.id, workspace_id=wss[0].id,
                     type="Device", attrs={{}}))
"""
    subprocess.run([str(VENV_BIN / "python"), "-c", code], env=env, check=True)
    return m.group(0)


def start_sensorhub(env: dict[str, str], data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        [
            str(VENV_BIN / "sensorhub"),
            "serve",
            "--port",
            str(SH_PORT),
            "--log-level",
            "warning",
            "--no-mqtt",
            "--data-dir",
            str(data_dir),
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    _common.wait_port(SH_PORT)
    return p


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--postgres", action="store_true", help="Run sensorhub on PostgreSQL (scratch database)")
    ap.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="sh-bench-"))
    env = {**os.environ, "SENSORHUB_DATA_DIR": str(tmp / "sh"), "SENSORHUB_ENV": "development"}
    # The benchmark measures throughput, not the per-token request budget.
    env["SENSORHUB_RATE_LIMIT_PER_MINUTE"] = "100000000"
    pg_db = _common.scratch_postgres(env, args.pg_admin, "sensorhub_bench") if args.postgres else None
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, object] = {}
    try:
        token = setup_sensorhub(env, tmp / "sh")
        procs.append(start_sensorhub(env, tmp / "sh", tmp / "server.log"))
        procs.append(start_influx(tmp))
        sh_pid, ix_pid = procs[0].pid, procs[1].pid
        sh = httpx.Client(
            base_url=f"http://127.0.0.1:{SH_PORT}", headers={"Authorization": f"Bearer {token}"}, timeout=120
        )
        ix = httpx.Client(base_url=f"http://127.0.0.1:{INFLUX_PORT}", timeout=120)
        ix.post("/query", params={"q": "CREATE DATABASE bench"}).raise_for_status()

        rng = np.random.default_rng(1)
        start_us = int(YEAR_START.timestamp()) * 1_000_000
        ts_us = start_us + np.arange(YEAR_POINTS, dtype=np.int64) * 60_000_000
        values = np.round(
            15 + 10 * np.sin(np.arange(YEAR_POINTS) / 1440 * 2 * np.pi) + rng.normal(0, 1, YEAR_POINTS), 3
        )
        iso = np.datetime_as_string(ts_us.astype("datetime64[us]"), unit="s", timezone="UTC").tolist()
        vals = values.tolist()

        # (b) bulk backfill over HTTP vs line protocol.
        dev0 = "urn:ngsi-ld:Device:dev-0"
        bodies = [
            orjson.dumps(
                [
                    {"timestamp": iso[i], "data": {"temperature": vals[i]}}
                    for i in range(a, min(a + CHUNK, YEAR_POINTS))
                ]
            )
            for a in range(0, YEAR_POINTS, CHUNK)
        ]
        t0, c0 = time.perf_counter(), _common.cpu_seconds(sh_pid)
        accepted = 0
        for b in bodies:
            r = sh.post(
                f"/v3/devices/{dev0}/backfill", content=b, headers={"Content-Type": "application/json"}
            )
            r.raise_for_status()
            accepted += r.json()["accepted"]
        sh_write, sh_write_cpu = time.perf_counter() - t0, _common.cpu_seconds(sh_pid) - c0
        assert accepted == YEAR_POINTS, accepted
        lines = [
            "\n".join(
                f"temperature,device=dev-0 value={vals[i]} {ts_us[i] * 1000}"
                for i in range(a, min(a + CHUNK, YEAR_POINTS))
            )
            for a in range(0, YEAR_POINTS, CHUNK)
        ]
        t0, c0 = time.perf_counter(), _common.cpu_seconds(ix_pid)
        for body in lines:
            ix.post("/write", params={"db": "bench"}, content=body).raise_for_status()
        ix_write, ix_write_cpu = time.perf_counter() - t0, _common.cpu_seconds(ix_pid) - c0
        results["write"] = {
            "sensorhub_points_per_s": YEAR_POINTS / sh_write,
            "influx_points_per_s": YEAR_POINTS / ix_write,
            "sensorhub_s": sh_write,
            "influx_s": ix_write,
            "sensorhub_server_cpu_s": sh_write_cpu,
            "influx_server_cpu_s": ix_write_cpu,
        }
        r = sh.post(
            f"/v3/devices/{dev0}/backfill", content=bodies[0], headers={"Content-Type": "application/json"}
        )
        assert r.json() == {"accepted": 0, "duplicates": CHUNK}, r.text  # idempotent

        # (a) one year at resolution=200.
        end = YEAR_START + timedelta(minutes=YEAR_POINTS)
        params = {
            "start_time": z(YEAR_START),
            "end_time": z(end),
            "attribute": "temperature",
            "resolution": 200,
        }
        probe = sh.get(f"/api/timeseries/v2/entities/{dev0}/data", params=params).json()
        bucket = probe["bucket_seconds"]
        q = (
            f"SELECT mean(value) FROM temperature WHERE device='dev-0' AND time >= '{z(YEAR_START)}' "
            f"AND time < '{z(end)}' GROUP BY time({bucket}s)"
        )
        ixr = ix.get("/query", params={"db": "bench", "q": q}).json()
        ix_vals = [v[1] for v in ixr["results"][0]["series"][0]["values"] if v[1] is not None]
        sh_vals = [v for v in probe["attributes"]["temperature"] if v is not None]
        assert len(ix_vals) == len(sh_vals) and np.allclose(ix_vals, sh_vals), (len(ix_vals), len(sh_vals))
        results["read_year"] = {
            "bucket_seconds": bucket,
            "points": len(sh_vals),
            "sensorhub": timeit(
                lambda: sh.get(f"/api/timeseries/v2/entities/{dev0}/data", params=params).raise_for_status(),
                READ_REPEATS,
                pid=sh_pid,
            ),
            "influx": timeit(
                lambda: ix.get("/query", params={"db": "bench", "q": q}).raise_for_status(),
                READ_REPEATS,
                pid=ix_pid,
            ),
        }

        # (c) latest values of 100 devices.
        day0 = YEAR_START + timedelta(days=400)
        dts = int(day0.timestamp()) * 1_000_000 + np.arange(DEVICE_POINTS, dtype=np.int64) * 60_000_000
        diso = np.datetime_as_string(dts.astype("datetime64[us]"), unit="s", timezone="UTC").tolist()
        lp = []
        for d in range(DEVICES):
            dv = rng.normal(20, 3, DEVICE_POINTS).round(2).tolist()
            body = orjson.dumps(
                [{"timestamp": diso[i], "data": {"temperature": dv[i]}} for i in range(DEVICE_POINTS)]
            )
            sh.post(
                f"/v3/devices/urn:ngsi-ld:Device:dev-{d}/backfill",
                content=body,
                headers={"Content-Type": "application/json"},
            ).raise_for_status()
            lp.append(
                "\n".join(
                    f"temperature,device=dev-{d} value={dv[i]} {dts[i] * 1000}" for i in range(DEVICE_POINTS)
                )
            )
        for body in lp:
            ix.post("/write", params={"db": "bench"}, content=body).raise_for_status()
        devs = sh.get("/api/devices", params={"limit": DEVICES}).json()
        assert len(devs) == DEVICES
        lq = "SELECT last(value) FROM temperature GROUP BY device"
        assert (
            len(ix.get("/query", params={"db": "bench", "q": lq}).json()["results"][0]["series"]) == DEVICES
        )
        results["latest_100"] = {
            "sensorhub": timeit(
                lambda: sh.get("/api/devices", params={"limit": DEVICES}).raise_for_status(),
                LATEST_REPEATS,
                pid=sh_pid,
            ),
            "influx": timeit(
                lambda: ix.get("/query", params={"db": "bench", "q": lq}).raise_for_status(),
                LATEST_REPEATS,
                pid=ix_pid,
            ),
        }

        # Reference: the same year aggregation as plain SQL over the raw rows (no rollups), same database.
        results["raw_sql_year"] = raw_sql_reference(
            env, tmp / "sh", bucket, start_us, int(end.timestamp()) * 1_000_000
        )
        results["backend"] = "postgresql" if args.postgres else "sqlite"
        report(results)
    finally:
        _common.stop(procs)
        _common.drop_scratch_postgres(args.pg_admin, pg_db)
        shutil.rmtree(tmp, ignore_errors=True)


def raw_sql_reference(
    env: dict[str, str], data_dir: Path, bucket_s: int, lo: int, hi: int
) -> dict[str, float]:
    os.environ.update({k: v for k, v in env.items() if k.startswith("SENSORHUB_")})
    from sqlalchemy import text

    from sensorhub.config import Settings
    from sensorhub.db import Database

    db = Database(Settings(data_dir=data_dir))
    w = bucket_s * 1_000_000
    raw = text(
        f"SELECT ts - (((ts % {w}) + {w}) % {w}) AS b, avg(value) FROM measurements "
        "WHERE series_id = :sid AND ts >= :lo AND ts < :hi GROUP BY 1 ORDER BY 1"
    )
    rollup = text(
        f'SELECT bucket_start - (((bucket_start % {w}) + {w}) % {w}) AS b, sum("sum") / sum("count") FROM rollup_1d '
        "WHERE series_id = :sid AND bucket_start >= :lo AND bucket_start < :hi GROUP BY 1 ORDER BY 1"
    )
    with db.session() as s:
        sid = s.execute(
            text(
                "SELECT s.id FROM series s JOIN entities e ON e.pk = s.entity_pk "
                "WHERE e.entity_id = 'urn:ngsi-ld:Device:dev-0'"
            )
        ).scalar()
        p = {"sid": sid, "lo": lo, "hi": hi}
        out = {
            "raw_rows_group_by": timeit(lambda: s.execute(raw, p).all(), 20, 2),
            "rollup_1d_group_by": timeit(lambda: s.execute(rollup, p).all(), 200),
        }
    db.dispose()
    return out


def report(r: dict[str, object]) -> None:
    print(orjson.dumps(r, option=orjson.OPT_INDENT_2).decode())
    w, a, c, q = r["write"], r["read_year"], r["latest_100"], r["raw_sql_year"]  # type: ignore[index]
    print(f"\nbackend: {r['backend']}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        f"(a) year @ resolution=200 ({a['points']} points, bucket {a['bucket_seconds']} s): "
        f"sensorhub {a['sensorhub']['median_ms']:.2f} ms median, InfluxDB {a['influx']['median_ms']:.2f} ms "
        f"→ {a['influx']['median_ms'] / a['sensorhub']['median_ms']:.1f}x; server CPU per request "
        f"{a['sensorhub']['server_cpu_ms_per_req']:.2f} vs {a['influx']['server_cpu_ms_per_req']:.2f} ms"
    )
    print(
        f"(b) backfill: sensorhub {w['sensorhub_points_per_s']:,.0f} points/s, InfluxDB {w['influx_points_per_s']:,.0f} "
        f"points/s → {w['sensorhub_points_per_s'] / w['influx_points_per_s']:.2f}x; server CPU "
        f"{w['sensorhub_server_cpu_s']:.1f} s vs {w['influx_server_cpu_s']:.1f} s for {YEAR_POINTS:,} points"
    )
    print(
        f"(c) latest of 100 devices: sensorhub {c['sensorhub']['median_ms']:.2f} ms, InfluxDB "
        f"{c['influx']['median_ms']:.2f} ms → {c['influx']['median_ms'] / c['sensorhub']['median_ms']:.1f}x; "
        f"server CPU per request {c['sensorhub']['server_cpu_ms_per_req']:.2f} vs "
        f"{c['influx']['server_cpu_ms_per_req']:.2f} ms"
    )
    print(
        f"raw SQL, year avg over raw rows: {q['raw_rows_group_by']['median_ms']:.1f} ms; "
        f"over rollup_1d: {q['rollup_1d_group_by']['median_ms']:.2f} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
