"""The delivery worker: outbox events → deliveries (fan-out) → attempts, at least once, in order.

**Fan-out.** One transaction reads the events after the ``fan-out`` cursor (an
:class:`~sensorhub.push.events.EventCursor`, so events that commit out of id order are not missed),
asks every registered target kind (:mod:`sensorhub.push.targets`) for the deliveries they cause,
inserts them and moves the cursor — all or nothing, so each event is fanned out exactly once. On
PostgreSQL the cursor row is locked ``FOR UPDATE SKIP LOCKED``: one worker fans out at a time, the
others go on delivering. On SQLite the transaction holds the one write lock.

**Delivery.** A worker claims due deliveries — ``pending``, due, not leased — taking only the oldest
pending delivery of each ``ordering_key`` (target and device), so deliveries of one device to one
target are attempted in order; on PostgreSQL the claim is ``FOR UPDATE SKIP LOCKED`` and several
workers never claim the same delivery. A claim is a lease (``SENSORHUB_PUSH_LEASE_SECONDS``): a worker
killed mid-attempt leaves it to be taken again when the lease ends (at least once — receivers drop
repeats by the idempotency key). Before each attempt the owner's *current* access is read and the
message cut to it (nothing readable → ``suppressed``). The send runs outside any transaction; its
outcome is recorded with the attempt: delivered; retried with exponential backoff
(``SENSORHUB_PUSH_RETRY_BASE_SECONDS`` × 2^(n-1), at most ``…_RETRY_MAX_SECONDS``, ±10 % jitter);
dead after ``SENSORHUB_PUSH_MAX_ATTEMPTS`` or at once when retrying cannot help (4xx other than
408/425/429); 410 Gone disables the target. Dead letters stay visible and can be replayed
(:func:`replay`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from sensorhub.config import Settings
from sensorhub.db import Database, utcnow
from sensorhub.errors import BadRequest, NotFound
from sensorhub.jobs import holder_id
from sensorhub.push.events import EventCursor, newest_id
from sensorhub.push.hub import EventHub
from sensorhub.push.kinds import Outcome
from sensorhub.push.models import Attempt, Delivery, PushCursor
from sensorhub.push.targets import TARGET_KINDS, PlannedDelivery, visible_message

log = logging.getLogger("sensorhub.push")

FAN_OUT = "fan-out"
FAN_OUT_BATCH = 500
CLAIM_BATCH = 50
FINAL = ("delivered", "dead", "suppressed")


def ordering_key(kind: str, p: PlannedDelivery) -> str:
    if p.ordering_key is not None:
        return p.ordering_key
    return f"{kind}:{p.target_id}:{p.entity_pk if p.entity_pk is not None else '-'}"


def fan_out(db: Database, settings: Settings, now: datetime | None = None) -> tuple[int, int]:
    """One fan-out round: (events read, deliveries created)."""
    now = now or utcnow()
    if not _events_waiting(db):
        return 0, 0  # nothing new: no write transaction (on SQLite it would contend with ingest)
    with db.transaction() as s:
        row = _lock_cursor(s, db.dialect)
        if row is None:
            return 0, 0  # another worker is fanning out
        cursor = EventCursor.from_json(row.state)
        before = cursor.to_json()
        events = cursor.read(s, FAN_OUT_BATCH)
        created = 0
        if events:
            for kind in TARGET_KINDS.values():
                for p in kind.plan(s, events, now, settings):
                    s.add(_delivery(kind.name, p, now))
                    created += 1
        if cursor.to_json() != before:
            row.state = cursor.to_json()
        return len(events), created


def _events_waiting(db: Database) -> bool:
    """Whether there may be events to fan out (a read: no lock)."""
    with db.session() as s:
        c = _read_cursor(s)
        return c is None or bool(c.gaps) or newest_id(s) > c.after_id


def _read_cursor(s: Session) -> EventCursor | None:
    """The fan-out's cursor as last stored, unlocked (None before the first fan-out)."""
    row = s.get(PushCursor, FAN_OUT)
    return None if row is None else EventCursor.from_json(row.state)


