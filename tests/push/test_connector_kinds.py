"""MQTT, InfluxDB and e-mail connectors, each against its real server: Mosquitto on 127.0.0.1:1883,
an ``influxd`` started here on a free port, and an SMTP server (aiosmtpd) in the test process."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient

from sensorhub.config import Settings
from tests.builders import World, bearer, login
from tests.conftest import service_unavailable
from tests.push.conftest import Broker, running_influxd
from tests.push.test_mail import Inbox, free_port
from tests.smtp import smtp_settings

DEV = "urn:ngsi-ld:Device:pump-7"


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    c = Controller(inbox, hostname="127.0.0.1", port=port)
    c.start()
    yield inbox, port
    c.stop()


@pytest.fixture
def settings(settings: Settings, smtp_server: tuple[Inbox, int]) -> Settings:
    return smtp_settings(settings, smtp_server[1], smtp_sender="hub@example.test")


@pytest.fixture
def admin(client: TestClient, world: World) -> TestClient:
    world.org("acme")
    world.entity("acme", "main", DEV, type_="Pump")
    world.user("owner@acme.test", "acme", role="owner")
    login(client, "owner@acme.test")
    return client


def _connect(
    admin: TestClient, kind: str, config: dict[str, Any], secrets: dict[str, Any] | None = None
) -> str:
    r = admin.post(
        "/api/orgs/acme/connectors",
        json={"kind": kind, "name": kind, "config": config, "secrets": secrets or {}},
    )
    assert r.status_code == 201, r.text
    cid = str(r.json()["id"])
    r = admin.post(
        "/api/orgs/acme/rules", json={"name": f"all to {kind}", "actions": [{"connector_id": cid}]}
    )
    assert r.status_code == 201, r.text
    return cid


def _backfill(
    admin: TestClient, world: World, points: list[tuple[str, float]], topic: str = "default"
) -> None:
    key = world.api_key("acme", scopes=["ingest"], name=f"k{uuid.uuid4().hex[:6]}")
    body = [
        {"timestamp": t, "topic": topic, "data": {"pressure": {"value": v, "unit": "BAR"}}} for t, v in points
    ]
    r = admin.post(f"/v3/devices/{DEV}/backfill", json=body, headers=bearer(key))
    assert r.status_code == 200, r.text


def _until(pred: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_mqtt_connector_publishes_per_device_and_attribute(
    admin: TestClient, world: World, broker: Broker
) -> None:
    prefix = broker.prefix
    cid = _connect(
        admin,
        "mqtt",
        {
            "host": "127.0.0.1",
            "port": 1883,
            "topic": prefix + "/{org}/{workspace}/{device}/{attribute}/{topic}",
        },
    )
    _backfill(admin, world, [("2026-01-01T00:00:00Z", 1.5), ("2026-01-01T00:01:00Z", 1.7)])
    _until(lambda: broker.got)
    topic, payload = broker.got[0].topic, broker.got[0].payload
    assert topic == f"{prefix}/acme/main/{DEV}/pressure/default"
    import json

    p = json.loads(payload)
    assert [pt["value"] for pt in p["data"][0]["points"]] == [1.5, 1.7] and p["id"].startswith("shd_")
    # Another Akenza topic: its own MQTT topic through {topic}, and the payload names it.
    _backfill(admin, world, [("2026-01-01T00:02:00Z", 9.5)], topic="env")
    _until(lambda: len(broker.got) >= 2)
    topic, payload = broker.got[1].topic, broker.got[1].payload
    assert topic == f"{prefix}/acme/main/{DEV}/pressure/env"
    p = json.loads(payload)
    assert [(d["topic"], d["points"][0]["value"]) for d in p["data"]] == [("env", 9.5)]
    r = admin.post(f"/api/orgs/acme/connectors/{cid}/test")
    assert r.json()["status"] == "delivered"
    # A broker that is not there: a visible failed attempt, not an exception.
    bad = admin.post(
        "/api/orgs/acme/connectors",
        json={"kind": "mqtt", "name": "x", "config": {"host": "127.0.0.1", "port": free_port()}},
    )
    r = admin.post(f"/api/orgs/acme/connectors/{bad.json()['id']}/test")
    assert r.json()["status"] == "dead" and "cannot connect" in r.json()["last_error"]


@pytest.fixture(scope="module")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(running_influxd(tmp_path_factory.mktemp("influx")))
        except RuntimeError as e:
            service_unavailable("influxd", e)
        yield url


def test_influxdb_connector_writes_line_protocol(
    admin: TestClient, world: World, influxd: str, backend: str
) -> None:
    db = f"sh_{backend}_{uuid.uuid4().hex[:6]}"
    assert httpx.post(f"{influxd}/query", params={"q": f'CREATE DATABASE "{db}"'}).status_code == 200
    _connect(admin, "influxdb", {"url": influxd, "database": db, "measurement": "plant"})
    _backfill(
        admin,
        world,
        [("2026-01-01T00:00:00Z", 2.0), ("2026-01-01T00:00:30Z", 2.5), ("2026-01-01T00:01:00Z", 3.0)],
    )

    _backfill(admin, world, [("2026-01-01T00:00:30Z", 7.0)], topic="env")

    def rows() -> list[Any]:
        r = httpx.get(
            f"{influxd}/query",
            params={"db": db, "q": "SELECT pressure, device, unit, topic FROM plant", "epoch": "s"},
        )
        series = r.json()["results"][0].get("series", [])
        return list(series[0]["values"]) if series else []

    _until(lambda: len(rows()) == 4)
    # The topic is a tag: the env point at 00:00:30 is its own series, next to the default one's.
    assert sorted(rows(), key=lambda x: (x[0], x[4])) == [
        [1767225600, 2.0, DEV, "BAR", "default"],
        [1767225630, 2.5, DEV, "BAR", "default"],
        [1767225630, 7.0, DEV, "BAR", "env"],
        [1767225660, 3.0, DEV, "BAR", "default"],
    ]
    # A database that does not exist: InfluxDB answers 404, a dead letter with its message.
    cid = _connect(admin, "influxdb", {"url": influxd, "database": "nope"})
    r = admin.post(f"/api/orgs/acme/connectors/{cid}/test")
    assert r.json()["status"] == "dead" and "404" in r.json()["last_error"], r.json()


def test_email_connector_sends_the_rule_message(
    admin: TestClient, world: World, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, _port = smtp_server
    before = len(inbox.messages)
    r = admin.post(
        "/api/orgs/acme/connectors",
        json={"kind": "email", "name": "ops", "config": {"to": ["ops@example.test"]}},
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    rule = {
        "name": "pressure high",
        "condition": {"type": "above", "attribute": "pressure", "threshold": 5},
        "topic": "env",
        "actions": [
            {
                "connector_id": cid,
                "template": "{{ device.id }}: pressure {{ value }} {{ unit }} on {{ topic }} ({{ state }})",
            }
        ],
    }
    assert admin.post("/api/orgs/acme/rules", json=rule).status_code == 201
    _backfill(admin, world, [("2026-01-01T00:00:00Z", 9.0)])  # the default topic: not watched
    _backfill(admin, world, [("2026-01-01T00:00:00Z", 4.0), ("2026-01-01T00:01:00Z", 6.5)], topic="env")
    _until(lambda: len(inbox.messages) > before)
    mail = inbox.messages[before]
    body = mail.content.decode()
    assert mail.rcpt_tos == ["ops@example.test"] and mail.mail_from == "hub@example.test"
    assert f"Subject: [sensorhub] pressure high: {DEV} is firing" in body
    assert f"{DEV}: pressure 6.5 BAR on env (firing)" in body and "X-Sensorhub-Delivery: shd_" in body
    assert '"topic": "env"' in body
    time.sleep(0.5)
    assert len(inbox.messages) == before + 1  # the default topic's 9.0 fired nothing
    bad = admin.post(
        "/api/orgs/acme/connectors", json={"kind": "email", "name": "x", "config": {"to": ["not an address"]}}
    )
    assert bad.status_code == 400 and "config.to" in bad.json()["message"]


@pytest.fixture
def influx_v2_sink(settings: Settings, ctx: Any) -> Iterator[str]:
    """An InfluxDB 2.x write API on loopback: sensorhub's own ``/api/v2/write`` (Token auth, org, bucket,
    precision), served by uvicorn over the same database (no InfluxDB 2.x server is packaged here)."""
    import uvicorn

    from sensorhub.app import create_app

    sink_settings = settings.model_copy(update={"embedded_worker": False})
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(sink_settings, ctx), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _until(lambda: server.started, timeout=30)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_influxdb_2_connector_writes_with_its_token_org_and_bucket(
    admin: TestClient, world: World, influx_v2_sink: str
) -> None:
    # The sink is another organisation of the same server, written with its own ingest key.
    world.org("sink")
    world.entity("sink", "main", DEV, type_="Pump")
    sink_key = world.api_key("sink", scopes=["ingest"], name="influx-v2-sink")
    config = {"url": influx_v2_sink, "version": "2", "org": "sink", "bucket": "main", "measurement": "plant"}
    _connect(admin, "influxdb", config, {"token": sink_key})
    _backfill(admin, world, [("2026-01-01T00:00:00Z", 2.0), ("2026-01-01T00:00:30Z", 2.5)])

    sink_reader = world.api_key("sink", scopes=["timeseries"], name="reader")

    def stored() -> list[Any]:
        r = admin.post(
            f"/v3/devices/{DEV}/query",
            json={"timestamp": {"gte": "2026-01-01T00:00:00Z"}, "limit": 10},
            headers=bearer(sink_reader),
        )
        return list(r.json()) if r.status_code == 200 else []

    _until(lambda: len(stored()) == 2, timeout=30)
    data = stored()
    assert sorted(d["data"]["plant_pressure"] for d in data) == [2.0, 2.5], data
    # A wrong token: the write API answers 401, a dead letter saying so (the token is never shown).
    cid = _connect(admin, "influxdb", config, {"token": "shub_key_" + "x" * 40})
    r = admin.post(f"/api/orgs/acme/connectors/{cid}/test")
    body = r.json()
    assert body["status"] == "dead" and "401" in body["last_error"], body
    assert "x" * 40 not in r.text


@pytest.fixture(scope="module")
def tls_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str, str, str]]:
    """A Mosquitto of this test's own with only a TLS listener (a self-signed certificate for 127.0.0.1)
    and a password file: (port, CA PEM, username, password)."""
    import os

    from tests.mqtt.test_embedded_broker import certificate as make_certificate

    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        service_unavailable("mosquitto", FileNotFoundError("apt-get install -y mosquitto"))
    cert, key = make_certificate.__wrapped__(tmp_path_factory)  # type: ignore[attr-defined]
    d = tmp_path_factory.mktemp("mosquitto-tls")
    user, password = "connector", uuid.uuid4().hex
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwd"), user, password], check=True)
    port = free_port()
    (d / "mosquitto.conf").write_text(
        ("user root\n" if os.geteuid() == 0 else "")
        + f"per_listener_settings false\nallow_anonymous false\npassword_file {d / 'passwd'}\n"
        f"listener {port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\n"
    )
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(d / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        import socket

        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    service_unavailable("mosquitto (TLS)", RuntimeError("did not start"))
                time.sleep(0.1)
        yield port, Path(cert).read_text(), user, password
    finally:
        proc.terminate()
        proc.wait(10)


def test_mqtt_connector_over_tls_with_credentials(
    admin: TestClient, world: World, tls_mosquitto: tuple[int, str, str, str]
) -> None:
    import ssl

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    port, ca, user, password = tls_mosquitto
    prefix = f"shtls-{uuid.uuid4().hex[:8]}"
    got: list[tuple[str, bytes]] = []
    ready = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.username_pw_set(user, password)
    sub.tls_set_context(ssl.create_default_context(cadata=ca))
    sub.on_subscribe = lambda *_: ready.set()
    sub.on_connect = lambda c, *_: c.subscribe(f"{prefix}/#", qos=1)
    sub.on_message = lambda _c, _u, m: got.append((m.topic, m.payload))
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    try:
        assert ready.wait(10)
        config = {"host": "127.0.0.1", "port": port, "tls": True, "ca_cert": ca, "username": user}
        config["topic"] = prefix + "/{device}/{attribute}"
        _connect(admin, "mqtt", config, {"password": password})
        _backfill(admin, world, [("2026-01-01T00:00:00Z", 4.25)])
        _until(lambda: got)
        assert got[0][0] == f"{prefix}/{DEV}/pressure"
        import json

        assert json.loads(got[0][1])["data"][0]["points"][0]["value"] == 4.25
        # A wrong password, and a broker certificate the connector's CA does not sign: visible failures.
        wrong = _connect(admin, "mqtt", config, {"password": "not-" + password})
        r = admin.post(f"/api/orgs/acme/connectors/{wrong}/test").json()
        assert r["status"] == "dead" and password not in str(r), r
        untrusted = _connect(admin, "mqtt", {**config, "ca_cert": None}, {"password": password})
        r = admin.post(f"/api/orgs/acme/connectors/{untrusted}/test").json()
        assert r["status"] == "dead" and "certificate" in r["last_error"].lower(), r
    finally:
        sub.loop_stop()
        sub.disconnect()
