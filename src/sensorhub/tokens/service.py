"""Minting, listing, rotating and revoking credentials (PATs and org API keys).

Tokens never mint tokens: every function here is reached only through an interactive session (or the
CLI). The plaintext is returned once, by :func:`create_pat`, :func:`create_api_key` and :func:`rotate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from sensorhub.accounts import service as accounts
from sensorhub.accounts.models import Organisation, Role, User, Workspace
from sensorhub.audit.service import record
from sensorhub.auth import restrictions as R
from sensorhub.auth import token_format
from sensorhub.auth.scopes import ROLE_SCOPES, parse_scopes
from sensorhub.config import Settings
from sensorhub.db import auth_changed, utcnow
from sensorhub.errors import BadRequest, Conflict, Forbidden, NotFound
from sensorhub.tokens.models import Credential, CredentialOrgAccess

MAX_NAME = 100
# The longest grace period a rotation may give the old secret (an organisation may allow less).
MAX_GRACE_DAYS = 7
# Upper bound of any stated lifetime in days, so that date arithmetic cannot overflow.
MAX_DAYS = 36500


@dataclass(frozen=True)
class ExpirySpec:
    expires_in_days: int | None = None
    expires_at: datetime | None = None
    never: bool = False


@dataclass(frozen=True)
class RestrictionSpec:
    """The restrictions asked for, one field per :func:`sensorhub.auth.restrictions.inputs` (checked at
    import); the API body and the web form are read into it generically."""

    organisations: Sequence[str] = ()
    workspaces: Sequence[str] = ()
    entities: Sequence[str] = ()
    time_start: datetime | None = None
    time_end: datetime | None = None
    allowed_ips: Sequence[str] = ()


@dataclass(frozen=True)
class NewToken:
    """What a new token is asked to be, alike for a PAT, an API user's token and an API key: the JSON
    body (:meth:`sensorhub.tokens.schemas.TokenCreate.new_token`), the web form and the CLI each read
    theirs into one, and the services take it whole."""

    name: str
    scopes: Sequence[str]
    expiry: ExpirySpec = ExpirySpec()
    restrictions: RestrictionSpec = RestrictionSpec()


@dataclass
class Policy:
    max_days: int | None
    allow_never: bool
    org_slugs: list[str]


def _policy(orgs: Sequence[Organisation]) -> Policy:
    """The strictest policy of the organisations a credential reaches."""
    caps = [o.max_token_lifetime_days for o in orgs if o.max_token_lifetime_days]
    return Policy(
        max_days=min(caps) if caps else None,
        allow_never=all(o.allow_non_expiring_tokens for o in orgs),
        org_slugs=[o.slug for o in orgs],
    )


def resolve_expiry(
    spec: ExpirySpec, policy: Policy, default_days: int, now: datetime, hard_max_days: int | None = None
) -> datetime | None:
    """The expiry of a new credential, or ``None`` for a non-expiring one.

    One maximum applies to every way of stating expiry: the finite lifetime is at most
    ``min(org policy caps, hard_max_days)`` whether it is given as ``expires_in_days``, as
    ``expires_at`` or left to the default; ``never`` is a separate, explicit opt-in of every
    organisation reached (and none may cap lifetime). A far-away date is not a way around that."""
    _check_one_expiry(spec)
    cap = lifetime_cap(policy, hard_max_days)
    cap_note = _cap_note(policy, cap)
    if spec.never:
        _check_never_allowed(policy, cap)
        return None
    if spec.expires_at is not None:
        return _expiry_at(spec.expires_at, now, cap, cap_note)
    if spec.expires_in_days is not None:
        return _expiry_in_days(spec.expires_in_days, now, cap, cap_note)
    return now + timedelta(days=min(default_days, cap) if cap else default_days)


def _server_expiry(spec: ExpirySpec, policy: Policy, settings: Settings, now: datetime) -> datetime | None:
    """:func:`resolve_expiry` with this server's default and maximum token lifetimes (every new secret:
    a PAT, an API key, a rotation)."""
    return resolve_expiry(
        spec, policy, settings.default_token_lifetime_days, now, settings.max_token_lifetime_days
    )


def _check_one_expiry(spec: ExpirySpec) -> None:
    given = sum(
        x is not None and x is not False for x in (spec.expires_in_days, spec.expires_at, spec.never or None)
    )
    if given > 1:
        raise BadRequest("give only one of expires_in_days, expires_at and never")


def _cap_note(policy: Policy, cap: int | None) -> str:
    """Says who caps the lifetime, appended to a refusal of a too-long one."""
    org_cap = policy.max_days
    if org_cap is not None and cap == org_cap:
        return f" (the policy of {', '.join(policy.org_slugs)} caps token lifetime at {cap} days)"
    note = f" (this server caps token lifetime at {cap} days"
    return note + ("; use never for a non-expiring token)" if policy.allow_never and org_cap is None else ")")


def _check_never_allowed(policy: Policy, cap: int | None) -> None:
    if not policy.allow_never or policy.max_days is not None:
        raise BadRequest(
            "non-expiring tokens are not allowed by the organisation policy; give expires_in_days"
            " or expires_at" + (f" (at most {cap} days)" if cap else "")
        )


def _expiry_at(at: datetime, now: datetime, cap: int | None, cap_note: str) -> datetime:
    if at.tzinfo is None:
        raise BadRequest("expires_at needs a time zone, e.g. 2027-01-31T00:00:00Z")
    if at <= now:
        raise BadRequest("expires_at is in the past; give a future date")
    if cap is not None and at - now > timedelta(days=cap, minutes=1):
        raise BadRequest("expires_at is too far in the future" + cap_note)
    return at


def _expiry_in_days(days: int, now: datetime, cap: int | None, cap_note: str) -> datetime:
    if days < 1:
        raise BadRequest("expires_in_days must be at least 1")
    if cap is not None and days > cap:
        raise BadRequest(f"expires_in_days={days} is too long" + cap_note)
    if days > MAX_DAYS:
        raise BadRequest(f"expires_in_days must be at most {MAX_DAYS}")
    return now + timedelta(days=days)


def lifetime_cap(policy: Policy, hard_max_days: int | None) -> int | None:
    """The longest finite lifetime in days the policy and the server allow (``None``: no cap)."""
    caps = [c for c in (policy.max_days, hard_max_days) if c]
    return min(caps) if caps else None


def _check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise BadRequest("name must not be empty: give the token a name that says where it is used")
    if len(name) > MAX_NAME:
        raise BadRequest(f"name is too long (at most {MAX_NAME} characters)")
    return name


def _check_unique_name(s: Session, owner_key: str, name: str, except_id: str | None = None) -> None:
    q = select(Credential.id).where(
        Credential.owner_key == owner_key,
        Credential.name == name,
        Credential.revoked_at.is_(None),
        Credential.superseded_at.is_(None),
    )
    existing = s.scalar(q)
    if existing and existing != except_id:
        raise Conflict(f"you already have an active token named '{name}'; choose another name or revoke it")


def _build_restrictions(
    s: Session, spec: RestrictionSpec, orgs: Sequence[Organisation], *, key_org: Organisation | None = None
) -> tuple[dict[str, object], list[Organisation]]:
    """Validate the requested restrictions against the organisations in reach; returns the JSON to
    store and the organisations the credential will reach."""
    reach = _reached_orgs(spec, orgs, key_org)
    out: list[R.Restriction] = []
    if spec.organisations:
        out.append(R.Organisations(frozenset(o.id for o in reach)))
    for kind in R.REGISTRY:
        build = _RESTRICTION_BUILDERS.get(kind)
        restriction = build(s, spec, reach) if build is not None else None
        if restriction is not None:
            out.append(restriction)
    return R.dump(out), reach


def _reached_orgs(
    spec: RestrictionSpec, orgs: Sequence[Organisation], key_org: Organisation | None
) -> list[Organisation]:
    """The organisations the credential will reach: those named in ``spec.organisations``, else all."""
    if not spec.organisations:
        return list(orgs)
    if key_org is not None:
        raise BadRequest("API keys belong to one organisation; do not give organisations")
    chosen = []
    for ref in spec.organisations:
        org = next((o for o in orgs if ref in (o.id, o.slug)), None)
        if org is None:
            raise BadRequest(f"organisation '{ref}' is not one you are a member of")
        chosen.append(org)
    return chosen


# A builder validates one restriction kind of a spec, within the organisations reached, and returns the
# restriction to store (``None``: the spec asks for none of that kind).
RestrictionBuilder = Callable[[Session, RestrictionSpec, list[Organisation]], R.Restriction | None]


def _workspaces_restriction(
    s: Session, spec: RestrictionSpec, reach: list[Organisation]
) -> R.Restriction | None:
    if not spec.workspaces:
        return None
    wss = list(s.scalars(select(Workspace).where(Workspace.org_id.in_([o.id for o in reach]))))
    picked: dict[str, str] = {}
    for ref in spec.workspaces:
        ws = _find_workspace(ref, wss, reach)
        picked[ws.id] = ws.org_id
    return R.Workspaces(picked)


def _find_workspace(ref: str, wss: list[Workspace], reach: list[Organisation]) -> Workspace:
    """The one workspace ``ref`` (id, slug or org/slug) names among ``wss``."""
    if "/" in ref:
        by_org = {o.id: o.slug for o in reach}
        org_ref, ws_ref = ref.split("/", 1)
        cand = [w for w in wss if w.slug == ws_ref and org_ref in (w.org_id, by_org.get(w.org_id))]
    else:
        cand = [w for w in wss if ref in (w.id, w.slug)]
    if not cand:
        raise BadRequest(f"workspace '{ref}' not found in {', '.join(o.slug for o in reach)}")
    if len(cand) > 1:
        raise BadRequest(f"workspace '{ref}' exists in several organisations; write it as org/workspace")
    return cand[0]


def _entities_restriction(
    s: Session, spec: RestrictionSpec, reach: list[Organisation]
) -> R.Restriction | None:
    if not spec.entities:
        return None
    ents = [e.strip() for e in spec.entities]
    if any(not e for e in ents):
        raise BadRequest("entity ids in entities must not be empty")
    return R.Entities(frozenset(ents))


def _time_window_restriction(
    s: Session, spec: RestrictionSpec, reach: list[Organisation]
) -> R.Restriction | None:
    if not (spec.time_start or spec.time_end):
        return None
    for label, v in (("time_start", spec.time_start), ("time_end", spec.time_end)):
        if v is not None and v.tzinfo is None:
            raise BadRequest(f"{label} needs a time zone, e.g. 2026-01-01T00:00:00Z")
    if spec.time_start and spec.time_end and spec.time_start >= spec.time_end:
        raise BadRequest("time_end must be after time_start")
    return R.TimeWindow(spec.time_start, spec.time_end)


def _allowed_ips_restriction(
    s: Session, spec: RestrictionSpec, reach: list[Organisation]
) -> R.Restriction | None:
    if not spec.allowed_ips:
        return None
    try:
        return R.AllowedIPs(R.parse_networks(spec.allowed_ips))
    except ValueError as e:
        raise BadRequest(f"allowed_ips: {e}") from None


# One builder per registered kind but the organisations (which decide the reach, above); they run in
# registry order. A kind added to the registry without its builder fails here, at import.
_RESTRICTION_BUILDERS: dict[str, RestrictionBuilder] = {
    R.Workspaces.kind: _workspaces_restriction,
    R.Entities.kind: _entities_restriction,
    R.TimeWindow.kind: _time_window_restriction,
    R.AllowedIPs.kind: _allowed_ips_restriction,
}
if set(_RESTRICTION_BUILDERS) != set(R.REGISTRY) - {R.Organisations.kind}:
    raise TypeError("every restriction kind needs its builder in tokens.service._RESTRICTION_BUILDERS")
if [f.name for f in fields(RestrictionSpec)] != [i.name for i in R.inputs()]:
    raise TypeError("RestrictionSpec must have one field per restriction input (auth.restrictions.inputs())")


@dataclass
class Minted:
    credential: Credential
    token: str
    # After a rotation with a grace period: until when the previous secret still works.
    previous_valid_until: datetime | None = None


def _mint(
    s: Session,
    *,
    kind: token_format.TokenKind,
    prefix: str,
    name: str,
    owner_key: str,
    user_id: str | None,
    org_id: str | None,
    scopes: list[str],
    restrictions: dict[str, object],
    expires_at: datetime | None,
    created_by: str | None,
    rate_limit_per_minute: int | None = None,
    export_row_cap: int | None = None,
    rotated_from: str | None = None,
) -> Minted:
    text = token_format.generate(prefix, kind)
    parsed = token_format.parse(text, prefix)
    assert parsed is not None
    cred = Credential(
        kind=kind,
        name=name,
        digest=parsed.digest,
        hint=parsed.hint,
        owner_key=owner_key,
        user_id=user_id,
        org_id=org_id,
        scopes=scopes,
        restrictions=restrictions,
        expires_at=expires_at,
        created_by=created_by,
        rate_limit_per_minute=rate_limit_per_minute,
        export_row_cap=export_row_cap,
        rotated_from=rotated_from,
    )
    s.add(cred)
    s.flush()
    return Minted(cred, text)


def _scopes(values: Sequence[str]) -> list[str]:
    try:
        return parse_scopes(list(values))
    except ValueError as e:
        raise BadRequest(str(e)) from None


def user_orgs(s: Session, user_id: str) -> list[tuple[Organisation, str]]:
    return [(o, m.role) for m, o in accounts.memberships_of(s, user_id)]


def create_pat(
    s: Session,
    owner: User,
    new: NewToken,
    *,
    settings: Settings,
    created_by: str | None,
    ip: str | None = None,
) -> Minted:
    """A Personal Access Token of ``owner`` (a person or an API user), within what its roles allow."""
    name = _check_name(new.name)
    scope_list = _scopes(new.scopes)
    memberships = user_orgs(s, owner.id)
    if not memberships:
        raise BadRequest(
            f"'{owner.display}' is not a member of any organisation, so a token would reach nothing"
        )
    orgs = [o for o, _ in memberships]
    stored, reach = _build_restrictions(s, new.restrictions, orgs)
    roles = {o.id: r for o, r in memberships}
    for sc in scope_list:
        if not any(sc in ROLE_SCOPES[Role(roles[o.id])] for o in reach):
            raise Forbidden(
                f"your role does not allow the '{sc}' scope in {', '.join(o.slug for o in reach)}"
            )
    return _issue(
        s, owner, name, scope_list, new.expiry, stored, reach, settings=settings, created_by=created_by, ip=ip
    )


def create_api_key(
    s: Session,
    org: Organisation,
    new: NewToken,
    *,
    settings: Settings,
    created_by: str | None,
    rate_limit_per_minute: int | None = None,
    export_row_cap: int | None = None,
    ip: str | None = None,
) -> Minted:
    """An API key of ``org``: permissions = scopes × the workspaces of its restrictions (none: all)."""
    name = _check_name(new.name)
    scope_list = _scopes(new.scopes)
    stored, _ = _build_restrictions(s, new.restrictions, [org], key_org=org)
    return _issue(
        s,
        org,
        name,
        scope_list,
        new.expiry,
        stored,
        [org],
        settings=settings,
        created_by=created_by,
        ip=ip,
        rate_limit_per_minute=rate_limit_per_minute,
        export_row_cap=export_row_cap,
    )


def _issue(
    s: Session,
    owner: User | Organisation,
    name: str,
    scopes: list[str],
    expiry: ExpirySpec,
    restrictions: dict[str, object],
    reach: list[Organisation],
    *,
    settings: Settings,
    created_by: str | None,
    ip: str | None,
    rate_limit_per_minute: int | None = None,
    export_row_cap: int | None = None,
) -> Minted:
    """Mint a checked new credential of ``owner`` (a PAT's user, an API key's organisation) that reaches
    ``reach``: its expiry under their policy, a name no other live token of the owner has, and
    ``token.create`` in the audit log of every organisation reached."""
    expires_at = _server_expiry(expiry, _policy(reach), settings, utcnow())
    is_pat = isinstance(owner, User)
    owner_key = f"user:{owner.id}" if is_pat else f"org:{owner.id}"
    _check_unique_name(s, owner_key, name)
    if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
        raise BadRequest("rate_limit_per_minute must be at least 1")
    if export_row_cap is not None and export_row_cap < 1:
        raise BadRequest("export_row_cap must be at least 1")
    kind: token_format.TokenKind = "pat" if is_pat else "key"
    minted = _mint(
        s,
        kind=kind,
        prefix=settings.token_prefix,
        name=name,
        owner_key=owner_key,
        user_id=owner.id if is_pat else None,
        org_id=None if is_pat else owner.id,
        scopes=scopes,
        restrictions=restrictions,
        expires_at=expires_at,
        created_by=created_by,
        rate_limit_per_minute=rate_limit_per_minute,
        export_row_cap=export_row_cap,
    )
    details: dict[str, Any] = {"kind": kind, "scopes": scopes}
    if is_pat:
        details["owner"] = owner.id
    for o in reach:
        record(
            s,
            "token.create",
            org_id=o.id,
            actor_user_id=created_by,
            credential_id=minted.credential.id,
            target=name,
            ip=ip,
            details=details,
        )
    return minted


def _list_credentials(
    s: Session, owner: ColumnElement[bool], kind: str, include_revoked: bool
) -> list[Credential]:
    """The credentials of one kind that ``owner`` selects, newest first."""
    q = select(Credential).where(owner, Credential.kind == kind)
    if not include_revoked:
        q = q.where(Credential.revoked_at.is_(None))
    return list(s.scalars(q.order_by(Credential.created_at.desc())))


def _get_credential(s: Session, cred_id: str, owner: ColumnElement[bool], kind: str, what: str) -> Credential:
    """The credential ``cred_id`` of one kind if ``owner`` selects it; otherwise ``what '…' not found``."""
    c = s.scalar(select(Credential).where(Credential.id == cred_id, owner, Credential.kind == kind))
    if c is None:
        raise NotFound(f"{what} '{cred_id}' not found")
    return c


def list_pats(s: Session, user_id: str, include_revoked: bool = True) -> list[Credential]:
    return _list_credentials(s, Credential.user_id == user_id, "pat", include_revoked)


def list_api_keys(s: Session, org_id: str, include_revoked: bool = True) -> list[Credential]:
    return _list_credentials(s, Credential.org_id == org_id, "key", include_revoked)


def get_pat(s: Session, user_id: str, cred_id: str) -> Credential:
    return _get_credential(s, cred_id, Credential.user_id == user_id, "pat", "token")


def get_api_key(s: Session, org_id: str, cred_id: str) -> Credential:
    return _get_credential(s, cred_id, Credential.org_id == org_id, "key", "API key")


def get_any(s: Session, cred_id: str) -> Credential:
    c = s.get(Credential, cred_id)
    if c is None:
        raise NotFound(f"token '{cred_id}' not found")
    return c


def _audit_orgs(s: Session, cred: Credential) -> list[str | None]:
    if cred.org_id:
        return [cred.org_id]
    if cred.user_id:
        # Only the organisations this token reaches: a token restricted to A is none of B's business
        # (its name must not appear in B's audit log).
        orgs = [o.id for o, _ in user_orgs(s, cred.user_id)]
        limit = next((r for r in R.load(cred.restrictions) if isinstance(r, R.Organisations)), None)
        if limit is not None:
            orgs = [o for o in orgs if o in limit.org_ids]
        return list(orgs) or [None]
    return [None]


def _record_change(
    s: Session,
    cred: Credential,
    action: str,
    *,
    actor_id: str | None,
    ip: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Audit ``action`` on ``cred`` in every organisation it concerns, then drop cached authentication."""
    for org_id in _audit_orgs(s, cred):
        record(
            s,
            action,
            org_id=org_id,
            actor_user_id=actor_id,
            credential_id=cred.id,
            target=cred.name,
            ip=ip,
            details=details,
        )
    auth_changed(s)


