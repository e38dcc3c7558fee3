"""Signing in with OpenID Connect against a real provider (panva's oidc-provider on loopback, see
tests/oidc_provider.py), through a real sensorhub server, on SQLite and PostgreSQL: the flow, account
linking and just-in-time membership, and every bad answer — a wrong issuer, nonce or audience, a tampered
or expired state, a provider that is down — refused with a clear message, leaving no account, identity
or session behind."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from sqlalchemy import func, select

from sensorhub.accounts.models import Membership, Organisation, User
from sensorhub.audit.models import AuditEvent
from sensorhub.auth import oidc
from sensorhub.auth.models import OidcIdentity, OidcLoginState, WebSession
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.db import CLOCK
from tests.builders import World
from tests.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    OTHER_CLIENT_ID,
    authorize,
    free_port,
    oidc_provider,
    oidc_settings,
    sensorhub_server,
    sign_in,
    start,
)

ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice": {"email": "Alice@Acme.test", "email_verified": True, "name": "Alice Admin"},
    "bob": {"email": "bob@elsewhere.test", "email_verified": True, "name": "Bob"},
    "carol": {"email": "carol@acme.test", "email_verified": False, "name": "Carol"},
    "dave": {"email": "dave@newco.test", "email_verified": True, "name": "Dave New"},
}


@dataclasses.dataclass
class Env:
    url: str
    ctx: AppContext
    provider_issuer: str
    stop_provider: Any

    def count(self, model: Any) -> int:
        with self.ctx.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _env(settings: Settings, tmp_path: Path, **extra: Any) -> Iterator[Env]:
    port = free_port()
    callback = f"http://127.0.0.1:{port}/login/oidc/callback"
    CLOCK.reset()
    with oidc_provider([callback], ACCOUNTS, log_dir=tmp_path) as provider:
        issuer = extra.pop("issuer", provider.issuer)
        s = oidc_settings(settings, issuer, **extra)
        with sensorhub_server(s, port) as (url, ctx):
            world = World(ctx)
            world.org("acme", ("farm",))
            world.user("alice@acme.test", "acme", "member")
            world.user("carol@acme.test", "acme", "member")
            try:
                yield Env(url, ctx, provider.issuer, provider.stop)
            finally:
                CLOCK.reset()


@pytest.fixture
def env(settings: Settings, tmp_path: Path) -> Iterator[Env]:
    yield from _env(settings, tmp_path)


@pytest.fixture
def join_env(settings: Settings, tmp_path: Path) -> Iterator[Env]:
    yield from _env(settings, tmp_path, oidc_join_domains=["newco.test=acme:viewer"])


def _nothing_made(env: Env, users_before: int) -> None:
    assert env.count(User) == users_before
    assert env.count(OidcIdentity) == 0
    assert env.count(WebSession) == 0


def _error_of(r: httpx.Response) -> str:
    assert 'role="alert"' in r.text, r.text[:2000]
    return unescape(r.text.split('role="alert">', 1)[1].split("</div>", 1)[0])


def test_the_login_page_offers_the_provider_and_a_sign_in_starts_a_normal_session(env: Env) -> None:
    with httpx.Client() as c:
        page = c.get(f"{env.url}/login")
        assert "Sign in with Test SSO" in page.text and 'href="/login/oidc"' in page.text
        r = sign_in(c, env.url, "alice", next_path="/integrations")
        assert r.status_code == 303 and r.headers["location"] == "/integrations"
        assert "sensorhub_oidc_state" not in c.cookies  # the login state is spent
        home = c.get(f"{env.url}/integrations")
        assert home.status_code == 200 and "alice@acme.test" in home.text
        me = c.get(f"{env.url}/api/auth/me").json()
        assert me["email"] == "alice@acme.test"
        assert [o["slug"] for o in me["organisations"]] == ["acme"]
        # The same session as a password login: CSRF on unsafe requests, logout ends it.
        assert c.post(f"{env.url}/api/auth/logout").status_code == 403
        assert (
            c.post(f"{env.url}/api/auth/logout", headers={"X-CSRF-Token": me["csrf_token"]}).status_code
            == 204
        )
        assert c.get(f"{env.url}/api/auth/me").status_code == 401
    with env.ctx.db.session() as s:
        ident = s.scalars(select(OidcIdentity)).one()
        user = s.scalars(select(User).where(User.email == "alice@acme.test")).one()
        assert (ident.issuer, ident.subject, ident.user_id) == (env.provider_issuer, "alice", user.id)
        logins = s.scalars(select(AuditEvent).where(AuditEvent.action == "session.login")).all()
        assert [e.details for e in logins] == [{"method": "oidc", "issuer": env.provider_issuer}]
        assert s.scalar(select(func.count()).select_from(OidcLoginState)) == 0
    # A second sign-in finds the identity; still one identity, one account.
    users = env.count(User)
    with httpx.Client() as c:
        assert sign_in(c, env.url, "alice").status_code == 303
        assert c.get(f"{env.url}/api/auth/me").json()["email"] == "alice@acme.test"
    assert env.count(OidcIdentity) == 1 and env.count(User) == users


def test_an_address_without_an_account_or_an_unverified_one_gets_nothing(env: Env) -> None:
    users = env.count(User)
    with httpx.Client() as c:
        r = sign_in(c, env.url, "bob")
        assert r.status_code == 403
        assert "no sensorhub account uses bob@elsewhere.test" in _error_of(r)
        assert c.get(f"{env.url}/api/auth/me").status_code == 401
    with httpx.Client() as c:
        # carol@acme.test has an account, but the provider has not verified the address: no link.
        r = sign_in(c, env.url, "carol")
        assert r.status_code == 403
        assert "has not verified the address carol@acme.test" in _error_of(r)
    _nothing_made(env, users)


def test_a_join_domain_creates_the_account_and_its_membership_never_as_owner(join_env: Env) -> None:
    env = join_env
    with httpx.Client() as c:
        assert sign_in(c, env.url, "dave").status_code == 303
        me = c.get(f"{env.url}/api/auth/me").json()
    assert me["email"] == "dave@newco.test" and me["name"] == "Dave New"
    assert [(o["slug"], o["role"]) for o in me["organisations"]] == [("acme", "viewer")]
    with env.ctx.db.session() as s:
        dave = s.scalars(select(User).where(User.email == "dave@newco.test")).one()
        assert dave.password_hash is None  # no password: signs in through the provider only
        m = s.scalars(select(Membership).join(Organisation).where(Membership.user_id == dave.id)).one()
        assert m.role == "viewer"
    with pytest.raises(ValueError, match="never owner"):
        Settings(oidc_join_domains="newco.test=acme:owner")


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    q.update(changes)
    return urlunsplit(parts._replace(query=urlencode(q)))


def test_a_wrong_nonce_in_the_id_token_is_refused(env: Env) -> None:
    users = env.count(User)
    with httpx.Client() as c:
        # The provider is asked (by someone in the middle) for a token with another nonce.
        auth_url = _with_query(start(c, env.url), nonce="injected-nonce")
        r = c.get(authorize(c, auth_url, "alice", env.url), follow_redirects=False)
        assert r.status_code == 400
        assert "nonce does not match this sign-in" in _error_of(r)
        assert c.get(f"{env.url}/api/auth/me").status_code == 401
    _nothing_made(env, users)
    assert env.count(OidcLoginState) == 1  # not consumed: nothing was written


def test_a_tampered_state_a_replayed_answer_and_an_expired_login_are_refused(env: Env) -> None:
    users = env.count(User)
    with httpx.Client() as c:
        callback = authorize(c, start(c, env.url), "alice", env.url)
        r = c.get(_with_query(callback, state="forged-state"), follow_redirects=False)
        assert r.status_code == 400 and "its state was altered" in _error_of(r)
    with httpx.Client() as c:
        # Another browser (no state cookie) replaying the provider's answer.
        r = c.get(callback, follow_redirects=False)
        assert r.status_code == 400 and "did not start in this browser" in _error_of(r)
    with httpx.Client() as c:
        callback = authorize(c, start(c, env.url), "alice", env.url)
        CLOCK.advance(timedelta(minutes=11))
        c.cookies.set("sensorhub_oidc_state", parse_qs(urlsplit(callback).query)["state"][0])
        r = c.get(callback, follow_redirects=False)
        assert r.status_code == 400 and "took longer than 10 minutes and has expired" in _error_of(r)
    _nothing_made(env, users)
    # And a completed sign-in cannot be replayed.
    CLOCK.reset()
    with httpx.Client() as c:
        callback = authorize(c, start(c, env.url), "alice", env.url)
        state = c.cookies["sensorhub_oidc_state"]
        assert c.get(callback, follow_redirects=False).status_code == 303
        c.cookies.set("sensorhub_oidc_state", state, path="/login/oidc")
        r = c.get(callback, follow_redirects=False)
        assert r.status_code == 400 and "unknown or was already completed" in _error_of(r)


def test_a_provider_that_says_it_is_another_issuer_is_refused(env: Env) -> None:
    # Configured as localhost, the provider announces 127.0.0.1 (what it puts into its tokens' iss).
    port = urlsplit(env.provider_issuer).port
    s = env.ctx.settings.model_copy(update={"oidc_issuer": f"http://localhost:{port}"})
    with sensorhub_server(s, free_port()) as (url, _), httpx.Client() as c:
        r = c.get(f"{url}/login/oidc", follow_redirects=False)
        assert r.status_code == 502
        assert f"says its issuer is '{env.provider_issuer}'" in _error_of(r)
        assert "sensorhub_oidc_state" not in c.cookies
    assert env.count(OidcLoginState) == 0


def test_a_provider_that_is_down_is_said_so_before_and_during_the_sign_in(
    env: Env, settings: Settings
) -> None:
    users = env.count(User)
    with httpx.Client() as c:
        callback = authorize(c, start(c, env.url), "alice", env.url)
        env.stop_provider()  # went down while the person was at its login page
        r = c.get(callback, follow_redirects=False)
        assert r.status_code == 502
        assert "could not be reached (token request" in _error_of(r)
        assert c.get(f"{env.url}/api/auth/me").status_code == 401
    _nothing_made(env, users)
    down = oidc_settings(settings, f"http://127.0.0.1:{free_port()}")
    with sensorhub_server(down, free_port()) as (url, _), httpx.Client() as c:
        r = c.get(f"{url}/login/oidc", follow_redirects=False)
        assert r.status_code == 502 and "could not be reached (discovery" in _error_of(r)
        assert "Test SSO" in r.text and 'name="password"' in r.text  # password login still offered


def _id_token_for(env: Env, client_id: str) -> tuple[str, str]:
    """A real ID token the provider issued to ``client_id`` (this test acting as that client)."""
    config = oidc.ProviderConfig(env.provider_issuer, client_id, CLIENT_SECRET, "openid email", "x", 5.0)
    redirect = f"{env.url}/login/oidc/callback"
    req = oidc.authorization_request(config, redirect)
    with httpx.Client() as c:
        callback = authorize(c, req.url, "alice", env.url)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    return oidc.exchange_code(config, code, req.code_verifier, redirect)["id_token"], req.nonce


def test_id_tokens_for_another_audience_or_issuer_or_altered_or_expired_are_refused(env: Env) -> None:
    ours = oidc.ProviderConfig(env.provider_issuer, CLIENT_ID, CLIENT_SECRET, "openid", "x", 5.0)
    token, nonce = _id_token_for(env, OTHER_CLIENT_ID)
    with pytest.raises(oidc.OidcError, match="meant for another client"):
        oidc.verify_id_token(ours, token, nonce)
    token, nonce = _id_token_for(env, CLIENT_ID)
    assert oidc.verify_id_token(ours, token, nonce)["sub"] == "alice"
    with pytest.raises(oidc.OidcError, match="nonce does not match"):
        oidc.verify_id_token(ours, token, "another-nonce")
    # A server configured for another issuer, reaching the same provider's endpoints and keys.
    other = dataclasses.replace(ours, issuer="https://login.example.test")
    oidc._cache[other.issuer] = dataclasses.replace(oidc.metadata(ours), issuer=other.issuer, keys=None)
    try:
        with pytest.raises(oidc.OidcError, match="issued by another issuer"):
            oidc.verify_id_token(other, token, nonce)
    finally:
        oidc._cache.pop(other.issuer, None)
    head, payload, sig = token.split(".")
    altered = ".".join((head, payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1], sig))
    with pytest.raises(oidc.OidcError, match="signature cannot be verified"):
        oidc.verify_id_token(ours, altered, nonce)
    CLOCK.advance(timedelta(minutes=12))  # the provider's ID tokens live 10 minutes; 1 minute of leeway
    with pytest.raises(oidc.OidcError, match="has expired"):
        oidc.verify_id_token(ours, token, nonce)


def test_an_invited_address_gets_its_account_at_its_first_sign_in_and_then_answers(env: Env) -> None:
    from sensorhub.accounts import invitations
    from sensorhub.accounts.service import get_org, get_user_by_email

    owner = World(env.ctx).user("olga@acme.test", "acme", "owner")
    with env.ctx.db.transaction() as s:
        invitations.invite_member(
            s,
            get_org(s, "acme"),
            invitations.Invite("bob@elsewhere.test", "member"),
            actor=owner,
            actor_role="owner",
        )
    with httpx.Client() as c:
        assert sign_in(c, env.url, "bob", next_path="/invitations").status_code == 303
        (inv,) = c.get(f"{env.url}/api/invitations").json()
        assert inv["organisation"]["slug"] == "acme"
        csrf = c.get(f"{env.url}/api/auth/me").json()["csrf_token"]
        r = c.post(f"{env.url}/api/invitations/{inv['id']}/accept", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        assert [o["slug"] for o in c.get(f"{env.url}/api/auth/me").json()["organisations"]] == ["acme"]
    with env.ctx.db.session() as s:
        bob = get_user_by_email(s, "bob@elsewhere.test")
        assert bob is not None and bob.password_hash is None


def test_a_refusal_by_the_provider_and_a_code_for_another_client_are_said_so(env: Env) -> None:
    users = env.count(User)
    with httpx.Client() as c:
        callback = authorize(c, start(c, env.url), "alice", env.url)
        state = parse_qs(urlsplit(callback).query)["state"][0]
        denied = f"{env.url}/login/oidc/callback?" + urlencode(
            {"state": state, "error": "access_denied", "error_description": "the user said no"}
        )
        r = c.get(denied, follow_redirects=False)
        assert r.status_code == 400
        assert "the provider did not sign you in (access_denied: the user said no)" in _error_of(r)
    with httpx.Client() as c:
        # Someone swaps the client id on the way: the code is another app's, and the provider says so.
        auth_url = _with_query(start(c, env.url), client_id=OTHER_CLIENT_ID)
        r = c.get(authorize(c, auth_url, "alice", env.url), follow_redirects=False)
        assert r.status_code == 400
        assert "refused to exchange the authorization code (400, invalid_grant)" in _error_of(r)
    _nothing_made(env, users)
