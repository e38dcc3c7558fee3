"""Production MQTT: a real Mosquitto (a process of the test's own, on a free port, never the machine's
broker on 1883) with the sensorhub plugin, a real sensorhub HTTP server (uvicorn on a free port) that
the plugin asks, and ``sensorhub mqtt-bridge`` as a subprocess — on SQLite and PostgreSQL.

The plugin is built by ``tools/build_mosquitto_plugin.sh`` when missing. Waits are bounded polls of
observable state (a value the API returns, a message received), never fixed sleeps.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import uvicorn

from sensorhub.app import create_app
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.mqtt.mosquitto_conf import mosquitto_conf
from tests.builders import World, bearer
from tests.conftest import service_unavailable
from tests.mqtt.conftest import DEVICE, Device, T, free_port

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "mosquitto-plugin" / "sensorhub_auth.so"
SENSORHUB = str(Path(sys.executable).parent / "sensorhub")
SECRET = "test-plugin-secret-0123456789abcdef"


def wait_for(check: Callable[[], Any], what: str, timeout: float = T) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def plugin() -> Path:
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        service_unavailable("mosquitto (the broker binary)", FileNotFoundError("mosquitto"))
    source = ROOT / "mosquitto-plugin" / "sensorhub_auth.c"
    if not PLUGIN.exists() or PLUGIN.stat().st_mtime < source.stat().st_mtime:
        subprocess.run(["sh", str(ROOT / "tools" / "build_mosquitto_plugin.sh")], check=True)
    return PLUGIN


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "mqtt_plugin_secret": SECRET,
            "mqtt_broker": f"127.0.0.1:{free_port()}",
            "mqtt_acl_cache_seconds": 10,
        }
    )


class Server:
    """``sensorhub serve``'s app on a real port (the plugin's HTTP questions come here)."""

    def __init__(self, settings: Settings, ctx: AppContext) -> None:
        self.app = create_app(settings, ctx)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.srv: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        srv = self.srv = uvicorn.Server(config)
        self.thread = threading.Thread(target=srv.run, daemon=True)
        self.thread.start()
        wait_for(lambda: srv.started, "the sensorhub server")

    def stop(self) -> None:
        if self.srv is not None and self.thread is not None:
            self.srv.should_exit = True
            self.thread.join(T)
        self.srv = self.thread = None


@pytest.fixture
def sensorhub(settings: Settings, ctx: AppContext) -> Iterator[Server]:
    s = Server(settings, ctx)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def server(sensorhub: Server) -> str:
    return sensorhub.url


@pytest.fixture
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=T) as c:
        yield c


@pytest.fixture
def ws_port() -> int:
    return free_port()


class Mosquitto:
    """A Mosquitto of the test's own with the plugin, persisting to tmp_path (restart() reloads what it
    saved at shutdown: sessions and their queued messages)."""

    def __init__(self, port: int, conf: Path, log: Path) -> None:
        self.port, self.conf, self.log = port, conf, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            proc = self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=out, stderr=out)
        wait_for(lambda: port_open(self.port) or proc.poll() is not None, "mosquitto")
        assert proc.poll() is None, self.log.read_text()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(T)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        wait_for(lambda: not port_open(self.port), "mosquitto to close its port")
        self.start()


@pytest.fixture
def mosquitto(
    plugin: Path, settings: Settings, server: str, tmp_path: Path, ws_port: int
) -> Iterator[Mosquitto]:
    port = int(settings.mqtt_broker.rsplit(":", 1)[1])
    secret = tmp_path / "plugin.secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    (tmp_path / "persistence").mkdir()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        mosquitto_conf(
            listen=f"127.0.0.1:{port}",
            url=server,
            secret_file=secret,
            plugin=plugin,
            service_username=settings.mqtt_bridge_username,
            cache_seconds=settings.mqtt_acl_cache_seconds,
            persistence_dir=tmp_path / "persistence",
            websocket=f"127.0.0.1:{ws_port}",
        )
        # As root, Mosquitto would switch to the "mosquitto" user, who cannot read the test's tmp_path.
        + ("user root\n" if os.geteuid() == 0 else "")
        + "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
    )
    m = Mosquitto(port, conf, tmp_path / "mosquitto.log")
    try:
        m.start()
        yield m
        m.stop()
        assert "shub_pat_" not in m.log.read_text()  # no token in Mosquitto's log
    finally:
        m.stop()


@pytest.fixture
def broker(mosquitto: Mosquitto) -> int:
    return mosquitto.port


class BridgeProcess:
    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.env = {
            **os.environ,
            "SENSORHUB_DATA_DIR": str(settings.data_dir),
            "SENSORHUB_ENV": "test",
            "SENSORHUB_MQTT_PLUGIN_SECRET": SECRET,
            "SENSORHUB_MQTT_BROKER": settings.mqtt_broker,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "client" / "src")]),
        }
        for name in ("database_url", "secret_key", "redis_url", "redis_prefix"):
            value = getattr(settings, name)
            if value:
                self.env[f"SENSORHUB_{name.upper()}"] = str(value)
        self.log = tmp_path / "bridge.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, port: int) -> None:
        def started() -> int:
            text = self.log.read_text() if self.log.exists() else ""
            return min(text.count("subscribed to"), text.count("publishing live values"))

        before = started()
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [SENSORHUB, "mqtt-bridge", "--client-id", "bridge-test"], env=self.env, stdout=out, stderr=out
        )
        out.close()
        wait_for(
            lambda: started() > before or self.proc.poll() is not None,  # type: ignore[union-attr]
            "the bridge (subscribed, and following the outbox)",
            timeout=60,  # a fresh process: imports and schema check, on a loaded machine
        )
        assert self.proc.poll() is None, self.log.read_text()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(T)
        self.proc = None


@pytest.fixture
def bridge(broker: int, settings: Settings, tmp_path: Path) -> Iterator[BridgeProcess]:
    b = BridgeProcess(settings, tmp_path)
    b.start(broker)
    yield b
    b.kill()


def attribute(http: httpx.Client, token: str, name: str, device: str = DEVICE) -> Any:
    r = http.get(f"/api/devices/{device}", headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()["attributes"].get(name, {}).get("value")


def series(http: httpx.Client, token: str, name: str, device: str = DEVICE) -> list[Any]:
    r = http.get(
        f"/api/timeseries/v2/entities/{device}/data",
        params={"attribute": name, "start_time": "2020-01-01T00:00:00Z", "end_time": "2030-01-01T00:00:00Z"},
        headers=bearer(token),
    )
    if r.status_code == 404 and "has no numeric attribute" in r.text:
        return []  # nothing stored yet
    assert r.status_code == 200, r.text
    return list(r.json()["attributes"].get(name, []))


def test_publish_with_a_token_is_stored_and_shown_by_the_api(
    http: httpx.Client, w: World, bridge: BridgeProcess, devices: Any
) -> None:
    token = w.pat("dev@acme.test")
    d = devices(token)
    assert d.accepted
    assert d.publish(f"sensorhub/acme/plant/{DEVICE}/temperature", "21.5")
    assert wait_for(lambda: attribute(http, token, "temperature") == 21.5, "the stored value")
    record = b'{"timestamp": "2026-01-02T03:04:05Z", "data": {"pressure": {"value": 1013.2, "unit": "HPA"}}}'
    assert d.publish(f"sensorhub/acme/plant/{DEVICE}", record)
    assert wait_for(lambda: series(http, token, "pressure") == [1013.2], "the backfill record")
    # Refused at storing (the plugin's ACL lets the topic through; ingest refuses the payload):
    # nothing stored, not acknowledged, a log line, the device disconnected; later messages still flow.
    assert not d.publish(f"sensorhub/acme/plant/{DEVICE}/temperature", "NaN")
    assert d.closed.wait(T)
    d = devices(token)
    assert d.publish(f"sensorhub/acme/plant/{DEVICE}/temperature", "22")
    assert wait_for(lambda: series(http, token, "temperature") == [21.5, 22], "the next value")
    # A burst of plain numbers, faster than the clock's milliseconds: every one is its own point.
    infos = [d.c.publish(f"sensorhub/acme/plant/{DEVICE}/burst", str(i), qos=1) for i in range(200)]
    for info in infos:
        info.wait_for_publish(T)
    assert wait_for(lambda: series(http, token, "burst") == list(range(200)), "the burst")


def test_a_refused_qos0_message_disconnects_the_device_that_published_it(
    http: httpx.Client, w: World, bridge: BridgeProcess, devices: Any, tmp_path: Path
) -> None:
    """As on the embedded broker: a QoS 0 message the bridge's ingest refuses stores nothing and closes
    the publisher's connection (MQTT 5: DISCONNECT 0x98, administrative action); other devices carry on."""
    token = w.pat("dev@acme.test")
    topic = f"sensorhub/acme/plant/{DEVICE}/temperature"
    good = devices(w.pat("dev@acme.test", name="good"))
    assert good.publish(topic, "20")
    assert wait_for(lambda: series(http, token, "temperature") == [20], "the good value")
    for payload, protocol in [
        ("warm", mqtt.MQTTv5),
        ("NaN", mqtt.MQTTv5),
        ("-Infinity", mqtt.MQTTv311),
        (b"\xff\xfe", mqtt.MQTTv311),
    ]:
        bad = devices(token, protocol=protocol)
        assert bad.publish(topic, payload, qos=0)  # Mosquitto takes it; the bridge refuses it when storing
        assert bad.closed.wait(T), payload
        if protocol == mqtt.MQTTv5:
            assert int(bad.disconnect_reason.value) == 0x98, bad.disconnect_reason
    assert not good.closed.is_set()
    assert good.publish(topic, "21")
    assert wait_for(lambda: series(http, token, "temperature") == [20, 21], "the next good value")
    assert not good.closed.is_set()
    assert bridge.log.read_text().count("nothing stored; disconnecting the client") == 4
    assert "sensorhub refused its message" in (tmp_path / "mosquitto.log").read_text()