def revoke(s: Session, cred: Credential, *, actor_id: str | None, ip: str | None = None) -> Credential:
    """Revoke ``cred``; idempotent (revoking a revoked credential changes nothing).

    An old secret still in its rotation grace dies with it: revoking a token revokes every secret of it."""
    now = utcnow()
    in_grace = in_grace_predecessors(s, cred, now)
    for old in in_grace:
        old.revoked_at = now
        old.revoked_by = actor_id
    if cred.revoked_at is not None:
        if in_grace:
            s.flush()
            auth_changed(s)
        return cred
    cred.revoked_at = now
    cred.revoked_by = actor_id
    s.flush()
    _record_change(s, cred, "token.revoke", actor_id=actor_id, ip=ip)
    return cred


def in_grace_predecessors(s: Session, cred: Credential, now: datetime) -> list[Credential]:
    """The rotated-away secrets of ``cred`` that still work (in their grace period)."""
    q = select(Credential).where(
        Credential.rotated_to == cred.id,
        Credential.revoked_at.is_(None),
        Credential.expires_at > now,
    )
    return list(s.scalars(q))


def predecessor_valid_until(s: Session, cred: Credential, now: datetime) -> datetime | None:
    """Until when the previous secret of ``cred`` still works (``None``: it does not)."""
    ends = [c.expires_at for c in in_grace_predecessors(s, cred, now) if c.expires_at is not None]
    return max(ends) if ends else None


