"""Editing what push offers, through the management API (the services the web pages call too), on
SQLite and PostgreSQL: connectors (configuration, secrets replaced without ever being shown, the same
validation as at creation, nothing saved on error), rules (scope, condition, template preview), the
delivery log's time filter, and an organisation's NGSI-LD subscriptions (who sees and manages them)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from sensorhub.accounts import service as accounts
from sensorhub.push import connectors as svc
from sensorhub.push import crypto
from sensorhub.push import subscription_admin as admin
from sensorhub.push.models import Connector
from sensorhub.push.subscription_models import NgsiSubscription
from tests.builders import World, bearer, login
from tests.push.conftest import Receiver
from tests.push.test_ngsi_subscriptions import SUBS, eventually, subscription
from tests.push.test_webhook import backfill, make_rule, make_webhook, verify

DEV = "urn:ngsi-ld:Device:boiler-1"


@pytest.fixture
def admin_client(client: TestClient, world: World) -> TestClient:
    world.org("acme", ("main", "plant"))
    world.entity("acme", "main", DEV)
    world.user("owner@acme.test", "acme", role="owner")
    login(client, "owner@acme.test")
    return client


def stored_secrets(world: World, connector_id: str) -> dict[str, Any]:
    with world.ctx.db.session() as s:
        c = s.get(Connector, connector_id)
        assert c is not None
        return crypto.decrypt(world.ctx.settings, c.secrets_enc)


def test_patch_webhook_replaces_config_and_secret_headers_keeping_the_signing_secret(
    admin_client: TestClient, world: World, receiver: Receiver
) -> None:
    hook = make_webhook(admin_client, receiver.url.replace("/hook", "/old"))
    secret = hook["secrets"]["signing_secret"]
    r = admin_client.patch(
        f"/api/orgs/acme/connectors/{hook['id']}",
        json={
            "name": "ops",
            "config": {"url": receiver.url, "body": "slack", "headers": {"X-Team": "ops"}, "timeout_s": 1.5},
            "secrets": {"headers": {"Authorization": "Bearer s3cret-value"}},
        },
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["name"] == "ops" and out["config"]["url"] == receiver.url
    assert out["config"]["headers"] == {"X-Team": "ops"} and out["config"]["timeout_s"] == 1.5
    assert "s3cret-value" not in r.text and secret not in r.text and "secrets" not in out
    sec = stored_secrets(world, hook["id"])
    assert sec["headers"] == {"Authorization": "Bearer s3cret-value"}
    assert sec["signing"][0]["secret"] == secret  # the signing secret is kept

    t = admin_client.post(f"/api/orgs/acme/connectors/{hook['id']}/test").json()
    assert t["status"] == "delivered"
    (msg,) = receiver.received
    assert msg.path == "/hook" and msg.headers["x-team"] == "ops"
    assert msg.headers["authorization"] == "Bearer s3cret-value"
    assert set(msg.json()) == {"text"}  # the Slack preset
    assert verify(secret, msg.headers["x-sensorhub-signature"], msg.body)

    # null removes a secret header; the others stay.
    r = admin_client.patch(
        f"/api/orgs/acme/connectors/{hook['id']}", json={"secrets": {"headers": {"Authorization": None}}}
    )
    assert r.status_code == 200, r.text
    assert stored_secrets(world, hook["id"])["headers"] == {}


def test_patch_with_an_invalid_field_saves_nothing(admin_client: TestClient, world: World) -> None:
    hook = make_webhook(admin_client, "http://127.0.0.1:9/hook")
    before = admin_client.get(f"/api/orgs/acme/connectors/{hook['id']}").json()
    for body, said in (
        ({"name": "renamed", "config": {"url": "ftp://example.com/x"}}, "config.url"),
        ({"name": "renamed", "config": {"url": "http://127.0.0.1:9/h", "body": "xml"}}, "config.body"),
        ({"name": "renamed", "config": {"url": "http://127.0.0.1:9/h", "headers": {"Host": "x"}}}, "Host"),
        ({"name": "renamed", "secrets": {"signing_secret": "whsec_abcdefghijklmnopq"}}, "rotate-secret"),
        ({"name": "renamed", "secrets": {"password": "x"}}, "unknown secrets field"),
        ({"name": "renamed", "config": {"url": "http://127.0.0.1:9/h", "timeout_s": 999}}, "timeout_s"),
    ):
        r = admin_client.patch(f"/api/orgs/acme/connectors/{hook['id']}", json=body)
        assert r.status_code == 400, (body, r.text)
        assert said in r.json()["message"]
    assert admin_client.get(f"/api/orgs/acme/connectors/{hook['id']}").json() == before


def test_patch_refuses_private_targets_when_the_operator_does_not_allow_them(
    admin_client: TestClient, world: World
) -> None:
    hook = make_webhook(admin_client, "http://127.0.0.1:9/hook")
    world.ctx.settings.push_allow_private_targets = False
    try:
        r = admin_client.patch(
            f"/api/orgs/acme/connectors/{hook['id']}", json={"config": {"url": "https://169.254.169.254/x"}}
        )
    finally:
        world.ctx.settings.push_allow_private_targets = True
    assert r.status_code == 400 and "config.url" in r.json()["message"]
    assert (
        admin_client.get(f"/api/orgs/acme/connectors/{hook['id']}").json()["config"]["url"]
        == hook["config"]["url"]
    )


def test_patch_influxdb_keeps_its_token_and_replaces_it_on_request(
    admin_client: TestClient, world: World
) -> None:
    body = {
        "kind": "influxdb",
        "name": "influx",
        "config": {"url": "http://127.0.0.1:8086", "version": "2", "org": "o", "bucket": "b"},
        "secrets": {"token": "tok-1"},
    }
    c = admin_client.post("/api/orgs/acme/connectors", json=body).json()
    new_cfg = {"url": "http://127.0.0.1:8087", "version": "2", "org": "o", "bucket": "b2"}
    r = admin_client.patch(f"/api/orgs/acme/connectors/{c['id']}", json={"config": new_cfg})
    assert r.status_code == 200, r.text  # the stored token counts: it need not be given again
    assert stored_secrets(world, c["id"]) == {"token": "tok-1"}
    r = admin_client.patch(f"/api/orgs/acme/connectors/{c['id']}", json={"secrets": {"token": "tok-2"}})
    assert r.status_code == 200 and "tok-2" not in r.text
    assert stored_secrets(world, c["id"]) == {"token": "tok-2"}
    r = admin_client.patch(f"/api/orgs/acme/connectors/{c['id']}", json={"secrets": {"token": None}})
    assert r.status_code == 400 and "secrets.token is required" in r.json()["message"]
    assert stored_secrets(world, c["id"]) == {"token": "tok-2"}


def test_rotation_then_edit_keeps_both_signatures_during_the_grace(
    admin_client: TestClient, receiver: Receiver
) -> None:
    hook = make_webhook(admin_client, receiver.url)
    old = hook["secrets"]["signing_secret"]
    new = admin_client.post(
        f"/api/orgs/acme/connectors/{hook['id']}/rotate-secret", json={"grace_hours": 1}
    ).json()["secrets"]["signing_secret"]
    assert (
        admin_client.patch(f"/api/orgs/acme/connectors/{hook['id']}", json={"name": "x"}).status_code == 200
    )
    assert (
        admin_client.patch(
            f"/api/orgs/acme/connectors/{hook['id']}", json={"config": {"url": receiver.url, "body": "teams"}}
        ).status_code
        == 200
    )
    admin_client.post(f"/api/orgs/acme/connectors/{hook['id']}/test")
    (msg,) = receiver.received
    sig = msg.headers["x-sensorhub-signature"]
    assert sig.count("v1=") == 2
    assert verify(new, sig, msg.body) and verify(old, sig, msg.body)
    assert msg.json()["@type"] == "MessageCard"


def test_patch_rule_scope_and_condition_and_the_template_preview(
    admin_client: TestClient, world: World, receiver: Receiver
) -> None:
    hook = make_webhook(admin_client, receiver.url)
    rule = make_rule(admin_client, hook["id"], {"type": "above", "attribute": "temperature", "threshold": 30})
    key = world.api_key("acme", scopes=["ingest"])
    backfill(admin_client, key, [("2026-01-01T00:00:00Z", 35.0)])
    receiver.wait_for(lambda r: len(r) == 1)
    firing = eventually(
        lambda: admin_client.get(f"/api/orgs/acme/rules/{rule['id']}").json(),
        lambda x: x["state"] == "firing",
    )
    # Renaming (the same condition given again) keeps the states; a new threshold resets them.
    same = {"type": "above", "attribute": "temperature", "threshold": 30, "hysteresis": 0}
    r = admin_client.patch(f"/api/orgs/acme/rules/{rule['id']}", json={"name": "hot", "condition": same})
    assert r.status_code == 200 and r.json()["state"] == "firing" and r.json()["name"] == "hot"
    assert firing["devices"][0]["device"] == DEV
    r = admin_client.patch(
        f"/api/orgs/acme/rules/{rule['id']}",
        json={"condition": {"type": "above", "attribute": "temperature", "threshold": 50}},
    )
    assert r.json()["state"] == "ok" and r.json()["condition"]["threshold"] == 50
    backfill(admin_client, key, [("2026-01-01T00:01:00Z", 45.0)])  # over 30, under 50: nothing
    backfill(admin_client, key, [("2026-01-01T00:02:00Z", 55.0)])
    got = receiver.wait_for(lambda r: len(r) == 2)
    assert got[1].json()["rule"]["value"] == 55.0

    r = admin_client.patch(
        f"/api/orgs/acme/rules/{rule['id']}", json={"workspace": "plant", "entity_type": "Boiler"}
    )
    assert r.status_code == 200, r.text
    with world.ctx.db.session() as s:
        ws = {w.slug: w.id for w in accounts.list_workspaces(s, accounts.get_org(s, "acme"))}
    assert r.json()["workspace_id"] == ws["plant"] and r.json()["entity_type"] == "Boiler"
    r = admin_client.patch(
        f"/api/orgs/acme/rules/{rule['id']}", json={"workspace": None, "entity_type": None}
    )
    assert r.json()["workspace_id"] is None and r.json()["entity_type"] is None
    r = admin_client.patch(f"/api/orgs/acme/rules/{rule['id']}", json={"workspace": "nowhere"})
    assert r.status_code == 400 and "nowhere" in r.json()["message"]

    p = admin_client.post(
        "/api/orgs/acme/rules/preview",
        json={
            "template": "{{ rule.name }}: {{ device.id }} {{ value }} {{ unit }} {{ state }}",
            "name": "boiler",
            "condition": {"type": "above", "attribute": "temperature", "threshold": 80},
        },
    )
    assert p.status_code == 200, p.text
    assert p.json() == {"text": "boiler: urn:ngsi-ld:Device:sample-1 81.0 CEL firing"}
    bad = admin_client.post("/api/orgs/acme/rules/preview", json={"template": "{{ value | nosuchfilter }}"})
    assert bad.status_code == 400 and "template is invalid" in bad.json()["message"]
    bad = admin_client.post("/api/orgs/acme/rules/preview", json={"condition": {"type": "above"}})
    assert bad.status_code == 400 and "condition.attribute" in bad.json()["message"]


def test_delivery_log_filters_by_time_and_pages(admin_client: TestClient, receiver: Receiver) -> None:
    hook = make_webhook(admin_client, receiver.url)
    for _ in range(3):
        admin_client.post(f"/api/orgs/acme/connectors/{hook['id']}/test")
    base = f"/api/orgs/acme/connectors/{hook['id']}/deliveries"
    everything = admin_client.get(base).json()
    assert len(everything) == 3
    first = admin_client.get(base, params={"limit": 2}).json()
    rest = admin_client.get(base, params={"limit": 2, "before": first[-1]["id"]}).json()
    assert [d["id"] for d in first + rest] == [d["id"] for d in everything]
    assert admin_client.get(base, params={"since": "2000-01-01T00:00:00Z"}).json() == everything
    assert admin_client.get(base, params={"until": "2000-01-01T00:00:00Z"}).json() == []
    other = make_webhook(admin_client, receiver.url)
    admin_client.post(f"/api/orgs/acme/connectors/{other['id']}/test")
    org_log = admin_client.get("/api/orgs/acme/deliveries").json()
    assert [d["target_id"] for d in org_log] == [other["id"]] + [hook["id"]] * 3
    only = admin_client.get("/api/orgs/acme/deliveries", params={"connector": hook["id"], "limit": 1}).json()
    assert [d["id"] for d in only] == [everything[0]["id"]]
    r = admin_client.get("/api/orgs/acme/deliveries", params={"connector": "nope"})
    assert r.status_code == 404
    r = admin_client.get(base, params={"since": "yesterday"})
    assert r.status_code == 400 and "since" in r.json()["message"]
    r = admin_client.get(base, params={"since": "2001-01-01", "until": "2000-01-01"})
    assert r.status_code == 400 and "before until" in r.json()["message"]


def test_an_organisations_subscriptions_for_admins_and_for_their_owners(
    client: TestClient, world: World, receiver: Receiver
) -> None:
    world.org("acme")
    world.org("other")
    world.entity("acme", "main", DEV)
    world.user("boss@acme.test", "acme", "admin")
    world.user("ann@acme.test", "acme", "member")
    world.user("bob@acme.test", "acme", "viewer")
    ann = world.pat("ann@acme.test", ["entities"], name="ann-read")
    bob = world.pat("bob@acme.test", ["entities"], name="bob-read")
    key = world.api_key("acme", ["entities"], name="acme-read")
    outsider = world.api_key("other", ["entities"], name="other-read")
    for token in (ann, bob, key):
        assert client.post(SUBS, json=subscription(receiver.url), headers=bearer(token)).status_code == 201
    # A subscription of another organisation's key is not acme's (it would also read nothing of it).
    r = client.post(SUBS, json=subscription(receiver.url), headers=bearer(outsider))
    assert r.status_code in (201, 400), r.text

    with world.ctx.db.transaction() as s:
        org = accounts.get_org(s, "acme")
        boss = accounts.get_user_by_email(s, "boss@acme.test")
        ann_user = accounts.get_user_by_email(s, "ann@acme.test")
        assert boss is not None and ann_user is not None
        seen = admin.of_org(s, org, boss, is_admin=True)
        assert sorted(x.owner.credential.name for x in seen) == ["acme-read", "ann-read", "bob-read"]
        assert {x.status for x in seen} == {"active"}
        mine = admin.of_org(s, org, ann_user, is_admin=False)
        assert [x.owner.credential.name for x in mine] == ["ann-read"]
        bobs = next(x for x in seen if x.owner.credential.name == "bob-read")
        with pytest.raises(Exception, match="not one of your tokens"):
            admin.set_active(s, org, ann_user, bobs.sub.pk, False, is_admin=False)
        paused = admin.set_active(s, org, ann_user, mine[0].sub.pk, False, is_admin=False)
        assert paused.status == "paused"
    got = client.get(f"{SUBS}/{mine[0].sub.sub_id}", headers=bearer(ann)).json()
    assert got["isActive"] is False and got["status"] == "paused"  # what the token sees, too

    with world.ctx.db.transaction() as s:
        org = accounts.get_org(s, "acme")
        boss = accounts.get_user_by_email(s, "boss@acme.test")
        assert boss is not None
        admin.set_active(s, org, boss, mine[0].sub.pk, True, is_admin=True)
        sub_id = admin.delete(s, org, boss, bobs.sub.pk, is_admin=True)
        assert s.query(NgsiSubscription).filter(NgsiSubscription.sub_id == sub_id).count() == 0
    assert client.get(f"{SUBS}/{sub_id}", headers=bearer(bob)).status_code == 404
    assert client.get(f"{SUBS}/{mine[0].sub.sub_id}", headers=bearer(ann)).json()["isActive"] is True


def test_secret_names_never_values(admin_client: TestClient, world: World) -> None:
    hook = make_webhook(admin_client, "http://127.0.0.1:9/hook")
    admin_client.patch(
        f"/api/orgs/acme/connectors/{hook['id']}",
        json={"secrets": {"headers": {"Authorization": "Bearer zz"}}},
    )
    with world.ctx.db.session() as s:
        c = s.get(Connector, hook["id"])
        assert c is not None
        names = svc.secret_names(c, world.ctx.settings)
    assert names == {"unreadable": False, "fields": ["signing_secret"], "headers": ["Authorization"]}
    assert "Bearer zz" not in repr(names)


def test_the_openapi_document_describes_the_edits(client: TestClient) -> None:
    doc = client.get("/api/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert {"name", "enabled", "config", "secrets"} <= set(schemas["ConnectorUpdate"]["properties"])
    assert {"workspace", "entity_type", "condition", "actions"} <= set(schemas["RuleUpdate"]["properties"])
    assert "patch" in doc["paths"]["/api/orgs/{org}/connectors/{connector_id}"]
    assert "post" in doc["paths"]["/api/orgs/{org}/rules/preview"]
    params = {
        p["name"]
        for p in doc["paths"]["/api/orgs/{org}/connectors/{connector_id}/deliveries"]["get"]["parameters"]
    }
    assert {"status", "since", "until", "before", "limit"} <= params


def test_subscription_statuses_failed_and_expired(
    client: TestClient, world: World, receiver: Receiver
) -> None:
    from datetime import timedelta

    from sensorhub.db import utcnow

    world.org("acme")
    world.entity("acme", "main", DEV)
    world.user("boss@acme.test", "acme", "owner")
    read = world.pat("boss@acme.test", ["entities"], name="boss-read")
    ingest = world.api_key("acme", ["ingest"])
    receiver.statuses = [400]  # a dead letter at once: the last attempt failed
    r = client.post(SUBS, json=subscription(receiver.url, q="temperature>0"), headers=bearer(read))
    assert r.status_code == 201, r.text
    sub_id = r.headers["Location"].rsplit("/", 1)[1]
    backfill(client, ingest, [("2026-01-01T00:00:00Z", 1.0)])

    def status() -> str:
        with world.ctx.db.session() as s:
            org = accounts.get_org(s, "acme")
            boss = accounts.get_user_by_email(s, "boss@acme.test")
            assert boss is not None
            (item,) = admin.of_org(s, org, boss, is_admin=True)
            return item.status

    eventually(status, lambda x: x == "failed")
    with world.ctx.db.transaction() as s:
        sub = s.query(NgsiSubscription).filter(NgsiSubscription.sub_id == sub_id).one()
        sub.expires_at = utcnow() - timedelta(minutes=1)
    assert status() == "expired"
    with world.ctx.db.transaction() as s:
        org = accounts.get_org(s, "acme")
        boss = accounts.get_user_by_email(s, "boss@acme.test")
        assert boss is not None
        pk = admin.of_org(s, org, boss, is_admin=True)[0].sub.pk
        admin.set_active(s, org, boss, pk, False, is_admin=True)  # pausing an expired one is allowed
        with pytest.raises(Exception, match="expired"):
            admin.set_active(s, org, boss, pk, True, is_admin=True)


@pytest.mark.parametrize(
    ("kind", "config", "secrets", "said"),
    [
        ("webhook", {"url": "http://127.0.0.1:9/h", "colour": "red"}, {}, "unknown config field(s): colour"),
        ("mqtt", {"host": "127.0.0.1", "topic": "t"}, {"token": "x"}, "unknown secrets field(s): token"),
        ("influxdb", {"url": "http://127.0.0.1:9", "tabel": "m"}, {}, "unknown config field(s): tabel"),
        ("email", {"to": ["ops@example.com"]}, {"password": "x"}, "unknown secrets field(s): password"),
    ],
)
def test_create_with_an_unknown_field_names_it_and_creates_nothing(
    admin_client: TestClient,
    world: World,
    kind: str,
    config: dict[str, Any],
    secrets: dict[str, Any],
    said: str,
) -> None:
    before = admin_client.get("/api/orgs/acme/connectors").json()
    r = admin_client.post(
        "/api/orgs/acme/connectors", json={"kind": kind, "name": "c", "config": config, "secrets": secrets}
    )
    assert r.status_code == 400, r.text
    assert said in r.json()["message"] and "allowed:" in r.json()["message"]
    assert admin_client.get("/api/orgs/acme/connectors").json() == before
