"""Accounts: organisations, workspaces, users, API users, memberships, grants.

Services take a :class:`~sqlalchemy.orm.Session` and never commit (the caller's edge does). Any change
that can alter what a credential may do calls :func:`~sensorhub.db.auth_changed`, so that cached
credentials are dropped after the commit. Each use case the JSON API, the web pages and the CLI share is
one function here (e.g. :func:`create_api_user`, :func:`update_api_user`, :func:`grant_access`), so the
rules (who may make an owner, API users are never owners, ...) are written once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sensorhub.accounts.models import Grant, Membership, Organisation, Role, User, Workspace
from sensorhub.accounts.passwords import MIN_PASSWORD_LENGTH, hash_password
from sensorhub.audit.service import EventQuery, record
from sensorhub.auth.restrictions import parse_networks
from sensorhub.auth.scopes import parse_scopes
from sensorhub.db import auth_changed, utcnow
from sensorhub.entities.normalize import check_type
from sensorhub.errors import BadRequest, Conflict, Forbidden, NotFound
from sensorhub.kit.time import parse_time
from sensorhub.tokens.models import Credential, CredentialOrgAccess, OrgAccessState

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

API_USER_OWNER_MESSAGE = "API users cannot be owners; use admin, member or viewer"


def slugify(name: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63]
    return s or "org"


def _check_slug(slug: str, what: str) -> str:
    if not SLUG_RE.match(slug):
        raise BadRequest(
            f"{what} slug '{slug}' is invalid: use 1-63 lowercase letters, digits and dashes, "
            "starting with a letter or digit"
        )
    return slug


def get_org(s: Session, ref: str) -> Organisation:
    """An organisation by slug or id."""
    org = s.scalar(select(Organisation).where((Organisation.slug == ref) | (Organisation.id == ref)))
    if org is None:
        raise NotFound(f"organisation '{ref}' not found")
    return org


def find_org(s: Session, ref: str) -> Organisation | None:
    return s.scalar(select(Organisation).where((Organisation.slug == ref) | (Organisation.id == ref)))


def create_org(s: Session, slug: str, name: str | None = None) -> Organisation:
    _check_slug(slug, "organisation")
    if s.scalar(select(Organisation.id).where(Organisation.slug == slug)):
        raise Conflict(f"an organisation with slug '{slug}' already exists")
    org = Organisation(slug=slug, name=name or slug)
    s.add(org)
    s.flush()
    return org


@dataclass(frozen=True)
class TokenPolicy:
    """An organisation's token policy as an admin sets it, alike from the JSON body
    (:meth:`sensorhub.accounts.endpoints.PolicyUpdate.token_policy`) and the settings page
    (:func:`sensorhub.web.forms.token_policy`); :func:`update_policy` takes it whole.

    ``None`` for the last three: leave as it is; an empty list: no limit."""

    max_token_lifetime_days: int | None
    allow_non_expiring_tokens: bool
    max_rotation_grace_days: int = 7
    require_pat_approval: bool | None = None
    allowed_pat_scopes: Sequence[str] | None = None
    allowed_ips: Sequence[str] | None = None


def update_policy(
    s: Session, org: Organisation, policy: TokenPolicy, *, actor_id: str | None = None
) -> Organisation:
    """Set the token policy of ``org``.

    Turning approval on does not cut off the members' tokens that already read the organisation: they
    are recorded as approved (by the admin who turned it on); tokens made from then on wait."""
    if policy.max_token_lifetime_days is not None and policy.max_token_lifetime_days < 1:
        raise BadRequest("max_token_lifetime_days must be at least 1 (or null for no cap)")
    if not 0 <= policy.max_rotation_grace_days <= 7:
        raise BadRequest("max_rotation_grace_days must be between 0 and 7")
    if policy.allowed_pat_scopes is not None:
        try:
            scopes = parse_scopes(list(policy.allowed_pat_scopes)) if policy.allowed_pat_scopes else []
        except ValueError as e:
            raise BadRequest(f"allowed_pat_scopes: {e}") from None
        org.allowed_pat_scopes = scopes or None
    if policy.allowed_ips is not None:
        try:
            nets = parse_networks([ip for ip in policy.allowed_ips if ip.strip()])
        except ValueError as e:
            raise BadRequest(f"allowed_ips: {e}") from None
        org.allowed_ips = [str(n) for n in nets] or None
    if policy.require_pat_approval is not None:
        if policy.require_pat_approval and not org.require_pat_approval:
            _approve_existing_pats(s, org, actor_id)
        org.require_pat_approval = policy.require_pat_approval
    org.max_token_lifetime_days = policy.max_token_lifetime_days
    org.allow_non_expiring_tokens = policy.allow_non_expiring_tokens
    org.max_rotation_grace_days = policy.max_rotation_grace_days
    s.flush()
    auth_changed(s)
    return org


def _approve_existing_pats(s: Session, org: Organisation, actor_id: str | None) -> None:
    """Record the members' live PATs as approved (the policy applies to tokens made from now on)."""
    members = list(s.scalars(select(Membership.user_id).where(Membership.org_id == org.id)))
    if not members:
        return
    now = utcnow()
    decided = set(
        s.scalars(select(CredentialOrgAccess.credential_id).where(CredentialOrgAccess.org_id == org.id))
    )
    live = s.scalars(
        select(Credential.id).where(
            Credential.kind == "pat",
            Credential.user_id.in_(members),
            Credential.revoked_at.is_(None),
            (Credential.expires_at.is_(None)) | (Credential.expires_at > now),
        )
    )
    for cred_id in live:
        if cred_id not in decided:
            s.add(
                CredentialOrgAccess(
                    credential_id=cred_id,
                    org_id=org.id,
                    state=OrgAccessState.approved,
                    reason="made before approval was required",
                    decided_by=actor_id,
                    decided_at=now,
                )
            )


