"""Waking whoever waits for new outbox events: in this process, and in the others over Redis.

The :class:`EventHub` knows the newest committed event id it has heard of. A commit that recorded
events calls :meth:`EventHub.committed` (registered on the database's ``event_listeners`` by the app
context); with Redis configured, :class:`PushBus` publishes that id on ``<redis_prefix>push-events`` and
feeds the ids other processes publish into :meth:`EventHub.notify`. Waiters block in a thread
(:meth:`EventHub.wait`) or await (:meth:`EventHub.wait_async`) until an id above theirs is known or their
timeout passes. Notifications carry no data and may be lost (Redis down, a process started late): every
consumer also polls on a timer, and reads the events themselves from the database
(:func:`sensorhub.push.events.read_since`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

import redis

from sensorhub.bus import make_client

log = logging.getLogger("sensorhub.push")


class EventHub:
    """The newest event id known to this process, waitable from threads and from asyncio."""

    def __init__(self) -> None:
        self._newest = 0
        self._cond = threading.Condition()
        self._async: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        # Called with each locally committed id (the Redis publisher).
        self.broadcasters: list[Callable[[int], None]] = []

    @property
    def newest(self) -> int:
        return self._newest

    def committed(self, newest_id: int) -> None:
        """A transaction of this process committed events up to ``newest_id``."""
        self.notify(newest_id)
        for b in self.broadcasters:
            b(newest_id)

    def notify(self, newest_id: int) -> None:
        """Events up to ``newest_id`` exist (thread-safe; from a commit or from another process)."""
        with self._cond:
            if newest_id <= self._newest:
                return
            self._newest = newest_id
            self._cond.notify_all()
            waiters = list(self._async)
        for loop, ev in waiters:
            with contextlib.suppress(RuntimeError):  # its loop is closed
                loop.call_soon_threadsafe(ev.set)

    def wait(self, after_id: int, timeout: float) -> int:
        """Block until an id above ``after_id`` is known or ``timeout`` seconds pass; the newest id."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._newest <= after_id:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._newest

    async def wait_async(self, after_id: int, timeout: float) -> int:
        """:meth:`wait` for coroutines (does not block the event loop)."""
        if self._newest > after_id:
            return self._newest
        ev = asyncio.Event()
        key = (asyncio.get_running_loop(), ev)
        with self._cond:
            self._async.add(key)
        try:
            deadline = time.monotonic() + timeout
            while self._newest <= after_id:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                ev.clear()
                if self._newest > after_id:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), left)
            return self._newest
        finally:
            with self._cond:
                self._async.discard(key)


class PushBus:
    """Relays event ids between processes over Redis pub/sub (``SENSORHUB_REDIS_URL``).

    Publishing happens on a thread of its own (an ingest request never waits for Redis; ids committed
    meanwhile are coalesced into one message); a second thread subscribes and feeds the hub."""

    def __init__(self, url: str, hub: EventHub, prefix: str = "sensorhub:") -> None:
        self.url = url
        self.hub = hub
        self.channel = f"{prefix}push-events"
        self._pending = 0
        self._published = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def publish(self, newest_id: int) -> None:
        with self._cond:
            if newest_id > self._pending:
                self._pending = newest_id
                self._cond.notify()

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        for target, name in ((self._publisher, "publish"), (self._subscriber, "subscribe")):
            t = threading.Thread(target=target, name=f"sensorhub-push-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    def _publisher(self) -> None:
        client = make_client(self.url, timeout=1.0)
        try:
            while not self._stop.is_set():
                with self._cond:
                    while self._pending <= self._published and not self._stop.is_set():
                        self._cond.wait(1.0)
                    newest = self._pending
                if self._stop.is_set():
                    return
                try:
                    client.publish(self.channel, str(newest))
                    self._published = newest
                except redis.RedisError as e:
                    log.info("push bus publish failed (consumers poll meanwhile): %s", e)
                    self._stop.wait(0.5)
        finally:
            client.close()

    def _subscriber(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            client = make_client(self.url, timeout=2.0)
            ps = client.pubsub()  # type: ignore[no-untyped-call,unused-ignore]
            try:
                ps.subscribe(self.channel)
                backoff = 0.05
                while not self._stop.is_set():
                    msg = ps.get_message(timeout=0.5)
                    if msg is not None and msg["type"] == "message":
                        with contextlib.suppress(ValueError):
                            self.hub.notify(int(msg["data"]))
            except (redis.RedisError, OSError) as e:
                log.info("push bus subscription lost (consumers poll meanwhile): %s", e)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    ps.close()
                    client.close()