def test_a_client_cannot_name_another_to_have_it_disconnected(
    http: httpx.Client, w: World, bridge: BridgeProcess, devices: Any, broker: int
) -> None:
    """The plugin replaces any sensorhub-client user property a client sets by its own client id, and
    removes a sensorhub-stored one (a QoS 0 message cannot pass as already stored)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    token = w.pat("dev@acme.test")
    topic = f"sensorhub/acme/plant/{DEVICE}/temperature"
    # What the bridge receives, seen by a second service-client subscriber.
    seen: list[list[tuple[str, str]]] = []
    spy = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="spy", protocol=mqtt.MQTTv5)
    spy.username_pw_set("sensorhub-bridge", SECRET)
    spy.on_message = lambda _c, _u, msg: seen.append(list(getattr(msg.properties, "UserProperty", [])))
    subscribed = threading.Event()
    spy.on_subscribe = lambda *_a: subscribed.set()
    spy.connect("127.0.0.1", broker)
    spy.loop_start()
    try:
        spy.subscribe("sensorhub-ingest/#", qos=1)
        assert subscribed.wait(T)
        # The same credential: only the client id tells them apart.
        victim = devices(token, client_id="victim")
        forger = devices(token, client_id="forger", protocol=mqtt.MQTTv5)
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("sensorhub-client", "victim"), ("other", "kept"), ("sensorhub-stored", "1")]
        forger.c.publish(topic, "warm", qos=0, properties=props)
        assert forger.closed.wait(T)
        assert wait_for(lambda: seen, "the forged message")
        assert seen[0] == [("other", "kept"), ("sensorhub-client", "forger")]
    finally:
        spy.disconnect()
        spy.loop_stop()
    assert not victim.closed.is_set()
    assert victim.publish(topic, "5")
    assert wait_for(lambda: series(http, token, "temperature") == [5], "the victim's value")
    assert not victim.closed.is_set()


def acknowledged(d: Device, topic: str, payload: bytes | str, qos: int = 1) -> bool:
    """True only when the broker acknowledged the message with a success code (MQTT 5 PUBACK reason
    below 0x80; MQTT 3.1.1 PUBACKs have none); False when it refused it or closed the connection."""
    codes: list[int] = []
    d.c.on_publish = lambda _c, _u, _mid, rc, _p: codes.append(int(getattr(rc, "value", 0)))
    return d.publish(topic, payload, qos=qos) and all(code < 0x80 for code in codes)


def test_a_qos1_message_is_queryable_as_soon_as_its_puback_arrives(
    http: httpx.Client, w: World, bridge: BridgeProcess, devices: Any
) -> None:
    """QoS 1 and 2 are stored (committed) before Mosquitto acknowledges them: each value is read back
    right after its PUBACK (PUBCOMP), without waiting; subscribers still get the values live."""
    token = w.pat("dev@acme.test")
    reader = devices(w.pat("dev@acme.test", scopes=["telemetry"], name="reader"))
    assert reader.subscribe(f"sensorhub/acme/plant/{DEVICE}/#") == [1]
    expected: list[float] = []
    records: list[float] = []
    for i, (protocol, qos) in enumerate([(mqtt.MQTTv311, 1), (mqtt.MQTTv5, 1), (mqtt.MQTTv5, 2)]):
        d = devices(token, protocol=protocol)
        assert acknowledged(d, f"sensorhub/acme/plant/{DEVICE}/temperature", f"{i}.5", qos=qos)
        expected.append(i + 0.5)
        assert series(http, token, "temperature") == expected  # no waiting: stored before the PUBACK
        record = f'{{"timestamp": "2026-01-02T03:04:0{i}Z", "data": {{"pressure": {1000 + i}}}}}'
        assert acknowledged(d, f"sensorhub/acme/plant/{DEVICE}", record, qos=qos)
        records.append(1000 + i)
        assert series(http, token, "pressure") == records
    # Live values come from the outbox, as for every other ingest path.
    got = reader.wait_messages(6)
    assert sorted(b["value"] for _, b in got) == sorted(expected + records)


def test_a_refused_qos1_message_is_not_acknowledged_and_stores_nothing(
    http: httpx.Client,
    w: World,
    bridge: BridgeProcess,
    devices: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A QoS 1 message ingest refuses gets no successful PUBACK — MQTT 5: PUBACK 0x87, MQTT 3.1.1 (no
    negative PUBACK): the connection closes without one —, stores nothing (a body is all or nothing)
    and is logged by sensorhub and Mosquitto."""
    token = w.pat("dev@acme.test")
    caplog.set_level("WARNING", "sensorhub.mqtt")
    bad_body = (
        b'[{"timestamp": "2026-02-01T00:00:00Z", "data": {"level": 1}},'
        b' {"timestamp": "2026-02-01T00:01:00Z", "data": {"level": null}}]'
    )
    cases = [
        (f"sensorhub/acme/plant/{DEVICE}/level", "NaN"),
        (f"sensorhub/acme/plant/{DEVICE}/level", b"\xff\xfe"),
        (f"sensorhub/acme/plant/{DEVICE}", bad_body),
        ("sensorhub/acme/plant/urn:ngsi-ld:Device:unknown/level", "1"),  # no such device
    ]
    for protocol in (mqtt.MQTTv311, mqtt.MQTTv5):
        for topic, payload in cases:
            d = devices(token, protocol=protocol)
            assert not acknowledged(d, topic, payload), (protocol, payload)
            if protocol == mqtt.MQTTv311:
                assert d.closed.wait(T)
    assert series(http, token, "level") == []
    assert caplog.text.count("mqtt publish refused, nothing stored; not acknowledged") == 2 * len(cases)
    assert (tmp_path / "mosquitto.log").read_text().count("refusing a QoS 1 message") == 2 * len(cases)
    # The device carries on with what is valid.
    d = devices(token)
    assert acknowledged(d, f"sensorhub/acme/plant/{DEVICE}/level", "4")
    assert series(http, token, "level") == [4]


