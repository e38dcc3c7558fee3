"""The live feed: the stored values a viewer may see after an event id, as they are stored.

One :class:`LiveHub` per process tails the event log (``push_events``, :mod:`sensorhub.push.events`) once
and fans each new event out to every open feed of the process; a :class:`LiveFeed` is one consumer.
The SSE route (``GET /api/stream``), the web UI's live view and any other family (GraphQL
subscriptions, MQTT) use it the same way::

    viewer = TokenViewer(ctx_parts, principal, "telemetry", client_ip)   # or SessionViewer(...)
    feed = LiveFeed(hub, viewer, Selection.of(entities, attributes), after_id=last_event_id)
    async for item in feed:          # LiveEvent | Gap | None (None = heartbeat due)
        ...                          # raises FeedClosed(reason) when the viewer lost access

Guarantees:

- **Order and replay.** Events come in event-id order. With ``after_id`` (SSE ``Last-Event-ID``) the feed
  first replays from the table what it missed — at most ``live_replay_max`` log rows; when more were
  missed it yields one :class:`Gap` (``after``, ``resume``) and continues from the newest events.
- **Authorisation per event, with current access.** Before each event and each heartbeat the viewer's
  access is checked; it is re-resolved from the database whenever the process's auth generation moved
  (a revocation, a lost grant, a disabled owner, here, on this host or — over the Redis bus — anywhere)
  or while the auth cache is bypassed, and expiry is checked against the clock. A viewer that lost its
  credential ends the feed with :class:`FeedClosed` at the next event or heartbeat; a value outside the
  viewer's current entities or time windows is skipped.
- **Bounded.** Each feed has a bounded queue; a consumer that falls ``QUEUE_SIZE`` events behind is
  closed (``FeedClosed("slow consumer")``) and can reconnect with its last id. Open feeds per viewer
  key are bounded by :meth:`LiveHub.open` (``live_max_streams_per_credential``, per process).
- **Wake-up.** The hub waits on the process's :class:`~sensorhub.push.hub.EventHub`, told after each
  commit that stored events — in this process, and over Redis for commits in other workers; it also
  polls the log every ``push_poll_seconds`` so a lost notification delays an event, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from anyio import to_thread

from sensorhub.auth.principal import Principal
from sensorhub.auth.resolve import Rejected, resolve_id
from sensorhub.auth.restrictions import RequestFacts
from sensorhub.authz.access import Access
from sensorhub.authz.scope import readable_windows_us
from sensorhub.config import Settings
from sensorhub.db import Database, utcnow
from sensorhub.errors import RateLimited
from sensorhub.push import events
from sensorhub.push.events import EventCursor
from sensorhub.push.hub import EventHub
from sensorhub.push.models import DEFAULT_TOPIC, PushEvent

log = logging.getLogger("sensorhub.push.live")

QUEUE_SIZE = 10_000
READ_BATCH = 500


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One event of the log (the points one request stored into one attribute), detached from any
    session. ``points`` are ``(time_us, value)`` pairs, ascending; :func:`visible_points` cuts them to
    what a viewer may read."""

    id: int
    org_id: str
    workspace_id: str
    entity_id: str  # the public (NGSI-LD) id
    entity_type: str
    attribute: str
    kind: str  # "numeric" | "state"
    unit: str | None
    points: tuple[tuple[int, Any], ...]
    topic: str = DEFAULT_TOPIC  # the Akenza topic of the series (docs/ingest.md#topics)
    extra_types: tuple[str, ...] = ()  # the entity's types after the first (NGSI-LD multi-typed)

    def has_type(self, t: str) -> bool:
        return t == self.entity_type or t in self.extra_types


@dataclass(frozen=True, slots=True)
class Gap:
    """Events with ids in ``(after, resume]`` were not replayed (more than ``live_replay_max``)."""

    after: int
    resume: int


