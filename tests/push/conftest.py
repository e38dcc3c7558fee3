"""Push tests: fast retries and polling, local receivers allowed (SSRF guard lifted by its setting); the
peers they deliver to (a webhook receiver, a subscriber on the local Mosquitto, a throw-away influxd), and
a connector with its rules (which bench/push/bench_push.py uses too)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.orm import Session

from sensorhub.accounts.models import Organisation, User
from sensorhub.config import Settings
from sensorhub.push import connectors
from sensorhub.push.models import Connector
from tests.conftest import service_unavailable
from tests.smtp import free_port

FAST = {
    "push_allow_private_targets": True,
    "push_poll_seconds": 0.05,
    "push_retry_base_seconds": 0.05,
    "push_retry_max_seconds": 0.2,
    "push_timeout_seconds": 2.0,
    "push_lease_seconds": 5.0,
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update=FAST)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 recording every request; ``statuses`` are answered in turn
    (then 200)."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait_for(self, pred: Callable[[list[Received]], bool], timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"receiver: condition not met in {timeout}s; got {len(self.received)}"
                    )
                self.cond.wait(left)
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with rec.cond:
                status = rec.statuses.pop(0) if rec.statuses else 200
                rec.answered.append(status)
                if status < 300:
                    rec.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                rec.cond.notify_all()
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.port = server.server_address[1]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Got:
    topic: str
    payload: bytes
    qos: int
    user_properties: dict[str, str]

    def json(self) -> Any:
        return orjson.loads(self.payload)


@dataclass
class Broker:
    prefix: str
    got: list[Got]

    def wait_for(self, n: int, topic: str, timeout: float = 15.0) -> list[Got]:
        deadline = time.monotonic() + timeout
        while len(mine := [g for g in self.got if g.topic == topic]) < n:
            assert time.monotonic() < deadline, self.got
            time.sleep(0.05)
        return mine


@pytest.fixture
def broker() -> Iterator[Broker]:
    """An MQTT 5 subscriber on ``<unique prefix>/#`` at QoS 2 (so it sees each message's QoS)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    b = Broker(f"shngsi-{uuid.uuid4().hex[:8]}", [])
    ready = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(_c: Any, _u: Any, m: Any) -> None:
        props = dict(getattr(m.properties, "UserProperty", None) or [])
        b.got.append(Got(m.topic, m.payload, m.qos, props))

    c.on_subscribe = lambda *_: ready.set()
    c.on_connect = lambda cl, *_: cl.subscribe(f"{b.prefix}/#", qos=2)
    c.on_message = on_message
    try:
        c.connect("127.0.0.1", 1883)
    except OSError as e:
        service_unavailable("Mosquitto on 127.0.0.1:1883", e)
    c.loop_start()
    try:
        assert ready.wait(5)
        yield b
    finally:
        c.disconnect()
        c.loop_stop()


@contextmanager
def running_influxd(tmp: Path, timeout: float = 30.0) -> Iterator[str]:
    """A throw-away influxd 1.x on free ports, its files in ``tmp``: its URL once it answers /ping, stopped
    at the end. RuntimeError when influxd is not installed or does not start within ``timeout`` seconds."""
    if shutil.which("influxd") is None:
        raise RuntimeError("influxd is not on the PATH (apt-get install -y influxdb)")
    port, rpc = free_port(), free_port()
    conf = tmp / "influxdb.conf"
    conf.write_text(
        f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n[meta]\n  dir = "{tmp}/meta"\n'
        f'[data]\n  dir = "{tmp}/data"\n  wal-dir = "{tmp}/wal"\n  query-log-enabled = false\n'
        f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n[logging]\n  level = "warn"\n'
    )
    proc = subprocess.Popen(
        ["influxd", "-config", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}/ping", timeout=1).status_code == 204:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("influxd did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def connector_with_rules(
    s: Session,
    org: Organisation,
    user: User,
    settings: Settings,
    kind: str,
    name: str,
    config: dict[str, Any],
    rules: Sequence[str] = ("all",),
    condition: dict[str, Any] | None = None,
) -> Connector:
    """An enabled ``kind`` connector without secrets, and one enabled rule per name in ``rules`` sending it
    every event of the organisation (``condition``: those that meet it), without cooldown."""
    c, _ = connectors.create_connector(s, org, user, connectors.NewConnector(kind, name, config), settings)
    for rule in rules:
        connectors.create_rule(
            s, org, user, connectors.NewRule(rule, [{"connector_id": c.id}], condition=condition)
        )
    return c