def _delivery(kind: str, p: PlannedDelivery, now: datetime) -> Delivery:
    return Delivery(
        org_id=p.org_id,
        target_kind=kind,
        target_id=p.target_id,
        rule_id=p.rule_id,
        ordering_key=ordering_key(kind, p),
        entity_pk=p.entity_pk,
        owner_user_id=p.owner_user_id,
        owner_credential_id=p.owner_credential_id,
        message=p.message,
        first_event_id=p.first_event_id,
        last_event_id=p.last_event_id,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


def enqueue(s: Session, kind: str, planned: list[PlannedDelivery]) -> list[Delivery]:
    """Deliveries made outside the fan-out (e.g. a periodic job), in the caller's transaction."""
    now = utcnow()
    out = [_delivery(kind, p, now) for p in planned]
    s.add_all(out)
    s.flush()
    return out


def _lock_cursor(s: Session, dialect: str) -> PushCursor | None:
    q = select(PushCursor).where(PushCursor.name == FAN_OUT)
    if dialect == "postgresql":
        q = q.with_for_update(skip_locked=True)
    row = s.scalars(q).first()
    if row is not None:
        return row
    try:
        with s.begin_nested():
            row = PushCursor(name=FAN_OUT, state={})
            s.add(row)
    except IntegrityError:
        return None  # it exists: locked by another worker
    return row


def cursor_floor(db: Database) -> int | None:
    """The highest event id every event at or below which was fanned out (None: nothing yet)."""
    with db.session() as s:
        c = _read_cursor(s)
        return None if c is None else min([c.after_id, *[g - 1 for g in c.gaps]])


# --- attempts ---------------------------------------------------------------------------------------


def claim(db: Database, holder: str, settings: Settings, limit: int = CLAIM_BATCH) -> list[int]:
    """Lease up to ``limit`` due deliveries (the oldest pending one of each ordering key)."""
    now = utcnow()
    older = aliased(Delivery)
    blocked = exists().where(
        older.ordering_key == Delivery.ordering_key, older.id < Delivery.id, older.status == "pending"
    )
    q = (
        select(Delivery)
        .where(
            Delivery.status == "pending",
            Delivery.next_attempt_at <= now,
            or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
            ~blocked,
        )
        .order_by(Delivery.id)
        .limit(limit)
    )
    with db.session() as s:  # a read first: an idle worker takes no write lock
        if s.scalar(q.with_only_columns(Delivery.id).limit(1)) is None:
            return []
    with db.transaction() as s:
        if db.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True, of=Delivery)
        rows = list(s.scalars(q))
        until = now + timedelta(seconds=settings.push_lease_seconds)
        for d in rows:
            d.lease_until, d.claimed_by = until, holder
        return [d.id for d in rows]


def timed(fn: Callable[[], Outcome]) -> tuple[Outcome, float]:
    t0 = time.perf_counter()
    try:
        out = fn()
    except Exception as e:  # a kind that raised: a failed attempt, retried
        log.exception("push delivery attempt raised")
        out = Outcome(False, error=f"{type(e).__name__}: {e}"[:500])
    return out, (time.perf_counter() - t0) * 1000


def backoff(settings: Settings, attempts: int) -> float:
    base = settings.push_retry_base_seconds * (2 ** max(0, attempts - 1))
    jitter: float = random.uniform(0.9, 1.1)
    return float(min(settings.push_retry_max_seconds, base)) * jitter


def record(
    s: Session, d: Delivery, timed_outcome: tuple[Outcome, float], settings: Settings, *, final: bool = False
) -> None:
    """Record one attempt and move the delivery on (in the caller's transaction)."""
    outcome, ms = timed_outcome
    now = utcnow()
    d.attempts += 1
    s.add(
        Attempt(
            delivery_id=d.id,
            n=d.attempts,
            at=now,
            duration_ms=round(ms, 2),
            ok=outcome.ok,
            status_code=outcome.status_code,
            error=outcome.error,
        )
    )
    d.last_status_code, d.last_error = outcome.status_code, outcome.error
    d.lease_until, d.claimed_by = None, None
    if outcome.ok:
        d.status, d.delivered_at = "delivered", now
        return
    if outcome.gone:
        kind = TARGET_KINDS.get(d.target_kind)
        if kind is not None:
            kind.gone(s, d, outcome)
    if final or outcome.gone or not outcome.retry or d.attempts >= settings.push_max_attempts:
        d.status, d.next_attempt_at = "dead", now  # a finished delivery's next_attempt_at: when it ended
        return
    d.next_attempt_at = now + timedelta(seconds=backoff(settings, d.attempts))


