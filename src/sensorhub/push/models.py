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
from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from sensorhub.db import Base, UTCDateTime, utcnow

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
    # The entity's database key (entities.pk) and its public id (NGSI-LD id), and its type.
    entity_id: Mapped[int] = mapped_column(BigInteger)
    entity_ref: Mapped[str] = mapped_column(String(512))
    entity_type: Mapped[str] = mapped_column(String(200))
    attribute: Mapped[str] = mapped_column(String(200))
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
