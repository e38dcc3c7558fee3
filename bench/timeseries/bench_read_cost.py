"""Downsampled reads, a day to 3 years: sensorhub (now and before) vs VictoriaMetrics and InfluxDB 1.6.

    .venv/bin/python bench/timeseries/bench_read_cost.py --before /tmp/sensorhub-before/src
    .venv/bin/python bench/timeseries/bench_read_cost.py --before /tmp/sensorhub-before/src --postgres

``--before`` is the ``src`` folder of an older sensorhub (e.g. ``git archive <commit> | tar -x -C
/tmp/sensorhub-before``): a second ``sensorhub serve`` runs it with ``PYTHONPATH`` on the same database;
without it only the current code is measured.

One run, the same data in every system: three years of 1-minute data of one attribute of one device
(1,576,800 points, 2023-01-01 … 2025-12-31), written to sensorhub (``POST /v3/devices/{id}/backfill``),
InfluxDB 1.6 and VictoriaMetrics (line protocol ``/write``). Then the last day, week, year and the whole
3 years, each at ``resolution=200``:

- sensorhub: ``GET /api/timeseries/v2/entities/{id}/data`` with a PAT (bucket = the smallest standard
  bucket that fits: 10 min, 1 h, 2 days, 7 days);
- InfluxDB: ``SELECT mean(value) … GROUP BY time(<same bucket>)``;
- VictoriaMetrics (``-search.disableCache``, and ``nocache=1`` on every query): ``/api/v1/query_range``
  of ``avg_over_time(temperature_value{device="dev-0"}[<bucket>])`` evaluated one second before each
  bucket's end (so each window holds exactly the bucket's points).

Every system's averages are checked equal to sensorhub's before timing (VictoriaMetrics' from the second
bucket on where the range starts inside a bucket: its first window also holds the points before the range). The systems are interleaved
request by request (rounds of one request each); reported per system and range: median wall ms (client
side, loopback) and server CPU ms per request (user + system time of the server process from
``/proc/<pid>/stat``, meaningful on a busy machine), and the ratios.
"""

from __future__ import annotations

import argparse
import os
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import bench as tsbench

tsbench.VENV_BIN = Path(
    sys.executable
).parent  # the interpreter running this script (a worktree has no .venv)

START = datetime(2023, 1, 1, tzinfo=UTC)
DAYS = 365 * 3
POINTS = DAYS * 1440
CHUNK = 5_000
DEV = "urn:ngsi-ld:Device:dev-0"
VM_PORT = 18428
BEFORE_PORT = 18001
RANGES = {"day": 1, "week": 7, "year": 365, "3 years": DAYS}
RESOLUTION = 200


def start_vm(tmp: Path) -> subprocess.Popen[bytes]:
    return _common.start_victoria_metrics(tmp, VM_PORT, cache=False)


