"""An organisation's credential inventory: every credential that can read it, and what its owners and
admins decide about each (approve, deny, revoke for this organisation).

Three kinds reach an organisation: its **API keys**, its **API users' tokens**, and its **members'
PATs** (a person's token reaches every organisation they belong to unless restricted to some). An API
key or API-user token belongs to the organisation, so revoking it from here revokes it; a member's PAT
belongs to the member, so revoking it from here only takes this organisation out of its reach
(:class:`~sensorhub.tokens.models.CredentialOrgAccess`), and the member is told.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sensorhub.accounts import service as accounts
from sensorhub.accounts.models import Organisation, Role, User
from sensorhub.audit.service import record
from sensorhub.auth import restrictions as R
from sensorhub.config import Settings
from sensorhub.db import auth_changed, utcnow
from sensorhub.errors import BadRequest, Conflict, NotFound
from sensorhub.kit.urls import configured_link
from sensorhub.notices import service as notices
from sensorhub.tokens import service as tokens
from sensorhub.tokens.models import Credential, CredentialOrgAccess, OrgAccessState

KINDS = ("api_key", "api_user_token", "member_pat")
STATUSES = ("active", "grace", "expired", "rotated", "revoked", "pending", "denied", "revoked_here")
SORTS = ("name", "owner", "kind", "created_at", "last_used_at", "expires_at")
MAX_REASON = 500


@dataclass(frozen=True)
class InventoryRow:
    credential: Credential
    kind: str  # api_key | api_user_token | member_pat
    owner_id: str | None
    owner: str  # email, API user name, or the organisation's name
    owner_role: str | None
    access: str | None  # this organisation's decision on a member's PAT: pending/approved/denied/revoked
    reason: str | None
    status: str  # the credential's own status, or this organisation's withholding of it

    def out(self, now: datetime) -> dict[str, Any]:
        c = self.credential
        return {
            "id": c.id,
            "kind": self.kind,
            "name": c.name,
            "hint": c.hint,
            "owner": {"id": self.owner_id, "name": self.owner, "role": self.owner_role},
            "scopes": list(c.scopes),
            "restrictions": dict(c.restrictions or {}),
            "status": self.status,
            "organisation_access": self.access,
            "organisation_access_reason": self.reason,
            "created_at": c.created_at,
            "last_used_at": c.last_used_at,
            "last_used_ip": c.last_used_ip,
            "expires_at": c.expires_at,
            "revoked_at": c.revoked_at,
        }


@dataclass(frozen=True)
class InventoryQuery:
    kind: str | None = None
    status: str | None = None
    q: str | None = None  # in the name, hint or owner
    expiring_within_days: int | None = None
    include_revoked: bool = False
    sort: str = "name"  # a field of SORTS, "-" in front for descending

    def check(self) -> InventoryQuery:
        if self.kind is not None and self.kind not in KINDS:
            raise BadRequest(f"kind must be one of {', '.join(KINDS)}")
        if self.status is not None and self.status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
        if self.sort.lstrip("-") not in SORTS:
            raise BadRequest(f"sort must be one of {', '.join(SORTS)} (with '-' in front for descending)")
        if self.expiring_within_days is not None and not 0 <= self.expiring_within_days <= 3650:
            raise BadRequest("expiring_within_days must be between 0 and 3650")
        return self


def reaches(cred: Credential, org_id: str) -> bool:
    """A member's PAT reaches the organisation unless its organisation restriction leaves it out."""
    limit = next((r for r in R.load(cred.restrictions) if isinstance(r, R.Organisations)), None)
    return limit is None or org_id in limit.org_ids


def _status(cred: Credential, access: str | None, org: Organisation, role: str | None, now: datetime) -> str:
    own = cred.status(now)
    if own != "active" and own != "grace":
        return own
    if access == OrgAccessState.revoked:
        return "revoked_here"
    if access == OrgAccessState.denied:
        return "denied"
    admin = role is not None and Role(role).is_admin
    if org.require_pat_approval and not admin and access != OrgAccessState.approved:
        return "pending"
    return own


