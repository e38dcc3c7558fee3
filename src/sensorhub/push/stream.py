"""HTTP: the live stream for token holders, ``GET /api/stream`` (Server-Sent Events, scope ``telemetry``).

Thin over :mod:`sensorhub.push.live`: the dependency checks everything a 4xx can still answer (the
entities are visible, ``Last-Event-ID`` is an event id, the credential has a free stream slot), then
the response streams the feed. Each value is one SSE message whose ``id:`` is the event id, so a
browser's ``EventSource`` resumes after a reconnect by itself (``Last-Event-ID``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from enum import Enum
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from sensorhub.api.deps import ctx
from sensorhub.auth.dependencies import RequireScope
from sensorhub.auth.principal import Principal
from sensorhub.authz.access import Access
from sensorhub.authz.entities import visible_entity
from sensorhub.db import Database
from sensorhub.errors import BadRequest
from sensorhub.kit.time import iso
from sensorhub.net import client_ip
from sensorhub.push.live import FeedClosed, Gap, LiveEvent, LiveFeed, Selection, TokenViewer, Viewer
from sensorhub.timeseries.ingest import is_topic

router = APIRouter()
TELEMETRY = RequireScope("telemetry")
TAGS: list[str | Enum] = ["Live"]
MAX_ENTITIES = 100
MAX_ATTRIBUTES = 100
MAX_TOPICS = 100
MAX_POINTS = 1000  # points per message (the newest); "count" says how many the event had
RETRY_MS = 3000

STREAM_DOC = """
Server-Sent Events (`text/event-stream`) with every value stored from now on for the chosen entities,
attributes and Akenza topics (each may be given several times; without `entity`, every entity the token
may read; without `topic`, every topic).

The first message is `event: ready` (`{"position": <newest event id>}`): from then on nothing stored is
missed. Each stored value (one ingest request's points for one attribute) is one message:
`id: <event id>` and `data: {"id", "entity", "type", "attribute", "topic", "unit", "time", "value", "count", "points"}`
(`time`/`value`: the newest point; `points`: `[time, value]` pairs, at most 1000, the newest).

**Reconnect**: send `Last-Event-ID: <id>` (browsers do it themselves) to receive what was stored meanwhile,
replayed from the event log: at most `SENSORHUB_LIVE_REPLAY_MAX` (1000) log rows; when more were missed an
`event: gap` message (`{"after", "resume"}`) says which ids were skipped (read them through
`/api/timeseries/v2`). `duration=<seconds>` ends the stream after that long (`event: end`), e.g. for a script
collecting a minute of values. Comment lines (`: heartbeat`) come every `SENSORHUB_LIVE_HEARTBEAT_SECONDS` (15 s).

Every message is authorised with the token's **current** access: when it is revoked, expires or loses the
grant, the stream ends at the next value or heartbeat with `event: end` (`{"reason"}`); values outside the
token's entities or time windows are never sent. At most `SENSORHUB_LIVE_MAX_STREAMS_PER_CREDENTIAL` (5)
open streams per token and server process (429 beyond).
"""


def _ids(values: Sequence[str], name: str, limit: int) -> list[str]:
    if len(values) > limit:
        raise BadRequest(f"give at most {limit} {name} parameters")
    for v in values:
        if not v or not v.strip():
            raise BadRequest(f"{name} must not be empty")
    return list(dict.fromkeys(values))


def _topics(values: Sequence[str]) -> list[str]:
    out = _ids(values, "topic", MAX_TOPICS)
    for v in out:
        if not is_topic(v):
            raise BadRequest(f"topic {v[:60]!r} is not a topic: 1-200 printable characters")
    return out


def parse_last_event_id(value: str | None) -> int | None:
    """The ``Last-Event-ID`` header: an event id this server sent (a non-negative integer)."""
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 18:
        raise BadRequest("Last-Event-ID must be the id of an event this stream sent (a non-negative integer)")
    return int(value)


def resolve_selection(
    db: Database,
    access: Access,
    entities: list[str],
    attributes: list[str],
    topics: Sequence[str] = (),
) -> Selection:
    """The feed's selection: each entity resolved as the caller may see it (404 otherwise, 409 for an
    id shared by several of its organisations); ``topics`` empty: every topic."""

    def load() -> Selection:
        with db.session() as s:
            picked = frozenset(
                (e.org_id, e.entity_id) for e in (visible_entity(s, access, r) for r in entities)
            )
        return Selection(picked, frozenset(attributes), frozenset(topics))

    return load()


async def _open_feed(
    request: Request,
    entity: list[str] = Query([], description="Entity id or asset id; repeat for several"),
    attribute: list[str] = Query([], description="Attribute name; repeat for several (default: all)"),
    topic: list[str] = Query(
        [], description="Akenza topic (e.g. default); repeat for several (default: every topic)"
    ),
    duration: float | None = Query(
        None, gt=0, le=86_400, description="End the stream after this many seconds (default: never)"
    ),
    last_event_id: str | None = Header(None, alias="Last-Event-ID", description="Resume after this event id"),
    principal: Principal = Depends(TELEMETRY),
) -> LiveFeed:
    c = ctx(request)
    refs = _ids(entity, "entity", MAX_ENTITIES)
    attrs = _ids(attribute, "attribute", MAX_ATTRIBUTES)
    wanted_topics = _topics(topic)
    after = parse_last_event_id(last_event_id)
    access = principal.access("telemetry")
    selection = await to_thread.run_sync(resolve_selection, c.db, access, refs, attrs, wanted_topics)
    viewer: Viewer = TokenViewer(
        c.db,
        c.settings,
        c.cache,
        principal,
        "telemetry",
        client_ip(request, tuple(c.settings.trusted_proxies)),
    )
    c.live.check_capacity(viewer.key)
    return LiveFeed(c.live, viewer, selection, after_id=after, duration=duration)


def message(ev: LiveEvent) -> ServerSentEvent:
    """One value as an SSE message."""
    points = ev.points[-MAX_POINTS:]
    t, v = points[-1]
    data: dict[str, Any] = {
        "id": ev.id,
        "entity": ev.entity_id,
        "type": ev.entity_type,
        "attribute": ev.attribute,
        "topic": ev.topic,
        "unit": ev.unit,
        "time": iso(t),
        "value": v,
        "count": len(ev.points),
        "points": [[iso(pt), pv] for pt, pv in points],
    }
    return ServerSentEvent(id=str(ev.id), data=data)


async def sse(feed: LiveFeed) -> AsyncIterator[ServerSentEvent]:
    """The feed as SSE messages: ``ready`` (subscribed: everything stored from now on will come), then
    values, gaps, heartbeats, and a last ``end`` message when it closes."""
    try:
        position = await feed.open()
        yield ServerSentEvent(event="ready", retry=RETRY_MS, data={"position": position})
        async for item in feed:
            if item is None:
                yield ServerSentEvent(comment="heartbeat")
            elif isinstance(item, Gap):
                yield ServerSentEvent(
                    event="gap", id=str(item.resume), data={"after": item.after, "resume": item.resume}
                )
            else:
                yield message(item)
    except FeedClosed as e:
        yield ServerSentEvent(event="end", data={"reason": e.reason})
    finally:
        feed.close()


@router.get(
    "/api/stream",
    tags=TAGS,
    summary="Live values (Server-Sent Events)",
    description=STREAM_DOC,
    response_class=EventSourceResponse,
)
async def stream(feed: LiveFeed = Depends(_open_feed)) -> AsyncIterator[ServerSentEvent]:
    async for m in sse(feed):
        yield m
