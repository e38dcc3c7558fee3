"""MQTT ingest: messages/s stored and publish → queryable latency, beside Mosquitto's own throughput.

100 devices (one paho client each, one org API key) publish one value per message,
``sensorhub/bench/plant/<device>/temperature`` with a plain number, to:

- a real ``sensorhub serve`` (one worker, the embedded broker) on a fresh data directory (SQLite) or a
  fresh PostgreSQL database: **stored/s** = messages until every point is in the store (counted from the
  store), for QoS 0 and QoS 1. Publish → queryable: QoS 1 from each PUBACK (sent after the commit, so
  the value is queryable when it arrives); QoS 0 from the live value a subscriber gets (stored, then read
  from the outbox), which is later than queryable.
- a Mosquitto started by this script on a free port (anonymous, no persistence): the same messages, the
  broker floor = messages/s delivered to one subscriber of ``sensorhub/#``, and publish → delivered.

The production path (Mosquitto + plugin + bridge) runs twice: with ``plugin_opt_qos1_store false``
(every message stored by the bridge after Mosquitto's PUBACK) and ``true`` (QoS 1 stored before it).

Run: ``.venv/bin/python bench/mqtt/bench_mqtt.py [--messages 30] [--database-url postgresql://…]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common
import _common

DEVICES = 100


def seed(env: dict[str, str]) -> str:
    """Organisation, workspace, devices and an API key (ingest + telemetry, no rate limit to speak of)."""
    os.environ.update(env)
    from sensorhub.accounts import service as accounts
    from sensorhub.config import Settings
    from sensorhub.context import AppContext
    from sensorhub.entities.models import Entity
    from sensorhub.migrate import upgrade
    from sensorhub.tokens import service as tokens

    settings = Settings()
    ctx = AppContext.build(settings)
    upgrade(ctx.db)
    with ctx.db.transaction() as s:
        org = accounts.create_org(s, "bench", "Bench")
        ws = accounts.create_workspace(s, org, "plant", "Plant")
        for i in range(DEVICES):
            s.add(
                Entity(entity_id=f"dev-{i:03d}", org_id=org.id, workspace_id=ws.id, type="Device", attrs={})
            )
        minted = tokens.create_api_key(
            s,
            org,
            tokens.NewToken("bench", ["ingest", "telemetry"]),
            settings=settings,
            created_by=None,
            rate_limit_per_minute=10_000_000,
        )
    ctx.db.dispose()
    return minted.token


def stored_points(url: str) -> int:
    eng = create_engine(url)
    with eng.connect() as c:
        n = int(c.execute(text("SELECT count(*) FROM measurements")).scalar_one())
    eng.dispose()
    return n


class Clients:
    """One paho client per device, connected; publish times and acknowledgement times by message."""

    def __init__(self, port: int, token: str | None) -> None:
        self.clients: list[mqtt.Client] = []
        self.sent: dict[tuple[int, int], float] = {}
        self.acked: dict[tuple[int, int], float] = {}
        for i in range(DEVICES):
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
            c.max_inflight_messages_set(20)
            if token:
                c.username_pw_set(token, token)
            c.on_publish = self._acked(i)
            c.connect("127.0.0.1", port, keepalive=60)
            c.loop_start()
            self.clients.append(c)
        for c in self.clients:
            while not c.is_connected():
                time.sleep(0.01)

    def _acked(self, i: int) -> Any:
        def on_publish(_c: Any, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
            self.acked[(i, mid)] = time.perf_counter()

        return on_publish

    def run(self, messages: int, qos: int, base: float) -> float:
        """Every device publishes ``messages`` values; returns when all are handed to the sockets (QoS 0)
        or acknowledged (QoS 1). The payload is a distinct number: base + device + message/1000."""
        infos: list[Any] = []

        def device(i: int) -> None:
            c = self.clients[i]
            for m in range(messages):
                t = time.perf_counter()
                info = c.publish(
                    f"sensorhub/bench/plant/dev-{i:03d}/temperature", f"{base + i + m / 1000:.3f}", qos=qos
                )
                self.sent[(i, info.mid)] = t
                infos.append(info)

        threads = [threading.Thread(target=device, args=(i,)) for i in range(DEVICES)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for info in infos:
            info.wait_for_publish(120)
        return time.perf_counter()

    def latencies_ms(self) -> list[float]:
        return [(self.acked[k] - self.sent[k]) * 1000 for k in self.sent if k in self.acked]

    def close(self) -> None:
        for c in self.clients:
            c.disconnect()
            c.loop_stop()


class Subscriber:
    """Counts what it receives on sensorhub/#, with the arrival time of each payload."""

    def __init__(self, port: int, token: str | None) -> None:
        self.arrived: dict[str, float] = {}
        self.cond = threading.Condition()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        if token:
            c.username_pw_set(token, token)
        done = threading.Event()
        c.on_subscribe = lambda *_a: done.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port, keepalive=60)
        c.loop_start()
        c.subscribe("sensorhub/#", qos=0)
        assert done.wait(10)
        self.c = c

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        t = time.perf_counter()
        body = orjson.loads(msg.payload)  # sensorhub: {"timestamp", "value"}; Mosquitto: the number
        value = body["value"] if isinstance(body, dict) else body
        with self.cond:
            self.arrived[f"{value:.3f}"] = t
            self.cond.notify_all()

    def wait(self, n: int, timeout: float = 300) -> float:
        with self.cond:
            self.cond.wait_for(lambda: len(self.arrived) >= n, timeout)
            return max(self.arrived.values()) if self.arrived else time.perf_counter()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def publish_round(
    port: int, token: str | None, messages: int, qos: int
) -> tuple[Clients, Subscriber, float, float]:
    """Every device publishes ``messages`` values at ``qos`` (payloads from base 1000 × (qos + 1)) while a
    subscriber of sensorhub/# listens: the clients, the subscriber, the base and the start time."""
    clients = Clients(port, token)
    sub = Subscriber(port, token)
    base = 1000.0 * (qos + 1)
    t0 = time.perf_counter()
    clients.run(messages, qos, base=base)
    return clients, sub, base, t0


