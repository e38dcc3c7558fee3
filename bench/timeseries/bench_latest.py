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

Usage: .venv/bin/python bench/timeseries/bench_latest.py [--rounds 30] [--postgres] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "bench" / "graphql"))

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
    return [
        f"| {label}: `GET /api/devices?limit=100` | {ms(api_wall) * 1e3:.2f} ms | {ms(api_cpu) * 1e3:.2f} ms "
        f"| {ms(api_wall) / ms(sql_wall):.2f}× |",
        f"| {label}: raw SQL floor (one statement) | {ms(sql_wall) * 1e3:.2f} ms | {ms(sql_cpu) * 1e3:.2f} ms "
        "| 1.00 |",
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--profile", action="store_true")
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
        print("| what | wall per call | CPU per call (this process) | × raw SQL (wall) |")
        print("|---|---:|---:|---:|")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