def max_grace_days(orgs: Sequence[Organisation]) -> int:
    """The longest rotation grace the organisations reached all allow."""
    return min([MAX_GRACE_DAYS, *(o.max_rotation_grace_days for o in orgs)])


def _check_grace(grace_days: int, orgs: Sequence[Organisation]) -> None:
    if grace_days < 0:
        raise BadRequest("grace_days must be 0 (the old secret stops at once) or more")
    cap = max_grace_days(orgs)
    if grace_days > cap:
        who = "this server" if cap == MAX_GRACE_DAYS else "the policy of " + ", ".join(o.slug for o in orgs)
        raise BadRequest(f"grace_days={grace_days} is too long: {who} allows at most {cap} day(s) of overlap")


def rotate(
    s: Session,
    cred: Credential,
    *,
    settings: Settings,
    actor_id: str | None,
    ip: str | None = None,
    grace_days: int = 0,
) -> Minted:
    """A new secret with the same name, scopes and restrictions. The old secret is revoked at once, or,
    with ``grace_days``, keeps working for that many days (at most the organisations' policy allows)
    so that a deployment can switch without downtime; revoking the new token ends the grace too.

    The new token gets the same lifetime the old one was created with, counted from now (capped by the
    current policy and the server's maximum)."""
    if cred.revoked_at is not None:
        raise Conflict("this token is revoked and cannot be rotated; create a new token instead")
    if cred.superseded_at is not None:
        raise Conflict("this secret was already rotated; rotate the token's current secret instead")
    orgs = _rotation_orgs(s, cred)
    _check_grace(grace_days, orgs)
    now = utcnow()
    expires_at = _rotated_expiry(cred, orgs, settings, now)
    if grace_days:
        grace_end = now + timedelta(days=grace_days)
        cred.superseded_at = now
        cred.expires_at = grace_end if cred.expires_at is None else min(cred.expires_at, grace_end)
    else:
        cred.revoked_at = now
        cred.revoked_by = actor_id
    s.flush()  # free the name before the new credential takes it
    minted = _mint(
        s,
        kind=cred.kind,  # type: ignore[arg-type]
        prefix=settings.token_prefix,
        name=cred.name,
        owner_key=cred.owner_key,
        user_id=cred.user_id,
        org_id=cred.org_id,
        scopes=list(cred.scopes),
        restrictions=dict(cred.restrictions),
        expires_at=expires_at,
        created_by=actor_id,
        rate_limit_per_minute=cred.rate_limit_per_minute,
        export_row_cap=cred.export_row_cap,
        rotated_from=cred.id,
    )
    cred.rotated_to = minted.credential.id
    _carry_org_decisions(s, cred, minted.credential)
    details: dict[str, Any] = {"new_credential": minted.credential.id, "grace_days": grace_days}
    if grace_days:
        minted.previous_valid_until = cred.expires_at
        details["old_secret_valid_until"] = cred.expires_at.isoformat() if cred.expires_at else None
    _record_change(s, cred, "token.rotate", actor_id=actor_id, ip=ip, details=details)
    return minted


