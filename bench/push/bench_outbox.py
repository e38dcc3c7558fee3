"""What the outbox costs the ingest path: backfill throughput with the outbox vs without, same run.

    PYTHONPATH=src .venv/bin/python bench/push/bench_outbox.py              # SQLite (temp dir)
    PYTHONPATH=src .venv/bin/python bench/push/bench_outbox.py --postgres   # scratch DB on 127.0.0.1:5432

The ingest service is driven in-process (``ingest.prepare`` + ``ingest.store`` in a write
transaction, as the backfill route does, without HTTP and auth, so that the difference is not lost in
their noise). "without" replaces ``record_points``/``record_state`` by no-ops; the two variants
alternate request by request on fresh devices, and the median per-request time of each is reported.
Shapes: 5,000 records x 1 attribute (bulk backfill), 5,000 x 10, and 1 record x 3 (a device's
live reading).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from sqlalchemy import create_engine, text

from sensorhub.accounts import service as accounts
from sensorhub.authz.subjects import session_access
from sensorhub.config import Settings
from sensorhub.db import Database
from sensorhub.entities.models import Entity
from sensorhub.migrate import upgrade
from sensorhub.timeseries import ingest

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def body(records: int, attrs: int, start_s: int) -> bytes:
    base = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
    recs = [
        {
            "timestamp": datetime.fromtimestamp(base + start_s + i, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": {f"a{k}": float(i + k) for k in range(attrs)},
        }
        for i in range(records)
    ]
    return orjson.dumps(recs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    db_name = None
    if args.postgres:
        db_name = f"bench_outbox_{uuid.uuid4().hex[:8]}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{db_name}"'))
        settings = Settings(
            data_dir=tmp, database_url=PG_ADMIN.rsplit("/", 1)[0] + "/" + db_name, secret_key="x" * 40
        )
    else:
        settings = Settings(data_dir=tmp)
    db = Database(settings)
    upgrade(db)
    try:
        run(db, args.repeats, "postgresql" if args.postgres else "sqlite")
    finally:
        db.dispose()
        if db_name:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE "{db_name}" WITH (FORCE)'))


def run(db: Database, repeats: int, backend: str) -> None:
    with db.transaction() as s:
        org = accounts.create_org(s, "bench", "Bench")
        ws = accounts.create_workspace(s, org, "main", "Main")
        owner = accounts.create_user(s, "bench@example.test", "bench-password-123")
        accounts.set_membership(s, owner, org, "owner")
        for i in range(4 * repeats + 4):
            s.add(
                Entity(entity_id=f"urn:dev:{i}", org_id=org.id, workspace_id=ws.id, type="Device", attrs={})
            )
    real = (ingest.record_points, ingest.record_state)
    limits = ingest.Limits()
    now = datetime.now(UTC)
    print(f"backend: {backend}")
    for records, attrs, n in ((5000, 1, repeats), (5000, 10, repeats), (1, 3, repeats * 10)):
        times: dict[str, list[float]] = {"outbox": [], "none": []}
        dev = 0
        for r in range(n + 1):
            for variant in ("outbox", "none") if r % 2 else ("none", "outbox"):
                if variant == "none":
                    ingest.record_points = lambda *a, **k: None  # type: ignore[assignment]
                    ingest.record_state = lambda *a, **k: None  # type: ignore[assignment]
                else:
                    ingest.record_points, ingest.record_state = real
                raw = body(records, attrs, r * records)
                # Bulk shapes go to fresh devices; the live reading to one device with its series made.
                ref = f"urn:dev:{dev % (4 * repeats + 4)}" if records > 1 else "urn:dev:0"
                dev += 1
                t0 = time.perf_counter()
                prepared = ingest.prepare(raw, now, limits)
                with db.transaction() as s:
                    ingest.store(s, session_access(s, owner), ref, prepared, limits)
                dt = time.perf_counter() - t0
                if r:  # the first round warms up
                    times[variant].append(dt)
        ingest.record_points, ingest.record_state = real
        med = {k: statistics.median(v) for k, v in times.items()}
        pts = records * attrs
        print(
            f"{records} records x {attrs} attrs: with outbox {pts / med['outbox']:,.0f} points/s "
            f"({med['outbox'] * 1000:.2f} ms), without {pts / med['none']:,.0f} points/s "
            f"({med['none'] * 1000:.2f} ms); outbox/none time ratio {med['outbox'] / med['none']:.3f}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
