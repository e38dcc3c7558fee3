"""What a user (person or API user) may read by virtue of its memberships and grants.

One rule, shared by tokens (:func:`sensorhub.auth.resolve.build_principal`) and web sessions
(:func:`session_access`): owners and admins hold an implicit organisation-wide grant; members and viewers
read the union of their grants in that organisation.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from sensorhub.accounts.models import Grant, Membership, Role, User
from sensorhub.authz.access import Access, AccessRule


@dataclass(frozen=True, slots=True)
class UserReach:
    """A user's rules (before any token restriction) and its role per organisation."""

    rules: tuple[AccessRule, ...]
    roles: dict[str, str]


def user_reach(s: Session, user_id: str) -> UserReach:
    """Rules from roles (owner/admin: org-wide) and grants (member/viewer orgs only)."""
    rules: list[AccessRule] = []
    roles: dict[str, str] = {}
    for m in s.scalars(select(Membership).where(Membership.user_id == user_id)):
        roles[m.org_id] = m.role
        if Role(m.role).is_admin:
            rules.append(AccessRule(m.org_id))
    # Grants in organisations where the user is admin add nothing to the org-wide rule.
    member_orgs = [o for o, r in roles.items() if not Role(r).is_admin]
    if member_orgs:
        for g in s.scalars(select(Grant).where(Grant.user_id == user_id, Grant.org_id.in_(member_orgs))):
            rules.append(AccessRule(g.org_id, g.workspace_id, g.entity_id, g.time_start, g.time_end))
    return UserReach(tuple(rules), roles)


def session_access(s: Session, user: User) -> Access:
    """What the logged-in ``user`` may read in the web UI: the same rules its tokens start from,
    without any token scope or restriction (a disabled user reads nothing)."""
    if user.disabled:
        return Access(())
    return Access(tuple(dict.fromkeys(user_reach(s, user.id).rules)))
