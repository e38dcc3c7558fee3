"""The embedded MQTT broker with real clients (paho-mqtt), on SQLite and PostgreSQL.

Each test starts the app (and with it the broker, a lifespan step) on a free port; devices connect with a
token as username and password. Nothing waits on a timer where an event can be awaited: a QoS 1 publish
returns when its PUBACK arrives, which the broker sends only after the message is stored.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from sensorhub.app import create_app
from sensorhub.config import Settings
from sensorhub.context import AppContext
from tests.builders import World, bearer, login
from tests.mqtt.conftest import DEVICE, Device, T, free_port


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def settings(settings: Settings, port: int) -> Settings:
    return settings.model_copy(update={"mqtt_listen": f"127.0.0.1:{port}"})


@pytest.fixture
def http(client: TestClient) -> TestClient:
    """The app's test client: the app, and with it the broker (a lifespan step), runs while it is open."""
    return client


@pytest.fixture
def broker(port: int, http: TestClient) -> int:
    """The embedded broker's port, once it listens."""
    return port


def latest(http: TestClient, token: str, device: str = DEVICE) -> dict[str, Any]:
    r = http.get(f"/api/devices/{device}", headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()


def series(http: TestClient, token: str, attribute: str, device: str = DEVICE) -> dict[str, Any]:
    r = http.get(
        f"/api/timeseries/v2/entities/{device}/data",
        params={
            "attribute": attribute,
            "start_time": "2020-01-01T00:00:00Z",
            "end_time": "2030-01-01T00:00:00Z",
        },
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_qos1_value_is_stored_before_puback_and_shown_by_the_api(
    http: TestClient, w: World, devices: Any
) -> None:
    token = w.pat("dev@acme.test")
    d = devices(token)
    assert d.accepted
    assert d.publish(f"sensorhub/acme/plant/{DEVICE}/temperature", "21.5")
    # The PUBACK came after the commit: the value is readable at once, without waiting.
    assert latest(http, token)["attributes"]["temperature"]["value"] == 21.5
    assert series(http, token, "temperature")["attributes"]["temperature"] == [21.5]
    # A JSON backfill record on the device topic, with its own timestamp and a unit.
    record = {"timestamp": "2026-01-02T03:04:05Z", "data": {"pressure": {"value": 1013.2, "unit": "HPA"}}}
    assert d.publish(f"sensorhub/acme/plant/{DEVICE}", orjson.dumps(record))
    got = series(http, token, "pressure")
    assert got["timestamps"] == ["2026-01-02T03:04:05Z"] and got["attributes"]["pressure"] == [1013.2]
    # Idempotent: the same record again is a duplicate, still acknowledged, nothing added.
    assert d.publish(f"sensorhub/acme/plant/{DEVICE}", orjson.dumps(record))
    assert series(http, token, "pressure")["attributes"]["pressure"] == [1013.2]


def test_subscriber_receives_live_values_it_may_read_and_nothing_else(
    http: TestClient, w: World, devices: Any
) -> None:
    w.user("viewer@acme.test", "acme", role="viewer", grant_org=False)
    w.grant("viewer@acme.test", "acme", workspace="plant")
    reader = devices(w.pat("viewer@acme.test", scopes=["telemetry"]))
    assert reader.subscribe("sensorhub/#") == [1]
    # A filter outside the scheme, and an organisation the token does not reach, are refused.
    assert reader.subscribe("other/#") == [128]
    assert reader.subscribe("sensorhub/otherorg/#") == [128]
    writer = devices(w.pat("dev@acme.test", scopes=["ingest"]))
    assert writer.publish("sensorhub/acme/lab/urn:ngsi-ld:Device:lab-1/temperature", "5")
    assert writer.publish(f"sensorhub/acme/plant/{DEVICE}/temperature", "22.25")
    topic, body = reader.wait_messages(1)[0]
    assert topic == f"sensorhub/acme/plant/{DEVICE}/temperature"
    assert body["value"] == 22.25 and body["timestamp"].endswith("Z")
    # The lab value (not readable by the viewer) never arrives, and the writer's own publish is not
    # echoed raw: a further readable value is the second message.
    assert writer.publish(f"sensorhub/acme/plant/{DEVICE}/temperature", "23")
    msgs = reader.wait_messages(2)
    assert [b["value"] for _, b in msgs] == [22.25, 23]
    # Values stored by any path reach subscribers: here an HTTP backfill (with a unit).
    r = http.post(
        f"/v3/devices/{DEVICE}/backfill",
        json={"timestamp": "2026-03-01T00:00:00Z", "data": {"flow": {"value": 7.5, "unit": "L/MIN"}}},
        headers=bearer(w.pat("dev@acme.test", scopes=["ingest"], name="http")),
    )
    assert r.status_code == 200, r.text
    topic, body = reader.wait_messages(3)[2]
    assert topic == f"sensorhub/acme/plant/{DEVICE}/flow"
    assert body == {"timestamp": "2026-03-01T00:00:00Z", "value": 7.5, "unit": "L/MIN", "topic": "default"}
    # Every Akenza topic reaches subscribers, on the (device, attribute) MQTT topic; the payload says which.
    r = http.post(
        f"/v3/devices/{DEVICE}/backfill",
        json={"timestamp": "2026-03-01T00:01:00Z", "topic": "env", "data": {"flow": 8.5}},
        headers=bearer(w.pat("dev@acme.test", scopes=["ingest"], name="http-env")),
    )
    assert r.status_code == 200, r.text
    topic, body = reader.wait_messages(4)[3]
    assert topic == f"sensorhub/acme/plant/{DEVICE}/flow"
    assert body == {"timestamp": "2026-03-01T00:01:00Z", "value": 8.5, "topic": "env"}
    # A token without telemetry may not subscribe at all.
    assert writer.subscribe("sensorhub/#") == [128]


def test_revoking_the_token_disconnects_its_session_at_once(http: TestClient, w: World, devices: Any) -> None:
    token = w.pat("dev@acme.test")
    d = devices(token)
    other = devices(w.pat("dev@acme.test", name="other"))
    assert d.publish(f"sensorhub/acme/plant/{DEVICE}/temperature", "1")
    login(http, "dev@acme.test")
    listed = http.get("/api/tokens").json()
    cred_id = next(
        t["id"] for t in (listed["tokens"] if isinstance(listed, dict) else listed) if t["name"] == "test"
    )
    assert http.delete(f"/api/tokens/{cred_id}").status_code in (200, 204)
    assert d.closed.wait(T)
    assert not other.closed.is_set()
    assert devices(token).reason.is_failure  # reconnecting with the revoked token: CONNACK not authorised


BAD = [
    ("text", f"sensorhub/acme/plant/{DEVICE}/temperature", "warm"),
    ("nan", f"sensorhub/acme/plant/{DEVICE}/temperature", "NaN"),
    ("infinity", f"sensorhub/acme/plant/{DEVICE}/temperature", "-Infinity"),
    ("non-utf8", f"sensorhub/acme/plant/{DEVICE}/temperature", b"\xff\xfe"),
    ("nan-json", f"sensorhub/acme/plant/{DEVICE}", b'{"data": {"t": NaN}}'),
    (
        "old-timestamp",
        f"sensorhub/acme/plant/{DEVICE}",
        b'{"timestamp": "1066-10-14T00:00:00Z", "data": {"t": 1}}',
    ),
    (
        "all-or-nothing",
        f"sensorhub/acme/plant/{DEVICE}",
        b'[{"data": {"t": 1}}, {"data": {"t": 2}, "extra": 1}]',
    ),
    ("bad-json", f"sensorhub/acme/plant/{DEVICE}", b"\xff{not json"),
    ("oversized", f"sensorhub/acme/plant/{DEVICE}", b"x" * 300_000),
    ("unknown-device", "sensorhub/acme/plant/urn:ngsi-ld:Device:nope/t", "1"),
    ("other-org", f"sensorhub/otherorg/plant/{DEVICE}/t", "1"),
    ("outside-scheme", "elsewhere/t", "1"),
]


def test_bad_messages_store_nothing_and_close_the_connection(
    http: TestClient, w: World, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    token = w.pat("dev@acme.test")
    for name, topic, payload in BAD:
        d = Device(port, token).start()
        assert not d.publish(topic, payload), name
        assert d.closed.wait(T), name
        d.stop()
    # Nothing of any of them was stored, and each refusal was logged without the token.
    assert latest(http, token)["attributes"] == {}
    refusals = [r for r in caplog.records if "mqtt publish refused" in r.getMessage()]
    assert len(refusals) == len(BAD)
    assert not any(token in r.getMessage() for r in caplog.records)


def test_connect_refusals(http: TestClient, w: World, port: int) -> None:
    good = w.pat("dev@acme.test")
    cases = [
        (None, None),  # anonymous
        ("shub_pat_notarealtoken", None),  # bad checksum
        (good, "someone-else"),  # username differs from the token
        (w.pat("dev@acme.test", scopes=["timeseries"], name="ts"), None),  # neither ingest nor telemetry
    ]
    for token, username in cases:
        d = Device(port, token, username=username)
        d.start()
        assert d.reason.is_failure, (token, username)
        d.stop()


def test_a_token_without_ingest_cannot_publish(http: TestClient, w: World, devices: Any) -> None:
    token = w.pat("dev@acme.test", scopes=["telemetry"])
    d = devices(token)
    assert d.accepted
    assert not d.publish(f"sensorhub/acme/plant/{DEVICE}/temperature", "1")
    assert d.closed.wait(T)
    assert latest(http, token)["attributes"] == {}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1, made for this test run."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(d / "cert.pem"), str(d / "key.pem")


def test_tls_websocket_and_secure_websocket_listeners(
    settings: Settings, certificate: tuple[str, str]
) -> None:
    cert, key = certificate
    ports = {name: free_port() for name in ("tls", "ws", "wss")}
    s = settings.model_copy(
        update={
            "mqtt_tls_listen": f"127.0.0.1:{ports['tls']}",
            "mqtt_ws_listen": f"127.0.0.1:{ports['ws']}",
            "mqtt_wss_listen": f"127.0.0.1:{ports['wss']}",
            "mqtt_certfile": cert,
            "mqtt_keyfile": key,
            "require_https": True,  # tokens only over TLS: the plain WebSocket listener refuses them
            "mqtt_listen": None,  # only these three listeners
        }
    )
    ctx = AppContext.build(s)
    w = World(ctx)
    w.org("acme", workspaces=("plant",))
    w.user("dev@acme.test", "acme", role="admin")
    w.entity("acme", "plant", DEVICE)
    token = w.pat("dev@acme.test")
    try:
        with TestClient(create_app(s, ctx), base_url="http://testserver") as http:
            for i, (name, transport, tls) in enumerate(
                [("tls", "tcp", True), ("wss", "websockets", True), ("ws", "websockets", False)]
            ):
                d = Device(ports[name], token, transport=transport)
                if tls:
                    d.c.tls_set(ca_certs=cert)
                d.start()
                if not tls:
                    assert d.reason.is_failure  # a token over plain WebSocket with require_https
                    d.stop()
                    continue
                assert d.accepted, name
                assert d.publish(f"sensorhub/acme/plant/{DEVICE}/level", str(i))
                d.stop()
            assert series(http, token, "level")["attributes"]["level"] == [0, 1]
    finally:
        ctx.db.dispose()


def test_will_messages_never_reach_subscribers(http: TestClient, w: World, devices: Any, port: int) -> None:
    token = w.pat("dev@acme.test")
    topic = f"sensorhub/acme/plant/{DEVICE}/temperature"
    d = Device(port, token)
    d.c.will_set(topic, "666", qos=1, retain=True)
    d.start()
    assert d.accepted
    d.c.loop_stop()
    d.c.socket().close()  # gone without DISCONNECT: the broker would publish (and retain) the will
    service = http.app.state.mqtt  # type: ignore[attr-defined]
    deadline = time.monotonic() + T
    while service.handlers and time.monotonic() < deadline:  # the broker has seen it go
        time.sleep(0.01)
    assert not service.handlers
    assert not service.broker.retained_messages
    reader = devices(token)
    assert reader.subscribe("sensorhub/#") == [1]
    assert devices(token).publish(topic, "1.5")
    _, body = reader.wait_messages(1)[0]
    assert body["value"] == 1.5  # the first (and only) message: no will, no retained will
    assert series(http, token, "temperature")["attributes"]["temperature"] == [1.5]


def test_a_token_expiring_mid_session_is_disconnected(
    http: TestClient, w: World, devices: Any, clock: Any
) -> None:
    from datetime import timedelta

    d = devices(w.pat("dev@acme.test"))  # expires in 365 days (the default)
    assert d.publish(f"sensorhub/acme/plant/{DEVICE}/temperature", "1")
    clock.advance(timedelta(days=366))
    assert d.closed.wait(T)


def test_a_burst_of_values_is_stored_in_full_and_acknowledged_in_order(
    http: TestClient, w: World, devices: Any
) -> None:
    """Messages are stored in batches (one ingest call per device when it can): 110 new attributes at
    once exceed what one ingest call may create (100 series), so that batch falls back to one call per
    message, and every value is still stored; the last PUBACK comes after all of them."""
    token = w.pat("dev@acme.test")
    d = devices(token)
    for i in range(110):
        d.c.publish(f"sensorhub/acme/plant/{DEVICE}/a{i}", str(i), qos=0)
    # 110 new series one by one take a while on a loaded machine: a generous bound, not a timing.
    assert d.publish(f"sensorhub/acme/plant/{DEVICE}/last", "1", qos=1, timeout=60)
    attributes = latest(http, token)["attributes"]
    assert len(attributes) == 111
    assert attributes["a109"]["value"] == 109


def test_revocation_by_another_process_disconnects_too(
    http: TestClient, w: World, devices: Any, settings: Settings
) -> None:
    """``sensorhub admin revoke-token`` runs in a process of its own: the broker hears of it through the
    epoch file of the data directory (or Redis), not through its own database listeners."""
    from sensorhub.tokens import service as tokens

    token = w.pat("dev@acme.test")
    d = devices(token)
    user_id = w.user("dev@acme.test").id
    other = AppContext.build(settings)  # as the CLI builds it, with its own cache and listeners
    try:
        with other.db.transaction() as s:
            cred = next(c for c in tokens.list_pats(s, user_id) if c.name == "test")
            tokens.revoke(s, cred, actor_id=None)
    finally:
        other.db.dispose()
    assert d.closed.wait(T)


def test_auto_provisioning_creates_a_device_on_its_first_message(
    http: TestClient, w: World, devices: Any
) -> None:
    token = w.pat("dev@acme.test")
    new = "urn:ngsi-ld:Device:pump-new"
    d = devices(token)
    # Off (the default): the unknown device is refused and the connection closed.
    assert not d.publish(f"sensorhub/acme/plant/{new}/temperature", "20.0")
    login(http, "dev@acme.test")
    r = http.put("/api/orgs/acme/workspaces/plant/auto-provisioning", json={"enabled": True, "type": "Pump"})
    assert r.status_code == 200, r.text
    d = devices(token)
    assert d.publish(f"sensorhub/acme/plant/{new}/temperature", "21.0")
    got = latest(http, token, new)
    assert got["type"] == "Pump" and got["attributes"]["temperature"]["value"] == 21.0
    # In the workspace the topic names, not in another one.
    assert not d.publish("sensorhub/acme/lab/urn:ngsi-ld:Device:lab-new/temperature", "1.0")
    assert http.get("/api/devices/urn:ngsi-ld:Device:lab-new", headers=bearer(token)).status_code == 404
