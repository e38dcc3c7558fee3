"""NGSI-LD subscriptions as a target kind of the delivery queue (``ngsi_ld_subscription``).

The fan-out asks :meth:`SubscriptionTarget.plan` which subscriptions new events notify
(:func:`sensorhub.push.subscriptions.matching`); each (subscription, event) becomes one delivery whose
message carries the event's points. Before each attempt the queue reads the owner's *current* access
(:meth:`SubscriptionTarget.access`: the token that made the subscription; revoked or expired → the
delivery is suppressed, nothing is sent) and cuts the message to it; :meth:`SubscriptionTarget.prepare`
then renders the spec's Notification from what the owner may read now and POSTs it (SSRF-checked, with
the delivery's ``Idempotency-Key``). A 410 from the endpoint pauses the subscription
(:meth:`SubscriptionTarget.gone`). Retries, backoff, dead letters and the delivery log are the queue's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sensorhub.accounts.models import Organisation, Workspace
from sensorhub.authz.access import Access
from sensorhub.authz.entities import visible_entity
from sensorhub.config import Settings
from sensorhub.db import utcnow
from sensorhub.entities.normalize import CONTEXT_LINK
from sensorhub.entities.qlang import parse_q
from sensorhub.entities.service import entity_attrs
from sensorhub.errors import Conflict, NotFound
from sensorhub.kit.time import iso, latest
from sensorhub.push import ngsi_mqtt
from sensorhub.push.kinds import DELIVERY_HEADER, USER_AGENT, Outcome, http_client, http_error, http_outcome
from sensorhub.push.live import event_of
from sensorhub.push.models import DEFAULT_TOPIC, KIND_STATE, Attempt, Delivery, PushEvent
from sensorhub.push.ssrf import TargetRefused, check_host
from sensorhub.push.subscription_models import NgsiSubscription
from sensorhub.push.subscriptions import (
    TARGET_KIND,
    Seen,
    current_access,
    current_entities,
    evaluate_q,
    matching,
    notification,
    periodic_due,
    periodic_notification,
    status,
)
from sensorhub.push.targets import PlannedDelivery, data_message

PERIODIC = "periodic"


def _names(s: Session, org_id: str, workspace_id: str) -> tuple[dict[str, str], dict[str, str]]:
    org = s.get(Organisation, org_id)
    ws = s.get(Workspace, workspace_id)
    return (
        {"id": org_id, "slug": org.slug if org else ""},
        {"id": workspace_id, "slug": ws.slug if ws else ""},
    )


def _subscription(s: Session, delivery: Delivery) -> NgsiSubscription | None:
    try:
        return s.get(NgsiSubscription, int(delivery.target_id))
    except ValueError:
        return None


def post(uri: str, body: bytes, content_type: str, key: str, settings: Settings) -> Outcome:
    """One notification POST: the SSRF check on what the host resolves to now, then the request."""
    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        check_host(parts.hostname or "", port, settings.push_allow_private_targets)
    except TargetRefused as e:
        return Outcome(False, error=str(e), retry=False)
    headers = {
        "Content-Type": content_type,
        "User-Agent": USER_AGENT,
        "Idempotency-Key": key,
        DELIVERY_HEADER: key,
    }
    if content_type == "application/json":
        headers["Link"] = CONTEXT_LINK
    try:
        r = http_client().post(uri, content=body, headers=headers, timeout=settings.push_timeout_seconds)
    except httpx.HTTPError as e:
        return Outcome(False, error=http_error(e))
    return http_outcome(r)


def send(endpoint: dict[str, Any], body: bytes, content_type: str, key: str, settings: Settings) -> Outcome:
    """POST to an http(s) endpoint, or publish to an mqtt(s) one (:mod:`sensorhub.push.ngsi_mqtt`)."""
    if ngsi_mqtt.is_mqtt(endpoint["uri"]):
        link = CONTEXT_LINK if content_type == "application/json" else None
        return ngsi_mqtt.publish(endpoint, body, content_type, link, key, settings)
    return post(endpoint["uri"], body, content_type, key, settings)


def seen_of_message(s: Session, access: Access, message: dict[str, Any]) -> Seen | None:
    """The entity of a (cut) delivery message as the owner may read it now, with the message's values."""
    device = message.get("device", {}).get("id")
    if not device or not message.get("data"):
        return None
    try:
        e = visible_entity(s, access, device)
    except (NotFound, Conflict):
        return None
    attrs = dict(entity_attrs(access, e))
    for d in message["data"]:
        points = [(int(t), v) for t, v in d["points"]]
        if points:
            attr: dict[str, Any] = {
                "type": "Property",
                "value": points[-1][1],
                "observedAt": iso(points[-1][0]),
            }
            if d.get("unit"):
                attr["unitCode"] = d["unit"]
            attrs[d["attribute"]] = attr
    return Seen(e, attrs)