def test_sensorhub_down_means_a_qos1_message_is_not_acknowledged(
    http: httpx.Client,
    w: World,
    ctx: AppContext,
    sensorhub: Server,
    bridge: BridgeProcess,
    devices: Any,
    tmp_path: Path,
) -> None:
    """Mosquitto never acknowledges a QoS 1 message sensorhub has not stored: with sensorhub down (or
    too slow) the plugin refuses it, the connection closes without a PUBACK and the device sends it again
    later — whether the topic's ACL answer was still cached (storing fails) or not (the ACL question gets
    no answer; with Redis, any token change drops every cached answer). QoS 0 messages still go to the
    bridge."""
    from sqlalchemy import text

    token = w.pat("dev@acme.test")
    topic = f"sensorhub/acme/plant/{DEVICE}/temperature"
    cached = devices(token)
    assert acknowledged(
        cached, topic, "1"
    )  # the topic's ACL answer is cached from here on (unless rechecked)
    fresh = {protocol: devices(token, protocol=protocol) for protocol in (mqtt.MQTTv311, mqtt.MQTTv5)}
    sensorhub.stop()
    assert not acknowledged(cached, topic, "2")
    assert cached.closed.wait(T)
    for protocol, d in fresh.items():  # never asked about this topic: the ACL question is unanswered
        assert not acknowledged(d, f"sensorhub/acme/plant/{DEVICE}/pressure", "3"), protocol
        assert d.closed.wait(T), protocol
    log = (tmp_path / "mosquitto.log").read_text()
    assert "/internal/mqtt/acl failed" in log
    assert log.count("closing its connection without acknowledging the QoS 1 message") >= 2
    with ctx.db.session() as s:
        assert s.execute(text("SELECT count(*) FROM measurements")).scalar_one() == 1