def _carry_org_decisions(s: Session, old: Credential, new: Credential) -> None:
    """A rotated token is the same token: what organisations decided about it (approved, denied,
    revoked for them) holds for its new secret too."""
    for d in s.scalars(select(CredentialOrgAccess).where(CredentialOrgAccess.credential_id == old.id)):
        s.add(
            CredentialOrgAccess(
                credential_id=new.id,
                org_id=d.org_id,
                state=d.state,
                reason=d.reason,
                decided_by=d.decided_by,
                decided_at=d.decided_at,
            )
        )


def _rotation_orgs(s: Session, cred: Credential) -> list[Organisation]:
    """The organisations ``cred`` reaches now (whose policy its rotation follows)."""
    if cred.org_id:
        return [s.get_one(Organisation, cred.org_id)]
    assert cred.user_id is not None
    owner = s.get_one(User, cred.user_id)
    if owner.disabled:
        raise Forbidden("the owner of this token is disabled")
    orgs = [o for o, _ in user_orgs(s, cred.user_id)]
    wanted = R.load(cred.restrictions)
    org_r = next((r for r in wanted if isinstance(r, R.Organisations)), None)
    if org_r is not None:
        orgs = [o for o in orgs if o.id in org_r.org_ids]
    if not orgs:
        raise Forbidden("the owner of this token is no longer a member of the organisations it reached")
    return orgs


