"""NGSI-LD queries side by side with the same answer in plain SQL.

Loads 100,000 entities (1,000 `Farm`, 49,500 `Parcel` with a `farm` Relationship, 49,500 `Sensor` with a
`parcel` Relationship) into one organisation, starts a real `sensorhub serve` (one worker) and measures
over HTTP with a token:

- a `q` query (`type=Sensor&q=temperature>30;status=="ok"`, first 100) vs one hand-written SQL statement
  giving the same 100 ids (json_extract / ->> on the same table, same database);
- a `join=inline` query (`type=Parcel&q=area>9.5&join=inline`, first 100, each with its Farm inlined) vs
  two plain SQL statements (the parcels, then their farms by id) assembled in Python;
- the first vs the last page of a walk through all 100,000 entities following `Link: rel="next"`
  (`limit=500`, 200 pages).

Both sides' answers are compared (same ids, same linked farms) before anything is timed.

Usage: .venv/bin/python bench/ngsi_ld/bench_query.py [--rounds 30]
       [--database-url postgresql://postgres@127.0.0.1:5432/postgres]   (a fresh database is created)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common
import _common

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
_spec = importlib.util.spec_from_file_location(
    "bench_paging", ROOT / "bench" / "entities" / "bench_paging.py"
)
assert _spec and _spec.loader
paging = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paging)


def load(env: dict[str, str], n: int) -> str:
    """Owner and token through bench_paging's loader (which also writes entities), then our own rows."""
    token: str = paging.load(env, 0)
    from sensorhub.config import Settings
    from sensorhub.db import Database
    from sensorhub.entities.models import Entity, new_asset_id

    os.environ.update(env)
    db = Database(Settings())
    rnd = random.Random(7)
    farms = 1000
    with db.engine.begin() as c:
        org_id, ws_id = c.execute(text("SELECT org_id, id FROM workspaces")).one()
        rows: list[dict[str, Any]] = []

        def row(eid: str, t: str, attrs: dict[str, Any]) -> None:
            rows.append(
                {
                    "entity_id": eid,
                    "asset_id": new_asset_id(),
                    "org_id": org_id,
                    "workspace_id": ws_id,
                    "type": t,
                    "attrs": attrs,
                    "location": {"type": "Point", "coordinates": [rnd.uniform(5, 10), rnd.uniform(45, 48)]},
                }
            )
            if len(rows) == 10_000:
                c.execute(insert(Entity), rows)
                rows.clear()

        for i in range(farms):
            row(f"urn:ngsi-ld:Farm:f{i:05d}", "Farm", {"name": {"type": "Property", "value": f"farm {i}"}})
        half = (n - farms) // 2
        for i in range(half):
            row(
                f"urn:ngsi-ld:Parcel:p{i:06d}",
                "Parcel",
                {
                    "area": {"type": "Property", "value": round(rnd.uniform(0, 10), 3), "unitCode": "HAR"},
                    "crop": {"type": "Property", "value": rnd.choice(["wheat", "maize", "barley"])},
                    "farm": {
                        "type": "Relationship",
                        "object": f"urn:ngsi-ld:Farm:f{rnd.randrange(farms):05d}",
                    },
                },
            )
        for i in range(n - farms - half):
            row(
                f"urn:ngsi-ld:Sensor:s{i:06d}",
                "Sensor",
                {
                    "temperature": {
                        "type": "Property",
                        "value": round(rnd.uniform(-10, 35), 2),
                        "observedAt": "2026-01-01T00:00:00Z",
                    },
                    "status": {"type": "Property", "value": rnd.choice(["ok", "low-battery", "offline"])},
                    "parcel": {
                        "type": "Relationship",
                        "object": f"urn:ngsi-ld:Parcel:p{rnd.randrange(half):06d}",
                    },
                },
            )
        if rows:
            c.execute(insert(Entity), rows)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM ANALYZE entities" if db.dialect == "postgresql" else "ANALYZE"))
    db.dispose()
    return token


def timed(fn: Any, rounds: int) -> float:
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts)