def list_workspaces(s: Session, org: Organisation) -> list[Workspace]:
    return list(s.scalars(select(Workspace).where(Workspace.org_id == org.id).order_by(Workspace.slug)))


def get_workspace(s: Session, org: Organisation, ref: str) -> Workspace:
    ws = s.scalar(
        select(Workspace).where(Workspace.org_id == org.id, (Workspace.slug == ref) | (Workspace.id == ref))
    )
    if ws is None:
        raise NotFound(f"workspace '{ref}' not found in organisation '{org.slug}'")
    return ws


def create_workspace(s: Session, org: Organisation, slug: str, name: str | None = None) -> Workspace:
    _check_slug(slug, "workspace")
    exists = s.scalar(select(Workspace.id).where(Workspace.org_id == org.id, Workspace.slug == slug))
    if exists:
        raise Conflict(f"workspace '{slug}' already exists in organisation '{org.slug}'")
    ws = Workspace(org_id=org.id, slug=slug, name=name or slug)
    s.add(ws)
    s.flush()
    auth_changed(s)  # organisation-wide access now covers one more workspace
    return ws


MAX_AUTO_PROVISION_CREDENTIALS = 100


def set_auto_provisioning(
    s: Session,
    org: Organisation,
    ws: Workspace,
    *,
    enabled: bool,
    entity_type: str = "Device",
    credentials: Sequence[str] | None = None,
    actor_id: str | None = None,
    ip: str | None = None,
) -> Workspace:
    """Turn auto-provisioning of a workspace on or off: an ingest write that names a device the
    workspace does not have creates it (of ``entity_type``) when the credential writing may ingest into
    the workspace and is among ``credentials`` (``None``: any such credential). Audited."""
    try:
        check_type(entity_type)
    except BadRequest:
        raise BadRequest(
            f"type '{str(entity_type)[:60]}' is not a valid entity type: a short name such as Device "
            "(letters, digits, _ : / # @ . -; at most 200)"
        ) from None
    ids: list[str] | None = None
    if credentials is not None:
        ids = list(dict.fromkeys(c.strip() for c in credentials if c.strip()))
        if len(ids) > MAX_AUTO_PROVISION_CREDENTIALS:
            raise BadRequest(f"credentials: at most {MAX_AUTO_PROVISION_CREDENTIALS} ids (or null: any)")
        _check_org_credentials(s, org, ids)
    ws.auto_provision = enabled
    ws.auto_provision_type = entity_type
    ws.auto_provision_credentials = ids
    s.flush()
    record(
        s,
        "workspace.auto_provisioning",
        org_id=org.id,
        actor_user_id=actor_id,
        target=ws.slug,
        ip=ip,
        details={"enabled": enabled, "type": entity_type, "credentials": ids},
    )
    return ws