def _rotated_expiry(
    cred: Credential, orgs: list[Organisation], settings: Settings, now: datetime
) -> datetime | None:
    """Rotation re-applies the current policy and never refuses a token the server once accepted: the
    new secret keeps the old one's lifetime (created → expires), counted from now, cut to today's
    maximum; a non-expiring token stays non-expiring only while the policy still allows it."""
    policy = _policy(orgs)
    cap = lifetime_cap(policy, settings.max_token_lifetime_days)
    if cred.expires_at is None and policy.allow_never and policy.max_days is None:
        spec = ExpirySpec(never=True)
    elif cred.expires_at is None:
        spec = ExpirySpec(expires_in_days=cap or settings.default_token_lifetime_days)
    else:
        lifetime = cred.expires_at - cred.created_at
        days = max(1, min(MAX_DAYS, round(lifetime.total_seconds() / 86400)))
        spec = ExpirySpec(expires_in_days=min(days, cap) if cap else days)
    return _server_expiry(spec, policy, settings, now)


# -- use cases shared by the JSON API, the web pages and the CLI ------------------------------------
def revoke_pat(s: Session, user: User, token_id: str, *, ip: str | None = None) -> Credential:
    """``user`` revokes one of their own Personal Access Tokens."""
    return revoke(s, get_pat(s, user.id, token_id), actor_id=user.id, ip=ip)


