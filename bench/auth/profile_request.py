"""In-process profile of one token route: direct ASGI calls into ``create_app()``, no network, no server.

Builds a scratch SQLite data dir with a user and a PAT (the test builders' services), then calls the app
``--n`` times with the same ``GET`` and prints either the µs per call (``--time``, interleaving the
routes given) or a cProfile of the loop (default, sorted by ``--sort``). The access log is not in this
loop (uvicorn writes it); ``bench_request_cost.py`` measures it with a real server.

Usage: .venv/bin/python bench/auth/profile_request.py [--path /api/managements] [--n 5000] [--time]
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "tests"))

from builders import World  # noqa: E402
from sensorhub.app import create_app  # noqa: E402
from sensorhub.config import Settings  # noqa: E402
from sensorhub.context import AppContext  # noqa: E402
from sensorhub.migrate import upgrade  # noqa: E402


def build() -> tuple[Any, str]:
    data = Path(tempfile.mkdtemp(prefix="shub-prof-"))
    settings = Settings(data_dir=data, rate_limit_per_minute=100_000_000, mqtt_listen="")
    ctx = AppContext.build(settings)
    upgrade(ctx.db)
    w = World(ctx)
    with ctx.db.transaction() as s:
        from sensorhub.accounts import service as accounts

        accounts.create_org(s, "bench", "Bench")
    w.user("b@example.com", "bench", "owner")
    return create_app(settings, ctx), w.pat("b@example.com", ["timeseries"])


async def call(app: Any, path: str, token: str | None) -> int:
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "headers": headers, "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg: dict[str, Any]) -> None:
        nonlocal status
        if msg["type"] == "http.response.start":
            status = msg["status"]

    await app(scope, receive, send)
    return status


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--path", action="append")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--sort", default="cumulative")
    args = ap.parse_args()
    paths = args.path or ["/api/managements"]
    app, token = build()
    async with app.router.lifespan_context(app):
        for p in paths:
            tok = None if p == "/healthz" else token
            assert await call(app, p, tok) == 200, p
            for _ in range(200):
                await call(app, p, tok)
        if args.time:
            best = {p: float("inf") for p in paths}
            for _ in range(5):
                for p in paths:
                    tok = None if p == "/healthz" else token
                    t0 = time.process_time()
                    for _ in range(args.n):
                        await call(app, p, tok)
                    best[p] = min(best[p], (time.process_time() - t0) / args.n * 1e6)
            for p in paths:
                print(f"{p}: {best[p]:.1f} µs CPU per call (best of 5 × {args.n})")
            return
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.n):
            await call(app, paths[0], None if paths[0] == "/healthz" else token)
        prof.disable()
        pstats.Stats(prof).sort_stats(args.sort).print_stats(45)


if __name__ == "__main__":
    asyncio.run(main())
