"""NGSI-LD paging depth: does a deep page cost the same as the first one?

Loads 100,000 entities into one organisation, starts a real `sensorhub serve` (one worker) and measures,
over HTTP with a token (`limit=100`):

- the first page;
- a deep page by offset (`offset=99900`, no cursor: the offset is resolved on the key index);
- a deep page by following `Link: rel="next"` to the end (the keyset cursor of the last page);
- every page of a full walk through the Link chain (first vs last 10 pages);
- `count=true` with `limit=0`.

Usage: .venv/bin/python bench/entities/bench_paging.py [--entities 100000] [--rounds 200]
       [--database-url postgresql://postgres@127.0.0.1:5432/postgres]   (a fresh database is created)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common
import _common

TYPES = ("Device", "AgriParcel", "WeatherObserved", "Valve")


def load(env: dict[str, str], n: int) -> str:
    """Org, owner, token via the CLI; entities straight into the table (the import service would do the
    same rows, only slower)."""
    _common.create_owner(env)
    token = _common.create_token(env, "entities")

    from sensorhub.config import Settings
    from sensorhub.db import Database
    from sensorhub.entities.models import Entity, new_asset_id

    os.environ.update(env)
    db = Database(Settings())
    with db.engine.begin() as c:
        org_id, ws_id = c.execute(text("SELECT org_id, id FROM workspaces")).one()
        rnd = random.Random(1)
        rows = []
        for i in range(n):
            t = TYPES[i % len(TYPES)]
            rows.append(
                {
                    "entity_id": f"urn:ngsi-ld:{t}:e{i:06d}",
                    "asset_id": new_asset_id(),
                    "org_id": org_id,
                    "workspace_id": ws_id,
                    "type": t,
                    "name": f"entity {i}",
                    "attrs": {
                        "name": {"type": "Property", "value": f"entity {i}"},
                        "temperature": {
                            "type": "Property",
                            "value": round(rnd.uniform(-10, 35), 2),
                            "unitCode": "CEL",
                            "observedAt": "2026-01-01T00:00:00Z",
                        },
                        "status": {"type": "Property", "value": rnd.choice(["ok", "low-battery", "offline"])},
                    },
                    "location": {
                        "type": "Point",
                        "coordinates": [round(rnd.uniform(5, 10), 5), round(rnd.uniform(45, 48), 5)],
                    },
                }
            )
            if len(rows) == 10_000:
                c.execute(insert(Entity), rows)
                rows = []
        if rows:
            c.execute(insert(Entity), rows)
        if db.dialect == "postgresql":
            c.execute(text("ANALYZE entities"))
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        if db.dialect == "postgresql":
            c.execute(text("VACUUM ANALYZE entities"))
        else:
            c.execute(text("ANALYZE"))
    db.dispose()
    return token


def interleaved(client: httpx.Client, urls: dict[str, str], rounds: int) -> dict[str, tuple[float, float]]:
    """Median and p95 latency (ms) of each URL, requested round-robin so that every URL sees the same
    machine load (other processes on a 2-core box make back-to-back series unfair)."""
    times: dict[str, list[float]] = {k: [] for k in urls}
    for u in urls.values():
        assert client.get(u).status_code == 200
    for _ in range(rounds):
        for k, u in urls.items():
            t0 = time.perf_counter()
            r = client.get(u)
            times[k].append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text
    out = {}
    for k, ts in times.items():
        ts.sort()
        out[k] = (statistics.median(ts), ts[max(0, int(len(ts) * 0.95) - 1)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--database-url", default=None, help="PostgreSQL admin URL; a fresh database is created")
    ap.add_argument("--order-rounds", type=int, default=10, help="rounds of the orderBy-by-value group")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="shub-bench-paging-"))
    env = dict(os.environ, SENSORHUB_DATA_DIR=str(data), SENSORHUB_RATE_LIMIT_PER_MINUTE="100000000")
    dbname = None
    if args.database_url:
        dbname = f"shub_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(
            args.database_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{dbname}"'))
        env["SENSORHUB_DATABASE_URL"] = args.database_url.rsplit("/", 1)[0] + "/" + dbname
        env.setdefault("SENSORHUB_SECRET_KEY", uuid.uuid4().hex * 2)  # required with PostgreSQL
    backend = "postgresql" if dbname else "sqlite"
    t0 = time.perf_counter()
    token = load(env, args.entities)
    print(f"loaded {args.entities:,} entities on {backend} in {time.perf_counter() - t0:.1f}s", flush=True)

    port = _common.free_port()
    proc = _common.start_sensorhub(env, port, "--no-migrate")
    base = f"http://127.0.0.1:{port}/ngsi-ld/v1/entities"
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            for _ in range(100):
                try:
                    client.get(base + "?local=true&limit=1")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            n = args.entities
            first = f"{base}?local=true&limit=100"
            # Before any walk: offsets are resolved by an index-only skip.
            cold = interleaved(
                client,
                {
                    "first page (limit=100)": first,
                    f"deep page by offset={n - 100}, cold (index-only skip)": f"{base}?local=true&limit=100&offset={n - 100}",
                    f"type=Valve, offset={n // 4 - 100}, cold": f"{base}?type=Valve&limit=100&offset={n // 4 - 100}",
                    "count=true&limit=0": f"{base}?local=true&limit=0&count=true",
                },
                args.rounds,
            )
            # Follow the Link chain to the end, timing every page.
            walk: list[float] = []
            url: str | None = first
            seen = 0
            last_url = ""
            while url:
                t = time.perf_counter()
                r = client.get(url)
                walk.append((time.perf_counter() - t) * 1000)
                seen += len(r.json())
                last_url = url
                url = r.links.get("next", {}).get("url")
            assert seen == n, seen
            warm = interleaved(
                client,
                {
                    "first page (limit=100)": first,
                    "last page via Link rel=next (keyset cursor)": last_url,
                    f"deep page by offset={n - 100}, after a walk (offset→key)": f"{base}?local=true&limit=100&offset={n - 100}",
                },
                args.rounds,
            )
            # orderBy=id;desc: the key index read backwards; walk it to its last page.
            url, desc_last = f"{base}?local=true&limit=100&orderBy=id;desc", ""
            while url:
                desc_last = url
                url = client.get(url).links.get("next", {}).get("url")
            by_id = interleaved(
                client,
                {
                    "first page (limit=100)": first,
                    "orderBy=id;desc, first page": f"{base}?local=true&limit=100&orderBy=id;desc",
                    "orderBy=id;desc, last page via Link": desc_last,
                },
                args.rounds,
            )
            # orderBy on a value: every match is read and sorted per page.
            by_value_first = f"{base}?local=true&limit=100&orderBy=temperature;desc,name"
            by_value_next = client.get(by_value_first).links["next"]["url"]
            by_value = interleaved(
                client,
                {
                    "first page (limit=100)": first,
                    "orderBy=temperature;desc,name, first page": by_value_first,
                    "orderBy=temperature;desc,name, page 2 via Link": by_value_next,
                    "type=Valve&orderBy=status,name (25% of the entities)": f"{base}?type=Valve&limit=100&orderBy=status,name",
                    "orderBy=name&collation=und": f"{base}?local=true&limit=100&orderBy=name&collation=und",
                },
                args.order_rounds,
            )
    finally:
        proc.terminate()
        proc.wait(10)
        if dbname:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))

    print(
        f"\nNGSI-LD paging, {n:,} entities, {backend}, one worker, HTTP on loopback, {args.rounds} rounds\n"
    )
    print("| request | median ms | p95 ms | vs first page |")
    print("|---|---:|---:|---:|")
    for group in (cold, warm, by_id, by_value):
        base_med = group["first page (limit=100)"][0]
        for label, (med, p95) in group.items():
            print(f"| {label} | {med:.2f} | {p95:.2f} | {med / base_med:.2f}x |")
    k = 10
    print(
        f"\nfull Link walk: {len(walk)} pages in {sum(walk) / 1000:.1f}s; median of the first {k} pages "
        f"{statistics.median(walk[:k]):.2f} ms, of the last {k} {statistics.median(walk[-k:]):.2f} ms"
    )


if __name__ == "__main__":
    main()
