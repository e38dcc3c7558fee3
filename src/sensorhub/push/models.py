"""The outbox: one ``push_events`` row per (series or state attribute, ingest request).

An event is written in the transaction that stores its points (:func:`sensorhub.push.events.record_points`),
so it exists if and only if they are committed. Its ``id`` is monotonic (autoincrement): readers resume
after the last id they handled (``read_since``), and the newest id is what waiters are notified with.

One row per point would cost a bulk backfill as much as the points themselves; one row per (series,
request) costs one small insert per series. The row carries the newest point in ``time_us``/``value``
(what a live view or a threshold on the latest value needs), ``count`` points in all, the first point's
time in ``first_time_us``, and — when there is more than one point — every accepted point in ``points``:
``count`` little-endian int64 timestamps (µs, ascending) followed by ``count`` float64 values
(:meth:`PushEvent.point_arrays`). Duplicates (points the series already held) are not events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sensorhub.db import Base, UTCDateTime, new_id, utcnow
from sensorhub.timeseries.models import DEFAULT_TOPIC as DEFAULT_TOPIC

KIND_NUMERIC = "numeric"
KIND_STATE = "state"


class PushEvent(Base):
    __tablename__ = "push_events"
    # Ids are never reused on SQLite either, even after the newest events were pruned.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    workspace_id: Mapped[str] = mapped_column(String(36))
    # The entity's database key (entities.pk) and its public id (NGSI-LD id), and its types: the first,
    # and the others of a multi-typed entity (NULL for one type).
    entity_id: Mapped[int] = mapped_column(BigInteger)
    entity_ref: Mapped[str] = mapped_column(String(512))
    entity_type: Mapped[str] = mapped_column(String(200))
    extra_types: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    attribute: Mapped[str] = mapped_column(String(200))
    # The Akenza topic of the series (docs/ingest.md#topics); a state's is the topic of its record.
    topic: Mapped[str] = mapped_column(String(200), default=DEFAULT_TOPIC, server_default=DEFAULT_TOPIC)
    # "numeric" (a series' points) or "state" (a latest-state property, any JSON value).
    kind: Mapped[str] = mapped_column(String(8))
    # The newest point of the event: its time (µs since the epoch, UTC) and value.
    time_us: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[Any] = mapped_column(JSON)
    unit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_time_us: Mapped[int] = mapped_column(BigInteger)
    points: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def has_type(self, t: str) -> bool:
        return t == self.entity_type or t in (self.extra_types or ())

    def point_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Every point of the event: (timestamps µs int64, values float64), ascending by time.
        A state event has one point whose value is :attr:`value` (the arrays are then empty)."""
        if self.kind != KIND_NUMERIC:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        if self.points is None:
            return np.array([self.time_us], np.int64), np.array([float(self.value)], np.float64)
        n = self.count
        ts = np.frombuffer(self.points, dtype="<i8", count=n)
        vals = np.frombuffer(self.points, dtype="<f8", count=n, offset=8 * n)
        return ts, vals

    def point_list(self) -> list[tuple[int, Any]]:
        """Every point as ``(time_us, value)`` pairs (a state event: its one observation)."""
        if self.kind != KIND_NUMERIC:
            return [(self.time_us, self.value)]
        ts, vals = self.point_arrays()
        return list(zip(ts.tolist(), vals.tolist(), strict=True))


def _pk() -> Any:
    return mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)


