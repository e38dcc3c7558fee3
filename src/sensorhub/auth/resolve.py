"""Turning a stored credential into a :class:`Principal` (the cache-miss path)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sensorhub.accounts.models import Organisation, Role, User, Workspace
from sensorhub.auth import restrictions as R
from sensorhub.auth.org_policy import admitted_scopes, org_networks
from sensorhub.auth.principal import OrgRef, Principal, WorkspaceRef, expiry_headers
from sensorhub.auth.scopes import ROLE_SCOPES
from sensorhub.authz.access import AccessRule
from sensorhub.authz.subjects import user_reach
from sensorhub.config import Settings
from sensorhub.tokens.models import Credential


class Rejected(Exception):
    """The credential exists but may not be used; ``reason`` is for logs and metrics only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def resolve(s: Session, digest: str, settings: Settings, now: datetime) -> Principal:
    return _live_principal(s, s.scalar(select(Credential).where(Credential.digest == digest)), settings, now)


def _live_principal(s: Session, cred: Credential | None, settings: Settings, now: datetime) -> Principal:
    """The principal of ``cred`` if it exists, is not revoked and has not expired; else :class:`Rejected`."""
    if cred is None:
        raise Rejected("unknown")
    if cred.revoked_at is not None:
        raise Rejected("revoked")
    if cred.expires_at is not None and cred.expires_at <= now:
        raise Rejected("expired")
    return build_principal(s, cred, settings, now)


def _previous_valid_until(s: Session, cred: Credential, now: datetime) -> datetime | None:
    """Until when the secret ``cred`` was rotated from still works (its grace), if it does."""
    q = select(Credential.expires_at).where(
        Credential.rotated_to == cred.id, Credential.revoked_at.is_(None), Credential.expires_at > now
    )
    ends = [e for e in s.scalars(q) if e is not None]
    return max(ends) if ends else None


def resolve_id(s: Session, credential_id: str, settings: Settings, now: datetime) -> Principal:
    """The credential's *current* principal by its id, with the same checks as :func:`resolve`: for
    work that outlives a request and acts with its creator's rights (live streams, subscriptions)."""
    return _live_principal(s, s.get(Credential, credential_id), settings, now)


def build_principal(s: Session, cred: Credential, settings: Settings, now: datetime) -> Principal:
    token_scopes = frozenset(cred.scopes)
    restrictions = R.load(cred.restrictions)
    org_scopes: dict[str, frozenset[str]] = {}
    rules: list[AccessRule] = []
    roles: dict[str, str | None] = {}
    is_api_user = False

    if cred.kind == "key":
        assert cred.org_id is not None
        org_scopes[cred.org_id] = token_scopes
        rules.append(AccessRule(cred.org_id))
        roles[cred.org_id] = None
        owner_label = f"organisation API key '{cred.name}'"
        default_cap = settings.key_export_row_cap
    else:
        assert cred.user_id is not None
        user = s.get(User, cred.user_id)
        if user is None or user.disabled:
            raise Rejected("owner_disabled")
        is_api_user = user.is_api_user
        owner_label = user.display
        default_cap = settings.pat_export_row_cap
        reach = user_reach(s, user.id)
        rules.extend(reach.rules)
        for org_id, role in reach.roles.items():
            roles[org_id] = role
            org_scopes[org_id] = token_scopes & ROLE_SCOPES[Role(role)]

    narrowed: list[AccessRule] = rules
    for r in restrictions:
        narrowed = r.narrow(narrowed)
    # Organisations outside the token's restrictions drop out of the scope table too.
    org_r = next((r for r in restrictions if isinstance(r, R.Organisations)), None)
    if org_r is not None:
        org_scopes = {o: sc for o, sc in org_scopes.items() if o in org_r.org_ids}

    person_pat = cred.kind == "pat" and not is_api_user
    org_scopes, withheld = admitted_scopes(s, cred.id, person_pat, org_scopes, roles)
    narrowed = [r for r in narrowed if r.org_id in org_scopes]
    org_ids = list(org_scopes)
    orgs = {
        o.id: OrgRef(o.id, o.slug, o.name, roles.get(o.id))
        for o in s.scalars(select(Organisation).where(Organisation.id.in_(org_ids)))
    }
    wss = {
        w.id: WorkspaceRef(w.id, w.org_id, w.slug, w.name)
        for w in s.scalars(select(Workspace).where(Workspace.org_id.in_(org_ids)))
    }
    return Principal(
        credential_id=cred.id,
        kind=cred.kind,
        name=cred.name,
        user_id=cred.user_id,
        key_org_id=cred.org_id,
        owner_label=owner_label,
        is_api_user=is_api_user,
        token_scopes=token_scopes,
        org_scopes=org_scopes,
        rules=tuple(dict.fromkeys(narrowed)),
        restrictions=tuple(restrictions),
        expires_at=cred.expires_at,
        created_at=cred.created_at,
        rate_limit_per_minute=cred.rate_limit_per_minute or settings.rate_limit_per_minute,
        export_row_cap=cred.export_row_cap or default_cap,
        orgs=orgs,
        workspaces=wss,
        superseded=cred.superseded_at is not None,
        previous_valid_until=_previous_valid_until(s, cred, now) if cred.rotated_from else None,
        expiry_headers=expiry_headers(cred.expires_at),
        withheld=tuple(withheld),
        org_networks=org_networks(s, org_ids),
    )
