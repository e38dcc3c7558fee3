"""Everything one running app holds: settings, database, caches, limiters, the invalidation bus."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sensorhub.auth.cache import AuthCache
from sensorhub.auth.pipeline import Authenticator
from sensorhub.auth.ratelimit import MemoryRateLimiter, RateLimiter
from sensorhub.auth.usage import UsageTracker
from sensorhub.bus import RedisBus, wire
from sensorhub.config import Settings
from sensorhub.db import Database
from sensorhub.push.hub import EventHub, PushBus
from sensorhub.push.live import LiveHub

EPOCH_FILE = "auth-epoch"


@dataclass
class AppContext:
    settings: Settings
    db: Database
    cache: AuthCache
    limiter: RateLimiter
    usage: UsageTracker
    auth: Authenticator
    # Extra invalidation fan-out (e.g. Redis pub/sub), called after the local cache is cleared.
    broadcasters: list[Callable[[], None]] = field(default_factory=list)
    # The Redis bus when SENSORHUB_REDIS_URL is set; its thread runs with the app (see sensorhub.app).
    bus: RedisBus | None = None
    # New outbox events: waited on by the delivery loop and live streams (sensorhub.push.hub); the
    # Redis relay when SENSORHUB_REDIS_URL is set (its threads run with the app or the worker).
    hub: EventHub = field(default_factory=EventHub)
    push_bus: PushBus | None = None
    # The live feed of this process (SSE streams, sensorhub.push.live); woken after each commit of events.
    live: LiveHub = field(init=False)

    def invalidate_auth(self) -> None:
        """Drop cached credentials here and in every other process. Runs after the commit of every
        transaction marked with :func:`sensorhub.db.auth_changed` (a change to credentials, users,
        memberships, grants, workspaces or policies): registered on the database in :meth:`build`."""
        self.cache.invalidate()
        for b in self.broadcasters:
            b()

    @classmethod
    def build(cls, settings: Settings, db: Database | None = None) -> AppContext:
        db = db or Database(settings)
        epoch = settings.ensure_data_dir() / EPOCH_FILE
        cache = AuthCache(epoch, settings.auth_cache_ttl_seconds)
        limiter: RateLimiter = MemoryRateLimiter()
        bus = None
        if settings.redis_url:
            bus, limiter = wire(settings, cache, limiter)
        usage = UsageTracker(settings.last_used_debounce_seconds)
        auth = Authenticator(settings, db, cache, limiter, usage)
        ctx = cls(settings, db, cache, limiter, usage, auth, bus=bus)
        ctx.live = LiveHub(db, settings, ctx.hub)
        db.auth_listeners.append(ctx.invalidate_auth)
        if bus is not None:
            ctx.broadcasters.append(bus.publish)
        db.event_listeners.append(ctx.hub.committed)
        if settings.redis_url:
            ctx.push_bus = PushBus(settings.redis_url, ctx.hub, settings.redis_prefix)
            ctx.hub.broadcasters.append(ctx.push_bus.publish)
        return ctx
