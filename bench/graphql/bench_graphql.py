"""GraphQL against the equivalent REST call, in one run, over HTTP on loopback, with SQL statement counts.

1. ``currentMeasurements`` of 100 devices (5 fields each) in one query vs ``GET /api/devices?limit=100``.
2. ``history`` of one field over a year (1-minute points, 525,600 of them) at ``resolution: 200`` vs
   ``GET /api/timeseries/v2/entities/{id}/data?resolution=200&attribute=…``.

The server (one ``uvicorn`` worker, the real app) runs in this process so that a SQLAlchemy event
listener can count the statements each request runs; requests of a pair alternate round-robin so both
see the same machine load.

Usage: .venv/bin/python bench/graphql/bench_graphql.py [--rounds 200]
       [--database-url postgresql://postgres@127.0.0.1:5432/postgres]   (a fresh database, dropped at the end)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from sqlalchemy import create_engine, event, text

from sensorhub.accounts import service as accounts
from sensorhub.app import create_app
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.entities.models import Entity
from sensorhub.migrate import upgrade
from sensorhub.timeseries.service import bulk_insert, get_or_create_series
from sensorhub.tokens import service as tokens

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common
import _common

DEVICES = 100
FIELDS = ("temperature", "humidity", "pressure", "battery", "rssi")
YEAR_DEVICE = "urn:ngsi-ld:Device:year"
START, END = "2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"
CURRENT_QUERY = """{ devices(first: 100, type: ["Bench"]) { edges { node { id verboseName type
  currentMeasurements { field { fieldName } value time unit } } } } }"""
COMPACT_QUERY = """{ devices(first: 100, type: ["Bench"]) { edges { node { id verboseName type
  currentValues } } } }"""
HISTORY_QUERY = (
    'query($id: String!) { device(deviceId: $id) { history(fields: ["temperature"], '
    f'timerangestart: "{START}", timerangeend: "{END}", resolution: 200) '
    "{ bucketSeconds timestamps fields { fieldName unit values } } } }"
)


def seed(ctx: AppContext) -> str:
    with ctx.db.transaction() as s:
        org = accounts.create_org(s, "bench", "Bench")
        ws = accounts.create_workspace(s, org, "main", "Main")
        user = accounts.create_user(s, "b@example.com", "bench-pass-1")
        accounts.set_membership(s, user, org, "owner")
        entities = []
        for i in range(DEVICES):
            e = Entity(entity_id=f"urn:ngsi-ld:Device:b-{i}", org_id=org.id, workspace_id=ws.id, type="Bench")
            e.name = f"bench {i}"
            entities.append(e)
        year = Entity(entity_id=YEAR_DEVICE, org_id=org.id, workspace_id=ws.id, type="Year")
        s.add_all([*entities, year])
        s.flush()
        t0 = int(time.time() // 60 * 60) * 1_000_000
        for i, e in enumerate(entities):
            for j, f in enumerate(FIELDS):
                x = get_or_create_series(s, e, f, "CEL" if f == "temperature" else None)
                ts = np.arange(t0 - 10 * 60_000_000, t0, 60_000_000, dtype=np.int64)
                bulk_insert(s, x.id, ts, np.full(len(ts), float(i + j)))
        x = get_or_create_series(s, year, "temperature", "CEL")
        start_us = 1735689600 * 1_000_000  # 2025-01-01
        ts = start_us + np.arange(525_600, dtype=np.int64) * 60_000_000
        rng = np.random.default_rng(1)
        bulk_insert(s, x.id, ts, 20 + 5 * np.sin(np.arange(525_600) / 1440) + rng.normal(0, 0.5, 525_600))
        minted = tokens.create_pat(
            s,
            user,
            tokens.NewToken("bench", ["entities", "telemetry", "timeseries"]),
            settings=ctx.settings,
            created_by=user.id,
        )
    return minted.token


def fresh_pg(url: str) -> str:
    name = f"bench_graphql_{uuid.uuid4().hex[:8]}"
    eng = create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return url.rsplit("/", 1)[0] + "/" + name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--database-url")
    args = ap.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-graphql-"))
    url = fresh_pg(args.database_url) if args.database_url else None
    settings = Settings(
        data_dir=data_dir,
        database_url=url,
        env="production" if url else "development",
        secret_key="bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        rate_limit_per_minute=1_000_000,
        graphql_cost_per_minute=10**9,
    )
    ctx = AppContext.build(settings)
    upgrade(ctx.db)
    print("seeding…", flush=True)
    token = seed(ctx)
    app = create_app(settings, ctx)
    port = _common.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)

    statements: list[str] = []
    event.listen(ctx.db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    base = f"http://127.0.0.1:{port}"
    h = {"Authorization": f"Token {token}"}
    calls: dict[str, Any] = {
        "REST GET /api/devices?limit=100": lambda c: c.get(
            "/api/devices", params={"limit": 100, "type": "Bench"}
        ),
        "GraphQL devices(first:100) currentMeasurements": lambda c: c.post(
            "/graphql", json={"query": CURRENT_QUERY}
        ),
        "REST GET /api/devices?limit=100 ": lambda c: c.get(
            "/api/devices", params={"limit": 100, "type": "Bench"}
        ),
        "GraphQL devices(first:100) currentValues (JSON)": lambda c: c.post(
            "/graphql", json={"query": COMPACT_QUERY}
        ),
        "REST time series v2, 1 year, resolution=200": lambda c: c.get(
            f"/api/timeseries/v2/entities/{YEAR_DEVICE}/data",
            params={"start_time": START, "end_time": END, "resolution": 200, "attribute": "temperature"},
        ),
        "GraphQL history, 1 year, resolution: 200": lambda c: c.post(
            "/graphql", json={"query": HISTORY_QUERY, "variables": {"id": YEAR_DEVICE}}
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in calls}
    counts: dict[str, int] = {}
    with httpx.Client(base_url=base, headers=h, timeout=60) as c:
        for name, call in calls.items():  # warm up, check the answers, count statements
            for _ in range(3):
                r = call(c)
                assert r.status_code == 200 and "errors" not in r.json(), r.text[:500]
            statements.clear()
            call(c)
            counts[name] = len(statements)
        rest_pts = len(calls["REST time series v2, 1 year, resolution=200"](c).json()["timestamps"])
        gql_pts = len(
            calls["GraphQL history, 1 year, resolution: 200"](c).json()["data"]["device"]["history"][
                "timestamps"
            ]
        )
        assert rest_pts == gql_pts, (rest_pts, gql_pts)
        devices = calls["GraphQL devices(first:100) currentMeasurements"](c).json()["data"]["devices"][
            "edges"
        ]
        assert len(devices) == DEVICES and len(devices[0]["node"]["currentMeasurements"]) == len(FIELDS)
        for _ in range(args.rounds):
            for name, call in calls.items():
                t = time.perf_counter()
                call(c)
                times[name].append((time.perf_counter() - t) * 1000)
    server.should_exit = True
    backend = "PostgreSQL" if url else "SQLite"
    print(f"\n{backend}, {args.rounds} rounds, history answer: {gql_pts} points\n")
    print("| request | median ms | p95 ms | vs REST | SQL statements |")
    print("|---|---:|---:|---:|---:|")
    names = list(calls)
    for i in range(0, len(names), 2):
        rest, gql = names[i], names[i + 1]
        base_med = statistics.median(times[rest])
        for n in (rest, gql):
            med = statistics.median(times[n])
            p95 = statistics.quantiles(times[n], n=20)[-1]
            print(f"| {n} | {med:.2f} | {p95:.2f} | {med / base_med:.2f}x | {counts[n]} |")
    ctx.db.dispose()
    if url and args.database_url:
        drop_pg(args.database_url, url.rsplit("/", 1)[1])


def drop_pg(url: str, name: str) -> None:
    eng = create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


if __name__ == "__main__":
    main()