def arrival_ms(clients: Clients, sub: Subscriber, messages: int, base: float) -> list[float]:
    """Publish → arrival at the subscriber, in ms, of each message of a round the subscriber received."""
    return [
        (sub.arrived[f"{base + i + m / 1000:.3f}"] - clients.sent[(i, m + 1)]) * 1000
        for i in range(DEVICES)
        for m in range(messages)
        if f"{base + i + m / 1000:.3f}" in sub.arrived and (i, m + 1) in clients.sent
    ]


def bench_sensorhub(args: argparse.Namespace, data: Path) -> list[tuple[str, float, float, float]]:
    env = {"SENSORHUB_DATA_DIR": str(data), "SENSORHUB_ENV": "production"}
    if args.database_url:
        env["SENSORHUB_DATABASE_URL"] = args.database_url
        env["SENSORHUB_SECRET_KEY"] = uuid.uuid4().hex * 2
    token = seed(env)
    from sensorhub.config import Settings

    url = Settings().resolved_database_url
    http, mport = _common.free_port(), _common.free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sensorhub.cli",
            "serve",
            "--port",
            str(http),
            "--mqtt-listen",
            f"127.0.0.1:{mport}",
            "--log-level",
            "warning",
        ],
        env={**os.environ, **env},
    )
    rows: list[tuple[str, float, float, float]] = []
    try:
        _common.wait_port(http)  # uvicorn listens once the lifespan (and with it the broker) has started
        done = 0
        for qos in (0, 1):
            n = DEVICES * args.messages
            clients, sub, base, t0 = publish_round(mport, token, args.messages, qos)
            while stored_points(url) < done + n:
                time.sleep(0.02)
            elapsed = time.perf_counter() - t0
            done += n
            if qos == 1:
                lat = clients.latencies_ms()
            else:
                sub.wait(n, 60)
                lat = arrival_ms(clients, sub, args.messages, base)
            rows.append(
                (
                    f"sensorhub (embedded amqtt, {'PostgreSQL' if args.database_url else 'SQLite'}) QoS {qos}",
                    n / elapsed,
                    pct(lat, 0.5),
                    pct(lat, 0.99),
                )
            )
            clients.close()
            sub.close()
    finally:
        server.terminate()
        server.wait(30)
    return rows