def rotate_pat(
    s: Session, user: User, token_id: str, *, settings: Settings, ip: str | None = None, grace_days: int = 0
) -> Minted:
    """``user`` rotates one of their own Personal Access Tokens."""
    cred = get_pat(s, user.id, token_id)
    return rotate(s, cred, settings=settings, actor_id=user.id, ip=ip, grace_days=grace_days)


def create_api_user_token(
    s: Session,
    org: Organisation,
    user_id: str,
    new: NewToken,
    *,
    settings: Settings,
    created_by: str | None,
    ip: str | None = None,
) -> Minted:
    """An admin mints a token for the API user ``user_id`` of ``org``; a disabled one mints nothing."""
    user = accounts.get_api_user(s, org, user_id)
    if user.disabled:
        raise BadRequest("this API user is disabled; enable it before creating tokens")
    return create_pat(s, user, new, settings=settings, created_by=created_by, ip=ip)


def list_api_user_tokens(s: Session, org: Organisation, user_id: str) -> list[Credential]:
    return list_pats(s, accounts.get_api_user(s, org, user_id).id)


def api_user_token(s: Session, org: Organisation, user_id: str, token_id: str) -> Credential:
    """A token of the API user ``user_id`` of ``org`` (not found for anyone else's)."""
    return get_pat(s, accounts.get_api_user(s, org, user_id).id, token_id)


