"""Signing a person in with OpenID Connect: the login state, the answer's checks, the account it maps to.

:func:`begin` stores a single-use login state (state → nonce, PKCE verifier, where to go next; 10
minutes) and gives the provider's URL; :func:`finish` checks the provider's answer against it (the
state echoed must be the one this browser holds, unexpired, unused; RFC 9207's ``iss`` when sent), exchanges
the code, verifies the ID token (:mod:`sensorhub.auth.oidc`) and only then writes: the state is consumed,
the identity ``(issuer, sub)`` is found or linked, the account created if allowed, and a web session
started — the same session as a password login. Any failure raises :class:`OidcError` before the first
write, or the caller rolls the transaction back: no account, no identity, no session is left half-made.

Linking: an identity seen before signs in its user. A new one is linked to the account with the same
e-mail only when the provider says ``email_verified: true``; without such an account, one is created
when the address's domain is in ``SENSORHUB_OIDC_JOIN_DOMAINS``, an invitation waits for the address, or
``SENSORHUB_OIDC_ALLOW_SIGNUP`` is on. At that first sign-in, a join domain also makes the person a member
of its organisation (never an owner).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sensorhub.accounts import invitations
from sensorhub.accounts.models import User
from sensorhub.accounts.service import create_person, find_org, get_user_by_email, membership, set_membership
from sensorhub.audit.service import record
from sensorhub.auth import oidc
from sensorhub.auth.models import OidcIdentity, OidcLoginState
from sensorhub.auth.oidc import OidcError, ProviderConfig
from sensorhub.auth.sessions import LoggedIn, start_session
from sensorhub.auth.token_format import digest
from sensorhub.config import Settings
from sensorhub.db import utcnow

log = logging.getLogger("sensorhub.oidc")

STATE_TTL = timedelta(minutes=10)
# Expired states are kept a day (so that a late answer is told it expired), then deleted.
STATE_KEEP = timedelta(days=1)


def begin(s: Session, config: ProviderConfig, redirect_uri: str, next_path: str) -> oidc.LoginRequest:
    """Record a new login state and return where to send the browser (its ``state`` goes in a cookie)."""
    req = oidc.authorization_request(config, redirect_uri)  # discovery first: a provider down writes nothing
    now = utcnow()
    s.execute(delete(OidcLoginState).where(OidcLoginState.expires_at < now - STATE_KEEP))
    s.add(
        OidcLoginState(
            digest=digest(req.state),
            issuer=config.issuer,
            nonce=req.nonce,
            code_verifier=req.code_verifier,
            redirect_uri=redirect_uri,
            next_path=next_path,
            created_at=now,
            expires_at=now + STATE_TTL,
        )
    )
    s.flush()
    return req


def _login_state(
    s: Session, config: ProviderConfig, params: Mapping[str, str], browser_state: str | None
) -> OidcLoginState:
    state = params.get("state") or ""
    if not state or not browser_state or not secrets.compare_digest(state, browser_state):
        raise OidcError(
            "this sign-in did not start in this browser, or its state was altered on the way; start it again"
        )
    row = s.get(OidcLoginState, digest(state))
    if row is None:
        raise OidcError("this sign-in is unknown or was already completed; start it again")
    if row.expires_at <= utcnow():
        raise OidcError(
            f"this sign-in took longer than {int(STATE_TTL.total_seconds() // 60)} minutes and has expired; "
            "start it again"
        )
    if row.issuer != config.issuer:
        raise OidcError("this sign-in was started with another provider; start it again")
    return row


def finish(
    s: Session,
    settings: Settings,
    config: ProviderConfig,
    params: Mapping[str, str],
    browser_state: str | None,
    ip: str | None,
) -> tuple[LoggedIn, str]:
    """The session for a verified answer of the provider, and the local path to go to."""
    row = _login_state(s, config, params, browser_state)
    if params.get("error"):
        desc = params.get("error_description", "")[:200]
        raise OidcError(
            f"the provider did not sign you in ({params['error'][:60]}{': ' + desc if desc else ''})"
        )
    if "iss" in params and params["iss"] != config.issuer:
        raise OidcError(
            "the answer names another issuer than the configured provider (a mix-up); start again"
        )
    code = params.get("code")
    if not code:
        raise OidcError("the provider's answer has no authorization code; start the sign-in again")
    tokens = oidc.exchange_code(config, code, row.code_verifier, row.redirect_uri)
    who = oidc.identity_of(config, tokens, row.nonce)
    next_path = row.next_path
    # Everything is verified: the writes start here.
    consumed = s.execute(delete(OidcLoginState).where(OidcLoginState.digest == row.digest)).rowcount  # type: ignore[attr-defined,unused-ignore]
    if not consumed:
        raise OidcError("this sign-in was already completed; start it again")
    user = _account_for(s, settings, who, ip)
    done = start_session(
        s, user, ip, settings.session_lifetime_hours, details={"method": "oidc", "issuer": config.issuer}
    )
    return done, next_path


def _account_for(s: Session, settings: Settings, who: oidc.Identity, ip: str | None) -> User:
    known = s.scalar(
        select(OidcIdentity).where(OidcIdentity.issuer == who.issuer, OidcIdentity.subject == who.subject)
    )
    if known is not None:
        user = s.get_one(User, known.user_id)
        _usable(user)
        known.last_login_at = utcnow()
        return user
    if not who.email:
        raise OidcError(
            "the provider gave no e-mail address for this account (is 'email' in SENSORHUB_OIDC_SCOPES?)", 403
        )
    if not who.email_verified:
        raise OidcError(
            f"the provider has not verified the address {who.email}; verify it there, then sign in again", 403
        )
    existing = get_user_by_email(s, who.email)
    created = existing is None
    if existing is None:
        if not _may_sign_up(s, settings, who.email):
            raise OidcError(
                f"no sensorhub account uses {who.email}; ask an owner or admin of your organisation to invite "
                "you, then sign in again",
                403,
            )
        user = create_person(s, who.email, who.name)
    else:
        user = existing
    _usable(user)
    try:
        with s.begin_nested():
            s.add(
                OidcIdentity(
                    issuer=who.issuer,
                    subject=who.subject,
                    user_id=user.id,
                    email=who.email,
                    last_login_at=utcnow(),
                )
            )
    except IntegrityError:
        raise OidcError("this account was signed in twice at once; sign in again", 409) from None
    record(
        s,
        "user.oidc_link",
        actor_user_id=user.id,
        target=user.id,
        ip=ip,
        details={"issuer": who.issuer, "account_created": created},
    )
    _join_by_domain(s, settings, user, ip)
    return user


def _usable(user: User) -> None:
    if user.disabled or user.is_api_user:
        raise OidcError("this account cannot sign in (it is disabled, or it is an API user)", 403)


def join_targets(settings: Settings, email: str) -> list[tuple[str, str]]:
    """The (organisation, role) pairs ``SENSORHUB_OIDC_JOIN_DOMAINS`` gives an address's domain."""
    domain = email.rpartition("@")[2].lower()
    out = []
    for entry in settings.oidc_join_domains:
        d, _, target = entry.partition("=")
        org, _, role = target.partition(":")
        if d.strip().lower() == domain:
            out.append((org.strip(), role.strip() or "member"))
    return out


def _may_sign_up(s: Session, settings: Settings, email: str) -> bool:
    return (
        settings.oidc_allow_signup
        or bool(join_targets(settings, email))
        or invitations.has_pending_invitation(s, email)
    )


def _join_by_domain(s: Session, settings: Settings, user: User, ip: str | None) -> None:
    assert user.email
    for ref, role in join_targets(settings, user.email):
        org = find_org(s, ref)
        if org is None:
            log.warning("SENSORHUB_OIDC_JOIN_DOMAINS names organisation '%s', which does not exist", ref)
            continue
        if membership(s, user.id, org.id) is not None:
            continue
        set_membership(s, user, org, role)
        record(
            s,
            "member.join",
            org_id=org.id,
            actor_user_id=user.id,
            target=user.id,
            ip=ip,
            details={"role": role, "via": "oidc_join_domain"},
        )