class Connector(Base):
    """An output connector of an organisation: where messages go (webhook, MQTT, InfluxDB, e-mail).

    ``config`` holds what may be shown again (URL, topic template, headers, …); ``secrets_enc`` what
    may not (signing secrets, passwords, secret headers), encrypted with the server key
    (:mod:`sensorhub.push.crypto`) and never returned by the API after creation."""

    __tablename__ = "push_connectors"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secrets_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Why it was disabled by sensorhub itself (e.g. the receiver answered 410 Gone); None otherwise.
    disabled_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Rule(Base):
    """A rule of an organisation's workspace: a condition on incoming values and the connectors it
    notifies (``actions``: ``[{"connector_id", "template"}]``). No condition = forward everything."""

    __tablename__ = "push_rules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    entity_type: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The Akenza topic the rule watches; None: every topic.
    topic: Mapped[str | None] = mapped_column(String(200), nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    condition: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    cooldown_s: Mapped[int] = mapped_column(Integer, default=0)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    notify_resolved: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The person whose *current* read access the rule acts with (checked at every delivery).
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class RuleState(Base):
    """A rule's state for one device: ``ok`` or ``firing``, and what it last saw."""

    __tablename__ = "push_rule_states"

    rule_id: Mapped[str] = mapped_column(ForeignKey("push_rules.id", ondelete="CASCADE"), primary_key=True)
    entity_pk: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    entity_ref: Mapped[str] = mapped_column(String(512))
    org_id: Mapped[str] = mapped_column(String(36))
    workspace_id: Mapped[str] = mapped_column(String(36))
    state: Mapped[str] = mapped_column(String(8), default="ok")
    since: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    last_time_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RuleHistory(Base):
    """Every state change of a rule for a device (and whether a notification went out)."""

    __tablename__ = "push_rule_history"
    __table_args__ = (Index("ix_push_rule_history_rule", "rule_id", "id"),)

    id: Mapped[int] = _pk()
    rule_id: Mapped[str] = mapped_column(ForeignKey("push_rules.id", ondelete="CASCADE"))
    entity_ref: Mapped[str] = mapped_column(String(512))
    attribute: Mapped[str | None] = mapped_column(String(200), nullable=True)
    from_state: Mapped[str] = mapped_column(String(8))
    to_state: Mapped[str] = mapped_column(String(8))
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    time_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    notified: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Delivery(Base):
    """One message to one target (a connector, or a kind another module registers), for a batch of
    events of one device. Delivered at least once, in ``id`` order per ``ordering_key`` (target and
    device): only the oldest undelivered delivery of a key is ever attempted.

    ``status``: ``pending`` (waiting, or in flight while ``lease_until`` is ahead), ``delivered``,
    ``dead`` (a dead letter: out of attempts, or refused for good; replayable), ``suppressed`` (not sent:
    its owner can no longer read the data, or the target is gone/disabled)."""

    __tablename__ = "push_deliveries"
    __table_args__ = (
        Index("ix_push_deliveries_due", "status", "next_attempt_at"),
        Index("ix_push_deliveries_key", "ordering_key", "status", "id"),
        Index("ix_push_deliveries_target", "target_kind", "target_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = _pk()
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    target_kind: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[str] = mapped_column(String(64))
    rule_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    ordering_key: Mapped[str] = mapped_column(String(200))
    entity_pk: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Whose current read access decides what may be sent (checked at every attempt).
    owner_user_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    owner_credential_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # The message, kind-agnostic: {"type", "device", "data": [...], "rule": {...}?}; built at fan-out.
    message: Mapped[dict[str, Any]] = mapped_column(JSON)
    first_event_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_event_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def idempotency_key(self) -> str:
        """Stable for the delivery across attempts, replays and workers: receivers drop repeats by it."""
        return f"shd_{self.id}"


class Attempt(Base):
    """One attempt of a delivery: when, how long, the receiver's status code or the error (no secrets)."""

    __tablename__ = "push_attempts"
    __table_args__ = (Index("ix_push_attempts_delivery", "delivery_id", "id"),)

    id: Mapped[int] = _pk()
    delivery_id: Mapped[int] = mapped_column(ForeignKey("push_deliveries.id", ondelete="CASCADE"))
    n: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    duration_ms: Mapped[float] = mapped_column(Float)
    ok: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class PushCursor(Base):
    """A consumer's position in the outbox (:class:`~sensorhub.push.events.EventCursor` as JSON)."""

    __tablename__ = "push_cursors"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
