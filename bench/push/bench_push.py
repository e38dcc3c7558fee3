"""Push benchmarks: end-to-end latency, delivery throughput of one worker, ingest cost of rules.

    PYTHONPATH=src .venv/bin/python bench/push/bench_push.py            # embedded SQLite, temp dir

One process, as ``sensorhub serve`` runs in the embedded mode: the app under uvicorn (a thread) with its
background jobs (the delivery worker) and a fast local webhook receiver (``ThreadingHTTPServer``).

(a) latency: one backfill request of one point → the signed webhook message(s) at the receiver;
    p50/p99 over 100 requests with 1 forward-all rule, and over 5 with 100 (100 messages per point:
    the time until the last one arrived);
(b) delivery throughput of one worker: 1,000 events queued with the worker stopped (200 devices ×
    5 requests of one point), then one worker delivers them; events/s and messages/s;
(c) backfill throughput (5,000 records × 1 attribute over HTTP, 20 requests) with 0, 10 and 100 active
    threshold rules on that attribute, the worker running beside ingest.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson

from sensorhub.accounts import service as accounts
from sensorhub.accounts.models import Organisation, User
from sensorhub.app import create_app
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.db import Database
from sensorhub.entities.models import Entity
from sensorhub.migrate import upgrade
from sensorhub.push import connectors
from sensorhub.push.delivery import DeliveryWorker
from sensorhub.push.models import Delivery, Rule
from sensorhub.tokens import service as tokens


class Sink:
    def __init__(self) -> None:
        self.count = 0
        self.cond = threading.Condition()
        self.times: list[float] = []
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with sink.cond:
                    sink.count += 1
                    sink.cond.notify_all()

            def log_message(self, *a: Any) -> None:
                pass

        return H

    def wait(self, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.count < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.count}/{n} messages")
                self.cond.wait(left)


def setup(settings: Settings, devices: int) -> tuple[str, Organisation, User]:
    db = Database(settings)
    upgrade(db)
    with db.transaction() as s:
        org = accounts.create_org(s, "bench", "Bench")
        ws = accounts.create_workspace(s, org, "main", "Main")
        user = accounts.create_user(s, "bench@example.test", "bench-password-123")
        accounts.set_membership(s, user, org, "owner")
        for i in range(devices):
            s.add(
                Entity(entity_id=f"urn:dev:{i}", org_id=org.id, workspace_id=ws.id, type="Device", attrs={})
            )
        key = tokens.create_api_key(
            s,
            org,
            name="k",
            scopes=["ingest"],
            workspaces=[],
            expiry=tokens.ExpirySpec(),
            restrictions=tokens.RestrictionSpec(),
            settings=settings,
            created_by=None,
        ).token
        s.expunge_all()
    db.dispose()
    return key, org, user


def add_rules(
    ctx: AppContext, org: Organisation, user: User, url: str, n: int, condition: dict[str, Any] | None
) -> None:
    with ctx.db.transaction() as s:
        s.query(Rule).delete()
        c, _ = connectors.create_connector(
            s,
            org,
            user,
            kind="webhook",
            name="sink",
            config={"url": url},
            secrets={},
            enabled=True,
            settings=ctx.settings,
        )
        for i in range(n):
            connectors.create_rule(
                s,
                org,
                user,
                name=f"r{i}",
                workspace=None,
                entity_type=None,
                condition=condition,
                actions=[{"connector_id": c.id}],
                cooldown_s=0,
                notify_resolved=False,
                enabled=True,
            )


def serve(settings: Settings) -> tuple[Any, str, AppContext]:
    import socket

    import uvicorn

    ctx = AppContext.build(settings)
    app = create_app(settings, ctx)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.02)
    return srv, f"http://127.0.0.1:{port}", ctx


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def latency(http: httpx.Client, key: str, sink: Sink, per_point: int, n: int = 100) -> list[float]:
    out = []
    for i in range(n):
        before = sink.count
        body = {
            "timestamp": datetime.fromtimestamp(1.7e9 + i, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": {"t": float(i)},
        }
        t0 = time.perf_counter()
        r = http.post(
            "/v3/devices/urn:dev:0/backfill",
            content=orjson.dumps(body),
            headers={"x-api-key": key, "Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text
        sink.wait(before + per_point)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-push-"))
    sink = Sink()
    fast = {"push_allow_private_targets": True, "push_poll_seconds": 1.0, "push_timeout_seconds": 10.0}

    # (a) latency with 1 and 100 forward-all rules.
    settings = Settings(data_dir=base / "a", env="test", **fast)
    key, org, user = setup(settings, 1)
    srv, url, ctx = serve(settings)
    with httpx.Client(base_url=url, timeout=30) as http:
        for rules in (1, 100):
            if rules == 100:  # a fresh device: nothing of the first round is in its ordering key
                srv.should_exit = True
                time.sleep(0.5)
                settings = Settings(data_dir=base / "a100", env="test", **fast)
                key, org, user = setup(settings, 1)
                srv, url, ctx = serve(settings)
                http = httpx.Client(base_url=url, timeout=30)
            add_rules(ctx, org, user, sink.url, rules, None)
            lat = latency(http, key, sink, rules, 100 if rules == 1 else 5)
            print(
                f"(a) latency backfill → webhook, {rules} rule(s): p50 {statistics.median(lat):.1f} ms, p99 {pct(lat, 0.99):.1f} ms (n={len(lat)})"
            )
    srv.should_exit = True
    time.sleep(0.5)

    # (b) one worker's delivery throughput.
    settings = Settings(data_dir=base / "b", env="test", embedded_worker=False, **fast)
    key, org, user = setup(settings, 200)
    srv, url, ctx = serve(settings)
    add_rules(ctx, org, user, sink.url, 1, None)
    with httpx.Client(
        base_url=url, timeout=30, headers={"x-api-key": key, "Content-Type": "application/json"}
    ) as http:
        for r in range(5):
            for d in range(200):
                body = {
                    "timestamp": datetime.fromtimestamp(1.7e9 + r, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "data": {"t": float(r)},
                }
                http.post(f"/v3/devices/urn:dev:{d}/backfill", content=orjson.dumps(body))
    worker = DeliveryWorker(ctx.db, ctx.settings, ctx.hub)
    start = sink.count
    t0 = time.perf_counter()
    while worker.step():
        pass
    dt = time.perf_counter() - t0
    with ctx.db.session() as s:
        msgs = s.query(Delivery).filter(Delivery.status == "delivered").count()
    print(
        f"(b) one worker: 1000 events in {dt:.2f} s = {1000 / dt:,.0f} events/s; {msgs} messages ({sink.count - start} received) = {msgs / dt:,.0f} messages/s"
    )
    srv.should_exit = True
    time.sleep(0.5)

    # (c) backfill throughput with 0/10/100 threshold rules (the worker running beside).
    for rules in (0, 10, 100):
        settings = Settings(data_dir=base / f"c{rules}", env="test", **fast)
        key, org, user = setup(settings, 20)
        srv, url, ctx = serve(settings)
        if rules:
            add_rules(ctx, org, user, sink.url, rules, {"type": "above", "attribute": "t", "threshold": 1e9})
        bodies = [
            orjson.dumps(
                [
                    {
                        "timestamp": datetime.fromtimestamp(1.7e9 + j * 60, UTC).strftime(
                            "%Y-%m-%dT%H:%M:%SZ"
                        ),
                        "data": {"t": float(j)},
                    }
                    for j in range(5000)
                ]
            )
            for _ in range(1)
        ]
        with httpx.Client(
            base_url=url, timeout=60, headers={"x-api-key": key, "Content-Type": "application/json"}
        ) as http:
            t0 = time.perf_counter()
            for d in range(20):
                r = http.post(f"/v3/devices/urn:dev:{d}/backfill", content=bodies[0])
                assert r.status_code == 200, r.text
            dt = time.perf_counter() - t0
        print(f"(c) backfill 20 × 5,000 points with {rules:3d} rules: {100_000 / dt:,.0f} points/s")
        srv.should_exit = True
        time.sleep(0.5)


if __name__ == "__main__":
    main()
