"""NGSI-LD subscriptions end to end: made by a read token, notified through the delivery queue to a real
local HTTP receiver in the spec's Notification shape, stopped when the token is revoked; bad bodies
refused by name. SQLite and PostgreSQL (the push conftest: fast retries, local receivers allowed)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from sensorhub.entities.models import Entity
from sensorhub.push.models import Delivery
from sensorhub.tokens import service as tokens
from tests.builders import World, bearer
from tests.push.conftest import Receiver

DEV = "urn:ngsi-ld:Device:boiler-1"
SUBS = "/ngsi-ld/v1/subscriptions"


def subscription(uri: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "Subscription",
        "entities": [{"type": "Device"}],
        "watchedAttributes": ["temperature"],
        "q": "temperature>30",
        "notification": {
            "format": "keyValues",
            "attributes": ["temperature"],
            "endpoint": {"uri": uri, "accept": "application/json"},
        },
        **extra,
    }


def eventually(read: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 15.0) -> Any:
    """``read()`` until ``ok`` holds (the delivery worker records attempts on its own thread)."""
    deadline = time.monotonic() + timeout
    while not ok(value := read()):
        assert time.monotonic() < deadline, value
        time.sleep(0.05)
    return value


def backfill(client: TestClient, key: str, t: str, value: float) -> None:
    body = [{"timestamp": t, "data": {"temperature": {"value": value, "unit": "CEL"}}}]
    r = client.post(f"/v3/devices/{DEV}/backfill", json=body, headers=bearer(key))
    assert r.status_code == 200, r.text


def seed(world: World) -> tuple[str, str]:
    world.org("acme")
    world.entity("acme", "main", DEV, "Device")
    world.user("ann@acme.test", "acme", "member")
    return world.pat("ann@acme.test", ["entities"], name="read"), world.api_key("acme", ["ingest"])


def test_a_read_tokens_subscription_notifies_in_the_spec_shape_and_stops_at_revocation(
    client: TestClient, world: World, receiver: Receiver
) -> None:
    read, key = seed(world)
    r = client.post(SUBS, json=subscription(receiver.url), headers=bearer(read))
    assert r.status_code == 201, r.text
    sub_id = r.headers["Location"].rsplit("/", 1)[1]
    assert sub_id.startswith("urn:ngsi-ld:Subscription:")
    # A sentinel subscription of another token, to know when later events have been handled.
    world.user("bob@acme.test", "acme", "member")
    other = world.pat("bob@acme.test", ["entities"], name="sentinel")
    sentinel = subscription(receiver.url.replace("/hook", "/sentinel"), q="temperature>0")
    assert client.post(SUBS, json=sentinel, headers=bearer(other)).status_code == 201

    backfill(client, key, "2026-01-01T00:00:00Z", 25.0)  # q does not hold: no notification
    backfill(client, key, "2026-01-01T00:01:00Z", 35.5)
    got = receiver.wait_for(lambda rs: any(x.path == "/hook" for x in rs))
    hook = [x for x in got if x.path == "/hook"]
    assert len(hook) == 1
    n = hook[0].json()
    assert n["type"] == "Notification" and n["subscriptionId"] == sub_id
    assert n["id"].startswith("urn:ngsi-ld:Notification:") and n["notifiedAt"].endswith("Z")
    assert n["data"] == [{"id": DEV, "type": "Device", "temperature": 35.5}]
    assert hook[0].headers["content-type"] == "application/json"
    assert "ngsi-ld-core-context" in hook[0].headers["link"]
    assert hook[0].headers["idempotency-key"].startswith("shd_")

    # The attempt is recorded just after the receiver answered.
    shown = eventually(
        lambda: client.get(f"{SUBS}/{sub_id}", headers=bearer(read)).json(),
        lambda x: x["notification"]["timesSent"] == 1,
    )
    assert shown["status"] == "active" and "lastSuccess" in shown["notification"]
    assert shown["notification"]["status"] == "ok" and shown["q"] == "temperature>30"
    listed = client.get(SUBS, headers=bearer(read)).json()
    assert [x["id"] for x in listed] == [sub_id]  # only its own

    with world.ctx.db.transaction() as s:
        cred = next(c for c in tokens.list_pats(s, tokens_owner(world, "ann@acme.test")) if c.name == "read")
        tokens.revoke(s, cred, actor_id=None)
    backfill(client, key, "2026-01-01T00:02:00Z", 40.0)
    receiver.wait_for(lambda rs: sum(x.path == "/sentinel" for x in rs) >= 3)
    assert [x.json()["data"][0]["temperature"] for x in receiver.received if x.path == "/hook"] == [35.5]
    with world.ctx.db.session() as s:
        kinds = {d.target_kind for d in s.query(Delivery)}
        hook_deliveries = [d for d in s.query(Delivery) if d.message["data"][0]["points"][-1][1] == 40.0]
    assert kinds == {"ngsi_ld_subscription"}
    assert len(hook_deliveries) == 1  # the sentinel's: none was queued for the revoked token


def tokens_owner(world: World, email: str) -> str:
    from sensorhub.accounts import service as accounts

    with world.ctx.db.session() as s:
        u = accounts.get_user_by_email(s, email)
        assert u is not None
        return u.id


def test_an_endpoint_answering_410_pauses_the_subscription(
    client: TestClient, world: World, receiver: Receiver
) -> None:
    read, key = seed(world)
    receiver.statuses = [410]
    r = client.post(SUBS, json=subscription(receiver.url, q="temperature>0"), headers=bearer(read))
    sub = r.headers["Location"].rsplit("/", 1)[1]
    backfill(client, key, "2026-01-01T00:00:00Z", 1.0)
    shown = eventually(
        lambda: client.get(f"{SUBS}/{sub}", headers=bearer(read)).json(), lambda x: x["status"] == "paused"
    )
    assert shown["isActive"] is False and "410" in shown["statusReason"]
    assert shown["notification"]["timesFailed"] == 1


def test_bad_subscriptions_are_refused_by_name(client: TestClient, world: World) -> None:
    read, _ = seed(world)
    url = "http://127.0.0.1:9/hook"

    def refused(body: Any) -> str:
        r = client.post(SUBS, json=body, headers=bearer(read))
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        problem = r.json()
        assert problem["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/"), problem
        return f"{problem['type']} {problem['detail']}"

    assert "q" in refused(subscription(url, q="temperature>>3"))
    periodic = refused(subscription(url, timeInterval=60))
    assert periodic.startswith("https://uri.etsi.org/ngsi-ld/errors/NotImplemented ")
    assert "'timeInterval'" in periodic
    assert "georel" in refused(subscription(url, geoQ={"geometry": "Point", "coordinates": [0, 0]}))
    assert "watchedAttributez" in refused({**subscription(url), "watchedAttributez": ["x"]})
    body = subscription(url)
    body["notification"]["endpoint"]["receiverInfo"] = [{"key": "a", "value": "b"}]
    assert "receiverInfo" in refused(body)
    body = subscription("mqtt://broker/topic")
    assert "http" in refused(body)
    assert client.get(SUBS, headers=bearer(read)).json() == []  # nothing was stored
    # A token without the entities scope may not subscribe.
    ingest_only = world.pat("ann@acme.test", ["ingest"], name="ingest")
    assert client.post(SUBS, json=subscription(url), headers=bearer(ingest_only)).status_code == 403


def test_geoq_limits_notifications_to_entities_in_the_area(
    client: TestClient, world: World, receiver: Receiver
) -> None:
    read, key = seed(world)
    with world.ctx.db.transaction() as s:
        e = s.query(Entity).filter(Entity.entity_id == DEV).one()
        e.location = {"type": "Point", "coordinates": [8.54, 47.37]}
    inside = {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": [8.55, 47.37]}
    outside = {"georel": "within", "geometry": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    here = subscription(receiver.url, q="temperature>0", geoQ=inside)
    assert client.post(SUBS, json=here, headers=bearer(read)).status_code == 201
    away = subscription(receiver.url.replace("/hook", "/away"), q="temperature>0", geoQ=outside)
    r = client.post(SUBS, json=away, headers=bearer(read))
    assert r.status_code == 201, r.text
    shown = client.get(r.headers["Location"], headers=bearer(read)).json()
    assert shown["geoQ"]["georel"] == "within"
    backfill(client, key, "2026-01-01T00:00:00Z", 5.0)
    got = receiver.wait_for(lambda rs: any(x.path == "/hook" for x in rs))
    assert [x.path for x in got] == ["/hook"]
    with world.ctx.db.session() as s:
        assert s.query(Delivery).count() == 1  # queued in the same fan-out: none for the other area


def test_subscriptions_see_the_default_topic_and_states_of_any_topic(
    client: TestClient, world: World, receiver: Receiver
) -> None:
    """NGSI-LD has no topics: an entity's numeric attributes are its default-topic series (as the entity
    API shows them), so other topics' points notify nothing; a latest-state property belongs to the
    entity whatever the record's topic, so it notifies."""
    read, key = seed(world)
    spec = subscription(receiver.url, q=None, watchedAttributes=["temperature", "door"])
    del spec["q"]
    spec["notification"]["attributes"] = ["temperature", "door"]
    assert client.post(SUBS, json=spec, headers=bearer(read)).status_code == 201

    def send(topic: str, data: dict[str, Any], t: str) -> None:
        body = {"timestamp": t, "topic": topic, "data": data}
        r = client.post(f"/v3/devices/{DEV}/backfill", json=body, headers=bearer(key))
        assert r.status_code == 200, r.text

    send("env", {"temperature": 99.0}, "2026-01-01T00:00:00Z")
    send("env", {"door": "open"}, "2026-01-01T00:01:00Z")
    send("default", {"temperature": 21.0}, "2026-01-01T00:02:00Z")
    receiver.wait_for(lambda rs: len(rs) >= 2)
    time.sleep(0.3)  # a notification for the env topic's 99.0 would have come by now
    values = [x.json()["data"][0] for x in receiver.received]
    assert len(values) == 2, values
    assert values[0]["door"] == "open" and values[1]["temperature"] == 21.0
    assert all(v.get("temperature") != 99.0 for v in values)