def peers(env: dict[str, str], pg: bool) -> tuple[Any, Any]:
    """The plain-SQL peers: the same answers, straight from the database (no HTTP, no JSON rendering)."""
    from sensorhub.config import Settings
    from sensorhub.db import Database

    os.environ.update(env)
    raw = Database(Settings()).engine

    def jnum(col: str, key: str) -> str:
        return f"CAST(({col}->'{key}'->>'value') AS float)" if pg else f"json_extract({col}, '$.{key}.value')"

    def jtext(col: str, key: str, member: str = "value") -> str:
        return f"({col}->'{key}'->>'{member}')" if pg else f"json_extract({col}, '$.{key}.{member}')"

    with raw.connect() as c:
        org = c.execute(text("SELECT org_id FROM workspaces")).scalar_one()
    # The same index sensorhub uses ((org_id, type, entity_id)): a fair hand-written peer.
    q_sql = text(
        f"SELECT entity_id FROM entities WHERE org_id = '{org}' AND type = 'Sensor' AND {jnum('attrs', 'temperature')} > 30 "
        f"AND {jtext('attrs', 'status')} = 'ok' ORDER BY entity_id LIMIT 100"
    )
    parcels_sql = text(
        f"SELECT entity_id, attrs FROM entities WHERE org_id = '{org}' AND type = 'Parcel' AND {jnum('attrs', 'area')} > 9.5 "
        "ORDER BY entity_id LIMIT 100"
    )

    def plain_q() -> list[str]:
        with raw.connect() as c:
            return [r[0] for r in c.execute(q_sql)]

    def plain_join() -> dict[str, str]:
        with raw.connect() as c:
            parcels = list(c.execute(parcels_sql))
            import json

            attrs = [a if isinstance(a, dict) else json.loads(a) for _, a in parcels]
            farm_ids = sorted({a["farm"]["object"] for a in attrs})
            farms = dict(
                c.execute(
                    text(
                        f"SELECT entity_id, attrs FROM entities WHERE org_id = '{org}' AND entity_id IN :ids"
                    ).bindparams(__import__("sqlalchemy").bindparam("ids", expanding=True)),
                    {"ids": farm_ids},
                ).all()
            )
            return {
                p[0]: a["farm"]["object"]
                for p, a in zip(parcels, attrs, strict=True)
                if a["farm"]["object"] in farms
            }

    return plain_q, plain_join


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--database-url", default=None, help="PostgreSQL admin URL; a fresh database is created")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="shub-bench-ngsi-"))
    env = dict(os.environ, SENSORHUB_DATA_DIR=str(data), SENSORHUB_RATE_LIMIT_PER_MINUTE="100000000")
    if args.database_url:
        dbname = f"shub_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(
            args.database_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{dbname}"'))
        env["SENSORHUB_DATABASE_URL"] = args.database_url.rsplit("/", 1)[0] + "/" + dbname
        env.setdefault("SENSORHUB_SECRET_KEY", uuid.uuid4().hex * 2)
    pg = bool(args.database_url)
    t0 = time.perf_counter()
    token = load(env, args.entities)
    print(
        f"loaded {args.entities:,} entities on {'postgresql' if pg else 'sqlite'} in {time.perf_counter() - t0:.1f}s"
    )

    plain_q, plain_join = peers(env, pg)

    port = _common.free_port()
    proc = _common.start_sensorhub(env, port, "--no-migrate", wait=False)
    base = f"http://127.0.0.1:{port}/ngsi-ld/v1/entities"
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            for _ in range(600):  # up to a minute on a busy machine
                try:
                    client.get(base + "?local=true&limit=1")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            q_params = {"type": "Sensor", "q": 'temperature>30;status=="ok"', "limit": "100"}
            j_params = {"type": "Parcel", "q": "area>9.5", "join": "inline", "limit": "100"}

            def api_q() -> list[str]:
                r = client.get(base, params=q_params)
                assert r.status_code == 200, r.text
                return [e["id"] for e in r.json()]

            def api_join() -> dict[str, str]:
                r = client.get(base, params=j_params)
                assert r.status_code == 200, r.text
                return {e["id"]: e["farm"]["entity"]["id"] for e in r.json()}

            assert api_q() == plain_q() and len(plain_q()) == 100, "q: different answers"
            assert api_join() == plain_join() and len(plain_join()) == 100, "join: different answers"
            results = {
                "q (HTTP, sensorhub)": timed(api_q, args.rounds),
                "q (plain SQL, same DB)": timed(plain_q, args.rounds),
                "join=inline (HTTP, sensorhub)": timed(api_join, args.rounds),
                "join (plain SQL + Python, same DB)": timed(plain_join, args.rounds),
            }
            # The walk: every entity once, following Link rel=next.
            url: str | None = f"{base}?local=true&limit=500"
            pages: list[float] = []
            seen = 0
            while url:
                t1 = time.perf_counter()
                r = client.get(url)
                pages.append((time.perf_counter() - t1) * 1000)
                assert r.status_code == 200, r.text
                seen += len(r.json())
                url = r.links.get("next", {}).get("url")
            assert seen == args.entities, seen
    finally:
        proc.terminate()
        proc.wait(10)
    first, last = statistics.median(pages[:5]), statistics.median(pages[-5:])
    print(f"| measure ({'PostgreSQL' if pg else 'SQLite'}) | median ms | ratio |")
    print("|---|---:|---:|")
    print(
        f"| `q` via HTTP | {results['q (HTTP, sensorhub)']:.2f} | {results['q (HTTP, sensorhub)'] / results['q (plain SQL, same DB)']:.2f}x plain SQL |"
    )
    print(f"| `q` as one plain SQL statement | {results['q (plain SQL, same DB)']:.2f} | 1.00x |")
    print(
        f"| `join=inline` via HTTP | {results['join=inline (HTTP, sensorhub)']:.2f} | {results['join=inline (HTTP, sensorhub)'] / results['join (plain SQL + Python, same DB)']:.2f}x plain SQL |"
    )
    print(
        f"| join as two plain SQL statements + Python | {results['join (plain SQL + Python, same DB)']:.2f} | 1.00x |"
    )
    print(f"| walk: first 5 pages of 500 (median) | {first:.2f} | 1.00x |")
    print(f"| walk: last 5 of {len(pages)} pages (median) | {last:.2f} | {last / first:.2f}x first |")


if __name__ == "__main__":
    main()
