"""Request-scoped dependencies shared by every router."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session

from sensorhub.context import AppContext
from sensorhub.net import client_ip


def ctx(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def get_db(request: Request) -> Iterator[Session]:
    """One session per request; the endpoint commits at the edge, anything else is rolled back.
    Unsafe methods get a write session (on SQLite: the write lock from the first statement)."""
    db = ctx(request).db
    with db.write_session() if request.method in UNSAFE else db.session() as s:
        yield s


def request_ip(request: Request) -> str:
    return client_ip(request, tuple(ctx(request).settings.trusted_proxies))
