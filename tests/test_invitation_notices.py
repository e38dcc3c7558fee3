"""Invited people are told (web UI notification, e-mail over SMTP) by a job, never by the inviting
request; an expired invitation is refused and not announced."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from sensorhub.context import AppContext
from sensorhub.db import Clock, utcnow
from sensorhub.notices.invitations import run_invitation_notices
from tests.builders import World, login
from tests.smtp import smtp_server, smtp_settings


def test_an_invited_account_is_told_once_and_an_expired_invitation_is_refused(
    client: TestClient, world: World, ctx: AppContext, clock: Clock
) -> None:
    world.org("beta")
    world.user("bob@beta.test", "beta", "owner")
    world.user("ana@alpha.test")
    login(client, "bob@beta.test")
    for email in ("ana@alpha.test", "nobody@alpha.test"):
        r = client.post("/api/orgs/beta/members", json={"email": email, "role": "member"})
        assert r.status_code == 202, r.text
    with smtp_server() as (inbox, port):
        settings = smtp_settings(ctx.settings, port)
        # ana's notification, and a sign-up link for the address without an account (test_invitation_signup)
        assert run_invitation_notices(ctx.db, settings) == 2
        assert run_invitation_notices(ctx.db, settings) == 0
        (m,) = inbox.to("ana@alpha.test")
    assert m["To"] == "ana@alpha.test" and m["Subject"] == "sensorhub: you are invited to join Beta"
    ana = TestClient(client.app)
    login(ana, "ana@alpha.test")
    (n,) = ana.get("/api/notifications").json()["items"]
    assert n["kind"] == "invitation" and n["link"] == "/invitations"
    (inv,) = ana.get("/api/invitations").json()
    clock.advance(timedelta(days=8))
    login(ana, "ana@alpha.test")
    r = ana.post(f"/api/invitations/{inv['id']}/accept")
    assert r.status_code == 409 and "expired" in r.json()["message"]
    assert ana.get("/api/orgs").json() == []  # nothing half-done
    assert run_invitation_notices(ctx.db, ctx.settings, utcnow()) == 0
