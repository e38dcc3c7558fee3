"""Recording and listing audit events."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from sensorhub.audit.models import AuditEvent


def record(
    s: Session,
    action: str,
    *,
    org_id: str | None = None,
    actor_user_id: str | None = None,
    credential_id: str | None = None,
    target: str | None = None,
    ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    s.add(
        AuditEvent(
            action=action,
            org_id=org_id,
            actor_user_id=actor_user_id,
            credential_id=credential_id,
            target=target,
            ip=ip,
            details=details or {},
        )
    )


def list_events(
    s: Session, *, org_id: str | None = None, credential_id: str | None = None, limit: int = 100
) -> list[AuditEvent]:
    q = select(AuditEvent)
    if org_id:
        q = q.where(AuditEvent.org_id == org_id)
    if credential_id:
        q = q.where(AuditEvent.credential_id == credential_id)
    return list(s.scalars(q.order_by(AuditEvent.at.desc()).limit(limit)))


@dataclass(frozen=True)
class EventQuery:
    """Filters of an organisation's audit log (each optional; all must hold)."""

    action: str | None = None  # exact, or a prefix ending in '.' (e.g. "token.")
    actor_user_id: str | None = None
    credential_id: str | None = None
    target: str | None = None  # substring
    ip: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _filtered(org_id: str, f: EventQuery) -> Any:
    q = select(AuditEvent).where(AuditEvent.org_id == org_id)
    if f.action:
        q = q.where(
            AuditEvent.action.startswith(f.action, autoescape=True)
            if f.action.endswith(".")
            else AuditEvent.action == f.action
        )
    if f.actor_user_id:
        q = q.where(AuditEvent.actor_user_id == f.actor_user_id)
    if f.credential_id:
        q = q.where(AuditEvent.credential_id == f.credential_id)
    if f.target:
        q = q.where(AuditEvent.target.contains(f.target, autoescape=True))
    if f.ip:
        q = q.where(AuditEvent.ip == f.ip)
    if f.since:
        q = q.where(AuditEvent.at >= f.since)
    if f.until:
        q = q.where(AuditEvent.at < f.until)
    return q


def search_events(
    s: Session, org_id: str, f: EventQuery | None, *, limit: int, offset: int = 0
) -> tuple[list[AuditEvent], int]:
    """One page of the organisation's events matching ``f``, newest first, and how many match (``None``:
    a filter nothing can match, see :func:`sensorhub.accounts.service.audit_query`)."""
    if f is None:
        return [], 0
    q = _filtered(org_id, f)
    total = int(s.scalar(select(func.count()).select_from(q.subquery())) or 0)
    rows = list(s.scalars(q.order_by(AuditEvent.at.desc(), AuditEvent.id).limit(limit).offset(offset)))
    return rows, total


CSV_COLUMNS = ("at", "action", "actor_user_id", "credential_id", "target", "ip", "details")
# The CSV download holds every matching event, up to this many (newest first).
CSV_MAX_EVENTS = 100_000


def matching_events_csv(s: Session, org_id: str, f: EventQuery | None) -> str:
    """The organisation's events matching ``f`` as CSV (the audit log's download, on the API and the page)."""
    return events_csv(search_events(s, org_id, f, limit=CSV_MAX_EVENTS)[0])


def events_csv(events: list[AuditEvent]) -> str:
    import json

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for e in events:
        w.writerow(
            [
                e.at.isoformat().replace("+00:00", "Z"), e.action, e.actor_user_id or "", e.credential_id or "",
                _cell(e.target or ""), e.ip or "", _cell(json.dumps(e.details or {}, sort_keys=True)),
            ]
        )  # fmt: skip
    return buf.getvalue()


def _cell(v: str) -> str:
    """No spreadsheet formula injection: a cell starting with = + - @ is prefixed with a quote."""
    return "'" + v if v[:1] in ("=", "+", "-", "@", "\t", "\r") else v


def prune(s: Session, retention_days: int, now: datetime) -> int:
    """Delete audit events older than ``retention_days`` (0: keep them all); how many went."""
    if retention_days <= 0:
        return 0
    cutoff = now - timedelta(days=retention_days)
    return int(s.execute(delete(AuditEvent).where(AuditEvent.at < cutoff)).rowcount)  # type: ignore[attr-defined,unused-ignore]
