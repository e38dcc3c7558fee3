"""The web UI's live view: ``GET /data/live`` streams a device's new values to the *Data* page
(Server-Sent Events over the person's session; the page listens with ``EventSource``).

The same feed as the token route ``/api/stream`` (:mod:`sensorhub.push.live`), read with the person's
current access (:func:`sensorhub.authz.subjects.session_access`), re-checked at every value and
heartbeat; a logout or an expired session ends it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy.orm import Session

from sensorhub.accounts.models import User
from sensorhub.api.deps import ctx
from sensorhub.auth import sessions
from sensorhub.auth.dependencies import SessionContext
from sensorhub.authz.access import Access
from sensorhub.authz.subjects import session_access
from sensorhub.push.live import LiveFeed, SessionViewer
from sensorhub.push.stream import parse_last_event_id, resolve_selection, sse
from sensorhub.timeseries.models import DEFAULT_TOPIC
from sensorhub.web.guards import RequireWebSession

router = APIRouter(include_in_schema=False)
LIVE_PAGE = RequireWebSession(csrf=False)


def _loader(cookie: str, user_id: str) -> Any:
    def load(s: Session) -> Access:
        found = sessions.lookup(s, cookie)
        if found is None or found[1].id != user_id:
            return Access(())
        user = s.get(User, user_id)
        return session_access(s, user) if user is not None else Access(())

    return load


async def _open_web_feed(
    request: Request,
    entity: str = Query(..., description="The device (entity id or asset id)"),
    attribute: list[str] = Query([]),
    sc: SessionContext = Depends(LIVE_PAGE),
) -> LiveFeed:
    c = ctx(request)
    user_id = sc.user.id
    access = session_access(sc.db, sc.user)
    # The Data page charts the default topic's series (docs/ingest.md#topics): its live values too.
    selection = await to_thread.run_sync(
        resolve_selection, c.db, access, [entity], attribute[:100], [DEFAULT_TOPIC]
    )
    cookie = request.cookies.get(sessions.COOKIE_NAME, "")
    viewer = SessionViewer(
        c.db, c.cache, user_id, _loader(cookie, user_id), recheck=c.settings.live_heartbeat_seconds
    )
    c.live.check_capacity(viewer.key)
    after = parse_last_event_id(request.headers.get("last-event-id"))
    return LiveFeed(c.live, viewer, selection, after_id=after)


@router.get("/data/live", response_class=EventSourceResponse)
async def live_values(feed: LiveFeed = Depends(_open_web_feed)) -> AsyncIterator[ServerSentEvent]:
    async for m in sse(feed):
        yield m