def test_a_qos1_message_is_stored_once_not_again_by_the_bridge(
    http: httpx.Client, w: World, ctx: AppContext, bridge: BridgeProcess, broker: int, devices: Any
) -> None:
    """Stored QoS 1 messages go on to the bridge marked as stored, and it only acknowledges them. Here
    the bridge is down while they are published and their token is revoked before it returns: had it
    stored them again, it would refuse them (and log it) now."""
    from sensorhub.tokens import service as tokens

    token = w.pat("dev@acme.test")
    other = devices(w.pat("dev@acme.test", name="other"))
    bridge.kill()
    d = devices(token)
    for i in range(5):
        assert acknowledged(d, f"sensorhub/acme/plant/{DEVICE}/temperature", str(i))
    assert series(http, token, "temperature") == [0, 1, 2, 3, 4]  # stored without any bridge
    user_id = w.user("dev@acme.test").id
    with ctx.db.transaction() as s:
        tokens.revoke(s, next(c for c in tokens.list_pats(s, user_id) if c.name == "test"), actor_id=None)
    # Queued behind the QoS 1 ones for the bridge's session: stored once the bridge has seen them all.
    other.c.publish(f"sensorhub/acme/plant/{DEVICE}/flow", "9", qos=0)
    reader = w.pat("dev@acme.test", name="reader")
    bridge.start(broker)
    assert wait_for(lambda: series(http, reader, "flow") == [9], "the QoS 0 message", 30)
    assert series(http, reader, "temperature") == [0, 1, 2, 3, 4]
    assert "refused" not in bridge.log.read_text()


