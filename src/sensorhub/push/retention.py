"""Pruning the outbox: events older than ``SENSORHUB_PUSH_EVENT_RETENTION_HOURS`` go (a periodic job)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select

from sensorhub.config import Settings
from sensorhub.db import Database, utcnow
from sensorhub.push.models import PushEvent

BATCH = 5000


def prune_events(db: Database, settings: Settings, keep_after_id: int | None = None) -> int:
    """Delete events created before the retention period, in batches (short write transactions); never
    an event above ``keep_after_id`` (what a consumer has not read yet). Returns how many went."""
    cutoff = utcnow() - timedelta(hours=settings.push_event_retention_hours)
    total = 0
    while True:
        with db.transaction() as s:
            # Oldest first along the primary key (ids grow with time): no index on created_at needed.
            q = select(PushEvent.id, PushEvent.created_at).order_by(PushEvent.id).limit(BATCH)
            if keep_after_id is not None:
                q = q.where(PushEvent.id <= keep_after_id)
            rows = s.execute(q).all()
            ids = [i for i, created in rows if created < cutoff]
            if ids:
                s.execute(delete(PushEvent).where(PushEvent.id.in_(ids)))
        total += len(ids)
        if len(ids) < BATCH:
            return total
