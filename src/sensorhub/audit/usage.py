"""``token.used`` audit events land in the organisations whose data the request touched.

Security reasoning (issue 10, finding 4): a personal token reaches every organisation its owner belongs
to. Its use used to be written to the audit log of *each* of them at authentication time, so the admins
of organisation B read when and from where the token was used on organisation A's data, and which
routes (with A's entity ids) it called. Now the authentication step only notes the use; the event is
written when the request is over, to the organisations of the entities the request loaded (every read
and write of tenant data resolves its entities through :mod:`sensorhub.authz`, and each loaded
:class:`~sensorhub.entities.models.Entity` reports its organisation here), restricted to the
organisations the credential reaches. A request that touched no entity (``/api/tokens/self``,
``/api/managements``, an empty listing) is written to the credential's organisation when it reaches
exactly one, and otherwise to no organisation (the owner's own record; no tenant sees it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from anyio import to_thread
from sqlalchemy import event
from sqlalchemy.orm import Session

from sensorhub.audit.service import record
from sensorhub.db import Database
from sensorhub.entities.models import Entity

log = logging.getLogger("sensorhub.audit")


@dataclass(frozen=True, slots=True)
class NotedUse:
    credential_id: str
    ip: str
    route: str
    reach: frozenset[str]  # organisations the credential may act in


@dataclass
class RequestTouch:
    """What one request did with tenant data: the organisations touched and the uses to audit."""

    org_ids: set[str] = field(default_factory=set)
    uses: list[NotedUse] = field(default_factory=list)


_current: ContextVar[RequestTouch | None] = ContextVar("sensorhub_request_touch", default=None)


def touched(org_id: str) -> None:
    """Note that the current request read or wrote data of ``org_id`` (no-op outside a request)."""
    t = _current.get()
    if t is not None:
        t.org_ids.add(org_id)


@event.listens_for(Entity, "load")
def _entity_loaded(target: Entity, _context: Any) -> None:
    touched(target.org_id)


def audit_orgs(reach: frozenset[str], org_ids: set[str]) -> list[str | None]:
    """Where a use is written: the touched organisations it reaches; else its only one; else none."""
    hit = sorted(reach & org_ids)
    if hit:
        return list(hit)
    if len(reach) == 1:
        return [next(iter(reach))]
    return [None]


def note_token_use(s: Session, credential_id: str, ip: str, reach: Sequence[str], route: str) -> None:
    """Audit one use of a credential: at the end of the current request when there is one (the
    organisations it touched are known only then), at once in ``s`` otherwise."""
    use = NotedUse(credential_id, ip, route, frozenset(reach))
    t = _current.get()
    if t is not None:
        t.uses.append(use)
        return
    _write(s, use, set())


def _write(s: Session, use: NotedUse, org_ids: set[str]) -> None:
    for org_id in audit_orgs(use.reach, org_ids):
        record(
            s,
            "token.used",
            org_id=org_id,
            credential_id=use.credential_id,
            ip=use.ip,
            details={"route": use.route},
        )


def begin_request() -> tuple[RequestTouch, Token[RequestTouch | None]]:
    """Start collecting what the current HTTP request touches (the edge middleware,
    :class:`sensorhub.api.middleware.EdgeMiddleware`, calls it first); :func:`end_request` when it is over."""
    touch = RequestTouch()
    return touch, _current.set(touch)


async def end_request(
    database: Callable[[], Database], touch: RequestTouch, reset: Token[RequestTouch | None]
) -> None:
    """Stop collecting and write the request's noted token uses, where they belong (in ``database()``,
    asked for only when there is something to write)."""
    _current.reset(reset)
    if not touch.uses:
        return
    db = database()

    def write() -> None:
        with db.transaction() as s:
            for use in touch.uses:
                _write(s, use, touch.org_ids)

    try:
        await to_thread.run_sync(write)
    except Exception:  # auditing a use must never fail the request that is already answered
        log.warning("could not record token usage", exc_info=True)