def _check_org_credentials(s: Session, org: Organisation, ids: list[str]) -> None:
    """Every id names a live credential that can reach ``org``: one of its API keys, or a PAT of one of
    its members (a 400 naming the first that does not)."""
    if not ids:
        return
    members = set(s.scalars(select(Membership.user_id).where(Membership.org_id == org.id)))
    found = {
        c.id: c
        for c in s.scalars(select(Credential).where(Credential.id.in_(ids), Credential.revoked_at.is_(None)))
    }
    for i in ids:
        c = found.get(i)
        if c is None or not (
            (c.kind == "key" and c.org_id == org.id) or (c.kind == "pat" and c.user_id in members)
        ):
            raise BadRequest(
                f"credentials: '{i[:60]}' is not a live token or API key of organisation '{org.slug}' "
                "(give credential ids as listed under Credentials, or null for any ingest token)"
            )


def ensure_org(s: Session, slug: str, name: str | None = None) -> Organisation:
    """The organisation ``slug`` (or id), created when missing."""
    return find_org(s, slug) or create_org(s, slug, name)


def ensure_workspace(s: Session, org: Organisation, slug: str, name: str | None = None) -> Workspace:
    """The workspace ``slug`` of ``org``, created when missing."""
    existing = next((w for w in list_workspaces(s, org) if w.slug == slug), None)
    return existing or create_workspace(s, org, slug, name)


def get_user_by_email(s: Session, email: str) -> User | None:
    return s.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


def create_user(s: Session, email: str, password: str, name: str | None = None) -> User:
    return _add_user(s, email, name, password)


def create_person(s: Session, email: str, name: str | None = None) -> User:
    """A person without a password, who signs in through OpenID Connect (or sets one later)."""
    return _add_user(s, email, (name or "").strip()[:200] or None, None)


def _add_user(s: Session, email: str, name: str | None, password: str | None) -> User:
    """A new user: the email normalised and valid (else 400), the password (if any) long enough (else
    400), the email not yet taken (else 409); ``name`` defaults to the email's local part."""
    email = email.strip().lower()
    if not EMAIL_RE.match(email):
        raise BadRequest(f"'{email}' is not a valid email address")
    if password is not None:
        _check_password(password)
    if get_user_by_email(s, email):
        raise Conflict(f"a user with email '{email}' already exists")
    password_hash = None if password is None else hash_password(password)
    user = User(email=email, name=name or email.split("@")[0], password_hash=password_hash)
    s.add(user)
    s.flush()
    return user


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadRequest(f"password must be at least {MIN_PASSWORD_LENGTH} characters long")


def set_password(s: Session, user: User, password: str) -> None:
    _check_password(password)
    user.password_hash = hash_password(password)


def set_user_disabled(s: Session, user: User, disabled: bool) -> None:
    """Disabling a user cuts off every one of its tokens and sessions at once."""
    user.disabled = disabled
    s.flush()
    auth_changed(s)


def membership(s: Session, user_id: str, org_id: str) -> Membership | None:
    return s.scalar(select(Membership).where(Membership.user_id == user_id, Membership.org_id == org_id))


def memberships_of(s: Session, user_id: str) -> list[tuple[Membership, Organisation]]:
    rows = s.execute(
        select(Membership, Organisation)
        .join(Organisation, Organisation.id == Membership.org_id)
        .where(Membership.user_id == user_id)
        .order_by(Organisation.slug)
    )
    return [(m, o) for m, o in rows.tuples()]


