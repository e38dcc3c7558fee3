"""Who is asking over GraphQL: a token's :class:`Principal`, or the person logged into the web UI (the
in-browser IDE). Either way every resolver reads through :meth:`Viewer.access`, which refuses a scope
the credential does not hold and otherwise hands out the same :class:`Access` the REST routes use."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from sensorhub.accounts import service as accounts
from sensorhub.accounts.models import User
from sensorhub.auth.principal import OrgRef, Principal, WorkspaceRef
from sensorhub.auth.scopes import READ_SCOPES
from sensorhub.authz.access import Access, tenant_access
from sensorhub.authz.subjects import session_access, user_reach
from sensorhub.errors import InsufficientScope


@dataclass(frozen=True)
class Viewer:
    key: str  # what budgets are counted by: the credential id, or the session's user
    kind: str  # "pat" | "key" | "session"
    name: str
    user_id: str | None
    scopes: frozenset[str]
    orgs: Mapping[str, OrgRef]
    workspaces: Mapping[str, WorkspaceRef]
    _access: Callable[[str], Access] = field(repr=False)

    def access(self, scope: str) -> Access:
        """What this viewer may read (or write, ``ingest``) with ``scope``; refused when it lacks it."""
        if scope not in self.scopes:
            raise InsufficientScope(scope)
        return self._access(scope)

    @property
    def is_session(self) -> bool:
        return self.kind == "session"


def from_principal(p: Principal) -> Viewer:
    return Viewer(
        key=p.credential_id,
        kind=p.kind,
        name=p.name,
        user_id=p.user_id,
        scopes=p.scopes,
        orgs=p.orgs,
        workspaces=p.workspaces,
        _access=p.access,
    )


def from_session(s: Session, user: User, tenant: str | None) -> Viewer:
    """The logged-in person: the read scopes over what its roles and grants cover (never ``ingest``:
    writes need a token), narrowed to the tenant the request names."""
    reach = user_reach(s, user.id)
    orgs: dict[str, OrgRef] = {}
    workspaces: dict[str, WorkspaceRef] = {}
    for org_id, role in reach.roles.items():
        org = accounts.find_org(s, org_id)
        if org is None:
            continue
        orgs[org.id] = OrgRef(org.id, org.slug, org.name, role)
        for w in accounts.list_workspaces(s, org):
            workspaces[w.id] = WorkspaceRef(w.id, w.org_id, w.slug, w.name)
    access = tenant_access(session_access(s, user), orgs, workspaces, tenant)
    return Viewer(
        key=f"session:{user.id}",
        kind="session",
        name=user.display,
        user_id=user.id,
        scopes=READ_SCOPES,
        orgs=orgs,
        workspaces=workspaces,
        _access=lambda _scope: access,
    )
