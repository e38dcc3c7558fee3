"""Operating real servers: two workers on PostgreSQL + Redis, graceful shutdown that finishes in-flight
ingest, and a crash (SIGKILL) in the middle of a bulk backfill that loses or splits nothing."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from sensorhub.config import Settings
from sensorhub.context import AppContext
from tests.builders import World
from tests.production.conftest import Server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DEVICE = "urn:ngsi-ld:Device:backfill-1"
BASE_US = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)


def _seed(url: str, tmp: Path) -> tuple[str, str]:
    """An organisation with a device and an org API key (ingest scope); returns (key, member token)."""
    ctx = AppContext.build(Settings(database_url=url, data_dir=tmp / "seed", env="test"))
    w = World(ctx)
    w.org("acme")
    w.user("ana@example.com", "acme", "member")
    w.entity("acme", "main", DEVICE)
    key = w.api_key("acme", ["ingest", "entities"], name="ingest")
    token = w.pat("ana@example.com", ["entities"])
    ctx.db.dispose()
    return key, token


def _records(block: int, n: int) -> list[dict[str, object]]:
    """``n`` points in a time block of its own (1 s apart), so each request's rows can be counted."""
    start = BASE_US + block * n * 1_000_000
    return [
        {
            "timestamp": datetime.fromtimestamp((start + i * 1_000_000) / 1e6, UTC)
            .isoformat()
            .replace("+00:00", "Z"),
            "data": {"level": float(i)},
        }
        for i in range(n)
    ]


def _stored(url: str, block: int, n: int) -> int:
    lo = BASE_US + block * n * 1_000_000
    eng = create_engine(url)
    with eng.connect() as c:
        got = c.execute(
            text("SELECT count(*) FROM measurements WHERE ts >= :lo AND ts < :hi"),
            {"lo": lo, "hi": lo + n * 1_000_000},
        ).scalar_one()
    eng.dispose()
    return int(got)