def _check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise BadRequest(f"unknown role '{role}'; valid roles are: owner, admin, member, viewer") from None


def set_membership(
    s: Session,
    user: User,
    org: Organisation,
    role: str,
    actor_role: str | None = None,
) -> Membership:
    """Add ``user`` to ``org`` with ``role``, or change its role."""
    r = _check_role(role)
    if actor_role is not None and r == Role.owner and actor_role != Role.owner:
        raise Forbidden("only organisation owners can make someone an owner")
    m = membership(s, user.id, org.id)
    if m is not None and m.role == Role.owner and r != Role.owner:
        if actor_role is not None and actor_role != Role.owner:
            raise Forbidden("only organisation owners can change an owner's role")
        _ensure_other_owner(s, org, user.id)
    if m is None:
        m = Membership(user_id=user.id, org_id=org.id, role=r.value)
        s.add(m)
    else:
        m.role = r.value
    s.flush()
    auth_changed(s)
    return m


def _ensure_other_owner(s: Session, org: Organisation, leaving_user_id: str) -> None:
    owners = s.scalar(
        select(func.count())
        .select_from(Membership)
        .where(
            Membership.org_id == org.id, Membership.role == Role.owner, Membership.user_id != leaving_user_id
        )
    )
    if not owners:
        raise Conflict("an organisation must keep at least one owner; make someone else owner first")


def remove_membership(s: Session, user: User, org: Organisation, actor_role: str | None = None) -> None:
    """Remove ``user`` from ``org``: its tokens lose that organisation at once, its grants there go too."""
    m = membership(s, user.id, org.id)
    if m is None:
        raise NotFound(f"'{user.display}' is not a member of '{org.slug}'")
    if m.role == Role.owner:
        if actor_role is not None and actor_role != Role.owner:
            raise Forbidden("only organisation owners can remove an owner")
        _ensure_other_owner(s, org, user.id)
    s.delete(m)
    for g in s.scalars(select(Grant).where(Grant.user_id == user.id, Grant.org_id == org.id)):
        s.delete(g)
    s.flush()
    auth_changed(s)


def change_member_role(
    s: Session, org: Organisation, user_ref: str, role: str, *, actor_role: str | None
) -> tuple[Membership, User]:
    """Change the role of the member ``user_ref`` (id or email); their tokens follow at once."""
    user = get_member_user(s, org, user_ref)
    return set_membership(s, user, org, role, actor_role=actor_role), user


def remove_member(s: Session, org: Organisation, user_ref: str, *, actor_role: str | None) -> User:
    """Remove the member ``user_ref`` (id or email) with their grants there; returns who it was."""
    user = get_member_user(s, org, user_ref)
    remove_membership(s, user, org, actor_role=actor_role)
    return user


def provision_member(
    s: Session, *, org_ref: str, email: str, password: str, role: str, workspace: str | None = None
) -> tuple[User, bool]:
    """The operator's way in (``sensorhub admin create-user``): the organisation and the workspace are
    created when missing, the person when unknown (``True`` in the answer), then made a member with
    ``role``. Members and viewers read what they are granted: ``workspace``, else the whole
    organisation (a grant is added unless the same one exists)."""
    o = ensure_org(s, org_ref)
    ws = ensure_workspace(s, o, workspace) if workspace else None
    user = get_user_by_email(s, email)
    created = user is None
    if user is None:
        user = create_user(s, email, password)
    set_membership(s, user, o, role)
    wanted = ws.id if ws else None
    has_grant = any(
        g.workspace_id == wanted and g.entity_id is None and g.time_start is None and g.time_end is None
        for g in list_grants(s, o, user.id)
    )
    if Role(role) in (Role.member, Role.viewer) and not has_grant:
        create_grant(s, o, user, workspace=ws, entity_id=None, time_start=None, time_end=None, actor_id=None)
    return user, created


def list_members(s: Session, org: Organisation) -> list[tuple[Membership, User]]:
    rows = s.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.org_id == org.id, User.is_api_user.is_(False))
        .order_by(User.email)
    )
    return [(m, u) for m, u in rows.tuples()]