def inventory(s: Session, org: Organisation, now: datetime | None = None) -> list[InventoryRow]:
    """Every credential that can read ``org`` (revoked ones too: the caller filters)."""
    now = now or utcnow()
    rows: list[InventoryRow] = []
    for key in tokens.list_api_keys(s, org.id):
        rows.append(InventoryRow(key, "api_key", org.id, org.name, None, None, None, key.status(now)))
    for user, _ in accounts.list_api_users(s, org):
        for t in tokens.list_pats(s, user.id):
            rows.append(
                InventoryRow(t, "api_user_token", user.id, user.name, None, None, None, t.status(now))
            )
    members = {u.id: (u, m.role) for m, u in accounts.list_members(s, org)}
    if members:
        pats = s.scalars(
            select(Credential).where(Credential.kind == "pat", Credential.user_id.in_(list(members)))
        )
        decisions = _decisions(s, org.id)
        for t in pats:
            if not reaches(t, org.id):
                continue
            assert t.user_id is not None
            user, role = members[t.user_id]
            d = decisions.get(t.id)
            access = d.state if d else None
            status = _status(t, access, org, role, now)
            rows.append(
                InventoryRow(
                    t, "member_pat", user.id, user.display, role, access, d.reason if d else None, status
                )
            )
    return rows


def _decisions(s: Session, org_id: str) -> dict[str, CredentialOrgAccess]:
    q = select(CredentialOrgAccess).where(CredentialOrgAccess.org_id == org_id)
    return {d.credential_id: d for d in s.scalars(q)}


_SORT_KEYS: dict[str, Callable[[InventoryRow], Any]] = {
    "name": lambda r: r.credential.name.lower(),
    "owner": lambda r: r.owner.lower(),
    "kind": lambda r: r.kind,
    "created_at": lambda r: r.credential.created_at,
    "last_used_at": lambda r: (
        r.credential.last_used_at or datetime.min.replace(tzinfo=r.credential.created_at.tzinfo)
    ),
    "expires_at": lambda r: (
        r.credential.expires_at or datetime.max.replace(tzinfo=r.credential.created_at.tzinfo)
    ),
}


def search(
    s: Session, org: Organisation, query: InventoryQuery, now: datetime | None = None
) -> list[InventoryRow]:
    """The inventory filtered and sorted as ``query`` says (ties by id, so pages are stable)."""
    now = now or utcnow()
    query.check()
    rows = inventory(s, org, now)
    gone = ("revoked", "rotated", "revoked_here")
    if query.status is not None:
        rows = [r for r in rows if r.status == query.status]
    elif not query.include_revoked:
        rows = [r for r in rows if r.status not in gone]
    if query.kind is not None:
        rows = [r for r in rows if r.kind == query.kind]
    if query.q:
        needle = query.q.lower()
        rows = [
            r
            for r in rows
            if needle in r.credential.name.lower()
            or needle in r.owner.lower()
            or needle in r.credential.hint.lower()
        ]
    if query.expiring_within_days is not None:
        until = now + timedelta(days=query.expiring_within_days)
        rows = [r for r in rows if r.credential.expires_at is not None and r.credential.expires_at <= until]
    key = _SORT_KEYS[query.sort.lstrip("-")]
    rows.sort(key=lambda r: r.credential.id)
    rows.sort(key=key, reverse=query.sort.startswith("-"))
    return rows


CSV_COLUMNS = (
    "id", "kind", "name", "hint", "owner", "owner_role", "scopes", "restrictions", "status",
    "organisation_access", "created_at", "last_used_at", "last_used_ip", "expires_at",
)  # fmt: skip