def start_sensorhub(env: dict[str, str], port: int, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        [str(tsbench.VENV_BIN / "sensorhub"), "serve", "--port", str(port), "--log-level", "warning",
         "--no-mqtt", "--data-dir", str(data_dir)],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    _common.wait_http(f"http://127.0.0.1:{port}/healthz")
    return p


def load(sh: httpx.Client, ix: httpx.Client, vm: httpx.Client) -> None:
    rng = np.random.default_rng(1)
    ts_us = int(START.timestamp()) * 1_000_000 + np.arange(POINTS, dtype=np.int64) * 60_000_000
    values = np.round(15 + 10 * np.sin(np.arange(POINTS) / 1440 * 2 * np.pi) + rng.normal(0, 1, POINTS), 3)
    iso = np.datetime_as_string(ts_us.astype("datetime64[us]"), unit="s", timezone="UTC").tolist()
    vals = values.tolist()
    for a in range(0, POINTS, CHUNK):
        b = min(a + CHUNK, POINTS)
        body = orjson.dumps([{"timestamp": iso[i], "data": {"temperature": vals[i]}} for i in range(a, b)])
        r = sh.post(f"/v3/devices/{DEV}/backfill", content=body, headers={"Content-Type": "application/json"})
        r.raise_for_status()
        lines = "\n".join(f"temperature,device=dev-0 value={vals[i]} {ts_us[i] * 1000}" for i in range(a, b))
        ix.post("/write", params={"db": "bench"}, content=lines).raise_for_status()
        vm.post("/write", params={"db": "bench"}, content=lines).raise_for_status()
    vm.get("/internal/force_flush").raise_for_status()


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def requests_for(
    days: int, sh: httpx.Client, before: httpx.Client | None, ix: httpx.Client, vm: httpx.Client
) -> tuple[dict[str, Callable[[], list[float]]], int]:
    """Per system, a function making the read and answering its non-empty averages; the bucket (s)."""
    end = START + timedelta(days=DAYS)
    start = end - timedelta(days=days)
    params = {"start_time": z(start), "end_time": z(end), "resolution": RESOLUTION}
    path = f"/api/timeseries/v2/entities/{DEV}/data"
    bucket = int(sh.get(path, params=params).json()["bucket_seconds"])
    q = (
        f"SELECT mean(value) FROM temperature WHERE device='dev-0' AND time >= '{z(start)}' "
        f"AND time < '{z(end)}' GROUP BY time({bucket}s)"
    )
    # Buckets are epoch-aligned (as sensorhub's and InfluxDB's): the first starts at or before `start`.
    s0 = int(start.timestamp()) // bucket * bucket
    vm_params = {
        "query": f'avg_over_time(temperature_value{{device="dev-0"}}[{bucket}s])',
        "start": s0 + bucket - 1,
        "end": (int(end.timestamp()) - 1) // bucket * bucket + bucket - 1,  # the last (partial) bucket too
        "step": f"{bucket}s",
        "nocache": "1",
    }

    def sensorhub(c: httpx.Client) -> Callable[[], list[float]]:
        def read() -> list[float]:
            r = c.get(path, params=params)
            r.raise_for_status()
            return [v for v in r.json()["attributes"]["temperature"] if v is not None]

        return read

    def influx() -> list[float]:
        r = ix.get("/query", params={"db": "bench", "q": q})
        r.raise_for_status()
        return [v[1] for v in r.json()["results"][0]["series"][0]["values"] if v[1] is not None]

    def victoria() -> list[float]:
        r = vm.get("/api/v1/query_range", params=vm_params)
        r.raise_for_status()
        return [float(v[1]) for v in r.json()["data"]["result"][0]["values"]]

    out = {"sensorhub": sensorhub(sh), "influxdb_1.6": influx, "victoriametrics": victoria}
    if before is not None:
        out["sensorhub_before"] = sensorhub(before)
    return out, bucket


def params_start(days: int) -> float:
    return (START + timedelta(days=DAYS - days)).timestamp()


def measure(
    reads: dict[str, Callable[[], list[float]]], pids: dict[str, int], rounds: int
) -> dict[str, dict[str, float]]:
    for read in reads.values():
        for _ in range(5):
            read()
    walls: dict[str, list[float]] = {k: [] for k in reads}
    cpu = dict.fromkeys(reads, 0.0)
    for _ in range(rounds):
        for name, read in reads.items():
            c0, t0 = _common.cpu_seconds(pids[name]), time.perf_counter()
            read()
            walls[name].append(time.perf_counter() - t0)
            cpu[name] += _common.cpu_seconds(pids[name]) - c0
    return {
        k: {"median_ms": statistics.median(walls[k]) * 1000, "cpu_ms": cpu[k] / rounds * 1000} for k in reads
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", type=Path, help="src folder of the sensorhub to compare with")
    ap.add_argument("--postgres", action="store_true", help="sensorhub on PostgreSQL (scratch database)")
    ap.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--rounds", type=int, default=300)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sh-readcost-"))
    env = {**os.environ, "SENSORHUB_DATA_DIR": str(tmp / "sh"), "SENSORHUB_ENV": "development"}
    env["SENSORHUB_RATE_LIMIT_PER_MINUTE"] = "100000000"
    pg_db = _common.scratch_postgres(env, args.pg_admin, "sensorhub_readcost") if args.postgres else None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        token = tsbench.setup_sensorhub(env, tmp / "sh")
        procs.append(start_sensorhub(env, tsbench.SH_PORT, tmp / "sh", tmp / "server.log"))
        procs.append(tsbench.start_influx(tmp))
        procs.append(start_vm(tmp))
        pids = {"sensorhub": procs[0].pid, "influxdb_1.6": procs[1].pid, "victoriametrics": procs[2].pid}
        auth = {"Authorization": f"Bearer {token}"}
        sh = httpx.Client(base_url=f"http://127.0.0.1:{tsbench.SH_PORT}", headers=auth, timeout=300)
        ix = httpx.Client(base_url=f"http://127.0.0.1:{tsbench.INFLUX_PORT}", timeout=300)
        vm = httpx.Client(base_url=f"http://127.0.0.1:{VM_PORT}", timeout=300)
        ix.post("/query", params={"q": "CREATE DATABASE bench"}).raise_for_status()
        t0 = time.perf_counter()
        load(sh, ix, vm)
        print(f"loaded {POINTS:,} points into each system in {time.perf_counter() - t0:.0f} s", flush=True)
        before = None
        if args.before is not None:
            benv = {**env, "PYTHONPATH": f"{args.before.resolve()}{os.pathsep}{env.get('PYTHONPATH', '')}"}
            procs.append(start_sensorhub(benv, BEFORE_PORT, tmp / "sh", tmp / "before.log"))
            pids["sensorhub_before"] = procs[-1].pid
            before = httpx.Client(base_url=f"http://127.0.0.1:{BEFORE_PORT}", headers=auth, timeout=300)
        results: dict[str, object] = {}
        for label, days in RANGES.items():
            reads, bucket = requests_for(days, sh, before, ix, vm)
            want = reads["sensorhub"]()
            for name, read in reads.items():
                got = read()
                if name == "victoriametrics":  # VM makes new data searchable asynchronously
                    for _ in range(60):
                        if len(got) == len(want):
                            break
                        time.sleep(1)
                        got = read()
                # VictoriaMetrics' first window also holds the points before `start` in a bucket that
                # starts before it (sensorhub and InfluxDB cut at `start`): compared from the second on.
                cut = 1 if name == "victoriametrics" and int(params_start(days)) % bucket else 0
                assert len(got) == len(want) and np.allclose(got[cut:], want[cut:]), (label, name, len(got))
            results[label] = {"bucket_s": bucket, "points": len(want), **measure(reads, pids, args.rounds)}
            print(label, orjson.dumps(results[label]).decode(), flush=True)
        report(results, "postgresql" if args.postgres else "sqlite")
    finally:
        _common.stop(procs)
        _common.drop_scratch_postgres(args.pg_admin, pg_db)
        shutil.rmtree(tmp, ignore_errors=True)


def report(results: dict[str, object], backend: str) -> None:
    print(f"\nbackend: {backend}; load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        "| range (bucket, points) | sensorhub ms wall / CPU | before | VictoriaMetrics | InfluxDB 1.6 "
        "| CPU vs VM | wall vs VM | CPU vs InfluxDB | wall vs InfluxDB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in results.items():
        r = dict(r)  # type: ignore[call-overload]
        sh, vm, ix = r["sensorhub"], r["victoriametrics"], r["influxdb_1.6"]
        b = r.get("sensorhub_before")
        cell = lambda x: f"{x['median_ms']:.2f} / {x['cpu_ms']:.2f}"  # noqa: E731
        print(
            f"| {label} ({r['bucket_s']} s, {r['points']}) | {cell(sh)} | {cell(b) if b else '—'} | {cell(vm)} "
            f"| {cell(ix)} | {vm['cpu_ms'] / sh['cpu_ms']:.2f}× | {vm['median_ms'] / sh['median_ms']:.2f}× "
            f"| {ix['cpu_ms'] / sh['cpu_ms']:.1f}× | {ix['median_ms'] / sh['median_ms']:.1f}× |"
        )


if __name__ == "__main__":
    main()
