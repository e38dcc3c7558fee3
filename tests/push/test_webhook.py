"""Webhook connectors end to end: a threshold rule made through the API, data backfilled with an
ingest key, a signed message at a real local receiver; retries in order, 410, revoked owners, SSRF."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sensorhub.context import AppContext
from tests.builders import World, bearer, login
from tests.push.conftest import Receiver

DEV = "urn:ngsi-ld:Device:boiler-1"


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """The receiver side, as docs/push.md shows it."""
    parts = [p.split("=", 1) for p in header.split(",")]
    t = int(next(v for k, v in parts if k == "t"))
    if abs(time.time() - t) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return any(k == "v1" and hmac.compare_digest(v, expected) for k, v in parts)


@pytest.fixture
def admin(client: TestClient, world: World) -> TestClient:
    world.org("acme")
    world.entity("acme", "main", DEV)
    world.user("owner@acme.test", "acme", role="owner")
    login(client, "owner@acme.test")
    return client


def make_webhook(client: TestClient, url: str, **extra: Any) -> dict[str, Any]:
    r = client.post(
        "/api/orgs/acme/connectors", json={"kind": "webhook", "name": "hook", "config": {"url": url, **extra}}
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def make_rule(client: TestClient, connector_id: str, condition: Any, **extra: Any) -> dict[str, Any]:
    body = {
        "name": "too hot",
        "workspace": "main",
        "condition": condition,
        "actions": [{"connector_id": connector_id, "template": "{{ device.id }} is {{ value }} {{ unit }}"}],
        **extra,
    }
    r = client.post("/api/orgs/acme/rules", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def backfill(
    client: TestClient, key: str, points: list[tuple[str, float]], attr: str = "temperature"
) -> None:
    body = [{"timestamp": t, "data": {attr: {"value": v, "unit": "CEL"}}} for t, v in points]
    r = client.post(f"/v3/devices/{DEV}/backfill", json=body, headers=bearer(key))
    assert r.status_code == 200, r.text


def test_threshold_rule_sends_a_signed_message(admin: TestClient, world: World, receiver: Receiver) -> None:
    hook = make_webhook(admin, receiver.url)
    secret = hook["secrets"]["signing_secret"]
    assert secret.startswith("whsec_")
    # Never shown again: not in the list, not in the connector.
    assert secret not in admin.get("/api/orgs/acme/connectors").text
    assert secret not in admin.get(f"/api/orgs/acme/connectors/{hook['id']}").text
    rule = make_rule(
        admin, hook["id"], {"type": "above", "attribute": "temperature", "threshold": 30, "hysteresis": 2}
    )
    key = world.api_key("acme", scopes=["ingest"])
    backfill(
        admin,
        key,
        [("2026-01-01T00:00:00Z", 25), ("2026-01-01T00:01:00Z", 31.5), ("2026-01-01T00:02:00Z", 29.5)],
    )
    (msg,) = receiver.wait_for(lambda r: len(r) >= 1)
    assert verify(secret, msg.headers["x-sensorhub-signature"], msg.body)
    assert not verify("whsec_wrong", msg.headers["x-sensorhub-signature"], msg.body)
    p = msg.json()
    assert msg.headers["idempotency-key"] == p["id"] == msg.headers["x-sensorhub-delivery"]
    assert p["type"] == "sensorhub.rule" and p["device"]["id"] == DEV and p["organisation"] == "acme"
    assert p["rule"]["state"] == "firing" and p["rule"]["value"] == 31.5
    assert p["data"] == [
        {
            "attribute": "temperature",
            "topic": "default",
            "kind": "numeric",
            "unit": "CEL",
            "points": [{"time": "2026-01-01T00:01:00Z", "value": 31.5}],
        }
    ]
    assert p["text"] == f"{DEV} is 31.5 CEL"
    # 29.5 is within the hysteresis: still firing; 27 clears (not notified: notify_resolved is off).
    backfill(admin, key, [("2026-01-01T00:03:00Z", 27.0)])
    state = _wait(
        lambda: admin.get(f"/api/orgs/acme/rules/{rule['id']}").json(), lambda r: r["state"] == "ok"
    )
    assert state["devices"][0]["device"] == DEV
    hist = admin.get(f"/api/orgs/acme/rules/{rule['id']}/history").json()
    assert [(h["from"], h["to"], h["notified"]) for h in hist] == [
        ("firing", "ok", False),
        ("ok", "firing", True),
    ]
    log = admin.get(f"/api/orgs/acme/connectors/{hook['id']}/deliveries").json()
    assert [(d["status"], d["attempts"]) for d in log] == [("delivered", 1)]


def _values(received: list[Any]) -> list[float]:
    return [p["value"] for m in received for d in m.json()["data"] for p in d["points"]]


def _wait(get: Any, pred: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = get()
        if pred(v) or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


def test_receiver_failing_then_recovering_gets_everything_in_order(
    admin: TestClient, world: World, receiver: Receiver
) -> None:
    hook = make_webhook(admin, receiver.url)
    admin.post("/api/orgs/acme/rules", json={"name": "all", "actions": [{"connector_id": hook["id"]}]})
    receiver.statuses = [500, 503, 500]
    key = world.api_key("acme", scopes=["ingest"])
    for i in range(4):
        backfill(admin, key, [(f"2026-01-01T00:0{i}:00Z", float(i))])
    # Events of one device that arrive together go out in one message: count the points.
    got = receiver.wait_for(lambda r: len(_values(r)) >= 4)
    assert _values(got) == [0.0, 1.0, 2.0, 3.0]
    assert receiver.answered[:3] == [500, 503, 500]
    log = admin.get(f"/api/orgs/acme/connectors/{hook['id']}/deliveries").json()
    first = log[-1]
    detail = admin.get(f"/api/orgs/acme/connectors/{hook['id']}/deliveries/{first['id']}").json()
    assert [(a["ok"], a["status_code"]) for a in detail["attempt_log"]] == [
        (False, 500),
        (False, 503),
        (False, 500),
        (True, 200),
    ]
    assert "HTTP 500" in detail["attempt_log"][0]["error"]


def test_gone_disables_the_connector_and_dead_letters_replay(
    admin: TestClient, world: World, receiver: Receiver, ctx: AppContext
) -> None:
    hook = make_webhook(admin, receiver.url)
    admin.post("/api/orgs/acme/rules", json={"name": "all", "actions": [{"connector_id": hook["id"]}]})
    receiver.statuses = [410]
    key = world.api_key("acme", scopes=["ingest"])
    backfill(admin, key, [("2026-01-01T00:00:00Z", 1.0)])
    c = _wait(lambda: admin.get(f"/api/orgs/acme/connectors/{hook['id']}").json(), lambda c: not c["enabled"])
    assert c["enabled"] is False and "410" in c["disabled_reason"]
    (dead,) = admin.get(f"/api/orgs/acme/connectors/{hook['id']}/deliveries?status=dead").json()
    # Re-enabled and replayed: delivered with the same idempotency key.
    assert admin.patch(f"/api/orgs/acme/connectors/{hook['id']}", json={"enabled": True}).json()["enabled"]
    r = admin.post(f"/api/orgs/acme/connectors/{hook['id']}/deliveries/{dead['id']}/replay")
    assert r.status_code == 200 and r.json()["status"] == "pending"
    (msg,) = receiver.wait_for(lambda r: len(r) >= 1)
    assert msg.json()["id"] == dead["idempotency_key"]


def test_revoked_owner_stops_deliveries(
    admin: TestClient, world: World, receiver: Receiver, make_client: Any
) -> None:
    hook = make_webhook(admin, receiver.url)
    admin.post("/api/orgs/acme/rules", json={"name": "all", "actions": [{"connector_id": hook["id"]}]})
    key = world.api_key("acme", scopes=["ingest"])
    backfill(admin, key, [("2026-01-01T00:00:00Z", 1.0)])
    receiver.wait_for(lambda r: len(r) >= 1)
    # A second message fails (the receiver answers 500) and waits for its retry …
    receiver.statuses = [500] * 1000
    backfill(admin, key, [("2026-01-01T00:01:00Z", 2.0)])
    hook_log = f"/api/orgs/acme/connectors/{hook['id']}/deliveries"
    _wait(lambda: admin.get(hook_log).json(), lambda log: len(log) == 2 and log[0]["attempts"] >= 1)
    # … meanwhile the rule's creator is demoted to a viewer without grants: it can read nothing now.
    world.user("boss@acme.test", "acme", role="owner")
    boss = make_client()
    login(boss, "boss@acme.test")
    owner_id = next(
        m["user_id"] for m in boss.get("/api/orgs/acme/members").json() if m["email"] == "owner@acme.test"
    )
    assert boss.patch(f"/api/orgs/acme/members/{owner_id}", json={"role": "viewer"}).status_code == 200
    log = _wait(lambda: boss.get(hook_log).json(), lambda log: log[0]["status"] != "pending")
    assert log[0]["status"] == "suppressed" and "may no longer read" in log[0]["last_error"]
    # New data makes no delivery at all; the receiver got the first message only.
    receiver.statuses = []
    backfill(admin, key, [("2026-01-01T00:02:00Z", 3.0)])
    time.sleep(0.5)
    assert len(boss.get(hook_log).json()) == 2
    assert len(receiver.received) == 1


def test_test_message_ssrf_and_bad_input(admin: TestClient, receiver: Receiver, ctx: AppContext) -> None:
    hook = make_webhook(admin, receiver.url, body="slack")
    r = admin.post(f"/api/orgs/acme/connectors/{hook['id']}/test")
    assert r.status_code == 200 and r.json()["status"] == "delivered", r.text
    (msg,) = receiver.wait_for(lambda r: len(r) >= 1)
    assert msg.json() == {"text": "sensorhub test message: this connector works."}
    # Without the operator setting, loopback/private/link-local targets are refused with a 400.
    ctx.settings.push_allow_private_targets = False
    try:
        for url in (
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://169.254.169.254/latest",
            "https://[::1]/x",
        ):
            r = admin.post(
                "/api/orgs/acme/connectors", json={"kind": "webhook", "name": "x", "config": {"url": url}}
            )
            assert r.status_code == 400 and "SENSORHUB_PUSH_ALLOW_PRIVATE_TARGETS" in r.json()["message"], url
        r = admin.post(
            "/api/orgs/acme/connectors",
            json={"kind": "webhook", "name": "x", "config": {"url": "http://example.com/x"}},
        )
        assert r.status_code == 400 and "https" in r.json()["message"]
        # A connector made while allowed is refused at the attempt, recorded as its error.
        r = admin.post(f"/api/orgs/acme/connectors/{hook['id']}/test")
        assert r.json()["status"] == "dead" and "may not reach" in r.json()["last_error"]
    finally:
        ctx.settings.push_allow_private_targets = True
    bad = [
        ({"kind": "webhook", "name": "x", "config": {"url": receiver.url, "bogus": 1}}, "bogus"),
        ({"kind": "pigeon", "name": "x", "config": {}}, "kind"),
    ]
    for body, word in bad:
        r = admin.post("/api/orgs/acme/connectors", json=body)
        assert r.status_code in (400, 422) and word in r.text, r.text
    r = admin.post(
        "/api/orgs/acme/rules",
        json={"name": "t", "actions": [{"connector_id": hook["id"], "template": "{{ value "}]},
    )
    assert r.status_code == 400 and "template" in r.json()["message"]
    r = admin.post(
        "/api/orgs/acme/rules",
        json={"name": "t", "condition": {"type": "above"}, "actions": [{"connector_id": hook["id"]}]},
    )
    assert r.status_code == 400 and "attribute" in r.json()["message"]


def test_every_topic_reaches_rules_with_its_topic(
    admin: TestClient, world: World, receiver: Receiver
) -> None:
    """A forward-everything rule gets every topic's points (each data item names its topic); a threshold
    rule watches one topic: the default one unless it names another; "*" is refused with a condition."""
    everything = make_webhook(admin, receiver.url + "/all")
    env_hook = make_webhook(admin, receiver.url + "/env")
    default_hook = make_webhook(admin, receiver.url + "/default")
    r = admin.post(
        "/api/orgs/acme/rules", json={"name": "all", "actions": [{"connector_id": everything["id"]}]}
    )
    assert r.json()["topic"] == "*"
    above = {"type": "above", "attribute": "temperature", "threshold": 30}
    env_rule = make_rule(admin, env_hook["id"], above, topic="env", name="env too hot")
    assert env_rule["topic"] == "env"
    assert make_rule(admin, default_hook["id"], above)["topic"] == "default"
    r = admin.post(
        "/api/orgs/acme/rules",
        json={"name": "x", "condition": above, "topic": "*", "actions": [{"connector_id": env_hook["id"]}]},
    )
    assert r.status_code == 400 and "one rule per topic" in r.json()["message"]
    key = world.api_key("acme", scopes=["ingest"])
    body = [
        {"timestamp": "2026-01-01T00:00:00Z", "topic": "env", "data": {"temperature": 35.0}},
        {"timestamp": "2026-01-01T00:00:00Z", "data": {"temperature": 20.0}},
    ]
    assert admin.post(f"/v3/devices/{DEV}/backfill", json=body, headers=bearer(key)).status_code == 200
    got = receiver.wait_for(lambda r: {m.path for m in r} >= {"/hook/all", "/hook/env"})
    (fwd,) = [m.json() for m in got if m.path == "/hook/all"]
    assert sorted((d["topic"], d["points"][0]["value"]) for d in fwd["data"]) == [
        ("default", 20.0),
        ("env", 35.0),
    ]
    (fired,) = [m.json() for m in got if m.path == "/hook/env"]
    assert fired["rule"]["topic"] == "env" and fired["data"][0]["topic"] == "env"
    # The default-topic rule saw 20 (below the threshold) and never the env topic's 35.
    assert all(m.path != "/hook/default" for m in receiver.received)
    # PATCH: the rule moves to another topic (its states reset).
    r = admin.patch(f"/api/orgs/acme/rules/{env_rule['id']}", json={"topic": "lab"})
    assert r.status_code == 200 and r.json()["topic"] == "lab" and r.json()["devices"] == []
