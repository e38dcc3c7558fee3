"""Latest values of 100 devices: ``GET /api/devices?limit=100`` against the raw-SQL floor, in one run.

In-process (direct ASGI calls into ``create_app()``, no network), on SQLite and — with ``--postgres`` — on
PostgreSQL (a scratch database on 127.0.0.1:5432, dropped at the end). 100 devices of 5 series each with
ten 1-minute points (the seed of ``bench/graphql/bench_graphql.py``). Interleaved round after round:

- ``GET /api/devices?limit=100`` (token with the ``telemetry`` scope; the answer is checked: 100 devices,
  5 attributes each);
- the raw-SQL floor: one statement on the same database through the same driver answering the same
  data (entity id, type, name, workspace, attribute, unit, last time, last value) for the page's 100
  devices, rows fetched, nothing rendered.

Reports the median CPU (``time.process_time``: this process, the server's side of the work) and wall time
per call; on PostgreSQL the backend's own work is in the wall time only. ``--profile`` prints a cProfile
of the route instead.

``--victoria``: also over HTTP against VictoriaMetrics (``victoria-metrics`` on the PATH, started with
``-search.disableCache`` on a scratch directory): ``sensorhub serve`` (one worker, on the same seeded
database) answering ``GET /api/devices?limit=100`` vs VictoriaMetrics answering the instant query
``last_over_time({__name__=~"bench_.*"}[1h])`` for the same 500 series (the same values, written as line
protocol), one client, calls interleaved; wall time per call as the client sees it and each server's CPU
per call from ``/proc/<pid>/stat`` (totals over the rounds: the clock ticks are 10 ms).

Usage: .venv/bin/python bench/timeseries/bench_latest.py [--rounds 30] [--postgres] [--victoria] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import create_engine

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "bench" / "graphql"))
sys.path.insert(0, str(ROOT / "bench"))

import _common  # noqa: E402
from bench_graphql import DEVICES, FIELDS, seed  # noqa: E402

from sensorhub.app import create_app  # noqa: E402
from sensorhub.config import Settings  # noqa: E402
from sensorhub.context import AppContext  # noqa: E402
from sensorhub.migrate import upgrade  # noqa: E402

FLOOR_SQL = """
SELECT e.entity_id, e.type, e.name, w.slug, s.attribute, s.unit, s.last_ts, s.last_value
FROM (SELECT pk, entity_id, type, name, workspace_id FROM entities
      WHERE type = 'Bench' ORDER BY pk LIMIT 100) e
