"""Request-scoped dependencies shared by every router."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from sensorhub.context import AppContext
from sensorhub.net import client_ip


def ctx(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _request_session(request: Request) -> Iterator[Session]:
    # scope="function" (below): FastAPI runs the code after ``yield`` when the endpoint has returned
    # and its answer is rendered, but before a byte is sent. So the commit happens before the client
    # sees a 2xx (it can read what it wrote at once, from any connection), and a failed commit still
    # becomes an error answer. With the default scope ("request") it would run after the response.
    with ctx(request).db.request_session() as s:
        yield s


async def get_db(s: Session = Depends(_request_session, scope="function")) -> Session:
    """The request's session: one session, one transaction per request.

    The contract, for every router (management, web pages and the token APIs alike):

    - Depend on ``get_db`` (directly or through ``RequireSession``); every dependency of one request
      gets the same session.
    - Never call ``commit()``: the transaction commits once, when the endpoint returns without an
      error, and before the response is sent; any exception rolls all of it back. (A handler that
      catches a service error to render it as a page calls ``rollback()`` first.)
    - Work that must follow the commit is registered with ``sensorhub.db.on_commit``; auth-relevant
      changes call ``sensorhub.db.auth_changed(session)`` and the caches are invalidated after commit.
    - Nothing may use this session once the endpoint has returned: a streaming response or a
      background job opens its own with ``Database.transaction()`` (or ``session()`` to read).

    The session takes SQLite's one write lock only when the request actually writes (at its first
    write statement, with BEGIN IMMEDIATE; see ``Database.request_session``): a login with a wrong
    password, an unauthenticated or refused request, or a read never holds it, so none of them waits
    for, or delays, another tenant's writes."""
    return s


def _read_session(request: Request) -> Iterator[Session]:
    with ctx(request).db.read_session() as s:
        yield s


async def get_read_db(s: Session = Depends(_read_session, scope="function")) -> Session:
    """The session of a route whose whole transaction reads data (entity and NGSI-LD queries, asset
    pages): ``Database.read_session``, on the read replica while one is configured and close enough
    (``SENSORHUB_DATABASE_REPLICA_URL``), else on the primary; never committed, READ ONLY on
    PostgreSQL. A route that writes anything takes :func:`get_db` instead, and reads what it needs
    (its own writes included) in that session, on the primary; credentials are checked on the primary
    whichever the route takes."""
    return s


def request_ip(request: Request) -> str:
    return client_ip(request, tuple(ctx(request).settings.trusted_proxies))
