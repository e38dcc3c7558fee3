"""Invitations: the only way a person becomes a member of an organisation from its admin pages.

Security reasoning (issue 10, finding 4). Adding an existing account by email used to create the
membership at once, and an unknown email answered differently: any organisation admin could pull any
user of another tenant into their organisation (after which that user's unrestricted tokens reached it)
and could probe which emails have accounts. Now:

* inviting writes the same :class:`Invitation` row, and the caller renders the same answer, whether an
  account with that email exists or not; the account is never looked up (only this organisation's own
  member list is, which its admins can read anyway);
* the membership, with its role and read grants, exists only once the person with that email, logged in,
  accepts; they can decline, the admins can cancel, and it expires after :data:`INVITATION_DAYS`;
* a ``password`` is refused: the admin never sets the invitee's password, and any answer that depends on
  whether an account exists would be the oracle again. An address without an account is e-mailed a
  sign-up link by the ``invitation-notices`` job (not by the inviting request: :func:`signup_for_token`,
  :func:`sign_up`), or signs in with OpenID Connect with that address; either way the account exists
  first and the person then accepts or declines like anyone else.

Services never commit; the caller's edge does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sensorhub.accounts.models import (
    Invitation,
    InvitationSignup,
    InvitationStatus,
    Membership,
    Organisation,
    Role,
    User,
    Workspace,
)
from sensorhub.accounts.service import (
    EMAIL_RE,
    _check_role,
    create_grant,
    create_user,
    get_user_by_email,
    get_workspace,
    membership,
    set_membership,
)
from sensorhub.audit.service import record
from sensorhub.auth.token_format import digest
from sensorhub.db import utcnow
from sensorhub.errors import BadRequest, Conflict, Forbidden, Gone, NotFound

INVITATION_DAYS = 7

SET_BY_INVITEE_MESSAGE = (
    "'password' is not accepted: members are invited, and the invited person accepts with their own "
    "account (an operator creates accounts with 'sensorhub admin create-user'); remove the field"
)


@dataclass(frozen=True, slots=True)
class InvitationView:
    """An invitation with what the pages and the API show about it."""

    invitation: Invitation
    organisation: Organisation
    workspaces: list[Workspace]

    @property
    def state(self) -> str:
        inv = self.invitation
        if inv.status == InvitationStatus.pending and inv.expires_at <= utcnow():
            return "expired"
        return inv.status


def _normalise_email(email: str) -> str:
    e = email.strip().lower()
    if not EMAIL_RE.match(e):
        raise BadRequest(f"'{email.strip()}' is not a valid email address")
    return e


def _view(s: Session, inv: Invitation) -> InvitationView:
    org = s.get_one(Organisation, inv.org_id)
    wss = [
        w for w in (s.get(Workspace, i) for i in inv.workspace_ids) if w is not None and w.org_id == org.id
    ]
    return InvitationView(inv, org, wss)


@dataclass(frozen=True)
class Invite:
    """Whom an admin invites (``email``), as what (``role``) and with read grants on which ``workspaces``
    (slugs or ids), alike from the JSON body (``MemberAdd.invite``) and the members page
    (:func:`sensorhub.web.forms.invite`). A ``password`` is refused: invitees accept with their own
    account."""

    email: str
    role: str = "member"
    workspaces: Sequence[str] = ()
    password: str | None = None


def invite_member(
    s: Session,
    org: Organisation,
    invite: Invite,
    *,
    actor: User,
    actor_role: str | None,
    ip: str | None = None,
) -> InvitationView:
    """Invite ``invite.email`` to ``org`` with its role and read grants on its workspaces.

    The answer never depends on whether an account with that email exists. Inviting again replaces the
    pending invitation (new role, workspaces and expiry)."""
    if invite.password is not None:
        raise BadRequest(SET_BY_INVITEE_MESSAGE)
    addr = _normalise_email(invite.email)
    r = _check_role(invite.role)
    if r == Role.owner and actor_role != Role.owner:
        raise Forbidden("only organisation owners can invite an owner")
    wss = list({w.id: w for w in (get_workspace(s, org, ref) for ref in invite.workspaces)}.values())
    # Only this organisation's own members are looked at: its admins can list them anyway.
    already = s.scalar(
        select(Membership.id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.org_id == org.id, func.lower(User.email) == addr)
    )
    if already:
        raise Conflict(f"'{addr}' is already a member of '{org.slug}'; change their role instead")
    now = utcnow()
    for old in s.scalars(
        select(Invitation).where(
            Invitation.org_id == org.id,
            Invitation.email == addr,
            Invitation.status == InvitationStatus.pending,
        )
    ):
        old.status = InvitationStatus.cancelled.value
        old.responded_at = now
        old.responded_by = actor.id
    inv = Invitation(
        org_id=org.id,
        email=addr,
        role=r.value,
        workspace_ids=[w.id for w in wss],
        status=InvitationStatus.pending.value,
        invited_by=actor.id,
        created_at=now,
        expires_at=now + timedelta(days=INVITATION_DAYS),
    )
    s.add(inv)
    s.flush()
    record(
        s,
        "member.invite",
        org_id=org.id,
        actor_user_id=actor.id,
        target=inv.id,
        ip=ip,
        details={"email": addr, "role": r.value},
    )
    return InvitationView(inv, org, wss)


def list_org_invitations(s: Session, org: Organisation) -> list[InvitationView]:
    """The organisation's invitations that still wait for an answer (expired ones included, marked)."""
    rows = s.scalars(
        select(Invitation)
        .where(Invitation.org_id == org.id, Invitation.status == InvitationStatus.pending)
        .order_by(Invitation.created_at.desc())
    )
    return [_view(s, i) for i in rows]


