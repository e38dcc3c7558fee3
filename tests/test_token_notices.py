"""Expiry notices: recorded once, e-mailed over a real SMTP server (retried while it is down), shown in
the web UI (banner, notifications list) and the API; days pass on the server's clock, never by sleeping."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.db import Clock, utcnow
from sensorhub.tokens.expiry import run_expiry_notices
from tests.builders import World, login
from tests.smtp import free_port, smtp_server, smtp_settings


def _mail_settings(ctx: AppContext, port: int) -> Settings:
    return smtp_settings(ctx.settings, port, smtp_sender="hub@acme.test")


def _pat(client: TestClient, days: int, name: str = "deploy") -> dict[str, object]:
    r = client.post("/api/tokens", json={"name": name, "scopes": ["entities"], "expires_in_days": days})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _ana_with_a_pat(client: TestClient, world: World, days: int) -> None:
    """The common start: member ana of Acme, logged in, with a PAT "deploy" expiring in ``days`` days."""
    world.org("acme")
    world.user("ana@acme.test", "acme", "member")
    login(client, "ana@acme.test")
    _pat(client, days)


def test_owner_is_mailed_14_7_1_days_before_and_when_expired_each_once(
    client: TestClient, world: World, ctx: AppContext, clock: Clock
) -> None:
    _ana_with_a_pat(client, world, 15)
    with smtp_server() as (inbox, port):
        settings = _mail_settings(ctx, port)
        assert run_expiry_notices(ctx.db, settings).created == 0  # 15 days away: nothing yet

        clock.advance(timedelta(days=2))  # 13 days left
        run = run_expiry_notices(ctx.db, settings)
        assert (run.created, run.sent, run.failed) == (1, 1, 0)
        (m,) = inbox.to("ana@acme.test")
        assert m["Subject"] == "sensorhub: your token “deploy” expires in 14 days"
        assert m["From"] == "hub@acme.test"
        assert "Rotate it before then" in m.get_content()
        assert run_expiry_notices(ctx.db, settings).created == 0  # once only
        assert len(inbox.messages) == 1

        clock.advance(timedelta(days=7))  # 6 days left
        assert run_expiry_notices(ctx.db, settings).created == 1
        clock.advance(timedelta(days=5, hours=12))  # 12 hours left
        assert run_expiry_notices(ctx.db, settings).created == 1
        clock.advance(timedelta(days=1))  # expired
        assert run_expiry_notices(ctx.db, settings).created == 1
        assert run_expiry_notices(ctx.db, settings).created == 0
        subjects = [m["Subject"] for m in inbox.to("ana@acme.test")]
    assert subjects == [
        "sensorhub: your token “deploy” expires in 14 days",
        "sensorhub: your token “deploy” expires in 7 days",
        "sensorhub: your token “deploy” expires in 1 day",
        "sensorhub: your token “deploy” has expired",
    ]
    login(client, "ana@acme.test")
    listed = client.get("/api/notifications").json()
    assert listed["total"] == 4
    assert listed["items"][0]["kind"] == "token.expired"
    assert {n["email"]["status"] for n in listed["items"]} == {"sent"}


def test_missed_notices_send_only_the_most_urgent(
    client: TestClient, world: World, ctx: AppContext, clock: Clock
) -> None:
    _ana_with_a_pat(client, world, 15)
    with smtp_server() as (inbox, port):
        clock.advance(timedelta(days=14, hours=12))  # the server was down for two weeks
        assert run_expiry_notices(ctx.db, _mail_settings(ctx, port)).created == 1
        assert [m["Subject"] for m in inbox.messages] == ["sensorhub: your token “deploy” expires in 1 day"]


def test_smtp_down_is_retried_nothing_lost_and_the_ui_says_so(
    client: TestClient, world: World, ctx: AppContext, clock: Clock
) -> None:
    from tests.web.helpers import web_login

    _ana_with_a_pat(client, world, 5)
    port = free_port()  # nothing listens there yet
    settings = _mail_settings(ctx, port)
    run = run_expiry_notices(ctx.db, settings)
    assert (run.created, run.sent, run.failed) == (1, 0, 1)
    item = client.get("/api/notifications").json()["items"][0]
    assert item["email"]["status"] == "pending" and item["email"]["attempts"] == 1
    assert "127.0.0.1" in item["email"]["error"] and item["email"]["next_attempt_at"]
    web = TestClient(client.app)
    web_login(web, "ana@acme.test")
    page = web.get("/notifications").text
    assert "not delivered yet" in page and "retrying" in page
    # The banner is on every page until read.
    assert "expires in 7 days" in web.get("/integrations").text

    # Before the retry time nothing is attempted; after it, the server is back and the mail goes out.
    assert run_expiry_notices(ctx.db, settings, utcnow() + timedelta(seconds=30)).failed == 0
    with smtp_server(port) as (inbox, _):
        run = run_expiry_notices(ctx.db, settings, utcnow() + timedelta(minutes=3))
        assert (run.created, run.sent) == (0, 1)
        assert [m["Subject"] for m in inbox.messages] == ["sensorhub: your token “deploy” expires in 7 days"]
    assert client.get("/api/notifications").json()["items"][0]["email"]["status"] == "sent"


def test_api_keys_and_api_user_tokens_tell_the_org_admins(
    client: TestClient, world: World, ctx: AppContext, clock: Clock
) -> None:
    from tests.web.helpers import csrf_of, web_login

    world.org("acme")
    world.user("olga@acme.test", "acme", "owner")
    world.user("adam@acme.test", "acme", "admin")
    world.user("mia@acme.test", "acme", "member")
    login(client, "olga@acme.test")
    r = client.post(
        "/api/orgs/acme/api-keys", json={"name": "ingest", "scopes": ["entities"], "expires_in_days": 3}
    )
    assert r.status_code == 201
    u = client.post("/api/orgs/acme/api-users", json={"name": "bot"}).json()
    r = client.post(
        f"/api/orgs/acme/api-users/{u['id']}/tokens",
        json={"name": "bot-token", "scopes": ["entities"], "expires_in_days": 2},
    )
    assert r.status_code == 201, r.text
    with smtp_server() as (inbox, port):
        run = run_expiry_notices(ctx.db, _mail_settings(ctx, port))
        assert run.created == 4 and run.sent == 4
        for admin in ("olga@acme.test", "adam@acme.test"):
            assert sorted(m["Subject"] for m in inbox.to(admin)) == [
                "sensorhub: the API key “ingest” of Acme expires in 7 days",
                "sensorhub: the API user token “bot-token” of Acme expires in 7 days",
            ]
        assert inbox.to("mia@acme.test") == []

    # The web UI: a banner, a list, mark read (then the banner is gone).
    web = TestClient(client.app)
    web_login(web, "adam@acme.test")
    assert "The API key “ingest” of Acme expires in 7 days" in web.get("/").text
    page = web.get("/notifications").text
    assert page.count("Mark read<") == 2
    r = web.post("/notifications/read-all", data={"csrf_token": csrf_of(page)}, follow_redirects=False)
    assert r.status_code == 303
    assert "expires in 7 days" not in web.get("/").text
    assert web.get("/api/notifications").json()["items"][0]["read_at"] is not None
    # Nobody reads or marks another person's notifications.
    login(client, "mia@acme.test")
    assert client.get("/api/notifications").json() == {"total": 0, "items": []}
    assert client.post("/api/notifications/nope/read").status_code == 404


def test_the_notices_are_a_periodic_job_of_the_one_runner(
    client: TestClient, world: World, ctx: AppContext, clock: Clock
) -> None:
    from sensorhub.background import build_runner

    _ana_with_a_pat(client, world, 3)
    runner = build_runner(ctx)
    assert "token-expiry-notices" in runner.names
    # The app's embedded runner holds the job's lease for one interval after its start.
    clock.advance(timedelta(seconds=ctx.settings.token_notice_interval_seconds + 1))
    assert runner.run_once("token-expiry-notices")
    (item,) = client.get("/api/notifications").json()["items"]
    assert item["subject"] == "sensorhub: your token “deploy” expires in 7 days"
    assert item["email"]["status"] == "none"  # no SMTP configured: shown in the UI only