def test_only_the_plugin_may_store_through_internal_ingest(http: httpx.Client, w: World) -> None:
    """``/internal/mqtt/ingest`` stores as the credential it names: only the plugin's secret opens it."""
    token = w.pat("dev@acme.test")
    params = {"credential": "x", "received_us": "1", "topic": f"sensorhub/acme/plant/{DEVICE}/level"}
    for headers in ({}, {"Authorization": "Bearer not-the-secret-at-all"}, bearer(token)):
        r = http.post("/internal/mqtt/ingest", params=params, content=b"1", headers=headers)
        assert r.status_code == 401, r.text
    assert series(http, token, "level") == []


def test_wrong_token_is_refused_with_not_authorised(w: World, bridge: BridgeProcess, devices: Any) -> None:
    token = w.pat("dev@acme.test")
    for username, password in [("shub_pat_garbage", "shub_pat_garbage"), ("someone", token), (token, "x")]:
        d = devices(password, username=username)
        assert d.reason.is_failure and int(d.reason.value) in (5, 135), d.reason  # CONNACK 5: not authorised
    # A token with neither ingest nor telemetry.
    d = devices(w.pat("dev@acme.test", scopes=["entities"], name="noscope"))
    assert d.reason.is_failure
    # Nobody but the bridge may log in as the bridge or write the control topic.
    d = devices("not-the-secret-at-all", username="sensorhub-bridge")
    assert d.reason.is_failure