@pytest.fixture
def pg_with_device(fresh_pg: Callable[[bool], str], tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    url = fresh_pg(True)
    key, token = _seed(url, tmp_path)
    yield url, key, token


@pytest.mark.redis
def test_two_workers_on_postgresql_and_redis(
    pg_with_device: tuple[str, str, str], start_server: Callable[..., Server], redis_url: str, tmp_path: Path
) -> None:
    url, key, token = pg_with_device
    prom = tmp_path / "prom"
    prom.mkdir()
    srv = start_server(
        {
            "SENSORHUB_DATABASE_URL": url,
            "SENSORHUB_REDIS_URL": redis_url,
            "SENSORHUB_REDIS_PREFIX": f"sensorhub-test-{uuid.uuid4().hex[:10]}:",
            "PROMETHEUS_MULTIPROC_DIR": str(prom),
        },
        ["--workers", "2", "--json-logs"],
    )
    deadline = time.monotonic() + 10
    while srv.output().count("Application startup complete") < 2:
        assert time.monotonic() < deadline, srv.output()
        time.sleep(0.05)
    auth = {"Authorization": f"Bearer {token}"}
    # New connections land on either worker; every one of them serves and reports Redis healthy.
    with httpx.Client(base_url=srv.url, limits=httpx.Limits(max_keepalive_connections=0), timeout=10) as c:
        for i in range(40):
            assert (
                c.get("/api/tokens/self", headers={**auth, "X-Request-Id": f"probe-{i}"}).status_code == 200
            )
            ready = c.get("/readyz").json()
            assert ready["checks"]["redis"]["status"] == "ok", ready
        r = c.post(f"/v3/devices/{DEVICE}/backfill", headers={"x-api-key": key}, json=_records(0, 100))
        assert r.status_code == 200 and r.json()["accepted"] == 100, r.text
        # Multiprocess metrics: one scrape sums both workers.
        body = c.get("/metrics").text
        served = sum(
            float(v)
            for v in re.findall(
                r'^sensorhub_http_requests_total\{method="GET",route="/api/tokens/self",status="200"\} (\S+)$',
                body,
                re.M,
            )
        )
        assert served == 40, body[:2000]
    # JSON logs from the workers, with request ids, and no token anywhere.
    out = srv.output()
    pids = set(re.findall(r"Started server process \[(\d+)\]", out))
    assert len(pids) >= 2, out[-3000:]
    log_lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert any(x.get("request_id") == "probe-7" for x in log_lines), out[-3000:]
    assert token not in out and key not in out


def test_sigterm_finishes_the_ingest_request_in_flight(
    pg_with_device: tuple[str, str, str], start_server: Callable[..., Server]
) -> None:
    url, key, _ = pg_with_device
    srv = start_server({"SENSORHUB_DATABASE_URL": url})
    body = json.dumps(_records(1, 5000)).encode()
    chunks = [body[i : i + len(body) // 20 + 1] for i in range(0, len(body), len(body) // 20 + 1)]

    def slow_body() -> Iterator[bytes]:
        for ch in chunks:  # about 2 s on the wire
            time.sleep(0.1)
            yield ch

    timer = threading.Timer(0.5, srv.proc.send_signal, (signal.SIGTERM,))
    timer.start()
    t0 = time.monotonic()
    r = httpx.post(
        f"{srv.url}/v3/devices/{DEVICE}/backfill",
        headers={"x-api-key": key, "content-type": "application/json"},
        content=slow_body(),
        timeout=60,
    )
    timer.join()
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 5000, "duplicates": 0}
    assert time.monotonic() - t0 > 1.5  # the body really was still arriving when SIGTERM came
    # uvicorn re-raises the signal once it has shut down cleanly (systemd counts SIGTERM as a clean exit).
    assert srv.proc.wait(30) in (0, -signal.SIGTERM)
    out = srv.output()
    assert (
        out.index("Shutting down")
        < out.index("Waiting for connections to close")
        < out.index("Finished server process")
    ), out
    assert _stored(url, 1, 5000) == 5000


def test_sigkill_during_bulk_backfill_keeps_requests_whole(
    pg_with_device: tuple[str, str, str], start_server: Callable[..., Server]
) -> None:
    url, key, _ = pg_with_device
    srv = start_server({"SENSORHUB_DATABASE_URL": url})
    n = 2000
    acked: set[int] = set()
    sent: set[int] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def writer(k: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=30, headers={"x-api-key": key}) as c:
            j = 0
            while not stop.is_set():
                block = 10 + k * 10_000 + j
                j += 1
                with lock:
                    sent.add(block)
                try:
                    r = c.post(f"/v3/devices/{DEVICE}/backfill", json=_records(block, n))
                except httpx.HTTPError:
                    return
                assert r.status_code == 200, r.text
                assert r.json() == {"accepted": n, "duplicates": 0}
                with lock:
                    acked.add(block)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 8:
        assert time.monotonic() < deadline, srv.output()
        time.sleep(0.01)
    srv.kill_group()  # SIGKILL: no shutdown, no rollback, mid-request
    stop.set()
    for t in threads:
        t.join(30)
    in_flight = sent - acked
    counts = {b: _stored(url, b, n) for b in sorted(sent)}
    print(
        f"\nSIGKILL with {len(acked)} acknowledged and {len(in_flight)} in-flight requests of {n} points; "
        f"in-flight stored whole: {sum(1 for b in in_flight if counts[b] == n)}, not at all: "
        f"{sum(1 for b in in_flight if counts[b] == 0)}"
    )
    assert in_flight, "no request was in flight at the kill"
    assert all(counts[b] == n for b in acked), {b: counts[b] for b in acked if counts[b] != n}
    assert all(counts[b] in (0, n) for b in in_flight), {b: counts[b] for b in in_flight}
    # Rollups were written in the same transactions: they agree with the raw rows.
    eng = create_engine(url)
    with eng.connect() as c:
        raw = c.execute(text("SELECT count(*) FROM measurements")).scalar_one()
        for table in ("rollup_1m", "rollup_1h", "rollup_1d"):
            assert c.execute(text(f'SELECT coalesce(sum("count"), 0) FROM {table}')).scalar_one() == raw
    eng.dispose()
