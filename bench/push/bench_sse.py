"""Live stream latency: from an accepted backfill to the value received on `GET /api/stream`.

Starts a real `sensorhub serve` (one worker, the embedded worker off), opens 1 and then 100 SSE streams
for one device (one token per 5 streams: the per-credential limit), and backfills one point at a time
over HTTP with an ingest key. For each backfill it records:

- the backfill's own round trip (request sent → 200 received): the peer every latency is compared with;
- for every open stream, request sent → the value's SSE message received (so it includes the ingest:
  the value is committed before the 200 is sent, and the stream can see it before the client reads
  the 200).

Reported: p50/p99 of both, and their ratio. The clients run in this process on one asyncio loop
(httpx + httpx-sse), the server in its own process.

Usage: .venv/bin/python bench/push/bench_sse.py [--rounds 200]
       [--database-url postgresql://postgres@127.0.0.1:5432/postgres]   (a fresh database is created)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from httpx_sse import aconnect_sse
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common
import _common

DEV = "urn:ngsi-ld:Device:bench-1"


def setup(env: dict[str, str], readers: int) -> tuple[list[str], str]:
    _common.sensorhub(env, "init")
    _common.create_owner(env)
    ent = Path(env["SENSORHUB_DATA_DIR"]) / "device.json"
    ent.write_text(json.dumps([{"id": DEV, "type": "Device"}]))
    _common.sensorhub(env, "entities", "import", str(ent), "--org", "bench", "--workspace", "main")
    tokens = [_common.create_token(env, "telemetry,ingest", name=f"r{i}") for i in range(readers)]
    return tokens, tokens[0]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def wait_open(tasks: list[asyncio.Task[None]], ready: list[asyncio.Event]) -> None:
    t_open = time.perf_counter()
    while not all(r.is_set() for r in ready):
        failed = [t for t in tasks if t.done()]
        if failed:
            raise RuntimeError(f"a stream failed to open: {failed[0].exception()!r}")
        if time.perf_counter() - t_open > 120:
            raise TimeoutError(f"{sum(r.is_set() for r in ready)} of {len(ready)} streams opened in 120 s")
        await asyncio.sleep(0.05)


async def arrivals(got: list[asyncio.Queue[tuple[float, float]]], value: float) -> list[float]:
    """When each stream received ``value`` (perf_counter)."""
    out = []
    for i, q in enumerate(got):
        while True:
            try:
                t, v = await asyncio.wait_for(q.get(), 30)
            except TimeoutError:
                raise TimeoutError(f"stream {i} did not receive {value} in 30 s") from None
            if v == value:
                out.append(t)
                break
    return out


async def run(base: str, tokens: list[str], ingest: str, streams: int, rounds: int) -> dict[str, float]:
    got: list[asyncio.Queue[tuple[float, float]]] = [asyncio.Queue() for _ in range(streams)]
    ready = [asyncio.Event() for _ in range(streams)]
    limits = httpx.Limits(max_connections=streams + 10)

    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

        async def listen(i: int) -> None:
            headers = {"Authorization": f"Bearer {tokens[i // 5]}"}
            async with aconnect_sse(
                client, "GET", "/api/stream", params={"entity": DEV}, headers=headers
            ) as es:
                async for m in es.aiter_sse():
                    if m.event == "ready":
                        ready[i].set()
                    elif m.event == "message":
                        got[i].put_nowait((time.perf_counter(), json.loads(m.data)["value"]))

        tasks = [asyncio.create_task(listen(i)) for i in range(streams)]
        await wait_open(tasks, ready)
        rtt: list[float] = []
        lat: list[float] = []
        h = {"Authorization": f"Bearer {ingest}"}
        for n in range(rounds):
            value = float(n)
            # A new timestamp every round and run (a repeated one is a duplicate: stored once, no event).
            ts = f"2026-01-{1 + streams % 28:02d}T00:{n // 60 % 60:02d}:{n % 60:02d}Z"
            body = [{"timestamp": ts, "data": {"temperature": value}}]
            t0 = time.perf_counter()
            r = await client.post(f"/v3/devices/{DEV}/backfill", json=body, headers=h)
            rtt.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
            lat.extend(t - t0 for t in await arrivals(got, value))
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "rtt_p50": pct(rtt, 50) * 1000,
        "rtt_p99": pct(rtt, 99) * 1000,
        "sse_p50": pct(lat, 50) * 1000,
        "sse_p99": pct(lat, 99) * 1000,
        "sse_mean": statistics.fmean(lat) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--database-url", default=None, help="PostgreSQL admin URL; a fresh database is created")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="shub-bench-sse-"))
    env = dict(
        os.environ,
        SENSORHUB_DATA_DIR=str(data),
        SENSORHUB_RATE_LIMIT_PER_MINUTE="100000000",
        SENSORHUB_EMBEDDED_WORKER="0",
        SENSORHUB_LIVE_MAX_STREAMS_PER_CREDENTIAL="5",
    )
    dbname = None
    if args.database_url:
        dbname = f"shub_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(
            args.database_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{dbname}"'))
        env["SENSORHUB_DATABASE_URL"] = args.database_url.rsplit("/", 1)[0] + "/" + dbname
        env.setdefault("SENSORHUB_SECRET_KEY", uuid.uuid4().hex * 2)
    tokens, ingest = setup(env, 21)
    port = _common.free_port()
    proc = _common.start_sensorhub(env, port, "--no-migrate", log=data / "server.log")
    base = f"http://127.0.0.1:{port}"
    try:
        _common.wait_http(base + "/healthz")
        backend = "postgresql" if dbname else "sqlite"
        print(f"| streams | backfill round trip p50 / p99 | SSE latency p50 / p99 | p50 ratio ({backend}) |")
        print("|---|---|---|---|")
        for streams in (1, 100):
            # Fresh tokens per run: a closed stream frees its slot only once the server notices.
            readers = tokens[20:] if streams == 1 else tokens[:20]
            r = asyncio.run(run(base, readers, ingest, streams, args.rounds))
            print(
                f"| {streams} | {r['rtt_p50']:.1f} / {r['rtt_p99']:.1f} ms | {r['sse_p50']:.1f} / "
                f"{r['sse_p99']:.1f} ms | {r['sse_p50'] / r['rtt_p50']:.2f}x |",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait(10)
        if dbname and args.database_url:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
