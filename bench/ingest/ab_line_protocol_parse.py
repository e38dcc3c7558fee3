"""Line protocol in process, A/B interleaved: line by line (``lineproto.parse_lines``, every line through
``line-protocol-parser``) against the column-wise path (``lineproto.parse``), each followed by the same
``check_targets`` read transaction, ``store_batches`` write transaction and commit as the
``/api/v2/write`` route. Alternate 5,000-line bodies of a year of 1-minute data of one device go to each
path, so both see the same machine load; prints CPU µs per point for each, and the phases of the
column-wise path.

    .venv/bin/python bench/ingest/ab_line_protocol_parse.py              # SQLite (scratch data dir)
    .venv/bin/python bench/ingest/ab_line_protocol_parse.py --postgres   # PostgreSQL (scratch database)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.builders import World

from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.db import Database
from sensorhub.migrate import upgrade
from sensorhub.timeseries import ingest, lineproto

N = 5_000
DEVICE = "urn:ngsi-ld:Device:dev-0"


def bodies(count: int, start_ns: int) -> list[bytes]:
    ts = start_ns + np.arange(count * N, dtype=np.int64) * 60_000_000_000
    vals = np.round(15 + np.random.default_rng(1).normal(0, 1, count * N), 3).tolist()
    return [
        "\n".join(f"temperature,device={DEVICE} value={vals[i]} {ts[i]}" for i in range(a, a + N)).encode()
        for a in range(0, count * N, N)
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--bodies", type=int, default=40)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="sh-ab-lp-"))
    if args.postgres:
        import psycopg

        name = f"sensorhub_ab_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg_admin, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        url = args.pg_admin.rsplit("/", 1)[0] + "/" + name
        settings = Settings(data_dir=d, database_url=url, env="test", secret_key=uuid.uuid4().hex * 2)
    else:
        settings = Settings(data_dir=d, env="test")
    db = Database(settings)
    upgrade(db)
    db.dispose()
    ctx = AppContext.build(settings)
    w = World(ctx)
    w.org("acme")
    w.user("a@bench.test", "acme", "member")
    w.entity("acme", "main", DEVICE)
    principal: Any = asyncio.run(ctx.auth.principal_of(w.pat("a@bench.test")))
    access = principal.access("ingest")
    lim = ingest.Limits()
    paths = {
        "line by line (parse_lines)": lambda b: lineproto.parse_lines(b.decode(), "ns", 0, lim),
        "column-wise (parse)": lambda b: lineproto.parse(b, "ns", 0, lim),
    }
    phases = {"parse": 0.0, "check": 0.0, "store": 0.0, "commit": 0.0}

    def work(b: bytes, parse: Any, timed: bool) -> None:
        pt = time.process_time
        t0 = pt()
        batches = [ingest.DeviceBatch(x.device, f"line {x.first_line}", x.prepared) for x in parse(b)]
        t1 = pt()
        with ctx.db.session() as s:
            ingest.check_targets(s, access, batches, lim)
        t2 = pt()
        tx = ctx.db.transaction()
        s = tx.__enter__()
        ingest.store_batches(s, access, batches, lim, "ignore")
        s.flush()
        t3 = pt()
        tx.__exit__(None, None, None)
        if timed:
            for k, v in zip(phases, (t1 - t0, t2 - t1, t3 - t2, pt() - t3), strict=True):
                phases[k] += v

    names = list(paths)
    data = bodies(args.bodies + 2, 1_735_689_600_000_000_000)
    work(data[0], paths[names[0]], False)
    work(data[1], paths[names[1]], False)  # warm-up (imports, caches)
    cpu = dict.fromkeys(names, 0.0)
    for i, b in enumerate(data[2:]):
        name = names[i % 2]
        t = time.process_time()
        work(b, paths[name], name == names[1])
        cpu[name] += time.process_time() - t
    per = args.bodies // 2 * N
    backend = "postgresql" if args.postgres else "sqlite"
    for name in names:
        print(
            f"{backend} {name}: {cpu[name] / per * 1e6:.2f} µs CPU per point (parse + check + store + commit)"
        )
    print(
        f"{backend} column-wise phases, µs CPU per point:",
        {k: round(v / per * 1e6, 2) for k, v in phases.items()},
    )
    ctx.db.dispose()


if __name__ == "__main__":
    main()