def to_csv(rows: list[InventoryRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r in rows:
        c = r.credential
        w.writerow(
            [
                c.id, r.kind, _cell(c.name), c.hint, _cell(r.owner), r.owner_role or "", " ".join(c.scopes),
                "; ".join(f"{k}={v}" for k, v in (c.restrictions or {}).items()), r.status, r.access or "",
                _iso(c.created_at), _iso(c.last_used_at), c.last_used_ip or "", _iso(c.expires_at),
            ]
        )  # fmt: skip
    return buf.getvalue()


def _cell(v: str) -> str:
    """No spreadsheet formula injection: a cell starting with = + - @ is prefixed with a quote."""
    return "'" + v if v[:1] in ("=", "+", "-", "@", "\t", "\r") else v


def _iso(v: datetime | None) -> str:
    return v.isoformat().replace("+00:00", "Z") if v else ""


# -- decisions --------------------------------------------------------------------------------------
def find(s: Session, org: Organisation, credential_id: str) -> InventoryRow:
    row = next((r for r in inventory(s, org) if r.credential.id == credential_id), None)
    if row is None:
        raise NotFound(f"credential '{credential_id}' not found in {org.slug}'s inventory")
    return row


def _decide(
    s: Session, org: Organisation, row: InventoryRow, state: str, reason: str | None, actor: User
) -> None:
    """Record the decision for the token, and for its previous secret while that lives out a grace."""
    now = utcnow()
    for cred in (row.credential, *tokens.in_grace_predecessors(s, row.credential, now)):
        d = s.scalar(
            select(CredentialOrgAccess).where(
                CredentialOrgAccess.credential_id == cred.id, CredentialOrgAccess.org_id == org.id
            )
        )
        if d is None:
            d = CredentialOrgAccess(credential_id=cred.id, org_id=org.id, state=state)
            s.add(d)
        d.state, d.reason, d.decided_by, d.decided_at = state, reason, actor.id, now
    s.flush()
    auth_changed(s)


def _check_reason(reason: str | None) -> str | None:
    reason = (reason or "").strip() or None
    if reason is not None and len(reason) > MAX_REASON:
        raise BadRequest(f"reason is too long (at most {MAX_REASON} characters)")
    return reason


def _live_member_pat(row: InventoryRow, action: str) -> None:
    if row.kind != "member_pat":
        raise BadRequest(
            f"only members' tokens are {action}: API keys and API-user tokens are the organisation's own"
        )
    status = row.credential.status(utcnow())
    if status in ("revoked", "rotated"):
        raise Conflict(f"this token was {status} by its owner meanwhile; there is nothing to {_VERB[action]}")
    if status == "expired":
        raise Conflict(f"this token has expired; there is nothing to {_VERB[action]}")
    if row.access == OrgAccessState.revoked:
        raise Conflict("this token was revoked for this organisation; that cannot be undone")


def decide_member_pat(
    s: Session,
    org: Organisation,
    credential_id: str,
    *,
    state: str,
    actor: User,
    reason: str | None,
    settings: Settings,
    ip: str | None = None,
) -> InventoryRow:
    """Approve or deny (``state``) a live member's PAT for ``org``: recorded (for its predecessor in a
    rotation grace too), the member told, audited as ``token.approve``/``token.deny``. A denial needs a
    reason (the member is told why)."""
    row = find(s, org, credential_id)
    _live_member_pat(row, state)
    reason = _check_reason(reason)
    if reason is None and state == OrgAccessState.denied:
        raise BadRequest("give a reason: the token's owner is told why it may not read the organisation")
    _decide(s, org, row, state, reason, actor)
    _tell_owner(s, org, row, state, reason, settings)
    _audit(s, org, row, _AUDITED[state], actor, ip, reason)
    return find(s, org, credential_id)


_AUDITED = {OrgAccessState.approved: "token.approve", OrgAccessState.denied: "token.deny"}
_VERB = {OrgAccessState.approved: "approve", OrgAccessState.denied: "deny"}
approve = partial(decide_member_pat, state=OrgAccessState.approved)
deny = partial(decide_member_pat, state=OrgAccessState.denied)


def revoke_for_org(
    s: Session,
    org: Organisation,
    credential_id: str,
    *,
    actor: User,
    reason: str | None,
    settings: Settings,
    ip: str | None = None,
) -> InventoryRow:
    """An API key or API-user token is revoked; a member's PAT loses this organisation (the member is
    told). Revoking what is already revoked changes nothing."""
    row = find(s, org, credential_id)
    reason = _check_reason(reason)
    if row.kind != "member_pat":
        tokens.revoke(s, row.credential, actor_id=actor.id, ip=ip)
        return find(s, org, credential_id)
    if row.access == OrgAccessState.revoked or row.credential.revoked_at is not None:
        return row
    _decide(s, org, row, OrgAccessState.revoked, reason, actor)
    _tell_owner(s, org, row, "revoked", reason, settings)
    _audit(s, org, row, "token.revoke_for_org", actor, ip, reason)
    return find(s, org, credential_id)


_TOLD = {
    "approved": ("may now read {org}", "An admin of {org} approved your token “{name}” ({hint}): it reads {org} from now on."),
    "denied": ("may not read {org}", "An admin of {org} denied your token “{name}” ({hint}): it does not read {org}."),
    "revoked": (
        "was revoked for {org}",
        "An admin of {org} revoked your token “{name}” ({hint}) for {org}: it no longer reads {org}'s data. "
        "It keeps working in your other organisations.",
    ),
}  # fmt: skip


def _tell_owner(
    s: Session, org: Organisation, row: InventoryRow, what: str, reason: str | None, settings: Settings
) -> None:
    owner = s.get(User, row.owner_id) if row.owner_id else None
    if owner is None:
        return
    c = row.credential
    subject, body = (t.format(org=org.name, name=c.name, hint=c.hint) for t in _TOLD[what])
    if reason:
        body += f" Reason: {reason}"
    notices.notify(
        s,
        owner,
        notices.Notice(
            kind=f"token.org_{what}",
            dedupe_key=f"token.org:{c.id}:{org.id}:{what}:{utcnow().isoformat()}",
            subject=f"sensorhub: your token “{c.name}” {subject}",
            body=body,
            org_id=org.id,
            credential_id=c.id,
            link=configured_link(settings.base_url, "/integrations"),
        ),
        settings,
    )


def _audit(
    s: Session,
    org: Organisation,
    row: InventoryRow,
    action: str,
    actor: User,
    ip: str | None,
    reason: str | None,
) -> None:
    record(
        s,
        action,
        org_id=org.id,
        actor_user_id=actor.id,
        credential_id=row.credential.id,
        target=row.credential.name,
        ip=ip,
        details={"owner": row.owner_id, "reason": reason},
    )


def access_states(s: Session, cred: Credential) -> list[dict[str, str | None]]:
    """For a person's PAT: each organisation it reaches and whether it may read it there (``allowed``,
    ``pending`` approval, ``approved``, ``denied`` with the reason, ``revoked`` for that organisation)."""
    if cred.kind != "pat" or cred.user_id is None:
        return []
    decisions = {
        d.org_id: d
        for d in s.scalars(select(CredentialOrgAccess).where(CredentialOrgAccess.credential_id == cred.id))
    }
    out: list[dict[str, str | None]] = []
    for org, role in tokens.user_orgs(s, cred.user_id):
        if not reaches(cred, org.id):
            continue
        d = decisions.get(org.id)
        if d is not None:
            state, reason = d.state, d.reason
        elif org.require_pat_approval and not Role(role).is_admin:
            state, reason = OrgAccessState.pending, None
        else:
            state, reason = "allowed", None
        out.append({"organisation": org.slug, "name": org.name, "state": state, "reason": reason})
    return out