def bench_production(
    args: argparse.Namespace, data: Path, tmp: Path, qos1_store: bool
) -> list[tuple[str, float, float, float]]:
    """Mosquitto + the sensorhub plugin + ``sensorhub mqtt-bridge`` + ``sensorhub serve`` (no embedded
    broker): a message counts once its point is in the store. ``qos1_store`` (plugin_opt_qos1_store):

    - false (before): every message is stored by the bridge, Mosquitto's PUBACK comes on receipt;
      latency is publish → live value at a subscriber (Mosquitto → plugin ACL → bridge stores → outbox →
      bridge publishes → plugin read ACL → subscriber), i.e. later than queryable.
    - true (after, the default): QoS 1 messages are stored through ``/internal/mqtt/ingest`` before
      Mosquitto's PUBACK; latency is publish → PUBACK, when the value is queryable. Only QoS 1 is run
      (QoS 0 takes the bridge path either way)."""
    secret = uuid.uuid4().hex * 2
    mport, http = _common.free_port(), _common.free_port()
    env = {
        "SENSORHUB_DATA_DIR": str(data),
        "SENSORHUB_ENV": "production",
        "SENSORHUB_MQTT_PLUGIN_SECRET": secret,
        "SENSORHUB_MQTT_BROKER": f"127.0.0.1:{mport}",
    }
    if args.database_url:
        env["SENSORHUB_DATABASE_URL"] = args.database_url
        env["SENSORHUB_SECRET_KEY"] = uuid.uuid4().hex * 2
    token = seed(env)
    from sensorhub.config import Settings
    from sensorhub.mqtt.mosquitto_conf import PLUGIN, mosquitto_conf

    if not PLUGIN.exists():
        subprocess.run(
            ["sh", str(Path(__file__).resolve().parents[2] / "tools/build_mosquitto_plugin.sh")], check=True
        )
    url = Settings().resolved_database_url
    (tmp / "plugin.secret").write_text(secret)
    conf = tmp / "mosquitto-plugin.conf"
    conf.write_text(
        mosquitto_conf(
            listen=f"127.0.0.1:{mport}",
            url=f"http://127.0.0.1:{http}",
            secret_file=tmp / "plugin.secret",
            plugin=PLUGIN,
            service_username="sensorhub-bridge",
            cache_seconds=10,
            persistence_dir=None,
            qos1_store=qos1_store,
        )
        + ("user root\n" if os.geteuid() == 0 else "")
        + "log_type error\n"
    )
    full = {**os.environ, **env}
    cli = [sys.executable, "-m", "sensorhub.cli"]
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(http), "--no-mqtt", "--log-level", "warning"], env=full
    )
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)])
    bridge = subprocess.Popen(
        [*cli, "mqtt-bridge", "--client-id", "bench-bridge", "--log-level", "warning"], env=full
    )
    rows: list[tuple[str, float, float, float]] = []
    try:
        _common.wait_port(http)
        _common.wait_port(mport)
        time.sleep(1.0)  # the bridge's subscription
        done = 0
        for qos in (1,) if qos1_store else (0, 1):
            n = DEVICES * args.messages
            clients, sub, base, t0 = publish_round(mport, token, args.messages, qos)
            stored, last_change = 0, time.perf_counter()
            while stored < n and time.perf_counter() - last_change < 20:  # stop once nothing more comes
                now_stored = stored_points(url) - done
                if now_stored != stored:
                    stored, last_change = now_stored, time.perf_counter()
                time.sleep(0.02)
            elapsed = last_change - t0
            done += stored
            if stored < n:
                print(f"production path QoS {qos}: only {stored} of {n} messages stored", file=sys.stderr)
            sub.wait(stored, 30)
            before_ack = qos1_store and qos == 1
            lat = clients.latencies_ms() if before_ack else arrival_ms(clients, sub, args.messages, base)
            db = "PostgreSQL" if args.database_url else "SQLite"
            how = "stored before PUBACK; latency to PUBACK" if before_ack else "latency to live value"
            rows.append(
                (
                    f"sensorhub via Mosquitto+plugin+bridge ({db}, {how}, {stored}/{n} stored) QoS {qos}",
                    stored / elapsed,
                    pct(lat, 0.5),
                    pct(lat, 0.99),
                )
            )
            clients.close()
            sub.close()
    finally:
        for p in (bridge, broker, server):
            p.terminate()
            p.wait(30)
    return rows