def attempt(db: Database, delivery_id: int, holder: str, settings: Settings) -> str:
    """Attempt one claimed delivery; returns its status afterwards."""
    return _attempt(db, delivery_id, holder, settings)[0]


def attempt_chain(db: Database, delivery_id: int, holder: str, settings: Settings) -> int:
    """Attempt a claimed delivery and, while they succeed and are due, the next ones of its ordering
    key (leased in the same transaction that records each success). Returns how many were attempted."""
    n, did = 0, delivery_id
    nxt: int | None = did
    while nxt is not None:
        did = nxt
        _status, nxt = _attempt(db, did, holder, settings)
        n += 1
    return n


def _attempt(db: Database, delivery_id: int, holder: str, settings: Settings) -> tuple[str, int | None]:
    with db.session() as s:
        d = s.get(Delivery, delivery_id)
        if d is None or d.status != "pending" or d.claimed_by != holder:
            return "skipped", None
        kind = TARGET_KINDS.get(d.target_kind)
        if kind is None:
            prepared: Callable[[], Outcome] | str = f"no target kind {d.target_kind!r} in this process"
        else:
            cut = visible_message(kind.access(s, d, settings), d.message)
            prepared = cut if isinstance(cut, str) else kind.prepare(s, d, cut, settings)
    if isinstance(prepared, str):
        with db.transaction() as s:
            d = s.get(Delivery, delivery_id)
            if d is not None and d.claimed_by == holder and d.status == "pending":
                d.status, d.last_error, d.lease_until, d.claimed_by, d.next_attempt_at = (
                    "suppressed",
                    f"not sent: {prepared}",
                    None,
                    None,
                    utcnow(),
                )
            return "suppressed", None
    result = timed(prepared)
    with db.transaction() as s:
        d = s.get(Delivery, delivery_id)
        if d is None or d.claimed_by != holder or d.status != "pending":
            return "lost", None  # the lease ran out and another worker took it over
        record(s, d, result, settings)
        nxt = _lease_next(s, d, holder, settings, db.dialect) if d.status == "delivered" else None
        return d.status, nxt


def _lease_next(s: Session, d: Delivery, holder: str, settings: Settings, dialect: str) -> int | None:
    """In the transaction that recorded ``d`` as delivered: lease the next delivery of its ordering key
    when it is due (a chain of one device's messages goes out without a claim round per message)."""
    now = utcnow()
    q = (
        select(Delivery)
        .where(Delivery.ordering_key == d.ordering_key, Delivery.status == "pending", Delivery.id > d.id)
        .order_by(Delivery.id)
        .limit(1)
    )
    if dialect == "postgresql":
        q = q.with_for_update(skip_locked=True)
    nxt = s.scalars(q).first()
    if nxt is None or nxt.next_attempt_at > now or (nxt.lease_until is not None and nxt.lease_until > now):
        return None
    nxt.lease_until, nxt.claimed_by = now + timedelta(seconds=settings.push_lease_seconds), holder
    return nxt.id


class DeliveryWorker:
    """The delivery loop of one process (a job of :mod:`sensorhub.jobs`, named ``push-delivery``)."""

    def __init__(self, db: Database, settings: Settings, hub: EventHub, holder: str | None = None) -> None:
        self.db, self.settings, self.hub = db, settings, hub
        self.holder = holder or holder_id()
        self.seen = 0

    def step(self) -> int:
        """One round: fan out what is new, attempt what is due. Returns how much work it did."""
        events, created = fan_out(self.db, self.settings)
        work = events + created
        for did in claim(self.db, self.holder, self.settings):
            work += attempt_chain(self.db, did, self.holder, self.settings)
        return work

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            seen = self.hub.newest
            try:
                busy = self.step()
            except Exception:
                log.exception("push delivery round failed; retrying")
                busy = 0
                stop.wait(1.0)
            if not busy and not stop.is_set():
                self.hub.wait(seen, self.settings.push_poll_seconds)