def create_api_user(
    s: Session,
    org: Organisation,
    name: str,
    role: str,
    *,
    workspaces: Sequence[str] = (),
    entities: Sequence[str] = (),
    actor_id: str | None = None,
) -> tuple[User, Membership]:
    """A service account (no password) of ``org`` with ``role`` (never owner), granted read access to
    ``workspaces`` (slugs or ids) and ``entities`` (entity ids)."""
    name = name.strip()
    if not name:
        raise BadRequest("name must not be empty")
    r = _check_role(role)
    if r == Role.owner:
        raise BadRequest(API_USER_OWNER_MESSAGE)
    dup = s.scalar(
        select(User.id).where(User.owner_org_id == org.id, User.is_api_user.is_(True), User.name == name)
    )
    if dup:
        raise Conflict(f"an API user named '{name}' already exists in '{org.slug}'")
    user = User(name=name, is_api_user=True, owner_org_id=org.id)
    s.add(user)
    s.flush()
    m = Membership(user_id=user.id, org_id=org.id, role=r.value)
    s.add(m)
    s.flush()
    auth_changed(s)
    for ref in workspaces:
        ws = get_workspace(s, org, ref)
        create_grant(
            s, org, user, workspace=ws, entity_id=None, time_start=None, time_end=None, actor_id=actor_id
        )
    for ent in entities:
        create_grant(
            s, org, user, workspace=None, entity_id=ent, time_start=None, time_end=None, actor_id=actor_id
        )
    return user, m


def update_api_user(
    s: Session,
    org: Organisation,
    user_id: str,
    *,
    role: str | None = None,
    disabled: bool | None = None,
    actor_role: str | None,
) -> tuple[User, Membership | None]:
    """Change an API user's role (never to owner) and/or disable it (which cuts off its tokens)."""
    user = get_api_user(s, org, user_id)
    if role is not None:
        if role == Role.owner:
            raise BadRequest(API_USER_OWNER_MESSAGE)
        set_membership(s, user, org, role, actor_role=actor_role)
    if disabled is not None:
        set_user_disabled(s, user, disabled)
    return user, membership(s, user.id, org.id)


def list_api_users(s: Session, org: Organisation) -> list[tuple[User, Membership | None]]:
    rows = s.execute(
        select(User, Membership)
        .outerjoin(Membership, (Membership.user_id == User.id) & (Membership.org_id == org.id))
        .where(User.owner_org_id == org.id, User.is_api_user.is_(True))
        .order_by(User.name)
    )
    return [(u, m) for u, m in rows.tuples()]


def get_api_user(s: Session, org: Organisation, user_id: str) -> User:
    u = s.scalar(
        select(User).where(User.id == user_id, User.owner_org_id == org.id, User.is_api_user.is_(True))
    )
    if u is None:
        raise NotFound(f"API user '{user_id}' not found in '{org.slug}'")
    return u


def get_member_user(s: Session, org: Organisation, ref: str) -> User:
    """A member (person or API user) of ``org`` by id or email."""
    u = s.scalar(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == org.id, (User.id == ref) | (func.lower(User.email) == ref.lower()))
    )
    if u is None:
        raise NotFound(f"user '{ref}' is not a member of '{org.slug}'")
    return u


def create_grant(
    s: Session,
    org: Organisation,
    user: User,
    *,
    workspace: Workspace | None,
    entity_id: str | None,
    time_start: datetime | None,
    time_end: datetime | None,
    actor_id: str | None,
) -> Grant:
    if membership(s, user.id, org.id) is None:
        raise BadRequest(f"'{user.display}' is not a member of '{org.slug}': add the member first")
    if time_start and time_end and time_start >= time_end:
        raise BadRequest("time_end must be after time_start")
    g = Grant(
        user_id=user.id,
        org_id=org.id,
        workspace_id=workspace.id if workspace else None,
        entity_id=entity_id or None,
        time_start=time_start,
        time_end=time_end,
        created_by=actor_id,
    )
    s.add(g)
    s.flush()
    record(s, "grant.create", org_id=org.id, actor_user_id=actor_id, target=g.id, details={"user": user.id})
    auth_changed(s)
    return g


