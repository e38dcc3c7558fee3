"""Delivery log retention: delivered and suppressed deliveries go after SENSORHUB_PUSH_DELIVERY_RETENTION_DAYS,
dead letters after their own (longer) retention or never, pending ones never; an NGSI-LD subscription's
counts survive the pruning. Real deliveries to a real local receiver, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from sensorhub.background import build_runner
from sensorhub.context import AppContext
from sensorhub.db import utcnow
from sensorhub.push.models import Attempt, Delivery
from sensorhub.push.retention import prune_deliveries, prune_rule_history
from tests.builders import World, bearer, login
from tests.push.conftest import Receiver
from tests.push.test_ngsi_subscriptions import SUBS, eventually, subscription

DEV = "urn:ngsi-ld:Device:boiler-1"


def _statuses(ctx: AppContext) -> dict[str, int]:
    with ctx.db.session() as s:
        return {
            k: int(n) for k, n in s.execute(select(Delivery.status, func.count()).group_by(Delivery.status))
        }


def test_the_delivery_log_is_pruned_dead_letters_later_pending_never(
    client: TestClient, world: World, ctx: AppContext, receiver: Receiver
) -> None:
    org = world.org("acme")
    world.entity("acme", "main", DEV, "Device")
    world.user("owner@acme.test", "acme", role="owner")
    read = world.pat("owner@acme.test", ["entities"], name="read")
    key = world.api_key("acme", ["ingest"])
    login(client, "owner@acme.test")
    ok = client.post(
        "/api/orgs/acme/connectors", json={"kind": "webhook", "name": "ok", "config": {"url": receiver.url}}
    ).json()
    assert client.post("/api/orgs/acme/rules", json={"name": "all", "actions": [{"connector_id": ok["id"]}]})
    r = client.post(SUBS, json=subscription(receiver.url + "/sub", q="temperature>0"), headers=bearer(read))
    assert r.status_code == 201, r.text
    sub_url = r.headers["Location"]
    receiver.statuses = [400]  # the first message is refused for good: a dead letter
    for i in range(3):
        body = {"timestamp": f"2026-01-01T00:0{i}:00Z", "data": {"temperature": 20.0 + i}}
        assert client.post(f"/v3/devices/{DEV}/backfill", json=body, headers=bearer(key)).status_code == 200
        # One connector and one subscription delivery per backfill, each finished before the next.
        eventually(
            lambda: _statuses(ctx), lambda x, n=i: x.get("delivered", 0) + x.get("dead", 0) == 2 * (n + 1)
        )
    before = eventually(lambda: _statuses(ctx), lambda x: x.get("pending", 0) == 0)
    assert before == {"delivered": 5, "dead": 1}, before
    shown = client.get(sub_url, headers=bearer(read)).json()["notification"]
    # A delivery still waiting (due in ten years) is never pruned, however old.
    with ctx.db.transaction() as s:
        s.add(
            Delivery(
                org_id=org.id,
                target_kind="connector",
                target_id=ok["id"],
                ordering_key="test:pending",
                message={"type": "test"},
                status="pending",
                next_attempt_at=utcnow() + timedelta(days=3650),
            )
        )
    settings = ctx.settings
    assert prune_deliveries(ctx.db, settings) == {"delivered": 0, "dead": 0}  # all recent
    in_31_days = utcnow() + timedelta(days=31)
    assert prune_deliveries(ctx.db, settings, now=in_31_days) == {"delivered": 5, "dead": 0}
    assert _statuses(ctx) == {"dead": 1, "pending": 1}
    with ctx.db.session() as s:
        assert s.scalar(select(func.count(Attempt.id)).join(Delivery)) == s.scalar(
            select(func.count(Attempt.id))
        )
    # The subscription's status members still count its pruned notifications.
    after = client.get(sub_url, headers=bearer(read)).json()["notification"]
    assert (
        (after["timesSent"], after["lastSuccess"])
        == (shown["timesSent"], shown["lastSuccess"])
        == (3, shown["lastSuccess"])
    )
    # Dead letters have their own, longer retention; 0 keeps them until replayed.
    forever = settings.model_copy(update={"push_dead_letter_retention_days": 0})
    assert prune_deliveries(ctx.db, forever, now=utcnow() + timedelta(days=3000))["dead"] == 0
    assert prune_deliveries(ctx.db, settings, now=utcnow() + timedelta(days=91)) == {
        "delivered": 0,
        "dead": 1,
    }
    assert _statuses(ctx) == {"pending": 1}
    # The job runner prunes it every hour.
    assert "push-delivery-retention" in build_runner(ctx).status()


def test_rule_history_is_pruned_after_its_retention_the_current_state_kept(
    client: TestClient, world: World, ctx: AppContext, receiver: Receiver
) -> None:
    world.org("acme")
    world.entity("acme", "main", DEV, "Device")
    world.user("owner@acme.test", "acme", role="owner")
    key = world.api_key("acme", ["ingest"])
    login(client, "owner@acme.test")
    hook = client.post(
        "/api/orgs/acme/connectors", json={"kind": "webhook", "name": "h", "config": {"url": receiver.url}}
    ).json()
    cond = {"type": "above", "attribute": "temperature", "threshold": 30}
    rule = client.post(
        "/api/orgs/acme/rules",
        json={"name": "hot", "condition": cond, "actions": [{"connector_id": hook["id"]}]},
    ).json()
    for i, v in enumerate([35.0, 20.0]):  # ok -> firing -> ok: two state changes
        body = {"timestamp": f"2026-01-01T00:0{i}:00Z", "data": {"temperature": v}}
        assert client.post(f"/v3/devices/{DEV}/backfill", json=body, headers=bearer(key)).status_code == 200
    history = f"/api/orgs/acme/rules/{rule['id']}/history"
    eventually(lambda: client.get(history).json(), lambda h: len(h) == 2)
    settings = ctx.settings
    assert prune_rule_history(ctx.db, settings) == 0  # recent
    keep = settings.model_copy(update={"push_rule_history_retention_days": 0})
    assert prune_rule_history(ctx.db, keep, now=utcnow() + timedelta(days=3000)) == 0
    assert prune_rule_history(ctx.db, settings, now=utcnow() + timedelta(days=91)) == 2
    gone = client.get(history).json()
    assert gone == []
    # The rule itself and its current state per device are untouched.
    r = client.get(f"/api/orgs/acme/rules/{rule['id']}")
    assert r.status_code == 200, r.text