JOIN workspaces w ON w.id = e.workspace_id
JOIN series s ON s.entity_pk = e.pk AND s.topic = 'default'
ORDER BY e.pk, s.attribute
"""


async def call(app: Any, path: str, query: bytes, token: str) -> tuple[int, bytes]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Bearer {token}".encode())]
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query, "headers": headers, "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip
    out: dict[str, Any] = {"status": 0, "body": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            out["status"] = msg["status"]
        elif msg["type"] == "http.response.body":
            out["body"] += msg.get("body", b"")

    await app(scope, receive, send)
    return out["status"], out["body"]


VM_QUERY = 'last_over_time({__name__=~"bench_.*"}[1h])'
HTTP_CALLS = 10  # HTTP calls per round and server (CPU from /proc is counted in 10 ms ticks)


def start_victoria(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    """VictoriaMetrics on a scratch directory, its query cache off, holding what ``seed`` wrote (the same
    values at the same times: ``bench_<field>{device="urn:ngsi-ld:Device:b-<i>"}``)."""
    p = _common.start_victoria_metrics(tmp, port, cache=False)
    t0 = int(time.time() // 60 * 60) * 1_000_000
    lines = [
        f"bench,device=urn:ngsi-ld:Device:b-{i} "
        + ",".join(f"{f}={float(i + j)}" for j, f in enumerate(FIELDS))
        + f" {ts * 1000}"
        for i in range(DEVICES)
        for ts in range(t0 - 10 * 60_000_000, t0, 60_000_000)
    ]
    base = f"http://127.0.0.1:{port}"
    httpx.post(f"{base}/write", content="\n".join(lines).encode()).raise_for_status()
    httpx.get(f"{base}/internal/force_flush").raise_for_status()
    for _ in range(100):  # flushed data becomes searchable shortly after
        r = httpx.get(f"{base}/api/v1/query", params={"query": VM_QUERY}).json()
        if len(r["data"]["result"]) == DEVICES * len(FIELDS):
            return p
        time.sleep(0.1)
    raise SystemExit(f"VictoriaMetrics did not answer the {DEVICES * len(FIELDS)} series")


def http_rounds(
    sh_url: str, sh_pid: int, token: str, vm_url: str, vm_pid: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """Median wall (client side) and mean server CPU per call, sensorhub vs VictoriaMetrics, interleaved."""
    walls: dict[str, list[float]] = {"sensorhub": [], "vm": []}
    cpus = {"sensorhub": 0.0, "vm": 0.0}
    with (
        httpx.Client(base_url=sh_url, headers={"Authorization": f"Bearer {token}"}) as sh,
        httpx.Client(base_url=vm_url) as vm,
    ):
        calls = {
            "sensorhub": (sh_pid, lambda: sh.get("/api/devices", params={"limit": DEVICES, "type": "Bench"})),
            "vm": (vm_pid, lambda: vm.get("/api/v1/query", params={"query": VM_QUERY})),
        }
        for _pid, call in calls.values():
            for _ in range(5):  # warm-up
                call().raise_for_status()
        for _ in range(rounds):
            for name, (pid, call) in calls.items():
                c0 = _common.cpu_seconds(pid)
                for _ in range(HTTP_CALLS):
                    w0 = time.perf_counter()
                    call().raise_for_status()
                    walls[name].append(time.perf_counter() - w0)
                cpus[name] += _common.cpu_seconds(pid) - c0
    n = rounds * HTTP_CALLS
    return {k: (statistics.median(walls[k]), cpus[k] / n) for k in walls}


def run_http(label: str, settings: Settings, token: str, args: argparse.Namespace) -> list[str]:
    """``sensorhub serve`` on the seeded database vs VictoriaMetrics, over loopback."""
    env = {
        **os.environ,
        "SENSORHUB_DATA_DIR": str(settings.data_dir),
        "SENSORHUB_RATE_LIMIT_PER_MINUTE": "100000000",
        "SENSORHUB_EMBEDDED_WORKER": "0",
    }
    if settings.database_url:
        env["SENSORHUB_DATABASE_URL"] = settings.database_url
        env["SENSORHUB_SECRET_KEY"] = settings.secret_key
    sh_port, vm_port = _common.free_port(), _common.free_port()
    sh = _common.start_sensorhub(env, sh_port, "--data-dir", str(settings.data_dir))
    vm = start_victoria(Path(tempfile.mkdtemp(prefix="shub-bench-latest-vm-")), vm_port)
    try:
        got = http_rounds(
            f"http://127.0.0.1:{sh_port}", sh.pid, token, f"http://127.0.0.1:{vm_port}", vm.pid, args.rounds
        )
    finally:
        for p in (sh, vm):
            p.terminate()
            p.wait(timeout=30)
    (sh_wall, sh_cpu), (vm_wall, vm_cpu) = got["sensorhub"], got["vm"]
    return [
        f"| {label}, HTTP: `sensorhub serve` `GET /api/devices?limit=100` | {sh_wall * 1e3:.2f} ms "
        f"| {sh_cpu * 1e3:.2f} ms (server) | {sh_wall / vm_wall:.2f}× VictoriaMetrics |",
        f"| {label}, HTTP: VictoriaMetrics `{VM_QUERY}` (500 series) | {vm_wall * 1e3:.2f} ms "
        f"| {vm_cpu * 1e3:.2f} ms (server) | 1.00 |",
    ]


async def run_backend(label: str, settings: Settings, args: argparse.Namespace) -> list[str]:
    ctx = AppContext.build(settings)
    upgrade(ctx.db)
    token = seed(ctx)
    app = create_app(settings, ctx)
    query = b"limit=100&type=Bench"
    floor_engine = create_engine(ctx.settings.database_url or f"sqlite:///{settings.data_dir}/sensorhub.db")
    async with app.router.lifespan_context(app):
        status, body = await call(app, "/api/devices", query, token)
        assert status == 200, body
        devices = orjson.loads(body)
        assert len(devices) == DEVICES and all(len(d["attributes"]) == len(FIELDS) for d in devices)
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(args.rounds):
                await call(app, "/api/devices", query, token)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(35)
            return []
        api_cpu, api_wall, sql_cpu, sql_wall = [], [], [], []
        with floor_engine.connect() as conn:
            raw = conn.connection.driver_connection
            for _ in range(3):  # warm-up
                await call(app, "/api/devices", query, token)
                raw.execute(FLOOR_SQL).fetchall()  # type: ignore[union-attr]
            for _ in range(args.rounds):
                c0, w0 = time.process_time(), time.perf_counter()
                await call(app, "/api/devices", query, token)
                c1, w1 = time.process_time(), time.perf_counter()
                rows = raw.execute(FLOOR_SQL).fetchall()  # type: ignore[union-attr]
                c2, w2 = time.process_time(), time.perf_counter()
                assert len(rows) == DEVICES * len(FIELDS)
                api_cpu.append(c1 - c0)
                api_wall.append(w1 - w0)
                sql_cpu.append(c2 - c1)
                sql_wall.append(w2 - w1)
    floor_engine.dispose()
    ctx.db.dispose()
    ms = statistics.median
    http = run_http(label, settings, token, args) if args.victoria else []
    api = f"{ms(api_wall) * 1e3:.2f} ms | {ms(api_cpu) * 1e3:.2f} ms"
    floor = f"{ms(sql_wall) * 1e3:.2f} ms | {ms(sql_cpu) * 1e3:.2f} ms"
    ratios = f"{ms(api_wall) / ms(sql_wall):.2f}× wall, {ms(api_cpu) / ms(sql_cpu):.2f}× CPU"
    return [
        f"| {label}: `GET /api/devices?limit=100` (in-process) | {api} | {ratios} |",
        f"| {label}: raw SQL floor (one statement) | {floor} | 1.00 |",
        *http,
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--victoria", action="store_true", help="also over HTTP against VictoriaMetrics")
    args = ap.parse_args()
    lines: list[str] = []
    data = Path(tempfile.mkdtemp(prefix="shub-bench-latest-"))
    base = {"rate_limit_per_minute": 100_000_000, "mqtt_listen": "", "embedded_worker": False}
    lines += asyncio.run(run_backend("SQLite", Settings(data_dir=data / "sqlite", **base), args))
    if args.postgres:
        import psycopg

        name = f"sensorhub_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg_admin, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        url = args.pg_admin.rsplit("/", 1)[0] + "/" + name
        try:
            pg = Settings(
                data_dir=data / "pg",
                database_url=url.replace("postgresql://", "postgresql+psycopg://"),
                secret_key=uuid.uuid4().hex * 2,
                **base,
            )
            lines += asyncio.run(run_backend("PostgreSQL", pg, args))
        finally:
            with psycopg.connect(args.pg_admin, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if lines:
        print(
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {args.rounds} rounds, medians\n"
        )
        print("| what | wall per call | CPU per call | ratio |")
        print("|---|---:|---:|---:|")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