class FeedClosed(Exception):
    """The feed ended: ``reason`` is safe to show to the viewer (no secret, no other tenant)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- what a feed wants --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selection:
    """Which events a feed wants: entities as ``(org_id, entity_id)`` (empty = every entity the viewer
    may see), attribute names (empty = all) and topics (empty = every topic)."""

    entities: frozenset[tuple[str, str]] = frozenset()
    attributes: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()

    def wants(self, ev: LiveEvent) -> bool:
        if self.entities and (ev.org_id, ev.entity_id) not in self.entities:
            return False
        if self.topics and ev.topic not in self.topics:
            return False
        return not self.attributes or ev.attribute in self.attributes


def visible_points(access: Access, ev: LiveEvent) -> list[tuple[int, Any]]:
    """The points of ``ev`` that ``access`` may read: none unless its entity is covered, then those
    whose time lies in one of the entity's readable windows."""
    if not ev.points or not access.allows(ev.org_id, ev.workspace_id, ev.entity_id):
        return []
    windows = readable_windows_us(access, _Tenant(ev.org_id, ev.workspace_id, ev.entity_id))
    if len(windows) == 1 and windows[0][0] <= ev.points[0][0] and ev.points[-1][0] < windows[0][1]:
        return list(ev.points)
    return [p for p in ev.points if any(lo <= p[0] < hi for lo, hi in windows)]


@dataclass(frozen=True, slots=True)
class _Tenant:
    org_id: str
    workspace_id: str
    entity_id: str


# --- who is watching ----------------------------------------------------------------------------------


class Viewer(Protocol):
    """Whose rights a feed acts with. ``key`` bounds open feeds; ``current()`` is the access now, or
    raises :class:`FeedClosed` when there is none any more."""

    key: str

    async def current(self) -> Access: ...


class AuthState(Protocol):
    """The process's auth cache, as far as a viewer needs it (:class:`sensorhub.auth.cache.AuthCache`)."""

    @property
    def generation(self) -> int: ...

    bypass: Callable[[], bool] | None


