"""Production mode with Redis: the auth invalidation bus and shared rate limits.

Enabled by ``SENSORHUB_REDIS_URL``; without it the embedded in-process mechanisms serve (local cache
invalidation + the same-host epoch file, :class:`~sensorhub.auth.ratelimit.MemoryRateLimiter`).

**Invalidation.** Every change to credentials, users, memberships, grants or policies calls
``AppContext.invalidate_auth`` after commit, which clears the local cache and PUBLISHes on
``<redis_prefix>auth-invalidate``. Every worker runs one subscriber thread that clears its local cache on
each message, so a revocation reaches all workers in one Redis round trip (milliseconds).

**Never trust a cache that cannot be told.** The cache is used only while the subscription is
*known-healthy*: subscribed, and a heartbeat PING answered within the last 3 heartbeat intervals
(``SENSORHUB_REDIS_HEARTBEAT_SECONDS``, 0.25 s → 0.75 s). Otherwise :attr:`AuthCache.bypass` is on and
every request resolves its credential from the database. When the subscription is (re)established the
local cache is cleared once (messages may have been missed meanwhile) and caching resumes. A publish
that fails is retried after the next successful (re)subscription, for workers that never lost Redis.

**Rate limits** are fixed windows shared by all workers (INCRBY + EXPIREAT on
``<redis_prefix>rl:<key>:<window start>``), the same semantics as the in-process limiter. While Redis is
unusable they fall back to the in-process limiter (per-worker budgets, so a client may get up to N times the
limit across N workers during the outage) instead of failing requests.

The debounced ``last_used`` writes stay per process (each worker writes at most once per debounce
interval per credential; the database keeps the latest).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sensorhub import metrics
from sensorhub.auth.cache import AuthCache
from sensorhub.auth.ratelimit import RateDecision, RateLimiter, fixed_window
from sensorhub.config import Settings

log = logging.getLogger("sensorhub.bus")

HEARTBEAT = b"sensorhub-hb"


def make_client(url: str, timeout: float = 0.25) -> redis.Redis:
    """A client that fails fast and never retries on its own: callers decide what a failure means."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


class RedisBus:
    """Publishes auth invalidations and applies the ones it receives to the local :class:`AuthCache`."""

    def __init__(
        self, url: str, cache: AuthCache, prefix: str = "sensorhub:", heartbeat: float = 0.25
    ) -> None:
        self.url = url
        self.channel = f"{prefix}auth-invalidate"
        self.cache = cache
        self.heartbeat = heartbeat
        self.stale_after = 3 * heartbeat
        self.client = make_client(url)
        self.sender = secrets.token_hex(8).encode()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscribed = False
        self._last_pong = 0.0
        self._pending_publish = False
        self.last_error: str | None = None
        self._warned = False
        self.received = 0
        self.subscriptions = 0

    # -- state ---------------------------------------------------------------------------------------
    def healthy(self) -> bool:
        """Subscribed, and Redis answered a heartbeat recently: a revocation would reach us."""
        return self._subscribed and time.monotonic() - self._last_pong < self.stale_after

    def reachable(self) -> bool:
        """Redis answered a heartbeat within the last few seconds: what the shared rate limiter needs.
        Looser than :meth:`healthy` on purpose: one late heartbeat (a busy process) must not move the
        limiter's counting to the in-process fallback and back, splitting an address's or a credential's
        count between the two (a real outage still falls back after the first failed command)."""
        return self._last_pong > 0 and time.monotonic() - self._last_pong < max(5.0, 20 * self.heartbeat)

    def bypass(self) -> bool:
        """For :attr:`AuthCache.bypass`: the cache may not answer while we could miss an invalidation."""
        return not self.healthy()

    def probe(self) -> dict[str, Any]:
        """Readiness entry. Redis down is *degraded*, not an error: every worker still serves correctly
        (credentials from the database, in-process rate limits)."""
        if self.healthy():
            age = time.monotonic() - self._last_pong
            return {"status": "ok", "subscribed": True, "heartbeat_age_ms": round(age * 1000, 1)}
        return {
            "status": "degraded",
            "subscribed": False,
            "error": self.last_error or "not connected yet",
            "auth_cache": "bypassed: credentials are resolved from the database on every request",
            "rate_limits": "in-process (per worker)",
        }

    # -- publishing ----------------------------------------------------------------------------------
    def publish(self) -> None:
        """Broadcaster for ``AppContext.broadcasters`` (the local cache is already cleared)."""
        try:
            self.client.publish(self.channel, self.sender)
            self._pending_publish = False
        except redis.RedisError as e:
            # Workers that lost Redis too are bypassing their caches; the ones that did not will get
            # this invalidation when we are connected again.
            self._pending_publish = True
            log.warning("could not publish an auth invalidation (will retry on reconnect): %s", e)

    # -- subscriber thread ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sensorhub-redis-bus", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._subscribed = False
        self.client.close()

    def _on_subscribed(self) -> None:
        # Anything published while we were away is lost: forget everything once, then trust the bus.
        self.cache.clear_local()
        self._last_pong = time.monotonic()
        self._subscribed = True
        self.subscriptions += 1
        if self._warned:
            log.warning("redis bus subscribed again; auth cache resumed")
        self._warned = False
        self.last_error = None
        if self._pending_publish:
            self.publish()

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            client: redis.Redis | None = None
            ps: Any = None
            try:
                client = make_client(self.url, timeout=max(1.0, self.stale_after))
                ps = client.pubsub()  # type: ignore[no-untyped-call,unused-ignore]
                self._subscribe(ps)
                self._on_subscribed()
                backoff = 0.05
                self._listen(ps)
            except Exception as e:  # any failure: bypass the cache and reconnect
                # A lost link that comes straight back (e.g. a heartbeat missed while the process was
                # busy) is routine; a reconnect that fails too is worth a warning, once per outage.
                if self._subscribed:
                    log.info("redis bus link lost, reconnecting (auth cache bypassed meanwhile): %s", e)
                elif not self._warned:
                    log.warning("redis bus unavailable, auth cache bypassed until it is back: %s", e)
                    self._warned = True
                self._subscribed = False
                self.last_error = f"{type(e).__name__}: {e}"[:200]
                self.cache.clear_local()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)
            finally:
                _close(ps, client)
        self._subscribed = False

    def _subscribe(self, ps: Any) -> None:
        """Subscribe and wait (at most 2 s) for Redis to confirm."""
        ps.subscribe(self.channel)
        deadline = time.monotonic() + 2.0
        while True:
            msg = ps.get_message(timeout=0.1)
            if msg is not None and msg["type"] == "subscribe":
                return
            if time.monotonic() > deadline:
                raise TimeoutError("no subscribe confirmation from redis")

    def _listen(self, ps: Any) -> None:
        next_ping = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_ping:
                ps.ping(HEARTBEAT)
                next_ping = now + self.heartbeat
            if now - self._last_pong > self.stale_after:
                raise TimeoutError(f"no heartbeat answer for {now - self._last_pong:.2f}s")
            msg = ps.get_message(timeout=max(0.0, min(self.heartbeat, next_ping - now)))
            if msg is None:
                continue
            kind = msg["type"]
            if kind == "message":
                self.received += 1
                if msg["data"] != self.sender:
                    self.cache.clear_local()
                    metrics.auth_invalidations.labels("bus").inc()
            elif kind == "pong":
                self._last_pong = time.monotonic()
            elif kind == "subscribe":
                self._on_subscribed()


