"""An organisation's NGSI-LD subscriptions as its people see them (the web UI's Subscriptions page).

A subscription belongs to the token that made it (:mod:`sensorhub.push.subscriptions`); the
organisation's subscriptions are those of the credentials in its inventory
(:func:`sensorhub.tokens.inventory.inventory`: its API keys, its API users' tokens, its members' PATs
— a PAT's only when it was made for this organisation or without a tenant). Owners and admins see
and manage all of them; any other member only those of their own tokens. Managing is pausing,
resuming and deleting, the same changes the owning token makes with ``PATCH {isActive}`` and
``DELETE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sensorhub.accounts.models import Organisation, User
from sensorhub.db import utcnow
from sensorhub.errors import BadRequest, NotFound
from sensorhub.push import subscriptions as subs
from sensorhub.push.subscription_models import NgsiSubscription
from sensorhub.push.subscription_target import delivery_stats
from sensorhub.tokens.inventory import InventoryRow, inventory

KIND_LABELS = {"api_key": "API key", "api_user_token": "API user token", "member_pat": "personal token"}


@dataclass(frozen=True)
class OrgSubscription:
    sub: NgsiSubscription
    owner: InventoryRow
    status: str  # active | paused | expired | failed
    stats: dict[str, Any]

    @property
    def spec(self) -> dict[str, Any]:
        return self.sub.spec

    @property
    def watched(self) -> list[str]:
        return list(self.sub.spec.get("watchedAttributes") or [])

    @property
    def endpoint(self) -> str:
        return str(self.sub.spec["notification"]["endpoint"]["uri"])

    @property
    def owner_kind(self) -> str:
        return KIND_LABELS.get(self.owner.kind, self.owner.kind)


def _status(sub: NgsiSubscription, st: dict[str, Any], now: datetime) -> str:
    base = subs.status(sub, now)
    failed, ok = st["last_failure"], st["last_success"]
    if base == "active" and failed is not None and (ok is None or failed > ok):
        return "failed"
    return base


def _tenant_is(org: Organisation, tenant: str | None) -> bool:
    return tenant is None or tenant.split("/", 1)[0] in (org.slug, org.id)


def _owners(s: Session, org: Organisation, user: User, is_admin: bool) -> dict[str, InventoryRow]:
    rows = inventory(s, org)
    return {
        r.credential.id: r for r in rows if is_admin or (r.kind == "member_pat" and r.owner_id == user.id)
    }


def of_org(
    s: Session, org: Organisation, user: User, *, is_admin: bool, now: datetime | None = None
) -> list[OrgSubscription]:
    """The subscriptions ``user`` may see in ``org``, oldest first."""
    return _visible(s, org, user, is_admin, now or utcnow())


def _visible(
    s: Session, org: Organisation, user: User, is_admin: bool, now: datetime, pk: int | None = None
) -> list[OrgSubscription]:
    """:func:`of_org`, or only the subscription ``pk`` of them (its delivery stats alone computed)."""
    owners = _owners(s, org, user, is_admin)
    if not owners:
        return []
    q = (
        select(NgsiSubscription)
        .where(NgsiSubscription.credential_id.in_(list(owners)))
        .order_by(NgsiSubscription.pk)
    )
    if pk is not None:
        q = q.where(NgsiSubscription.pk == pk)
    out = []
    for sub in s.scalars(q):
        owner = owners[sub.credential_id]
        if owner.kind == "member_pat" and not _tenant_is(org, sub.tenant):
            continue  # a person's token subscribed for another of their organisations
        st = delivery_stats(s, sub)
        out.append(OrgSubscription(sub, owner, _status(sub, st, now), st))
    return out


def get(
    s: Session, org: Organisation, user: User, pk: int | str, *, is_admin: bool, now: datetime | None = None
) -> OrgSubscription:
    try:
        key = int(pk)
    except (TypeError, ValueError):
        raise NotFound("no such subscription in this organisation") from None
    found = _visible(s, org, user, is_admin, now or utcnow(), pk=key)
    if found:
        return found[0]
    raise NotFound("no such subscription in this organisation (or it is not one of your tokens')")


def set_active(
    s: Session, org: Organisation, user: User, pk: int | str, active: bool, *, is_admin: bool
) -> OrgSubscription:
    """Pause or resume (``isActive``), as the owning token's ``PATCH {"isActive": …}`` does."""
    item = get(s, org, user, pk, is_admin=is_admin)
    sub = item.sub
    if active and item.status == "expired":
        raise BadRequest("the subscription has expired: its owner sets a later expiresAt to resume it")
    sub.spec = {**sub.spec, "isActive": active}
    sub.is_active = active
    if active:
        sub.disabled_reason = None
    sub.modified_at = utcnow()
    s.flush()
    return get(s, org, user, pk, is_admin=is_admin)


def delete(s: Session, org: Organisation, user: User, pk: int | str, *, is_admin: bool) -> str:
    """Delete the subscription; returns its NGSI-LD id."""
    item = get(s, org, user, pk, is_admin=is_admin)
    sub_id = item.sub.sub_id
    s.delete(item.sub)
    s.flush()
    return sub_id
