"""Pruning (periodic jobs): outbox events older than ``SENSORHUB_PUSH_EVENT_RETENTION_HOURS``
(:func:`prune_events`), and the delivery log — finished deliveries and dead letters past their own
retention settings (:func:`prune_deliveries`), and rules' state-change history past
``SENSORHUB_PUSH_RULE_HISTORY_RETENTION_DAYS`` (:func:`prune_rule_history`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from sensorhub.config import Settings
from sensorhub.db import Database, utcnow
from sensorhub.kit.time import latest
from sensorhub.push.models import Attempt, Delivery, PushEvent, RuleHistory
from sensorhub.push.subscription_models import TARGET_KIND, NgsiSubscription

BATCH = 5000


def prune_events(db: Database, settings: Settings, keep_after_id: int | None = None) -> int:
    """Delete events created before the retention period, in batches (short write transactions); never
    an event above ``keep_after_id`` (what a consumer has not read yet). Returns how many went."""
    cutoff = utcnow() - timedelta(hours=settings.push_event_retention_hours)

    def batch(s: Session) -> int:
        # Oldest first along the primary key (ids grow with time): no index on created_at needed.
        q = select(PushEvent.id, PushEvent.created_at).order_by(PushEvent.id).limit(BATCH)
        if keep_after_id is not None:
            q = q.where(PushEvent.id <= keep_after_id)
        ids = [i for i, created in s.execute(q) if created < cutoff]
        if ids:
            s.execute(delete(PushEvent).where(PushEvent.id.in_(ids)))
        return len(ids)

    return _in_batches(db, batch)


def _in_batches(db: Database, batch: Callable[[Session], int]) -> int:
    """Run ``batch`` (which deletes at most :data:`BATCH` rows, returning how many) each in its own short
    write transaction until one deletes fewer; how many were deleted in all."""
    total = 0
    while True:
        with db.transaction() as s:
            n = batch(s)
        total += n
        if n < BATCH:
            return total


def prune_deliveries(db: Database, settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """Delete finished deliveries (with their attempts) past their retention, in batches:

    - delivered and suppressed ones ``SENSORHUB_PUSH_DELIVERY_RETENTION_DAYS`` after they finished
      (delivered: ``delivered_at``; suppressed: when it was attempted);
    - dead letters ``SENSORHUB_PUSH_DEAD_LETTER_RETENTION_DAYS`` after their last attempt (``0``: kept
      until replayed — a replayed one is pending again, and then follows the first rule).

    Pending deliveries are never touched. What a pruned NGSI-LD subscription delivery counted
    (``timesSent``, ``timesFailed``, ``lastSuccess``, ``lastFailure``) is folded into the subscription
    first, so its status members do not go back. Returns ``{"delivered": n, "dead": n}``."""
    now = now or utcnow()
    out = {"delivered": 0, "dead": 0}
    if settings.push_delivery_retention_days > 0:
        cutoff = now - timedelta(days=settings.push_delivery_retention_days)
        out["delivered"] = _prune(
            db,
            or_(
                (Delivery.status == "delivered") & (Delivery.delivered_at < cutoff),
                (Delivery.status == "suppressed") & (Delivery.next_attempt_at < cutoff),
            ),
        )
    if settings.push_dead_letter_retention_days > 0:
        cutoff = now - timedelta(days=settings.push_dead_letter_retention_days)
        out["dead"] = _prune(db, (Delivery.status == "dead") & (Delivery.next_attempt_at < cutoff))
    return out


def prune_rule_history(db: Database, settings: Settings, now: datetime | None = None) -> int:
    """Delete rule state changes older than ``SENSORHUB_PUSH_RULE_HISTORY_RETENTION_DAYS`` (``0``: keep
    them), in batches. A rule's current state (firing/ok) is its own row and is never touched."""
    if settings.push_rule_history_retention_days <= 0:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=settings.push_rule_history_retention_days)

    def batch(s: Session) -> int:
        q = select(RuleHistory.id).where(RuleHistory.at < cutoff).order_by(RuleHistory.id).limit(BATCH)
        ids = list(s.scalars(q))
        if ids:
            s.execute(delete(RuleHistory).where(RuleHistory.id.in_(ids)))
        return len(ids)

    return _in_batches(db, batch)


def prune_push_log(db: Database, settings: Settings) -> dict[str, int]:
    """The hourly ``push-delivery-retention`` job: the delivery log and the rules' history."""
    return {**prune_deliveries(db, settings), "rule_history": prune_rule_history(db, settings)}


def _prune(db: Database, where: Any) -> int:
    def batch(s: Session) -> int:
        rows = s.execute(
            select(
                Delivery.id, Delivery.target_kind, Delivery.target_id, Delivery.status, Delivery.delivered_at
            )
            .where(where)
            .order_by(Delivery.id)
            .limit(BATCH)
        ).all()
        ids = [r.id for r in rows]
        if ids:
            _fold_subscription_stats(s, [r for r in rows if r.target_kind == TARGET_KIND])
            s.execute(delete(Attempt).where(Attempt.delivery_id.in_(ids)))
            s.execute(delete(Delivery).where(Delivery.id.in_(ids)))
        return len(ids)

    return _in_batches(db, batch)


def _fold_subscription_stats(s: Session, rows: list[Any]) -> None:
    """Add what the subscription deliveries about to go counted to their subscriptions' own counters."""
    if not rows:
        return
    failed = {
        int(d): (int(n), at)
        for d, n, at in s.execute(
            select(Attempt.delivery_id, func.count(Attempt.id), func.max(Attempt.at))
            .where(Attempt.delivery_id.in_([r.id for r in rows]), Attempt.ok.is_(False))
            .group_by(Attempt.delivery_id)
        ).all()
    }
    by_sub: dict[str, list[Any]] = {}
    for r in rows:
        by_sub.setdefault(r.target_id, []).append(r)
    for target_id, mine in by_sub.items():
        try:
            sub = s.get(NgsiSubscription, int(target_id))
        except ValueError:
            continue
        if sub is None:
            continue
        sent = [r.delivered_at for r in mine if r.status == "delivered"]
        fails = [failed[r.id] for r in mine if r.id in failed]
        sub.pruned_sent += len(sent)
        sub.pruned_failed += sum(n for n, _ in fails)
        sub.pruned_last_success = latest(sub.pruned_last_success, *[t for t in sent if t is not None])
        sub.pruned_last_failure = latest(sub.pruned_last_failure, *[t for _, t in fails if t is not None])