@dataclass(frozen=True, slots=True)
class GrantRow:
    """A grant with whom it is for (and their role here) and the workspace it names."""

    grant: Grant
    user: User | None
    workspace: Workspace | None
    role: str | None


@dataclass(frozen=True)
class NewGrant:
    """A grant an admin asks for: read access for the member or API user ``user_ref`` (id or email) to
    the organisation, a workspace (slug or id) or an entity, optionally only within
    ``[time_start, time_end)``. The JSON body (``GrantCreate.new_grant``) and the grants page
    (:func:`sensorhub.web.forms.new_grant`) each read theirs into one."""

    user_ref: str
    workspace_ref: str | None = None
    entity_id: str | None = None
    time_start: datetime | None = None
    time_end: datetime | None = None


def grant_access(s: Session, org: Organisation, new: NewGrant, *, actor_id: str | None) -> GrantRow:
    """Give ``new.user_ref`` the read access ``new`` asks for in ``org``."""
    user = get_member_user(s, org, new.user_ref)
    ws = get_workspace(s, org, new.workspace_ref) if new.workspace_ref else None
    g = create_grant(
        s,
        org,
        user,
        workspace=ws,
        entity_id=new.entity_id,
        time_start=new.time_start,
        time_end=new.time_end,
        actor_id=actor_id,
    )
    m = membership(s, user.id, org.id)
    return GrantRow(g, user, ws, m.role if m else None)


def grant_rows(s: Session, org: Organisation, user_ref: str | None = None) -> list[GrantRow]:
    """The grants of ``org`` (of one member or API user, by id or email), oldest first, with their
    users, roles and workspaces: one query however many grants there are."""
    q = (
        select(Grant, User, Workspace, Membership.role)
        .outerjoin(User, User.id == Grant.user_id)
        .outerjoin(Workspace, Workspace.id == Grant.workspace_id)
        .outerjoin(Membership, (Membership.user_id == Grant.user_id) & (Membership.org_id == Grant.org_id))
        .where(Grant.org_id == org.id)
    )
    if user_ref:
        q = q.where(Grant.user_id == get_member_user(s, org, user_ref).id)
    return [GrantRow(g, u, w, r) for g, u, w, r in s.execute(q.order_by(Grant.created_at)).tuples()]


def list_grants(s: Session, org: Organisation, user_id: str | None = None) -> list[Grant]:
    q = select(Grant).where(Grant.org_id == org.id)
    if user_id:
        q = q.where(Grant.user_id == user_id)
    return list(s.scalars(q.order_by(Grant.created_at)))


def delete_grant(s: Session, org: Organisation, grant_id: str, actor_id: str | None) -> None:
    g = s.scalar(select(Grant).where(Grant.id == grant_id, Grant.org_id == org.id))
    if g is None:
        raise NotFound(f"grant '{grant_id}' not found in '{org.slug}'")
    s.delete(g)
    s.flush()
    record(s, "grant.delete", org_id=org.id, actor_user_id=actor_id, target=grant_id)
    auth_changed(s)


# -- audit log filters ---------------------------------------------------------------------------
def audit_query(
    s: Session,
    org: Organisation,
    *,
    action: str | None,
    actor: str | None,
    credential: str | None,
    target: str | None,
    ip: str | None,
    since: str | None,
    until: str | None,
) -> EventQuery | None:
    """The filters as given (``None``: an actor no member of ``org`` has, so nothing can match)."""
    actor_id = actor
    if actor and "@" in actor:
        user = get_user_by_email(s, actor.strip().lower())
        if user is None or membership(s, user.id, org.id) is None:
            return None
        actor_id = user.id
    start = parse_time(since, "since") if since else None
    end = parse_time(until, "until") if until else None
    if start and end and start >= end:
        raise BadRequest("until must be after since")
    return EventQuery(
        action or None, actor_id or None, credential or None, target or None, ip or None, start, end
    )
