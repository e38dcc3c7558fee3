"""Credential expiry notices through the organisation's webhook connectors (``config.notices: true``).

Each expiry notice (:mod:`sensorhub.tokens.expiry`: 14/7/1 days before, and once expired) of a credential
that reaches an organisation — its API keys, its API users' tokens, its members' PATs that reach it —
becomes one delivery to each of that organisation's enabled webhook connectors that opted in, through the
normal delivery queue (signed, retried, in the delivery log). Exactly once per notice and connector:
the delivery's ordering key names both, and a notice is queued only when no delivery of that key exists.
The job runs right after the notices are recorded (``token-expiry-notices``) and looks at notices of the
last :data:`LOOKBACK`, so a worker that died in between catches up at the next run.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sensorhub.accounts.models import Organisation, User
from sensorhub.config import Settings
from sensorhub.kit.time import iso, to_us
from sensorhub.notices.models import Notification
from sensorhub.push.connectors import ConnectorTarget
from sensorhub.push.delivery import enqueue
from sensorhub.push.models import Connector, Delivery
from sensorhub.push.targets import PlannedDelivery
from sensorhub.tokens import inventory
from sensorhub.tokens.models import Credential
from sensorhub.tokens.service import user_orgs

NOTICE_KINDS = ("token.expiring", "token.expired")
LOOKBACK = timedelta(days=2)


def _kind(cred: Credential, owner: User | None) -> str:
    if cred.kind == "key":
        return "api_key"
    return "api_user_token" if owner is not None and owner.is_api_user else "member_pat"


def reached_organisations(s: Session, cred: Credential) -> list[Organisation]:
    """The organisations whose notices this credential's are: an API key's, an API user's, and every
    organisation a member's PAT reaches (its organisation restriction applied)."""
    if cred.kind == "key":
        org = s.get(Organisation, cred.org_id) if cred.org_id else None
        return [org] if org else []
    owner = s.get(User, cred.user_id) if cred.user_id else None
    if owner is None:
        return []
    if owner.is_api_user:
        org = s.get(Organisation, owner.owner_org_id) if owner.owner_org_id else None
        return [org] if org else []
    return [o for o, _role in user_orgs(s, owner.id) if inventory.reaches(cred, o.id)]


def notice_message(
    s: Session, cred: Credential, org: Organisation, notice: Notification, threshold: int
) -> dict[str, Any]:
    owner = s.get(User, cred.user_id) if cred.user_id else None
    assert cred.expires_at is not None
    return {
        "type": notice.kind.replace("token.", "credential."),
        "organisation": {"id": org.id, "slug": org.slug},
        "workspace": {"id": None, "slug": None},
        "credential": {
            "id": cred.id,
            "kind": _kind(cred, owner),
            "name": cred.name,
            "hint": cred.hint,
            "owner": None if owner is None else {"id": owner.id, "name": owner.name, "email": owner.email},
            "expires_at": iso(to_us(cred.expires_at)),
            "days_left": threshold,
        },
        "text": notice.subject.removeprefix("sensorhub: "),
    }


def queue_credential_notices(s: Session, settings: Settings, now: datetime) -> int:
    """Queue the deliveries of recent expiry notices not yet queued; how many were."""
    recent = s.scalars(
        select(Notification)
        .where(
            Notification.kind.in_(NOTICE_KINDS),
            Notification.credential_id.is_not(None),
            Notification.created_at >= now - LOOKBACK,
        )
        .order_by(Notification.created_at, Notification.id)
    )
    notices: dict[str, Notification] = {}
    for n in recent:
        notices.setdefault(n.dedupe_key, n)  # one per notice, whoever its recipients
    queued = 0
    for key, n in notices.items():
        cred = s.get(Credential, n.credential_id)
        if cred is None or cred.expires_at is None:
            continue
        threshold = int(key.rsplit(":", 1)[1])
        for org in reached_organisations(s, cred):
            for c in _opted_in(s, org):
                ordering = f"{ConnectorTarget.name}:{c.id}:notice:{key}"
                if s.scalar(select(Delivery.id).where(Delivery.ordering_key == ordering).limit(1)):
                    continue
                planned = PlannedDelivery(
                    org_id=org.id,
                    target_id=c.id,
                    message=notice_message(s, cred, org, n, threshold),
                    ordering_key=ordering,
                )
                enqueue(s, ConnectorTarget.name, [planned])
                queued += 1
    return queued


def _opted_in(s: Session, org: Organisation) -> list[Connector]:
    rows = s.scalars(
        select(Connector).where(Connector.org_id == org.id, Connector.kind == "webhook", Connector.enabled)
    )
    return [c for c in rows if (c.config or {}).get("notices") is True]