def test_topic_outside_the_tokens_reach_is_refused(
    http: httpx.Client, w: World, bridge: BridgeProcess, devices: Any
) -> None:
    w.user("plant@acme.test", "acme", role="member", grant_org=False)
    w.grant("plant@acme.test", "acme", workspace="plant")
    token = w.pat("dev@acme.test")
    d = devices(w.pat("plant@acme.test", scopes=["ingest", "telemetry"]), protocol=mqtt.MQTTv5)
    # MQTT 5: Mosquitto answers a refused publish with PUBACK 0x87 (not authorised).
    acks: list[int] = []
    d.c.on_publish = lambda _c, _u, _mid, rc, _p: acks.append(int(rc.value))
    for topic in [
        "sensorhub/acme/lab/urn:ngsi-ld:Device:lab-1/temperature",  # a workspace it does not reach
        "sensorhub/otherorg/x/dev/temperature",
        "elsewhere/temperature",
        "$CONTROL/sensorhub/v1",
        "sensorhub-ingest/forged/1/sensorhub/acme/plant/dev/t",
    ]:
        d.c.publish(topic, "1", qos=1).wait_for_publish(T)
    assert acks == [0x87] * 5
    # MQTT 5 SUBACK 0x87 (not authorised).
    assert d.subscribe("sensorhub-ingest/#") == [0x87]
    assert d.subscribe("sensorhub/otherorg/#") == [0x87]
    # The permitted one is stored; the refused lab value never is.
    d.c.publish(f"sensorhub/acme/plant/{DEVICE}/temperature", "3", qos=1).wait_for_publish(T)
    assert acks[-1] == 0
    assert wait_for(lambda: attribute(http, token, "temperature") == 3, "the permitted value")
    assert attribute(http, token, "temperature", "urn:ngsi-ld:Device:lab-1") is None
    # MQTT 3.1.1 has no negative PUBACK: a refused QoS 1 message closes the connection (MQTT-3.3.5-2)
    # rather than being acknowledged as if it had been taken; QoS 0 is dropped, the device stays.
    old = devices(w.pat("plant@acme.test", scopes=["ingest"], name="v311"))
    old.c.publish("sensorhub/acme/lab/urn:ngsi-ld:Device:lab-1/temperature", "1", qos=0).wait_for_publish(T)
    assert acknowledged(old, f"sensorhub/acme/plant/{DEVICE}/temperature", "4")  # still connected
    assert not acknowledged(old, "sensorhub/acme/lab/urn:ngsi-ld:Device:lab-1/temperature", "2")
    assert old.closed.wait(T)


def test_read_token_receives_live_values_it_may_read_and_nothing_else(
    http: httpx.Client, w: World, bridge: BridgeProcess, devices: Any
) -> None:
    w.user("viewer@acme.test", "acme", role="viewer", grant_org=False)
    w.grant("viewer@acme.test", "acme", workspace="plant")
    reader = devices(w.pat("viewer@acme.test", scopes=["telemetry"]))
    assert reader.subscribe("sensorhub/#") == [1]
    assert reader.subscribe("#") == [1]  # accepted, narrowed per value like sensorhub/#
    assert reader.subscribe("sensorhub/otherorg/#") == [128]
    writer = devices(w.pat("dev@acme.test", scopes=["ingest"]))
    assert writer.publish("sensorhub/acme/lab/urn:ngsi-ld:Device:lab-1/temperature", "5")
    assert writer.publish(f"sensorhub/acme/plant/{DEVICE}/temperature", "22.25")
    first = reader.wait_messages(1)
    # Values stored by another path (HTTP backfill) reach subscribers too.
    r = http.post(
        f"/v3/devices/{DEVICE}/backfill",
        json={"timestamp": "2026-03-01T00:00:00Z", "topic": "env", "data": {"flow": 7.5}},
        headers=bearer(w.pat("dev@acme.test", scopes=["ingest"], name="http")),
    )
    assert r.status_code == 200, r.text
    assert writer.publish(f"sensorhub/acme/plant/{DEVICE}/temperature", "23")
    msgs = reader.wait_messages(3)
    time.sleep(0.3)  # anything wrongly delivered (the lab value, a raw device message) would be here by now
    msgs = list(reader.messages)
    # Two subscriptions match: Mosquitto may deliver a value once per matching subscription.
    topics = {t for t, _ in msgs}
    assert topics == {f"sensorhub/acme/plant/{DEVICE}/temperature", f"sensorhub/acme/plant/{DEVICE}/flow"}
    assert first[0][1]["value"] == 22.25 and first[0][1]["timestamp"].endswith("Z")
    values = sorted({b["value"] for _, b in msgs})
    assert values == [7.5, 22.25, 23]
    # Every message is a stored value's JSON, never a device's raw payload.
    assert all(set(b) >= {"timestamp", "value"} for _, b in msgs)
    # The payload names the value's Akenza topic (the MQTT topic is the same for all of them).
    assert {b["topic"] for t, b in msgs if t.endswith("/flow")} == {"env"}
    assert {b["topic"] for t, b in msgs if t.endswith("/temperature")} == {"default"}


