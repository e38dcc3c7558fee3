"""Invitations to addresses without an account: the inviting admin gets the same answer as for an
existing account; the ``invitation-notices`` job e-mails a sign-up link (a real SMTP server, aiosmtpd)
whose single-use token is stored only as a digest; the person creates the account, then accepts.
Expired, cancelled, used and unknown links are refused with a clear page and create nothing."""

from __future__ import annotations

import re
from datetime import timedelta
from email.message import EmailMessage

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from sensorhub.accounts.models import InvitationSignup, User
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.db import Clock
from sensorhub.notices.invitations import run_invitation_notices
from tests.builders import World, login
from tests.smtp import smtp_server, smtp_settings

LINK_RE = re.compile(r"https://hub\.example\.test/signup\?invite_token=([A-Za-z0-9_-]+)")
LOGIN_CSRF_RE = re.compile(r'name="login_csrf" value="([^"]+)"')


def _smtp(ctx: AppContext, port: int) -> Settings:
    return smtp_settings(ctx.settings, port, base_url="https://hub.example.test")


def _bob_of_beta(client: TestClient, world: World) -> None:
    """The common start: owner bob of organisation beta, logged in."""
    world.org("beta")
    world.user("bob@beta.test", "beta", "owner")
    login(client, "bob@beta.test")


def _invite(client: TestClient, email: str) -> dict[str, object]:
    r = client.post("/api/orgs/beta/members", json={"email": email, "role": "viewer"})
    assert r.status_code == 202, r.text
    body: dict[str, object] = r.json()
    return body


def _token(m: EmailMessage) -> str:
    match = LINK_RE.search(m.get_content())
    assert match, m.get_content()
    return match.group(1)


def _users(ctx: AppContext) -> int:
    with ctx.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(User)) or 0)


def _sign_up(c: TestClient, token: str, **fields: str) -> object:
    page = c.get("/signup", params={"invite_token": token})
    assert page.status_code == 200, page.text
    m = LOGIN_CSRF_RE.search(page.text)
    assert m
    data = {"invite_token": token, "login_csrf": m.group(1), "name": "Nora New"}
    data.update(fields)
    return c.post("/signup", data=data, follow_redirects=False)


def test_an_unknown_address_gets_a_sign_up_link_creates_its_account_and_accepts(
    client: TestClient, world: World, ctx: AppContext
) -> None:
    world.org("beta")
    world.user("bob@beta.test", "beta", "owner")
    world.user("ana@alpha.test")
    login(client, "bob@beta.test")
    known, unknown = _invite(client, "ana@alpha.test"), _invite(client, "nora@new.test")
    # The same answer whatever exists.
    assert known.keys() == unknown.keys() and known["status"] == unknown["status"] == "pending"
    with smtp_server() as (inbox, port):
        settings = _smtp(ctx, port)
        assert run_invitation_notices(ctx.db, settings) == 2  # ana's notification, nora's sign-up link
        assert run_invitation_notices(ctx.db, settings) == 0  # each once
        (link_mail,) = inbox.to("nora@new.test")
        assert len(inbox.to("ana@alpha.test")) == 1 and len(inbox.messages) == 2
    assert link_mail["Subject"] == "sensorhub: you are invited to join Beta"
    token = _token(link_mail)
    with ctx.db.session() as s:
        row = s.scalars(select(InvitationSignup)).one()
        assert row.status == "sent" and row.token_digest and token not in row.token_digest
    nora = TestClient(client.app)
    page = nora.get("/signup", params={"invite_token": token})
    assert page.status_code == 200 and "nora@new.test" in page.text and "Beta" in page.text
    # Bad input first: different passwords, a short one — the form again, nothing created.
    users = _users(ctx)
    r = _sign_up(nora, token, password="long enough 1", password_again="long enough 2")
    assert r.status_code == 400 and "The two passwords differ" in r.text  # type: ignore[attr-defined]
    r = _sign_up(nora, token, password="short", password_again="short")
    assert r.status_code == 400 and "at least 8 characters" in r.text  # type: ignore[attr-defined]
    assert _users(ctx) == users
    r = _sign_up(nora, token, password="nora's password", password_again="nora's password")
    assert r.status_code == 303 and r.headers["location"] == "/invitations?done=signed-up"  # type: ignore[attr-defined]
    # Logged in; the invitation waits for an answer.
    (inv,) = nora.get("/api/invitations").json()
    assert inv["organisation"]["slug"] == "beta" and inv["role"] == "viewer"
    csrf = nora.get("/api/auth/me").json()["csrf_token"]
    assert (
        nora.post(f"/api/invitations/{inv['id']}/accept", headers={"X-CSRF-Token": csrf}).status_code == 200
    )
    assert [(o["slug"], o["role"]) for o in nora.get("/api/auth/me").json()["organisations"]] == [
        ("beta", "viewer")
    ]
    # The link worked once; the new account logs in with its password.
    again = TestClient(client.app).get("/signup", params={"invite_token": token})
    assert again.status_code == 409 and "already used" in again.text
    login(TestClient(client.app), "nora@new.test", "nora's password")


def test_expired_cancelled_and_unknown_links_are_refused_and_create_nothing(
    client: TestClient, world: World, ctx: AppContext, clock: Clock
) -> None:
    _bob_of_beta(client, world)
    _invite(client, "late@new.test")
    cancelled = _invite(client, "gone@new.test")
    with smtp_server() as (inbox, port):
        run_invitation_notices(ctx.db, _smtp(ctx, port))
        late, gone = _token(inbox.to("late@new.test")[0]), _token(inbox.to("gone@new.test")[0])
    assert client.delete(f"/api/orgs/beta/invitations/{cancelled['id']}").status_code in (200, 204)
    users = _users(ctx)
    anon = TestClient(client.app)
    r = anon.get("/signup", params={"invite_token": gone})
    assert r.status_code == 409 and "was cancelled" in r.text
    r = anon.get("/signup", params={"invite_token": "not-a-real-token"})
    assert r.status_code == 404 and "this sign-up link is not valid" in r.text
    page = anon.get("/signup", params={"invite_token": late})
    csrf = LOGIN_CSRF_RE.search(page.text)
    assert csrf
    clock.advance(timedelta(days=8))
    r = anon.get("/signup", params={"invite_token": late})
    assert r.status_code == 410 and "has expired" in r.text
    r = anon.post(
        "/signup",
        data={"invite_token": late, "login_csrf": csrf.group(1), "password": "a long password",
              "password_again": "a long password"},
    )  # fmt: skip
    assert r.status_code == 410 and "has expired" in r.text
    assert _users(ctx) == users


def test_smtp_down_keeps_the_link_pending_and_a_later_run_sends_it(
    client: TestClient, world: World, ctx: AppContext, clock: Clock
) -> None:
    _bob_of_beta(client, world)
    _invite(client, "nora@new.test")
    with smtp_server() as (_, port):
        pass  # the port is free again: nothing listens there
    settings = _smtp(ctx, port)
    run_invitation_notices(ctx.db, settings)
    with ctx.db.session() as s:
        row = s.scalars(select(InvitationSignup)).one()
        assert (
            row.status == "pending" and row.attempts == 1 and "cannot reach SMTP server" in (row.error or "")
        )
    clock.advance(timedelta(minutes=3))
    with smtp_server(port) as (inbox, _):
        run_invitation_notices(ctx.db, settings)
        (m,) = inbox.to("nora@new.test")
    token = _token(m)
    assert TestClient(client.app).get("/signup", params={"invite_token": token}).status_code == 200
    with ctx.db.session() as s:
        assert s.scalars(select(InvitationSignup)).one().status == "sent"
