"""Credential expiry notices through an organisation's webhook connector (``config.notices: true``): each
notice of the organisation's API keys, API users' tokens and members' PATs reaching it is delivered once
per opted-in connector, through the normal delivery queue (signed, retried, in the delivery log), to a
real local HTTP receiver."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sensorhub.accounts import service as accounts
from sensorhub.background import run_token_notices
from sensorhub.context import AppContext
from sensorhub.db import utcnow
from sensorhub.tokens.models import Credential
from tests.builders import World, login
from tests.push.conftest import Received, Receiver
from tests.push.test_webhook import verify


@pytest.fixture
def admin(client: TestClient, world: World) -> TestClient:
    world.org("acme")
    world.org("beta")
    world.user("owner@acme.test", "acme", role="owner")
    world.user("boss@beta.test", "beta", role="owner")
    world.user("mia@acme.test", "acme", role="member")
    world.user("mia@acme.test", "beta", role="member")
    login(client, "owner@acme.test")
    return client


def _hook(client: TestClient, org: str, url: str, **config: object) -> dict[str, object]:
    r = client.post(
        f"/api/orgs/{org}/connectors",
        json={"kind": "webhook", "name": "ops", "config": {"url": url, **config}},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _unique(received: list[Received]) -> list[Received]:
    """Deliveries are at least once (a lease that ran out under load repeats one): receivers drop
    repeats by the idempotency key, and so does this."""
    seen: dict[str, Received] = {}
    for m in received:
        seen.setdefault(m.headers["idempotency-key"], m)
    return list(seen.values())


def _expiring(ctx: AppContext, days: float) -> None:
    """Every credential now expires in ``days`` days."""
    with ctx.db.transaction() as s:
        for c in s.scalars(select(Credential)):
            c.expires_at = utcnow() + timedelta(days=days)


def test_each_expiry_notice_reaches_each_opted_in_connector_once_signed_and_retried(
    admin: TestClient, world: World, ctx: AppContext, receiver: Receiver, make_client: object
) -> None:
    acme = _hook(admin, "acme", f"{receiver.url}/acme", notices=True)
    quiet = _hook(admin, "acme", f"{receiver.url}/quiet")  # not opted in
    assert quiet["config"] == {"url": f"{receiver.url}/quiet", "body": "sensorhub", "headers": {}}
    boss = make_client()  # type: ignore[operator]
    login(boss, "boss@beta.test")
    beta = _hook(boss, "beta", f"{receiver.url}/beta", notices=True)
    world.api_key("acme", name="ingest-key")
    world.pat("mia@acme.test", name="mia-notebook")
    # Another member's PAT restricted to beta never reaches acme.
    with ctx.db.session() as s:
        beta_id = accounts.get_org(s, "beta").id
    world.pat("mia@acme.test", name="beta-only", organisations=[beta_id])
    _expiring(ctx, 6.5)
    receiver.statuses = [503]  # the first attempt fails: retried
    # acme: the key + mia's PAT; beta: both of mia's PATs.
    assert run_token_notices(ctx) == 4
    got = _unique(receiver.wait_for(lambda r: len(_unique(r)) == 4))
    assert 503 in receiver.answered
    by_path: dict[str, list[dict[str, object]]] = {}
    for m in got:
        by_path.setdefault(m.path, []).append(m.json())
        secret = (acme if m.path.endswith("/acme") else beta)["secrets"]["signing_secret"]  # type: ignore[index]
        assert verify(str(secret), m.headers["x-sensorhub-signature"], m.body)
        assert m.headers["idempotency-key"].startswith("shd_")
    assert "/hook/quiet" not in by_path
    acme_msgs = sorted(by_path["/hook/acme"], key=lambda p: str(p["credential"]["name"]))  # type: ignore[index]
    assert [(p["credential"]["name"], p["credential"]["kind"]) for p in acme_msgs] == [  # type: ignore[index]
        ("ingest-key", "api_key"),
        ("mia-notebook", "member_pat"),
    ]
    key_msg = acme_msgs[0]
    assert key_msg["type"] == "sensorhub.credential.expiring" and key_msg["organisation"] == "acme"
    cred = key_msg["credential"]
    assert cred["days_left"] == 7 and cred["hint"].startswith("shub_key_")  # type: ignore[index]
    assert "expires in 7 days" in str(key_msg["text"])
    assert sorted(p["credential"]["name"] for p in by_path["/hook/beta"]) == ["beta-only", "mia-notebook"]  # type: ignore[index]
    # Exactly once: another run queues nothing; the delivery log shows them delivered.
    assert run_token_notices(ctx) == 0
    deadline = time.monotonic() + 15  # the worker records the outcome just after the receiver answered
    while True:
        log = admin.get(f"/api/orgs/acme/connectors/{acme['id']}/deliveries").json()
        items = log["items"] if isinstance(log, dict) else log
        if sorted(d["status"] for d in items) == ["delivered", "delivered"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sorted(d["status"] for d in items) == ["delivered", "delivered"]
    # The expired notice is one more, once.
    _expiring(ctx, -0.1)
    assert run_token_notices(ctx) == 4
    got = _unique(receiver.wait_for(lambda r: len(_unique(r)) == 8))
    assert {m.json()["type"] for m in got[4:]} == {"sensorhub.credential.expired"}
    assert run_token_notices(ctx) == 0


def test_notices_must_be_a_boolean(admin: TestClient, receiver: Receiver) -> None:
    r = admin.post(
        "/api/orgs/acme/connectors",
        json={"kind": "webhook", "name": "ops", "config": {"url": receiver.url, "notices": "yes"}},
    )
    assert r.status_code == 400 and "config.notices must be true or false" in r.json()["message"]


def test_the_web_forms_opt_a_webhook_in_and_an_edit_keeps_or_drops_it(
    client: TestClient, world: World, receiver: Receiver
) -> None:
    from sensorhub.push.models import Connector
    from tests.web.helpers import web_login

    world.org("acme")
    world.user("olga@acme.test", "acme", "owner")
    csrf = web_login(client, "olga@acme.test")
    form = {"kind": "webhook", "name": "ops", "url": receiver.url, "body": "sensorhub", "csrf_token": csrf}
    r = client.post("/orgs/acme/connectors", data={**form, "notices": "on"}, follow_redirects=False)
    assert r.status_code in (200, 303), r.text

    def config() -> dict[str, object]:
        with world.ctx.db.session() as s:
            return dict(s.scalars(select(Connector)).one().config)

    assert config()["notices"] is True
    with world.ctx.db.session() as s:
        cid = s.scalars(select(Connector)).one().id
    page = client.get(f"/orgs/acme/connectors/{cid}")
    assert 'id="e-notices" name="notices" checked' in page.text
    edit = {"name": "ops", "enabled": "on", "url": receiver.url, "body": "sensorhub", "csrf_token": csrf}
    assert client.post(f"/orgs/acme/connectors/{cid}/edit", data={**edit, "notices": "on"}).status_code == 200
    assert config()["notices"] is True
    assert client.post(f"/orgs/acme/connectors/{cid}/edit", data=edit).status_code == 200
    assert "notices" not in config()