def test_revocation_mid_session_disconnects_at_once(
    http: httpx.Client, w: World, ctx: AppContext, bridge: BridgeProcess, devices: Any
) -> None:
    from sensorhub.tokens import service as tokens

    token = w.pat("dev@acme.test")
    d = devices(token)
    reader = devices(w.pat("dev@acme.test", scopes=["telemetry"], name="reader"))
    other = devices(w.pat("dev@acme.test", name="other"))
    assert d.publish(f"sensorhub/acme/plant/{DEVICE}/temperature", "1")
    assert reader.subscribe("sensorhub/#") == [1]
    wait_for(lambda: attribute(http, token, "temperature") == 1, "the first value")
    user_id = w.user("dev@acme.test").id
    for name in ("test", "reader"):
        with ctx.db.transaction() as s:
            tokens.revoke(s, next(c for c in tokens.list_pats(s, user_id) if c.name == name), actor_id=None)
    assert d.closed.wait(T)
    assert reader.closed.wait(T)
    assert not other.closed.is_set()
    assert devices(token).reason.is_failure  # reconnecting with the revoked token: CONNACK not authorised


def test_bridge_killed_and_restarted_stores_what_was_published_meanwhile(
    http: httpx.Client, w: World, bridge: BridgeProcess, broker: int, devices: Any
) -> None:
    token = w.pat("dev@acme.test")
    d = devices(token)
    assert d.publish(f"sensorhub/acme/plant/{DEVICE}/temperature", "0")
    wait_for(lambda: series(http, token, "temperature") == [0], "the first value")
    bridge.kill()
    records = [
        f'{{"timestamp": "2026-05-01T00:00:{i:02d}Z", "data": {{"level": {i}}}}}'.encode() for i in range(50)
    ]
    for r in records:
        d.c.publish(f"sensorhub/acme/plant/{DEVICE}", r, qos=0)  # QoS 0: queued for the bridge's session
    assert wait_for(lambda: not d.c.want_write(), "the messages sent")
    assert series(http, token, "level") == []
    bridge.start(broker)
    assert wait_for(lambda: series(http, token, "level") == list(range(50)), "the queued messages", 30)


def test_a_devices_will_or_retained_message_never_reaches_subscribers(
    http: httpx.Client, w: World, bridge: BridgeProcess, devices: Any, broker: int
) -> None:
    """Only stored values reach subscribers: a will message (published by Mosquitto itself when a
    device drops) and a retained publish are not delivered raw."""
    reader = devices(w.pat("dev@acme.test", scopes=["telemetry"], name="reader"))
    assert reader.subscribe("sensorhub/#") == [1]
    token = w.pat("dev@acme.test")
    topic = f"sensorhub/acme/plant/{DEVICE}/temperature"
    d = Device(broker, token)
    d.c.will_set(topic, b'{"timestamp": "2026-01-01T00:00:00Z", "value": 666}', qos=1)
    d.start()
    assert d.publish(topic, "7", qos=1)
    reader.wait_messages(1)  # stored and delivered alone (two points of one batch deliver the newest)
    d.c.publish(topic, "8", qos=1, retain=True).wait_for_publish(T)
    assert [b["value"] for _, b in reader.wait_messages(2)][:2] == [7, 8]
    d.c.socket().close()  # an unexpected disconnect: Mosquitto would publish the will
    d.c.loop_stop()
    time.sleep(1.5)
    assert 666 not in [b["value"] for _, b in reader.messages]
    assert attribute(http, token, "temperature") == 8
    # A later subscriber gets no retained device message.
    late = devices(w.pat("dev@acme.test", scopes=["telemetry"], name="late"))
    assert late.subscribe(topic) == [1]
    time.sleep(0.5)
    assert late.messages == []