def revoke_api_user_token(
    s: Session, org: Organisation, user_id: str, token_id: str, *, actor_id: str, ip: str | None = None
) -> Credential:
    return revoke(s, api_user_token(s, org, user_id, token_id), actor_id=actor_id, ip=ip)


def rotate_api_user_token(
    s: Session,
    org: Organisation,
    user_id: str,
    token_id: str,
    *,
    settings: Settings,
    actor_id: str,
    ip: str | None = None,
    grace_days: int = 0,
) -> Minted:
    cred = api_user_token(s, org, user_id, token_id)
    return rotate(s, cred, settings=settings, actor_id=actor_id, ip=ip, grace_days=grace_days)


def revoke_api_key(
    s: Session, org: Organisation, key_id: str, *, actor_id: str, ip: str | None = None
) -> Credential:
    return revoke(s, get_api_key(s, org.id, key_id), actor_id=actor_id, ip=ip)


def rotate_api_key(
    s: Session,
    org: Organisation,
    key_id: str,
    *,
    settings: Settings,
    actor_id: str,
    ip: str | None = None,
    grace_days: int = 0,
) -> Minted:
    cred = get_api_key(s, org.id, key_id)
    return rotate(s, cred, settings=settings, actor_id=actor_id, ip=ip, grace_days=grace_days)