def cancel_invitation(
    s: Session, org: Organisation, invitation_id: str, actor: User, ip: str | None = None
) -> None:
    inv = s.scalar(select(Invitation).where(Invitation.id == invitation_id, Invitation.org_id == org.id))
    if inv is None:
        raise NotFound(f"invitation '{invitation_id}' not found in '{org.slug}'")
    if inv.status != InvitationStatus.pending:
        raise Conflict(f"this invitation was already {inv.status}")
    inv.status = InvitationStatus.cancelled.value
    inv.responded_at = utcnow()
    inv.responded_by = actor.id
    s.flush()
    record(s, "member.invite_cancel", org_id=org.id, actor_user_id=actor.id, target=inv.id, ip=ip)


def invitations_for(s: Session, user: User) -> list[InvitationView]:
    """Pending, unexpired invitations addressed to ``user``'s email."""
    if not user.email or user.is_api_user:
        return []
    rows = s.scalars(
        select(Invitation)
        .where(
            Invitation.email == user.email.lower(),
            Invitation.status == InvitationStatus.pending,
            Invitation.expires_at > utcnow(),
        )
        .order_by(Invitation.created_at.desc())
    )
    return [_view(s, i) for i in rows]


def has_pending_invitation(s: Session, email: str) -> bool:
    """Whether an unexpired invitation waits for ``email`` (a person signing up with it may join)."""
    return (
        s.scalar(
            select(Invitation.id)
            .where(
                Invitation.email == email.strip().lower(),
                Invitation.status == InvitationStatus.pending,
                Invitation.expires_at > utcnow(),
            )
            .limit(1)
        )
        is not None
    )


def _own_invitation(s: Session, user: User, invitation_id: str) -> Invitation:
    """``user``'s invitation, in any state; someone else's is "not found" (same message)."""
    inv = s.get(Invitation, invitation_id)
    if inv is None or user.is_api_user or not user.email or inv.email != user.email.lower():
        raise NotFound(f"invitation '{invitation_id}' not found")
    if inv.status != InvitationStatus.pending:
        raise Conflict(f"this invitation was already {inv.status}")
    if inv.expires_at <= utcnow():
        raise Conflict(
            "this invitation has expired; ask an administrator of the organisation to invite you again"
        )
    return inv


def accept_invitation(
    s: Session, user: User, invitation_id: str, ip: str | None = None
) -> tuple[Membership, Organisation]:
    """Become a member with the invitation's role and grants. Only now does the membership exist."""
    inv = _own_invitation(s, user, invitation_id)
    org = s.get_one(Organisation, inv.org_id)
    if membership(s, user.id, org.id) is not None:
        raise Conflict(f"you are already a member of '{org.slug}'")
    m = set_membership(s, user, org, inv.role)
    for ws in _view(s, inv).workspaces:
        create_grant(
            s,
            org,
            user,
            workspace=ws,
            entity_id=None,
            time_start=None,
            time_end=None,
            actor_id=inv.invited_by,
        )
    _answered(s, inv, user, InvitationStatus.accepted, "member.join", ip, details={"role": inv.role})
    return m, org


def decline_invitation(s: Session, user: User, invitation_id: str, ip: str | None = None) -> None:
    inv = _own_invitation(s, user, invitation_id)
    _answered(s, inv, user, InvitationStatus.declined, "member.invite_decline", ip)


def _answered(
    s: Session,
    inv: Invitation,
    user: User,
    status: InvitationStatus,
    action: str,
    ip: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    """``user`` answered ``inv`` (``status``), now; the organisation's audit log says so as ``action``."""
    inv.status = status.value
    inv.responded_at = utcnow()
    inv.responded_by = user.id
    s.flush()
    record(s, action, org_id=inv.org_id, actor_user_id=user.id, target=inv.id, ip=ip, details=details)


# -- sign-up links (invitations to addresses without an account) ---------------------------------------
@dataclass(frozen=True, slots=True)
class SignupView:
    signup: InvitationSignup
    view: InvitationView


def signup_for_token(s: Session, token: str) -> SignupView:
    """The invitation a sign-up link is for, while the link can still be used; a clear error otherwise."""
    row = s.scalar(select(InvitationSignup).where(InvitationSignup.token_digest == digest(token)))
    if not token or row is None:
        raise NotFound(
            "this sign-up link is not valid (a newer e-mail may have replaced it); ask an owner or admin of "
            "the organisation to invite you again"
        )
    view = _view(s, s.get_one(Invitation, row.invitation_id))
    if row.used_at is not None:
        raise Conflict(
            "this sign-up link was already used: log in, then answer the invitation under Invitations"
        )
    if view.state == "expired":
        raise Gone(
            f"this invitation to {view.organisation.name} has expired; ask an owner or admin of it to invite "
            "you again"
        )
    if view.invitation.status != InvitationStatus.pending:
        raise Conflict(f"this invitation to {view.organisation.name} was {view.invitation.status}")
    return SignupView(row, view)


def sign_up(
    s: Session, token: str, *, name: str, password: str, ip: str | None = None
) -> tuple[User, InvitationView]:
    """Create the invited person's account (the invitation's address) from a sign-up link; the link is
    spent. The invitation stays pending: the person accepts or declines it next."""
    found = signup_for_token(s, token)
    inv = found.view.invitation
    if get_user_by_email(s, inv.email) is not None:
        raise Conflict(
            f"an account with {inv.email} exists already: log in, then answer the invitation under Invitations"
        )
    user = create_user(s, inv.email, password, name.strip() or None)
    found.signup.used_at = utcnow()
    s.flush()
    record(
        s,
        "user.signup",
        org_id=inv.org_id,
        actor_user_id=user.id,
        target=inv.id,
        ip=ip,
        details={"email": inv.email},
    )
    return user, found.view