def test_mqtt_config_prints_a_configuration_mosquitto_accepts(plugin: Path, tmp_path: Path) -> None:
    """``sensorhub mqtt-config``: the file an operator installs (no token ever logged, no anonymous
    clients, the plugin and its options), which Mosquitto starts with."""
    port = free_port()
    secret = tmp_path / "s"
    secret.write_text(SECRET)
    args = ["--url", "http://127.0.0.1:9", "--secret-file", str(secret), "--listen", f"127.0.0.1:{port}"]
    args += ["--plugin", str(plugin), "--persistence-dir", str(tmp_path)]
    out = subprocess.run(
        [SENSORHUB, "mqtt-config", *args],
        env={**os.environ, "SENSORHUB_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = out.splitlines()
    for line in [
        "allow_anonymous false",
        "connection_messages false",
        f"plugin {plugin}",
        "persistence true",
        "plugin_opt_qos1_store true",  # QoS 1/2 stored before Mosquitto's PUBACK
    ]:
        assert line in lines, out
    conf = tmp_path / "m.conf"
    conf.write_text(out + ("user root\n" if os.geteuid() == 0 else ""))
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        wait_for(lambda: port_open(port) or proc.poll() is not None, "mosquitto")
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(T)
    # A wrong option stops Mosquitto at start, saying which.
    conf.write_text(out + "plugin_opt_cache_secs 5\n" + ("user root\n" if os.geteuid() == 0 else ""))
    bad = subprocess.run(["mosquitto", "-c", str(conf)], capture_output=True, text=True, timeout=T)
    assert bad.returncode != 0 and "plugin_opt_cache_secs" in bad.stderr + bad.stdout
    conf.write_text(out + "plugin_opt_qos1_store maybe\n" + ("user root\n" if os.geteuid() == 0 else ""))
    bad = subprocess.run(["mosquitto", "-c", str(conf)], capture_output=True, text=True, timeout=T)
    assert bad.returncode != 0 and "plugin_opt_qos1_store must be true or false" in bad.stderr + bad.stdout


def test_browsers_publish_and_subscribe_over_websocket(
    http: httpx.Client, w: World, bridge: BridgeProcess, ws_port: int
) -> None:
    """Mosquitto's WebSocket listener (``--websocket``): the same token convention and checks."""
    token = w.pat("dev@acme.test")
    reader = Device(
        ws_port, w.pat("dev@acme.test", scopes=["telemetry"], name="ws-reader"), transport="websockets"
    )
    writer = Device(ws_port, token, transport="websockets")
    try:
        reader.start()
        writer.start()
        assert reader.accepted and writer.accepted
        assert reader.subscribe(f"sensorhub/acme/plant/{DEVICE}/#") == [1]
        assert writer.publish(f"sensorhub/acme/plant/{DEVICE}/temperature", "19.5")
        assert wait_for(lambda: attribute(http, token, "temperature") == 19.5, "the stored value")
        assert reader.wait_messages(1)[0][1]["value"] == 19.5
    finally:
        reader.stop()
        writer.stop()
    refused = Device(ws_port, "shub_pat_wrong", transport="websockets")
    refused.start()
    assert refused.reason.is_failure
    refused.stop()


def test_the_bridge_resumes_a_persisted_mqtt311_session_as_mqtt5(
    http: httpx.Client, w: World, bridge: BridgeProcess, mosquitto: Mosquitto, devices: Any
) -> None:
    """Upgrading from a bridge that had an MQTT 3.1.1 persistent session (clean session off) to the MQTT 5
    one under the same client id: Mosquitto resumes the session it saved — with the subscription and the
    messages queued for it — so nothing queued across the upgrade (and a Mosquitto restart) is lost."""
    from sensorhub.mqtt.bridge import SHARED_SUBSCRIPTION

    token = w.pat("dev@acme.test")
    bridge.kill()
    for clean in (True, False):  # a session of the 3.1.1 client's own (the first connection drops ours)
        old = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id="bridge-test",
            protocol=mqtt.MQTTv311,
            clean_session=clean,
        )
        old.username_pw_set("sensorhub-bridge", SECRET)
        subscribed = threading.Event()
        old.on_subscribe = lambda *_a, done=subscribed: done.set()
        old.connect("127.0.0.1", mosquitto.port)
        old.loop_start()
        old.subscribe(SHARED_SUBSCRIPTION, qos=1)
        assert subscribed.wait(T)
        old.disconnect()
        old.loop_stop()
    d = devices(token)
    for i in range(10):  # QoS 0: queued for the (offline) bridge session, stored by the bridge
        d.c.publish(f"sensorhub/acme/plant/{DEVICE}/level", str(i), qos=0)
    # Mosquitto handles a connection's packets in order: once this PUBACK is in, the ten are queued.
    assert d.publish(f"sensorhub/acme/plant/{DEVICE}/flow", "1")
    d.stop()
    mosquitto.restart()  # the session and its queue come back from Mosquitto's persistence file
    bridge.start(mosquitto.port)
    assert wait_for(lambda: series(http, token, "level") == list(range(10)), "the queued messages", 30)
