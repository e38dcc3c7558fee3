"""Debounced ``last_used_at`` / ``last_used_ip`` updates and ``token.used`` audit events.

A credential's usage is written at most once per debounce interval (and at once when the client IP
changes), so the hot path stays free of database writes."""

from __future__ import annotations

import threading
import time

from sqlalchemy import update
from sqlalchemy.orm import Session

from sensorhub.audit.usage import note_token_use
from sensorhub.db import utcnow
from sensorhub.tokens.models import Credential


class UsageTracker:
    def __init__(self, debounce_seconds: float) -> None:
        self.debounce = debounce_seconds
        self._last: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def due(self, credential_id: str, ip: str) -> bool:
        """True if this use should be written now (and marks it as written)."""
        now = time.monotonic()
        with self._lock:
            prev = self._last.get(credential_id)
            if prev is not None and prev[1] == ip and now - prev[0] < self.debounce:
                return False
            if len(self._last) > 200_000:
                self._last.clear()
            self._last[credential_id] = (now, ip)
            return True

    def forget(self, credential_id: str) -> None:
        with self._lock:
            self._last.pop(credential_id, None)


def write_usage(s: Session, credential_id: str, ip: str, org_ids: list[str], route: str) -> None:
    """Record a use in ``s`` (the caller's job transaction commits it)."""
    s.execute(
        update(Credential)
        .where(Credential.id == credential_id)
        .values(last_used_at=utcnow(), last_used_ip=ip)
    )
    # The audit event goes only to the organisations whose data the request touches (see
    # sensorhub.audit.usage), never to every organisation the credential reaches.
    note_token_use(s, credential_id, ip, org_ids, route)
