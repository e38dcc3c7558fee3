"""The raw-vs-aggregated decision on a long range, on PostgreSQL partitions without statistics.

A downsampled read first has to know whether the range holds more points than ``resolution``. It used
to find out with a raw probe (``SELECT … LIMIT resolution + 1``); on freshly loaded monthly partitions
without statistics PostgreSQL may plan that probe as a scan of every partition. Now the day rollup
decides when it can (``query._surely_more_than``). This script loads years of 1-minute data into a
scratch database, never runs ``ANALYZE``, and times the same ``read_series`` both ways, interleaved,
then once more after ``ANALYZE``. In-process (no HTTP), so it measures the read alone.

    .venv/bin/python bench/timeseries/bench_plan.py --years 3
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text

from sensorhub.config import Settings
from sensorhub.db import Database
from sensorhub.kit.time import to_us
from sensorhub.migrate import upgrade
from sensorhub.timeseries import query, service
from sensorhub.timeseries.backends import store_for

MINUTE_US = 60_000_000


def _load(db: Database, years: int) -> tuple[int, int, int]:
    from sensorhub.accounts.models import Organisation, Workspace
    from sensorhub.entities.models import Entity

    with db.transaction() as s:
        org = Organisation(slug="bench", name="bench")
        s.add(org)
        s.flush()
        ws = Workspace(org_id=org.id, slug="main", name="main")
        s.add(ws)
        s.flush()
        e = Entity(org_id=org.id, workspace_id=ws.id, entity_id="urn:ngsi-ld:Device:plan", type="Device")
        s.add(e)
        s.flush()
        sid = service.get_or_create_series(s, e, "temp", "CEL").id
    t0 = to_us(datetime(2023, 1, 1, tzinfo=UTC))
    n = years * 525_600
    chunk = 200_000
    for i in range(0, n, chunk):
        ts = t0 + np.arange(i, min(n, i + chunk), dtype=np.int64) * MINUTE_US
        with db.transaction() as s:
            service.bulk_insert(s, sid, ts, np.sin(ts / 3.6e9))
    return sid, t0, t0 + n * MINUTE_US


def _time(db: Database, sid: int, lo: int, hi: int, shortcut: bool) -> float:
    saved = query._surely_more_than
    if not shortcut:
        query._surely_more_than = lambda *a: False  # type: ignore[assignment]
    try:
        with db.session() as s:
            t = time.perf_counter()
            r = query.read_series(store_for(s), [(sid, [(lo, hi)], "avg")], lo, hi, 200)
            took = time.perf_counter() - t
        assert r.bucket_us is not None and len(r.timestamps) <= 200
        return took * 1000
    finally:
        query._surely_more_than = saved


def _round(db: Database, sid: int, lo: int, hi: int, rounds: int) -> dict[str, Any]:
    fast: list[float] = []
    plain: list[float] = []
    for _ in range(rounds):
        fast.append(_time(db, sid, lo, hi, True))
        plain.append(_time(db, sid, lo, hi, False))
    f, p = statistics.median(fast), statistics.median(plain)
    return {"rollup decides ms": round(f, 2), "raw probe ms": round(p, 2), "speed-up": round(p / f, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--years", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--pg-admin", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    name = f"sensorhub_bench_plan_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = args.pg_admin.rsplit("/", 1)[0] + "/" + name
        db = Database(Settings(database_url=url, data_dir=Path("/tmp")))
        upgrade(db)
        t = time.perf_counter()
        sid, lo, hi = _load(db, args.years)
        print(f"loaded {args.years * 525_600:,} points in {time.perf_counter() - t:.1f} s (no ANALYZE)")
        print("fresh partitions:", _round(db, sid, lo, hi, args.rounds))
        with db.engine.connect() as c:
            c.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
        print("after ANALYZE:   ", _round(db, sid, lo, hi, args.rounds))
        db.dispose()
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