# --- the delivery log -------------------------------------------------------------------------------


def deliveries_of(
    s: Session,
    org_id: str,
    kind: str,
    target_id: str | None,
    status: str | None,
    before: int | None,
    limit: int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Delivery]:
    """A target's deliveries (``target_id`` None: every target of that kind in the organisation),
    newest first: ``status``, created in ``[since, until)``, ids below ``before`` (the next page)."""
    if status is not None and status not in ("pending", *FINAL):
        raise BadRequest("status must be one of: pending, delivered, dead, suppressed")
    if since is not None and until is not None and since >= until:
        raise BadRequest("since must be before until")
    q = select(Delivery).where(Delivery.org_id == org_id, Delivery.target_kind == kind)
    if target_id is not None:
        q = q.where(Delivery.target_id == target_id)
    if status:
        q = q.where(Delivery.status == status)
    if before is not None:
        q = q.where(Delivery.id < before)
    if since is not None:
        q = q.where(Delivery.created_at >= since)
    if until is not None:
        q = q.where(Delivery.created_at < until)
    return list(s.scalars(q.order_by(Delivery.id.desc()).limit(limit)))


def get_delivery(s: Session, org_id: str, delivery_id: int) -> Delivery:
    d = s.get(Delivery, delivery_id)
    if d is None or d.org_id != org_id:
        raise NotFound(f"delivery {delivery_id} not found in this organisation")
    return d


def attempts_of(s: Session, d: Delivery) -> list[Attempt]:
    return list(s.scalars(select(Attempt).where(Attempt.delivery_id == d.id).order_by(Attempt.id)))


def attempts_by_delivery(s: Session, ids: Collection[int]) -> dict[int, list[Attempt]]:
    """The attempts of each of these deliveries in one query, ordered as :func:`attempts_of` orders
    them (a delivery without any maps to ``[]``)."""
    out: dict[int, list[Attempt]] = {i: [] for i in ids}
    if out:
        q = select(Attempt).where(Attempt.delivery_id.in_(out)).order_by(Attempt.id)
        for a in s.scalars(q):
            out[a.delivery_id].append(a)
    return out


def log_page(
    s: Session, rows: list[Delivery], size: int
) -> tuple[list[tuple[Delivery, list[Attempt]]], int | None]:
    """One page of a delivery log from :func:`deliveries_of` called with ``limit=size + 1``: its first
    ``size`` deliveries, each with its attempts, and the ``before`` of the next page (None on the last)."""
    page = rows[:size]
    attempts = attempts_by_delivery(s, [d.id for d in page])
    return [(d, attempts[d.id]) for d in page], rows[size - 1].id if len(rows) > size else None


def replay(s: Session, d: Delivery) -> Delivery:
    """Queue a dead, suppressed or delivered delivery again (same idempotency key), now."""
    if d.status == "pending":
        raise BadRequest("the delivery is still pending; it will be attempted (no replay needed)")
    d.status, d.next_attempt_at, d.lease_until, d.claimed_by = "pending", utcnow(), None, None
    d.attempts = 0
    return d


def delivery_out(d: Delivery, attempts: list[Attempt] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id,
        "idempotency_key": d.idempotency_key,
        "target_kind": d.target_kind,
        "target_id": d.target_id,
        "rule_id": d.rule_id,
        "device": d.message.get("device", {}).get("id"),
        "type": d.message.get("type"),
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at if d.status == "pending" else None,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": d.created_at,
        "delivered_at": d.delivered_at,
    }
    if attempts is not None:
        out["attempt_log"] = [
            {
                "n": a.n,
                "at": a.at,
                "ok": a.ok,
                "status_code": a.status_code,
                "error": a.error,
                "duration_ms": a.duration_ms,
            }
            for a in attempts
        ]
    return out
