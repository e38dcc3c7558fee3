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

    The session takes SQLite's one write lock only when the request actually writes (at its first
    write statement, with BEGIN IMMEDIATE; see ``Database.request_session``): a login with a wrong
    password, an unauthenticated or refused request, or a read never holds it, so none of them waits
    for, or delays, another tenant's writes."""
    db = ctx(request).db
    with db.request_session() as s:
        yield s


def request_ip(request: Request) -> str:
    return client_ip(request, tuple(ctx(request).settings.trusted_proxies))
