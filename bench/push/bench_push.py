"""Push benchmarks: end-to-end latency, delivery throughput of one worker, ingest cost of rules.

    PYTHONPATH=src .venv/bin/python bench/push/bench_push.py            # embedded SQLite, temp dir
    PYTHONPATH=src .venv/bin/python bench/push/bench_push.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    PYTHONPATH=src .venv/bin/python bench/push/bench_push.py --only b,d --profile   # cProfile of (b)

One process, as ``sensorhub serve`` runs in the embedded mode: the app under uvicorn (a thread) with its
background jobs (the delivery worker) and a fast local webhook receiver (``ThreadingHTTPServer``).

(a) latency: one backfill request of one point → the signed webhook message(s) at the receiver;
    p50/p99 over 100 requests with 1 forward-all rule, and over 5 with 100 (100 messages per point:
    the time until the last one arrived);
(b) delivery throughput of one worker: 1,000 events queued with the worker stopped (200 devices ×
    5 requests of one point), then one worker delivers them; events/s and messages/s;
(c) backfill throughput (5,000 records × 1 attribute over HTTP, 20 requests) with 0, 10 and 100 active
    threshold rules on that attribute, the worker running beside ingest;
(d) InfluxDB as a connector target: 50,000 points (20 devices × 5 requests × 500 points) queued with the
    worker stopped, then one worker delivers them into a real ``influxd`` (started here on free ports)
    through a forward-all rule and an ``influxdb`` connector; points/s until influxd holds them all,
    side by side with writing the same line protocol, in the same batches, straight to influxd.

With ``--database-url`` (a PostgreSQL admin URL) each part runs on a fresh database created and dropped
here instead of SQLite.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import threading
import time
import uuid
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
from sensorhub.push.delivery import DeliveryWorker
from sensorhub.push.kinds import InfluxDB, Message, Points
from sensorhub.push.models import Delivery, Rule
from sensorhub.tokens import service as tokens

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for tests/
from tests.push.conftest import connector_with_rules, running_influxd


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
            tokens.NewToken("k", ["ingest"]),
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
        rules = [f"r{i}" for i in range(n)]
        connector_with_rules(s, org, user, ctx.settings, "webhook", "sink", {"url": url}, rules, condition)


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


class Databases:
    """Settings for one part: SQLite in a temp dir, or a fresh PostgreSQL database (dropped at the end)."""

    def __init__(self, admin_url: str | None) -> None:
        self.admin_url = admin_url
        self.names: list[str] = []

    def settings(self, base: Path, name: str, **kw: Any) -> Settings:
        if self.admin_url is None:
            return Settings(data_dir=base / name, env="test", **kw)
        from sqlalchemy import create_engine, text

        dbname = f"shub_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(self._url(self.admin_url), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{dbname}"'))
        admin.dispose()
        self.names.append(dbname)
        url = self.admin_url.rsplit("/", 1)[0] + "/" + dbname
        secret = uuid.uuid4().hex * 2  # PostgreSQL deployments need a shared secret key
        return Settings(data_dir=base / name, env="test", database_url=url, secret_key=secret, **kw)

    @staticmethod
    def _url(url: str) -> str:
        return url.replace("postgresql://", "postgresql+psycopg://")

    def drop(self) -> None:
        if self.admin_url is None or not self.names:
            return
        from sqlalchemy import create_engine, text

        admin = create_engine(self._url(self.admin_url), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            for name in self.names:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def influx_count(url: str, db: str) -> int:
    r = httpx.get(f"{url}/query", params={"db": db, "q": "SELECT count(t) FROM push"}, timeout=30)
    series = r.json()["results"][0].get("series", [])
    return int(series[0]["values"][0][1]) if series else 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url", default=None, help="PostgreSQL admin URL; fresh databases are created")
    ap.add_argument("--only", default="a,b,c,d", help="parts to run, e.g. b,d")
    ap.add_argument("--profile", action="store_true", help="cProfile part (b): the top functions by own time")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    dbs = Databases(args.database_url)
    try:
        run(parts, dbs, args.profile)
    finally:
        dbs.drop()


def run(parts: set[str], dbs: Databases, profile: bool) -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-push-"))
    sink = Sink()
    fast = {"push_allow_private_targets": True, "push_poll_seconds": 1.0, "push_timeout_seconds": 10.0}
    print(f"backend: {'postgresql' if dbs.admin_url else 'sqlite'}")
    if "a" in parts:
        part_a(base, dbs, sink, fast)
    if "b" in parts:
        part_b(base, dbs, sink, fast, profile)
    if "c" in parts:
        part_c(base, dbs, sink, fast)
    if "d" in parts:
        part_d(base, dbs, fast)


def part_a(base: Path, dbs: Databases, sink: Sink, fast: dict[str, Any]) -> None:
    # (a) latency with 1 and 100 forward-all rules.
    settings = dbs.settings(base, "a", **fast)
    key, org, user = setup(settings, 1)
    srv, url, ctx = serve(settings)
    with httpx.Client(base_url=url, timeout=30) as http:
        for rules in (1, 100):
            if rules == 100:  # a fresh device: nothing of the first round is in its ordering key
                srv.should_exit = True
                time.sleep(0.5)
                settings = dbs.settings(base, "a100", **fast)
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


def part_b(base: Path, dbs: Databases, sink: Sink, fast: dict[str, Any], profile: bool) -> None:
    # (b) one worker's delivery throughput.
    settings = dbs.settings(base, "b", embedded_worker=False, **fast)
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
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof is not None:
        prof.enable()
    while worker.step():
        pass
    if prof is not None:
        prof.disable()
    dt = time.perf_counter() - t0
    with ctx.db.session() as s:
        msgs = s.query(Delivery).filter(Delivery.status == "delivered").count()
    print(
        f"(b) one worker: 1000 events in {dt:.2f} s = {1000 / dt:,.0f} events/s; {msgs} messages ({sink.count - start} received) = {msgs / dt:,.0f} messages/s"
    )
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
    srv.should_exit = True
    time.sleep(0.5)


def part_c(base: Path, dbs: Databases, sink: Sink, fast: dict[str, Any]) -> None:
    # (c) backfill throughput with 0/10/100 threshold rules (the worker running beside).
    for rules in (0, 10, 100):
        settings = dbs.settings(base, f"c{rules}", **fast)
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


def part_d(base: Path, dbs: Databases, fast: dict[str, Any]) -> None:
    # (d) InfluxDB as a connector target vs writing the same lines straight to influxd.
    devices, requests, per = 20, 5, 500
    total = devices * requests * per
    tmp = base / "influx"
    tmp.mkdir()
    with running_influxd(tmp) as influx:
        settings = dbs.settings(base, "d", embedded_worker=False, **fast)
        key, org, user = setup(settings, devices)
        srv, url, ctx = serve(settings)
        httpx.post(f"{influx}/query", params={"q": 'CREATE DATABASE "via_sensorhub"'})
        httpx.post(f"{influx}/query", params={"q": 'CREATE DATABASE "direct"'})
        with ctx.db.transaction() as s:
            config = {"url": influx, "database": "via_sensorhub", "measurement": "push"}
            connector_with_rules(s, org, user, ctx.settings, "influxdb", "influx", config)
        with httpx.Client(
            base_url=url, timeout=60, headers={"x-api-key": key, "Content-Type": "application/json"}
        ) as http:
            for r in range(requests):
                body = orjson.dumps(
                    [
                        {
                            "timestamp": datetime.fromtimestamp(1.7e9 + (r * per + j) * 60, UTC).strftime(
                                "%Y-%m-%dT%H:%M:%SZ"
                            ),
                            "data": {"t": float(j)},
                        }
                        for j in range(per)
                    ]
                )
                for d in range(devices):
                    assert http.post(f"/v3/devices/urn:dev:{d}/backfill", content=body).status_code == 200
        # A running worker imported the InfluxDB client long ago (about 2 s under load): not timed.
        import influxdb_client.client.write.point  # noqa: F401

        worker = DeliveryWorker(ctx.db, ctx.settings, ctx.hub)
        t0 = time.perf_counter()
        while worker.step():
            pass
        while influx_count(influx, "via_sensorhub") < total:
            time.sleep(0.05)
        via = time.perf_counter() - t0
        with ctx.db.session() as s:
            msgs = s.query(Delivery).filter(Delivery.status == "delivered").count()
        # The peer: the same lines, in the same number of batches, straight to influxd's /write.
        kind = InfluxDB()
        batches = []
        for d in range(devices):
            pts = [(int((1.7e9 + i * 60) * 1e6), float(i % per)) for i in range(requests * per)]
            step = len(pts) * devices // max(1, msgs)
            for i in range(0, len(pts), max(1, step)):
                msg = Message(
                    key="x",
                    payload={},
                    text="",
                    subject="",
                    points=[Points(f"urn:dev:{d}", "t", None, pts[i : i + step])],
                    topic_vars={"type": "Device", "workspace": "main"},
                )
                batches.append(kind.lines({"measurement": "push"}, msg))
        t0 = time.perf_counter()
        with httpx.Client(timeout=60) as h:
            for b in batches:
                r = h.post(f"{influx}/write", params={"db": "direct", "precision": "u"}, content=b)
                assert r.status_code == 204, r.text
        while influx_count(influx, "direct") < total:
            time.sleep(0.05)
        direct = time.perf_counter() - t0
        print(
            f"(d) InfluxDB connector: {total:,} points in {msgs} messages, {via:.2f} s = {total / via:,.0f} points/s; "
            f"straight to influxd in {len(batches)} writes: {direct:.2f} s = {total / direct:,.0f} points/s; "
            f"ratio {direct / via:.2f}x of influxd's own"
        )
        srv.should_exit = True
        time.sleep(0.5)


if __name__ == "__main__":
    main()
