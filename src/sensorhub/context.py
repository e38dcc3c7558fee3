"""Everything one running app holds: settings, database, caches, limiters, the invalidation bus."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sensorhub.auth.cache import AuthCache
from sensorhub.auth.pipeline import Authenticator
from sensorhub.auth.ratelimit import MemoryRateLimiter, RateLimiter
from sensorhub.auth.usage import UsageTracker
from sensorhub.config import Settings
from sensorhub.db import Database

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
    # The Redis bus (sensorhub.bus.RedisBus) when SENSORHUB_REDIS_URL is set; its thread runs with the app.
    bus: Any = None

    def invalidate_auth(self) -> None:
        """Called after any committed change to credentials, users, memberships, grants or policies."""
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
            from sensorhub.bus import wire

            bus, limiter = wire(settings, cache, limiter)
        usage = UsageTracker(settings.last_used_debounce_seconds)
        auth = Authenticator(settings, db, cache, limiter, usage)
        ctx = cls(settings, db, cache, limiter, usage, auth, bus=bus)
        if bus is not None:
            ctx.broadcasters.append(bus.publish)
        return ctx