class TokenViewer:
    """A token holder, with the access its credential has *now* for ``scope`` (narrowed to the tenant
    the request named), its restrictions verified against the client address and the clock."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        cache: AuthState,
        principal: Principal,
        scope: str,
        client_ip: str,
    ) -> None:
        self.db, self.settings, self.cache = db, settings, cache
        self.principal = principal
        self.scope = scope
        self.client_ip = client_ip
        self.key = f"cred:{principal.credential_id}"
        self._generation = cache.generation
        self._closed: str | None = None

    def _stale(self) -> bool:
        bypass = self.cache.bypass
        return self.cache.generation != self._generation or (bypass is not None and bypass())

    def _reload(self) -> None:
        generation = self.cache.generation  # before reading: a change meanwhile reloads again
        with self.db.session() as s:
            try:
                fresh = resolve_id(s, self.principal.credential_id, self.settings, utcnow())
            except Rejected:
                self._closed = "the credential was revoked, has expired or its owner was disabled"
                return
        self.principal = fresh.for_tenant(self.principal.tenant)
        self._generation = generation

    async def current(self) -> Access:
        if self._closed is None and self._stale():
            await to_thread.run_sync(self._reload)
        now = utcnow()
        if self._closed is None and self.principal.is_expired(now):
            self._closed = "the credential has expired"
        if self._closed is None:
            facts = RequestFacts(client_ip=self.client_ip, now=now)
            if not all(r.verify(facts) for r in self.principal.restrictions):
                self._closed = "the credential may no longer be used from this client"
        if self._closed is None and self.scope not in self.principal.scopes:
            self._closed = f"the credential no longer has the scope {self.scope!r}"
        if self._closed is not None:
            raise FeedClosed(self._closed)
        return self.principal.access(self.scope)


class SessionViewer:
    """A logged-in person (the web UI's live view): the access ``load(session)`` gives (empty once the
    web session ended), re-read whenever the auth generation moved and at least every ``recheck``
    seconds (a logout or an expired session ends the feed); a feed with nothing left to read is closed."""

    def __init__(
        self, db: Database, cache: AuthState, user_id: str, load: Callable[[Any], Access], recheck: float
    ) -> None:
        self.db, self.cache, self.load, self.recheck = db, cache, load, recheck
        self.key = f"user:{user_id}"
        self._generation = -1
        self._loaded_at = 0.0
        self._access = Access(())

    def _reload(self) -> None:
        generation = self.cache.generation
        with self.db.session() as s:
            self._access = self.load(s)
        self._generation = generation
        self._loaded_at = time.monotonic()

    async def current(self) -> Access:
        bypass = self.cache.bypass
        if (
            self.cache.generation != self._generation
            or (bypass is not None and bypass())
            or time.monotonic() - self._loaded_at >= self.recheck
        ):
            await to_thread.run_sync(self._reload)
        if self._access.is_empty:
            raise FeedClosed("you may no longer read this data (or your session ended)")
        return self._access


# --- the hub ------------------------------------------------------------------------------------------


def event_of(row: PushEvent) -> LiveEvent:
    return LiveEvent(
        id=int(row.id),
        org_id=row.org_id,
        workspace_id=row.workspace_id,
        entity_id=row.entity_ref,
        entity_type=row.entity_type,
        attribute=row.attribute,
        kind=row.kind,
        unit=row.unit,
        points=tuple(row.point_list()),
        topic=row.topic,
        extra_types=tuple(row.extra_types or ()),
    )


@dataclass(eq=False)
class _Sub:
    selection: Selection
    start: int  # the hub's cursor when the feed opened: newer events arrive through the queue
    queue: asyncio.Queue[LiveEvent | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False

    def offer(self, events: Sequence[LiveEvent]) -> None:
        if self.overflowed:
            return
        for ev in events:
            if not self.selection.wants(ev):
                continue
            try:
                self.queue.put_nowait(ev)
            except asyncio.QueueFull:
                self.overflowed = True
                self.queue.get_nowait()  # make room for the sentinel
                self.queue.put_nowait(None)
                return


class LiveHub:
    """Tails the event log for one process and fans new events out to the open feeds."""

    def __init__(self, db: Database, settings: Settings, events_hub: EventHub) -> None:
        self.db = db
        self.settings = settings
        self.events_hub = events_hub
        self._tail = EventCursor()
        self._subs: set[_Sub] = set()
        self._open: Counter[str] = Counter()
        self._cursor = 0
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Event | None = None

    # -- reading ---------------------------------------------------------------------------------------
    def _read(self, after: int, limit: int) -> list[LiveEvent]:
        with self.db.session() as s:
            return [event_of(r) for r in events.read_since(s, after, limit)]

    async def read(self, after: int, limit: int) -> list[LiveEvent]:
        """Committed events after ``after``, in id order (the replay of a reconnecting feed)."""
        return await to_thread.run_sync(self._read, after, limit)

    def _read_tail(self) -> list[LiveEvent]:
        with self.db.session() as s:
            return [event_of(r) for r in self._tail.read(s, READ_BATCH)]

    def _newest(self) -> int:
        with self.db.session() as s:
            return events.newest_id(s)

    async def _ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._started = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="sensorhub-live-hub")
        assert self._started is not None
        await self._started.wait()

    async def _run(self) -> None:
        assert self._started is not None
        self._cursor = await to_thread.run_sync(self._newest)
        self._tail = EventCursor(self._cursor)
        self._started.set()
        while True:
            # Woken by a commit here or (over Redis) in another process; polls when none arrives.
            await self.events_hub.wait_async(self._cursor, self.settings.push_poll_seconds)
            try:
                await self._catch_up()
            except Exception:  # a failed read is retried at the next wake-up or poll
                log.warning("live hub: could not read the event log", exc_info=True)

    async def _catch_up(self) -> None:
        if not self._subs:
            # Nobody listens: skip ahead instead of reading what no one wants.
            self._tail = EventCursor(max(self._tail.after_id, await to_thread.run_sync(self._newest)))
            self._cursor = self._tail.after_id
            return
        while True:
            # The tail cursor also re-reads ids a transaction committed late (PostgreSQL commits out
            # of id order), so a feed misses nothing committed while it is open.
            batch = await to_thread.run_sync(self._read_tail)
            self._cursor = self._tail.after_id
            if not batch:
                return
            for sub in list(self._subs):
                sub.offer(batch)
            if len(batch) < READ_BATCH:
                return

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- feeds -----------------------------------------------------------------------------------------
    def check_capacity(self, key: str) -> None:
        """Refuse a new feed for ``key`` (429) when it already has the maximum open in this process."""
        limit = self.settings.live_max_streams_per_credential
        if self._open[key] >= limit:
            raise RateLimited(
                f"this credential already has {limit} open live streams on this server "
                "(SENSORHUB_LIVE_MAX_STREAMS_PER_CREDENTIAL): close one first",
                retry_after=5,
            )

    async def _subscribe(self, key: str, selection: Selection) -> _Sub:
        await self._ensure_started()
        try:
            self.check_capacity(key)  # again: feeds opened since the request was checked count too
        except RateLimited as e:
            raise FeedClosed(e.message) from None
        self._open[key] += 1
        sub = _Sub(selection, self._cursor)
        self._subs.add(sub)
        return sub

    def _unsubscribe(self, key: str, sub: _Sub) -> None:
        self._subs.discard(sub)
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]

    @property
    def open_feeds(self) -> int:
        return len(self._subs)


class LiveFeed:
    """One consumer of the hub: ``async for item in feed`` yields :class:`LiveEvent`, :class:`Gap` or
    ``None`` (a heartbeat is due: the viewer's access was just checked). ``await feed.open()`` first
    (optional) subscribes and returns the log position the live part starts after — whatever is
    committed from then on reaches the feed — and checks the viewer once."""

    def __init__(
        self,
        hub: LiveHub,
        viewer: Viewer,
        selection: Selection,
        after_id: int | None = None,
        duration: float | None = None,
    ) -> None:
        self.hub = hub
        self.duration = duration  # seconds after which the feed ends (None: never)
        self._deadline: float | None = None
        self.viewer = viewer
        self.selection = selection
        self.after_id = after_id
        self.heartbeat = hub.settings.live_heartbeat_seconds
        self.last_id = 0
        self._replayed: set[int] = set()
        self._sub: _Sub | None = None

    async def open(self) -> int:
        if self._sub is None:
            await self.viewer.current()
            self._sub = await self.hub._subscribe(self.viewer.key, self.selection)
            if self.duration is not None:
                self._deadline = time.monotonic() + self.duration
        return self._sub.start

    def _wait(self) -> float:
        if self._deadline is None:
            return self.heartbeat
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise FeedClosed("the requested duration has passed")
        return min(self.heartbeat, left)

    def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            self.hub._unsubscribe(self.viewer.key, sub)

    async def __aiter__(self) -> AsyncIterator[LiveEvent | Gap | None]:
        await self.open()
        sub = self._sub
        assert sub is not None
        try:
            self.last_id = sub.start
            if self.after_id is not None and self.after_id < sub.start:
                async for item in self._replay(sub.start):
                    yield item
            while True:
                try:
                    ev = await asyncio.wait_for(sub.queue.get(), self._wait())
                except TimeoutError:
                    self._wait()  # ends the feed once its duration has passed
                    await self.viewer.current()
                    yield None
                    continue
                if ev is None:
                    raise FeedClosed("the client fell too far behind; reconnect with Last-Event-ID")
                if ev.id in self._replayed:
                    continue
                self.last_id = max(self.last_id, ev.id)
                seen = await self._seen(ev)
                if seen is not None:
                    yield seen
        finally:
            self.close()

    async def _seen(self, ev: LiveEvent) -> LiveEvent | None:
        """``ev`` cut to what the viewer may read now (None: nothing of it)."""
        points = visible_points(await self.viewer.current(), ev)
        if not points:
            return None
        return ev if len(points) == len(ev.points) else replace(ev, points=tuple(points))

    async def _replay(self, until: int) -> AsyncIterator[LiveEvent | Gap]:
        assert self.after_id is not None
        cursor, budget = self.after_id, self.hub.settings.live_replay_max
        while cursor < until and budget > 0:
            batch = await self.hub.read(cursor, min(READ_BATCH, budget))
            if not batch:
                break
            budget -= len(batch)
            for ev in batch:
                if ev.id > until:
                    cursor = until
                    break
                cursor = ev.id
                self._replayed.add(ev.id)
                seen = await self._seen(ev) if self.selection.wants(ev) else None
                if seen is not None:
                    yield seen
        if cursor < until:
            yield Gap(after=cursor, resume=until)
        self.last_id = until
