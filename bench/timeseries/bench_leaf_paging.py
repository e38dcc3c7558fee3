"""LEAF ``/api/data`` keyset paging depth check (in-process service calls, embedded SQLite).

10 series × 100,000 one-minute points (1,000,000 rows), pages of 1,000 rows walked through the cursor
to the end: does the last page cost what the first does?

    .venv/bin/python bench/timeseries/bench_leaf_paging.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.builders import World  # noqa: E402

from sensorhub.auth.resolve import build_principal  # noqa: E402
from sensorhub.compat.leaf.routes import data_page  # noqa: E402
from sensorhub.config import Settings  # noqa: E402
from sensorhub.context import AppContext  # noqa: E402
from sensorhub.db import Database  # noqa: E402
from sensorhub.entities.models import Entity  # noqa: E402
from sensorhub.migrate import upgrade  # noqa: E402
from sensorhub.timeseries import service  # noqa: E402
from sensorhub.tokens.models import Credential  # noqa: E402

SERIES, POINTS, PAGE = 10, 100_000, 1000


def main() -> None:
    d = Path(tempfile.mkdtemp(prefix="sh-leaf-"))
    try:
        st = Settings(data_dir=d, env="test")
        upgrade(Database(st))
        ctx = AppContext.build(st)
        w = World(ctx)
        w.org("acme")
        w.user("a@example.com", "acme", "owner")
        w.pat("a@example.com")
        for i in range(SERIES):
            w.entity("acme", "main", f"R{i}")
        ts = 1_700_000_000_000_000 + np.arange(POINTS, dtype=np.int64) * 60_000_000
        with ctx.db.transaction() as s:
            for e in s.scalars(select(Entity)):
                sid = service.get_or_create_series(s, e, "temperature", None).id
                service.bulk_insert(s, sid, ts, np.random.default_rng(e.pk).normal(size=POINTS))
        with ctx.db.session() as s:
            cred = s.scalars(select(Credential)).first()
            assert cred is not None
            p = build_principal(s, cred, st)
        access = p.access("timeseries")
        cursor: str | None = None
        times: list[float] = []
        rows_total = 0
        while True:
            t0 = time.perf_counter()
            with ctx.db.session() as s:
                rows, cursor = data_page(
                    s,
                    p,
                    access,
                    organisation=None,
                    department=None,
                    entity=None,
                    metric=None,
                    start=None,
                    end=None,
                    limit=PAGE,
                    cursor=cursor,
                )
            times.append(time.perf_counter() - t0)
            rows_total += len(rows)
            if cursor is None:
                break
        print(
            f"{len(times)} pages, {rows_total:,} rows; median of the first 10 pages "
            f"{np.median(times[:10]) * 1000:.1f} ms, of the last 10 {np.median(times[-10:]) * 1000:.1f} ms"
        )
        ctx.db.dispose()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
