"""NGSI-LD subscriptions notified over MQTT (ETSI GS CIM 009 MQTT binding) end to end: a subscription
with an ``mqtt://`` endpoint on the local Mosquitto (127.0.0.1:1883, a unique topic prefix per test)
gets the spec-shaped message after a backfill — MQTT 3.1.1 wrapped as ``{metadata, body}``, MQTT 5.0
with the metadata as user properties — through the delivery queue (QoS, retries, the owner's current
access); bad URIs and notifierInfo refused by name; the URI's password never shown back. SQLite and
PostgreSQL (the push conftest: fast retries, local targets allowed)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi.testclient import TestClient

from sensorhub.push.crypto import decrypt
from sensorhub.push.subscription_models import NgsiSubscription
from sensorhub.tokens import service as tokens
from tests.builders import World, bearer
from tests.push.conftest import Broker
from tests.push.test_ngsi_subscriptions import (
    DEV,
    SUBS,
    backfill,
    eventually,
    seed,
    subscription,
    tokens_owner,
)


def mqtt_subscription(uri: str, *info: tuple[str, str], **extra: Any) -> dict[str, Any]:
    body = subscription(uri, **extra)
    if info:
        body["notification"]["endpoint"]["notifierInfo"] = [{"key": k, "value": v} for k, v in info]
    return body


def test_an_mqtt_endpoint_gets_the_wrapped_notification_and_nothing_after_revocation(
    client: TestClient, world: World, broker: Broker
) -> None:
    read, key = seed(world)
    topic = f"{broker.prefix}/ann"
    uri = f"mqtt://127.0.0.1:1883/{topic}"
    r = client.post(SUBS, json=mqtt_subscription(uri, ("MQTT-QoS", "1")), headers=bearer(read))
    assert r.status_code == 201, r.text
    sub_id = r.headers["Location"].rsplit("/", 1)[1]
    world.user("bob@acme.test", "acme", "member")
    other = world.pat("bob@acme.test", ["entities"], name="sentinel")
    sentinel = mqtt_subscription(f"mqtt://127.0.0.1/{broker.prefix}/sentinel", q="temperature>0")
    assert client.post(SUBS, json=sentinel, headers=bearer(other)).status_code == 201

    backfill(client, key, "2026-01-01T00:00:00Z", 25.0)  # q does not hold
    backfill(client, key, "2026-01-01T00:01:00Z", 35.5)
    [got] = broker.wait_for(1, topic)
    assert got.qos == 1 and got.user_properties == {}
    message = got.json()
    assert set(message) == {"metadata", "body"}
    assert message["metadata"]["Content-Type"] == "application/json"
    assert "ngsi-ld-core-context" in message["metadata"]["Link"]
    n = message["body"]
    assert n["type"] == "Notification" and n["subscriptionId"] == sub_id
    assert n["id"].startswith("urn:ngsi-ld:Notification:") and n["notifiedAt"].endswith("Z")
    assert n["data"] == [{"id": DEV, "type": "Device", "temperature": 35.5}]
    shown = eventually(
        lambda: client.get(f"{SUBS}/{sub_id}", headers=bearer(read)).json(),
        lambda x: x["notification"]["timesSent"] == 1,
    )
    assert "lastSuccess" in shown["notification"] and shown["notification"]["status"] == "ok"
    assert shown["notification"]["endpoint"] == {
        "uri": uri,
        "accept": "application/json",
        "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}],
    }

    with world.ctx.db.transaction() as s:
        cred = next(c for c in tokens.list_pats(s, tokens_owner(world, "ann@acme.test")) if c.name == "read")
        tokens.revoke(s, cred, actor_id=None)
    backfill(client, key, "2026-01-01T00:02:00Z", 40.0)
    broker.wait_for(3, f"{broker.prefix}/sentinel")
    time.sleep(0.3)
    assert len([g for g in broker.got if g.topic == topic]) == 1  # nothing for the revoked token


def test_mqtt5_sends_the_notification_as_payload_with_user_properties(
    client: TestClient, world: World, broker: Broker
) -> None:
    read, key = seed(world)
    topic = f"{broker.prefix}/v5"
    body = mqtt_subscription(f"mqtt://127.0.0.1/{topic}", ("MQTT-Version", "mqtt5.0"), ("MQTT-QoS", "2"))
    body["notification"]["endpoint"]["accept"] = "application/ld+json"
    assert client.post(SUBS, json=body, headers=bearer(read)).status_code == 201
    backfill(client, key, "2026-01-01T00:01:00Z", 31.0)
    [got] = broker.wait_for(1, topic)
    assert got.qos == 2
    assert got.user_properties == {"Content-Type": "application/ld+json"}
    n = got.json()
    assert n["type"] == "Notification" and n["data"][0]["temperature"] == 31.0


def test_an_unreachable_broker_is_retried_and_shown_as_failure(client: TestClient, world: World) -> None:
    read, key = seed(world)
    r = client.post(SUBS, json=mqtt_subscription("mqtt://127.0.0.1:9/nobody"), headers=bearer(read))
    assert r.status_code == 201, r.text
    sub_id = r.headers["Location"].rsplit("/", 1)[1]
    backfill(client, key, "2026-01-01T00:01:00Z", 35.5)
    shown = eventually(
        lambda: client.get(f"{SUBS}/{sub_id}", headers=bearer(read)).json(),
        lambda x: x["notification"]["timesFailed"] >= 2,
    )
    assert shown["notification"]["status"] == "failed" and "lastFailure" in shown["notification"]
    assert shown["notification"]["timesSent"] == 0 and "lastSuccess" not in shown["notification"]


def test_the_uri_password_is_sealed_and_masked(client: TestClient, world: World) -> None:
    read, _ = seed(world)
    uri = "mqtts://sensor:s3cr%40t@127.0.0.1:8883/a/b"
    r = client.post(SUBS, json=mqtt_subscription(uri), headers=bearer(read))
    assert r.status_code == 201, r.text
    sub_id = r.headers["Location"].rsplit("/", 1)[1]
    got = client.get(f"{SUBS}/{sub_id}", headers=bearer(read))
    assert got.json()["notification"]["endpoint"]["uri"] == "mqtts://sensor:***@127.0.0.1:8883/a/b"
    assert "s3cr" not in got.text and "s3cr" not in client.get(SUBS, headers=bearer(read)).text
    with world.ctx.db.session() as s:
        stored = s.query(NgsiSubscription).one().spec
    assert "s3cr" not in orjson.dumps(stored).decode()
    # A PATCH of another member keeps the sealed password; a new endpoint without one drops it.
    r = client.patch(f"{SUBS}/{sub_id}", json={"description": "x"}, headers=bearer(read))
    assert r.status_code == 204, r.text
    shown = client.get(f"{SUBS}/{sub_id}", headers=bearer(read)).json()
    assert shown["notification"]["endpoint"]["uri"] == "mqtts://sensor:***@127.0.0.1:8883/a/b"
    # The URI sent back as shown (*** for the password) keeps the stored password; *** elsewhere is refused.
    masked = {"endpoint": {"uri": "mqtts://sensor:***@127.0.0.1:8883/a/b"}}
    r = client.patch(f"{SUBS}/{sub_id}", json={"notification": masked}, headers=bearer(read))
    assert r.status_code == 204, r.text
    with world.ctx.db.session() as s:
        endpoint = s.query(NgsiSubscription).one().spec["notification"]["endpoint"]
    assert decrypt(world.ctx.settings, endpoint["secret"]) == {"password": "s3cr@t"}
    moved = {"endpoint": {"uri": "mqtts://sensor:***@127.0.0.1:8883/other"}}
    r = client.patch(f"{SUBS}/{sub_id}", json={"notification": moved}, headers=bearer(read))
    assert r.status_code == 400 and "real password" in r.text, r.text
    r = client.post(SUBS, json=mqtt_subscription("mqtt://u:***@127.0.0.1/t"), headers=bearer(read))
    assert r.status_code == 400 and "real password" in r.text, r.text
    note = {"endpoint": {"uri": "mqtt://127.0.0.1/a/b"}}
    assert (
        client.patch(f"{SUBS}/{sub_id}", json={"notification": note}, headers=bearer(read)).status_code == 204
    )
    shown = client.get(f"{SUBS}/{sub_id}", headers=bearer(read)).json()
    assert shown["notification"]["endpoint"]["uri"] == "mqtt://127.0.0.1/a/b"


def test_bad_mqtt_endpoints_are_refused_by_name(client: TestClient, world: World) -> None:
    read, _ = seed(world)

    def refused(body: Any) -> str:
        r = client.post(SUBS, json=body, headers=bearer(read))
        assert r.status_code == 400, r.text
        return str(r.json()["detail"])

    ok = "mqtt://127.0.0.1/t"
    assert "topic" in refused(mqtt_subscription("mqtt://127.0.0.1"))
    assert "topic" in refused(mqtt_subscription("mqtt://127.0.0.1/a/#"))
    assert "port" in refused(mqtt_subscription("mqtt://127.0.0.1:99999/t"))
    assert "'MQTT-Retain'" in refused(mqtt_subscription(ok, ("MQTT-Retain", "true")))
    assert "MQTT-Version" in refused(mqtt_subscription(ok, ("MQTT-Version", "mqtt3.1")))
    assert "MQTT-QoS" in refused(mqtt_subscription(ok, ("MQTT-QoS", "3")))
    assert "twice" in refused(mqtt_subscription(ok, ("MQTT-QoS", "1"), ("MQTT-QoS", "2")))
    assert "notifierInfo" in refused(mqtt_subscription("http://127.0.0.1:9/hook", ("MQTT-QoS", "1")))
    bad = mqtt_subscription(ok)
    bad["notification"]["endpoint"]["notifierInfo"] = [{"key": "MQTT-QoS"}]
    assert "key and value" in refused(bad)
    assert client.get(SUBS, headers=bearer(read)).json() == []  # nothing was stored


def test_a_private_broker_is_refused_unless_allowed(client: TestClient, world: World) -> None:
    read, _ = seed(world)
    world.ctx.settings.push_allow_private_targets = False
    try:
        r = client.post(SUBS, json=mqtt_subscription("mqtt://127.0.0.1/t"), headers=bearer(read))
    finally:
        world.ctx.settings.push_allow_private_targets = True
    assert r.status_code == 400 and "notification.endpoint.uri" in r.json()["detail"], r.text
