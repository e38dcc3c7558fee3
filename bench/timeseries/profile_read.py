"""In-process cost of one downsampled read: direct ASGI calls into ``create_app()``, no network, no server.

Builds a scratch SQLite data dir with an owner, a PAT and ``--days`` of 1-minute data of one device
(backfilled through the app), then calls ``GET /api/timeseries/v2/entities/{id}/data`` over the last
``--days`` at ``resolution=200`` ``--n`` times and prints the CPU per call (``--time``: best of 5) or a
cProfile of the loop (default, sorted by ``--sort``). The read runs in the event-loop thread (not the
worker-thread hop of ``Database.read_off_loop``) so that cProfile sees it.

Usage: .venv/bin/python bench/timeseries/profile_read.py [--days 1] [--n 2000] [--time] [--sort tottime]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "tests"))

from builders import World  # noqa: E402
from sensorhub.app import create_app  # noqa: E402
from sensorhub.config import Settings  # noqa: E402
from sensorhub.context import AppContext  # noqa: E402
from sensorhub.db import Database  # noqa: E402
from sensorhub.migrate import upgrade  # noqa: E402

DEV = "urn:ngsi-ld:Device:dev-0"
T0 = 1_735_689_600  # 2025-01-01T00:00:00Z


def z(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


async def call(app: Any, method: str, path: str, qs: str, token: str, body: bytes = b"") -> tuple[int, bytes]:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"accept", b"*/*"),
        (b"authorization", f"Bearer {token}".encode()),
    ]
    if body:
        headers.append((b"content-type", b"application/json"))
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": qs.encode(), "headers": headers, "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip
    status, out = 0, bytearray()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(msg: dict[str, Any]) -> None:
        nonlocal status
        if msg["type"] == "http.response.start":
            status = msg["status"]
        elif msg["type"] == "http.response.body":
            out.extend(msg.get("body", b""))

    await app(scope, receive, send)
    return status, bytes(out)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--sort", default="cumulative")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="shub-prof-"))
    settings = Settings(data_dir=data, rate_limit_per_minute=100_000_000, mqtt_listen="")
    ctx = AppContext.build(settings)
    upgrade(ctx.db)
    world = World(ctx)
    world.org("bench")
    world.user("b@example.com", "bench", "owner")
    world.entity("bench", "main", DEV)
    token = world.pat("b@example.com", ["timeseries", "ingest"])
    app = create_app(settings, ctx)
    async with app.router.lifespan_context(app):
        points = args.days * 1440
        for a in range(0, points, 20_000):
            recs = [{"timestamp": z(T0 + 60 * i), "data": {"temperature": float(i % 97)}}
                    for i in range(a, min(points, a + 20_000))]  # fmt: skip
            status, text = await call(
                app, "POST", f"/v3/devices/{DEV}/backfill", "", token, orjson.dumps(recs)
            )
            assert status == 200, text
        qs = f"start_time={z(T0)}&end_time={z(T0 + args.days * 86400)}&resolution=200"
        path = f"/api/timeseries/v2/entities/{DEV}/data"
        status, text = await call(app, "GET", path, qs, token)
        assert status == 200, text

        async def inline(self: Database, fn: Any) -> Any:
            with self.session() as s:
                return fn(s)

        Database.read_off_loop = inline  # type: ignore[method-assign]
        for _ in range(200):
            await call(app, "GET", path, qs, token)
        if args.time:
            best = float("inf")
            for _ in range(5):
                c0 = time.process_time()
                for _ in range(args.n):
                    await call(app, "GET", path, qs, token)
                best = min(best, (time.process_time() - c0) / args.n * 1e3)
            print(f"{args.days} day(s) at resolution=200: {best:.3f} ms CPU per call (best of 5 × {args.n})")
            return
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.n):
            await call(app, "GET", path, qs, token)
        prof.disable()
        pstats.Stats(prof).sort_stats(args.sort).print_stats(45)


if __name__ == "__main__":
    asyncio.run(main())