def _close(ps: Any, client: redis.Redis | None) -> None:
    try:
        if ps is not None:
            ps.close()
        if client is not None:
            client.close()
    except Exception:  # noqa: S110  (closing a broken link may fail; there is nothing to do about it)
        pass


class RedisRateLimiter:
    """Fixed windows shared by every worker; falls back to ``fallback`` while Redis is unusable."""

    def __init__(self, client: redis.Redis, prefix: str, fallback: RateLimiter, usable: Any = None) -> None:
        self.client = client
        self.prefix = f"{prefix}rl:"
        self.fallback = fallback
        self.usable = usable  # () -> bool, e.g. the bus's health; None = always try Redis
        self._down_until = 0.0

    def _try_redis(self) -> bool:
        if time.monotonic() < self._down_until:
            return False
        return self.usable is None or bool(self.usable())

    def _failed(self, e: Exception) -> None:
        # Do not pay a timeout on every request while Redis is away.
        self._down_until = time.monotonic() + 1.0
        log.warning("redis rate limiter unavailable, using in-process limits: %s", e)

    def hit(self, key: str, limit: int, window_seconds: int, cost: int = 1) -> RateDecision:
        if not self._try_redis():
            return self.fallback.hit(key, limit, window_seconds, cost)
        start, end = fixed_window(window_seconds)
        k = f"{self.prefix}{key}:{start}"
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.incrby(k, cost)
            pipe.expireat(k, end + 1)
            n, _ = pipe.execute()
        except redis.RedisError as e:
            self._failed(e)
            return self.fallback.hit(key, limit, window_seconds, cost)
        n = int(n)
        return RateDecision(n <= limit, limit, max(0, limit - n), end)

    def peek(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        if not self._try_redis():
            return self.fallback.peek(key, limit, window_seconds)
        start, end = fixed_window(window_seconds)
        try:
            raw = self.client.get(f"{self.prefix}{key}:{start}")
        except redis.RedisError as e:
            self._failed(e)
            return self.fallback.peek(key, limit, window_seconds)
        n = int(raw) if raw is not None else 0
        return RateDecision(n < limit, limit, max(0, limit - n), end)


def wire(settings: Settings, cache: AuthCache, fallback: RateLimiter) -> tuple[RedisBus, RedisRateLimiter]:
    """Build the bus and the shared limiter for ``AppContext.build`` (the thread starts with the app)."""
    assert settings.redis_url
    bus = RedisBus(settings.redis_url, cache, settings.redis_prefix, settings.redis_heartbeat_seconds)
    cache.bypass = bus.bypass
    limiter = RedisRateLimiter(bus.client, settings.redis_prefix, fallback, usable=bus.reachable)
    return bus, limiter