class SubscriptionTarget:
    """Target kind ``ngsi_ld_subscription`` (see :mod:`sensorhub.push.targets`)."""

    name = TARGET_KIND

    def plan(
        self, s: Session, events: list[PushEvent], now: datetime, settings: Settings
    ) -> list[PlannedDelivery]:
        # NGSI-LD has no topics: an entity's numeric attributes are its default-topic series (as the
        # entity API shows them); latest-state properties belong to the entity whatever their topic.
        seen = [e for e in events if e.kind == KIND_STATE or e.topic == DEFAULT_TOPIC]
        rows = {e.id: e for e in seen}
        out: list[PlannedDelivery] = []
        for sub, ev in matching(s, settings, [event_of(e) for e in seen], now):
            org, ws = _names(s, ev.org_id, ev.workspace_id)
            row = rows[ev.id]
            out.append(
                PlannedDelivery(
                    org_id=ev.org_id,
                    target_id=str(sub.pk),
                    message=data_message([row], org, ws),
                    entity_pk=row.entity_id,
                    owner_credential_id=sub.credential_id,
                    first_event_id=ev.id,
                    last_event_id=ev.id,
                )
            )
        return out

    def periodic(self, s: Session, now: datetime, settings: Settings) -> list[PlannedDelivery]:
        """Periodic subscriptions (``timeInterval``) that are due: one delivery each whose owner may
        read at least one matching entity now (the period restarts either way). The Notification is
        rendered when it is sent, from the entities and the owner's access at that moment; a
        subscription whose previous periodic notification is still pending gets no second one."""
        out: list[PlannedDelivery] = []
        for sub in periodic_due(s, now):
            sub.last_notification = now
            access = current_access(s, sub, settings, now)
            if access is None or access.is_empty or _pending(s, sub):
                continue
            rows = current_entities(s, sub, access)
            if rows:
                out.append(
                    PlannedDelivery(
                        org_id=rows[0].org_id,
                        target_id=str(sub.pk),
                        message={"type": PERIODIC},
                        owner_credential_id=sub.credential_id,
                    )
                )
        return out

    def access(self, s: Session, delivery: Delivery, settings: Settings) -> Access | None:
        sub = _subscription(s, delivery)
        return None if sub is None else current_access(s, sub, settings, utcnow())

    def prepare(
        self, s: Session, delivery: Delivery, message: dict[str, Any], settings: Settings
    ) -> Callable[[], Outcome] | str:
        now = utcnow()
        sub = _subscription(s, delivery)
        if sub is None:
            return "the subscription was deleted"
        if status(sub, now) != "active":
            return f"the subscription is {status(sub, now)}"
        access = current_access(s, sub, settings, now)
        if access is None:
            return "the subscription's token was revoked or has expired"
        endpoint, key = sub.spec["notification"]["endpoint"], delivery.idempotency_key
        if message.get("type") == PERIODIC:
            rows = current_entities(s, sub, access)
            if not rows:
                return "no entity its owner may read matches the subscription now"
            body, content_type = periodic_notification(sub, rows, now)
            periodic_data = orjson.dumps(body)
            return lambda: send(endpoint, periodic_data, content_type, key, settings)
        seen = seen_of_message(s, access, message)
        if seen is None:
            return "its owner may no longer read this entity"
        q = sub.spec.get("q")
        if q is not None and not evaluate_q(parse_q(q), seen.attrs):
            return "q does not hold on what its owner may read now"
        body, content_type = notification(sub, seen, now)
        data = orjson.dumps(body)
        return lambda: send(endpoint, data, content_type, key, settings)

    def gone(self, s: Session, delivery: Delivery, outcome: Outcome) -> None:
        sub = _subscription(s, delivery)
        if sub is not None:
            sub.is_active = False
            sub.disabled_reason = (
                f"the endpoint answered {outcome.status_code} Gone: notifications stopped "
                "(PATCH isActive true to resume)"
            )


def _pending(s: Session, sub: NgsiSubscription) -> bool:
    return (
        s.scalar(
            select(Delivery.id)
            .where(
                Delivery.target_kind == TARGET_KIND,
                Delivery.target_id == str(sub.pk),
                Delivery.status == "pending",
            )
            .limit(1)
        )
        is not None
    )


def delivery_stats(s: Session, sub: NgsiSubscription) -> dict[str, Any]:
    """The notification status members, from the delivery log (the source of truth), plus what
    deliveries pruned from it had counted (:mod:`sensorhub.push.retention`)."""
    of_sub = (Delivery.target_kind == TARGET_KIND, Delivery.target_id == str(sub.pk))
    sent, last_sent, last_notification = s.execute(
        select(
            func.count(Delivery.id).filter(Delivery.status == "delivered"),
            func.max(Delivery.delivered_at),
            func.max(Delivery.created_at),
        ).where(*of_sub)
    ).one()
    failed, last_failed = s.execute(
        select(func.count(Attempt.id), func.max(Attempt.at))
        .join(Delivery, Delivery.id == Attempt.delivery_id)
        .where(*of_sub, Attempt.ok.is_(False))
    ).one()
    return {
        "times_sent": int(sent or 0) + sub.pruned_sent,
        "times_failed": int(failed or 0) + sub.pruned_failed,
        "last_success": latest(last_sent, sub.pruned_last_success),
        "last_failure": latest(last_failed, sub.pruned_last_failure),
        "last_notification": latest(last_notification, sub.last_notification),
    }