def bench_mosquitto(args: argparse.Namespace, tmp: Path) -> list[tuple[str, float, float, float]]:
    port = _common.free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type error\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)])
    rows: list[tuple[str, float, float, float]] = []
    try:
        _common.wait_port(port)
        for qos in (0, 1):
            n = DEVICES * args.messages
            clients, sub, base, t0 = publish_round(port, None, args.messages, qos)
            last = sub.wait(n, 60)
            elapsed = last - t0
            lat = arrival_ms(clients, sub, args.messages, base)
            rows.append(
                (
                    f"Mosquitto {qos=} (broker floor: delivered to a subscriber)".replace("qos=", "QoS "),
                    n / elapsed,
                    pct(lat, 0.5),
                    pct(lat, 0.99),
                )
            )
            clients.close()
            sub.close()
    finally:
        broker.terminate()
        broker.wait(10)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=30, help="messages per device per QoS level")
    ap.add_argument("--database-url", default=None, help="postgresql://… (a fresh database is created)")
    ap.add_argument(
        "--only",
        choices=["embedded", "production"],
        default=None,
        help="Mosquitto floor plus one sensorhub path",
    )
    args = ap.parse_args()
    if shutil.which("mosquitto") is None:
        raise SystemExit("mosquitto is not installed (apt-get install -y mosquitto)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    created: list[str] = []
    server_url = args.database_url
    admin = None
    if server_url:
        admin = create_engine(
            server_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
        )

    def fresh_database() -> None:
        """Each sensorhub path gets an empty database of its own."""
        if admin is None:
            return
        name = f"bench_mqtt_{uuid.uuid4().hex[:8]}"
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        args.database_url = server_url.rsplit("/", 1)[0] + "/" + name

    try:
        rows = bench_mosquitto(args, tmp)
        if args.only != "production":
            fresh_database()
            rows += bench_sensorhub(args, tmp / "data")
        if args.only != "embedded":
            for qos1_store in (False, True):  # before / after plugin_opt_qos1_store
                fresh_database()
                rows += bench_production(args, tmp / f"data-production-{qos1_store}", tmp, qos1_store)
    finally:
        if admin is not None:
            with admin.connect() as c:
                for name in created:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(rows, args.messages)


def print_table(rows: list[tuple[str, float, float, float]], messages: int) -> None:
    """The rows as a Markdown table, each rate against Mosquitto's at the same QoS (the first two rows)."""
    floor = {q: r[1] for q, r in zip((0, 1), rows[:2], strict=True)}
    print(f"\n{DEVICES} devices x {messages} messages per QoS level, load average {os.getloadavg()}\n")
    print("| broker | messages/s | vs Mosquitto | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for name, rate, p50, p99 in rows:
        q = 1 if name.rstrip(")").endswith("QoS 1") or "QoS 1" in name else 0
        print(f"| {name} | {rate:,.0f} | {rate / floor[q]:.2f}x | {p50:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
