"""Writing and reading the outbox (``push_events``).

- :func:`record_points` / :func:`record_state` are called by the ingest service
  (:func:`sensorhub.timeseries.ingest.store`) inside the request's transaction, for what it accepted: the
  event exists iff the points are committed. Every ingest path (HTTP backfill, MQTT, line protocol) goes
  through ``store()``, so each gets its events without doing anything.
- Once that transaction commits, the database's ``event_listeners`` run once with the newest event id
  (:data:`sensorhub.db.EVENT_LISTENERS`; the app context registers its :class:`~sensorhub.push.hub.EventHub`,
  which wakes local waiters and tells other processes over Redis when configured). A rollback notifies
  nothing.
- :func:`read_since` gives the events after an id, in id order: consumers (the delivery worker, live
  streams, subscriptions) keep the last id they handled and resume from it; a notification only says
  "there is something newer than X", never carries data.

Cost on the ingest path: one INSERT of one row per (series, request); a many-point event keeps its
points as packed arrays (see :mod:`sensorhub.push.models`), never one row per point.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from sensorhub.db import EVENT_LISTENERS, on_commit, utcnow
from sensorhub.entities.models import Entity
from sensorhub.push.models import DEFAULT_TOPIC, KIND_NUMERIC, KIND_STATE, PushEvent

__all__ = ["EventCursor", "newest_id", "read_since", "record_points", "record_state"]

_PENDING = "push_events_pending"
_INSERT = insert(PushEvent).returning(PushEvent.id)


def record_points(
    session: Session,
    *,
    entity: Entity,
    attribute: str,
    ts_us: np.ndarray,
    values: np.ndarray,
    unit: str | None,
    topic: str = DEFAULT_TOPIC,
) -> int | None:
    """Record the points just stored into series (``entity``, ``attribute``): ``ts_us`` (int64 µs,
    ascending) and ``values`` (float64), duplicates already left out. Returns the event id (None when
    there is no point)."""
    n = len(ts_us)
    if n == 0:
        return None
    ts = np.ascontiguousarray(ts_us, dtype="<i8")
    vals = np.ascontiguousarray(values, dtype="<f8")
    return _insert(
        session,
        entity,
        attribute,
        kind=KIND_NUMERIC,
        time_us=int(ts[-1]),
        value=float(vals[-1]),
        unit=unit,
        count=n,
        first_time_us=int(ts[0]),
        points=ts.tobytes() + vals.tobytes() if n > 1 else None,
        topic=topic,
    )


def record_state(
    session: Session,
    *,
    entity: Entity,
    attribute: str,
    ts_us: int,
    value: Any,
    unit: str | None,
    topic: str = DEFAULT_TOPIC,
) -> int:
    """Record a latest-state observation (a text, bool, list or object value) just stored on ``entity``
    (``topic``: the topic of the record that carried it)."""
    return _insert(
        session,
        entity,
        attribute,
        kind=KIND_STATE,
        time_us=ts_us,
        value=value,
        unit=unit,
        count=1,
        first_time_us=ts_us,
        points=None,
        topic=topic,
    )


def _insert(session: Session, entity: Entity, attribute: str, **row: Any) -> int:
    event_id = int(
        session.execute(
            _INSERT,
            {
                # tenancy: the event copies the tenant of the entity the ingest service just wrote to
                "org_id": entity.org_id,
                "workspace_id": entity.workspace_id,
                "entity_id": entity.pk,
                "entity_ref": entity.entity_id,
                "entity_type": entity.type,
                "extra_types": entity.extra_types or None,
                "attribute": attribute,
                "created_at": utcnow(),
                **row,
            },
        ).scalar_one()
    )
    _notify_after_commit(session, event_id)
    return event_id


def _notify_after_commit(session: Session, event_id: int) -> None:
    """Once per transaction: after it commits, tell the listeners the newest event id."""
    txn = session.get_transaction()
    pending = session.info.get(_PENDING)
    if pending is not None and pending[0] is txn:
        pending[1] = max(pending[1], event_id)
        return
    holder: list[Any] = [txn, event_id]
    session.info[_PENDING] = holder
    listeners: list[Callable[[int], None]] = session.info.get(EVENT_LISTENERS, [])

    def committed() -> None:
        if session.info.get(_PENDING) is holder:
            del session.info[_PENDING]
        for listener in list(listeners):
            listener(int(holder[1]))

    on_commit(session, committed)


def read_since(session: Session, after_id: int, limit: int = 1000) -> list[PushEvent]:
    """The committed events with an id above ``after_id``, in id order, at most ``limit``.

    Ids are allocated at insert and become visible at commit, so two transactions may commit out of id
    order (PostgreSQL; SQLite has one writer): a reader that must see every event uses an
    :class:`EventCursor`, which re-checks the ids it skipped."""
    return list(
        session.scalars(select(PushEvent).where(PushEvent.id > after_id).order_by(PushEvent.id).limit(limit))
    )


def newest_id(session: Session) -> int:
    """The highest committed event id (0 when there is none)."""
    return int(session.scalar(select(func.coalesce(func.max(PushEvent.id), 0))) or 0)


# A skipped id younger than this may still be a transaction in flight; older ones were rolled back.
GAP_TIMEOUT_S = 120.0
MAX_GAPS = 10_000


@dataclass
class EventCursor:
    """Where a consumer is in the outbox: every event up to ``after_id`` was read, except the ids in
    ``gaps`` (skipped: allocated by a transaction that had not committed yet, or rolled back).

    On PostgreSQL two ingest transactions can commit out of id order (ids come from a sequence at
    insert): reading ``id > after_id`` alone would lose the one that commits last. :meth:`read` also
    re-reads the skipped ids, for :data:`GAP_TIMEOUT_S` (a rolled-back id never appears; an ingest
    transaction is bounded by the lock timeout and the request size), so nothing committed is missed.
    The state serialises to JSON (:meth:`to_json`) for consumers that persist it."""

    after_id: int = 0
    gaps: dict[int, float] = field(default_factory=dict)  # skipped id → when it was first skipped

    def read(self, session: Session, limit: int = 1000, now: float | None = None) -> list[PushEvent]:
        """The events not read yet (late ones from the gaps first, then new ones), in id order."""
        now = time.time() if now is None else now
        late: list[PushEvent] = []
        if self.gaps:
            late = list(
                session.scalars(
                    select(PushEvent).where(PushEvent.id.in_(list(self.gaps))).order_by(PushEvent.id)
                )
            )
            for e in late:
                self.gaps.pop(e.id, None)
            for gid, seen in list(self.gaps.items()):
                if now - seen > GAP_TIMEOUT_S:
                    del self.gaps[gid]
        new = read_since(session, self.after_id, limit)
        expected = self.after_id + 1
        for e in new:
            for missing in range(max(expected, e.id - MAX_GAPS), e.id):
                self.gaps[missing] = now
            expected = e.id + 1
        if new:
            self.after_id = new[-1].id
        if len(self.gaps) > MAX_GAPS:
            for gid in sorted(self.gaps)[: len(self.gaps) - MAX_GAPS]:
                del self.gaps[gid]
        return late + new

    def to_json(self) -> dict[str, Any]:
        return {"after_id": self.after_id, "gaps": [[k, v] for k, v in sorted(self.gaps.items())]}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> EventCursor:
        if not data:
            return cls()
        return cls(int(data.get("after_id", 0)), {int(k): float(v) for k, v in data.get("gaps", [])})
