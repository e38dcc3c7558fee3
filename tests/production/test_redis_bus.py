"""The Redis bus and shared rate limits, in process (the multi-server tests are in test_multiworker.py)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sensorhub.app import create_app
from sensorhub.auth.cache import AuthCache
from sensorhub.auth.ratelimit import MemoryRateLimiter
from sensorhub.bus import RedisBus, RedisRateLimiter, make_client
from sensorhub.config import Settings
from sensorhub.context import AppContext
from tests.builders import World, bearer, login
from tests.conftest import TEST_SECRET_KEY
from tests.production.conftest import free_port

pytestmark = pytest.mark.redis


def _prefix() -> str:
    return f"sensorhub-test-{uuid.uuid4().hex[:10]}:"


def test_redis_rate_limiter_has_the_memory_semantics(redis_url: str) -> None:
    redis_limiter = RedisRateLimiter(make_client(redis_url), _prefix(), MemoryRateLimiter())
    memory = MemoryRateLimiter()
    for limiter in (redis_limiter, memory):
        # Stay inside one 60 s window for the whole sequence.
        while int(time.time()) % 60 > 55:
            time.sleep(0.5)
        got = [limiter.hit("cred:a", 3, 60) for _ in range(4)]
        assert [d.allowed for d in got] == [True, True, True, False]
        assert [d.remaining for d in got] == [2, 1, 0, 0]
        assert got[0].reset_at % 60 == 0 and got[0].reset_at > time.time()
        assert limiter.peek("cred:a", 3, 60).allowed is False
        assert limiter.peek("cred:b", 3, 60).allowed is True
        assert limiter.hit("cred:b", 10, 60, cost=4).remaining == 6


def test_rate_limits_are_shared_between_workers(redis_url: str) -> None:
    prefix = _prefix()
    w1 = RedisRateLimiter(make_client(redis_url), prefix, MemoryRateLimiter())
    w2 = RedisRateLimiter(make_client(redis_url), prefix, MemoryRateLimiter())
    while int(time.time()) % 60 > 55:
        time.sleep(0.5)
    for _ in range(5):
        w1.hit("authfail:198.51.100.7", 8, 60)
    assert w2.hit("authfail:198.51.100.7", 8, 60).remaining == 2
    assert w2.peek("authfail:198.51.100.7", 8, 60).remaining == 2


def test_rate_limiter_falls_back_in_process_when_redis_is_away() -> None:
    fallback = MemoryRateLimiter()
    limiter = RedisRateLimiter(make_client(f"redis://127.0.0.1:{free_port()}/0"), _prefix(), fallback)
    t0 = time.monotonic()
    decisions = [limiter.hit("cred:x", 2, 60) for _ in range(50)]
    assert time.monotonic() - t0 < 1.0  # one failed attempt, then the in-process limiter directly
    assert [d.allowed for d in decisions[:3]] == [True, True, False]
    assert fallback.peek("cred:x", 2, 60).allowed is False


def test_a_late_heartbeat_does_not_split_the_shared_counts(redis_url: str) -> None:
    """The cache stops trusting itself at the first late heartbeat (a revocation could be missed), but the
    limiter keeps counting in Redis: moving to the in-process fallback for a moment and back would split
    an address's failed-authentication count (one client's 429 becoming a 401)."""
    from sensorhub.bus import wire

    s = Settings(data_dir=Path("/nonexistent"), redis_url=redis_url, redis_prefix=_prefix())
    fallback = MemoryRateLimiter()
    bus, limiter = wire(s, AuthCache(None, 60), fallback)
    # The bus thread is not started: its heartbeat is set by hand. The last one answered 1 s ago, late
    # for the cache (stale after 0.75 s) but not for the limiter.
    bus._last_pong = time.monotonic() - 4 * bus.stale_after / 3
    assert not bus.healthy() and bus.reachable()
    while int(time.time()) % 60 > 55:
        time.sleep(0.5)
    assert [limiter.hit("authfail:203.0.113.9", 1, 60).allowed for _ in range(2)] == [True, False]
    assert fallback.peek("authfail:203.0.113.9", 1, 60).allowed  # nothing counted in-process
    bus._last_pong = time.monotonic() - 60  # Redis silent for a minute: the fallback counts
    assert not bus.reachable()
    assert limiter.hit("authfail:203.0.113.9", 1, 60).allowed
    assert not fallback.peek("authfail:203.0.113.9", 1, 60).allowed
    bus.client.close()


def test_bus_clears_the_other_workers_cache(redis_url: str, tmp_path: Path) -> None:
    prefix = _prefix()
    caches = [AuthCache(None, 60), AuthCache(None, 60)]
    buses = [RedisBus(redis_url, c, prefix) for c in caches]
    for c, b in zip(caches, buses, strict=True):
        c.bypass = b.bypass
        b.start()
    try:
        deadline = time.monotonic() + 5
        while not all(b.healthy() for b in buses):
            assert time.monotonic() < deadline, [b.probe() for b in buses]
            time.sleep(0.01)
        sentinel = object()
        caches[1].put("digest", sentinel, caches[1].generation)  # type: ignore[arg-type]
        assert caches[1].get("digest") is sentinel
        t0 = time.monotonic()
        caches[0].invalidate()
        buses[0].publish()
        while caches[1].get("digest") is not None:
            assert time.monotonic() - t0 < 1.0
            time.sleep(0.002)
        print(f"bus latency in process: {(time.monotonic() - t0) * 1000:.1f} ms")
    finally:
        for b in buses:
            b.stop()


def test_without_redis_tokens_resolve_from_the_database_and_readyz_says_degraded(tmp_path: Path) -> None:
    """Redis unreachable from the start: requests are served correctly (no cache), /readyz stays 200."""
    settings = Settings(
        data_dir=tmp_path,
        env="test",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        redis_prefix=_prefix(),
        secret_key=TEST_SECRET_KEY,
    )
    ctx = AppContext.build(settings)
    from sensorhub.migrate import upgrade

    upgrade(ctx.db)
    w = World(ctx)
    w.org("acme")
    w.user("ana@example.com", "acme", "member")
    with TestClient(create_app(settings, ctx)) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["redis"]["status"] == "degraded"
        assert ready.json()["checks"]["database"]["status"] == "ok"
        login(c, "ana@example.com")
        created = c.post("/api/tokens", json={"name": "n", "scopes": ["entities"]}).json()
        api = TestClient(c.app)
        for _ in range(3):
            assert api.get("/api/tokens/self", headers=bearer(created["token"])).status_code == 200
        assert ctx.cache.hits == 0 and ctx.cache.bypassed >= 3
        assert c.delete(f"/api/tokens/{created['id']}").status_code == 200
        assert api.get("/api/tokens/self", headers=bearer(created["token"])).status_code == 401
    ctx.db.dispose()


def test_with_redis_the_cache_serves_and_readyz_is_ok(redis_url: str, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, env="test", redis_url=redis_url, redis_prefix=_prefix(), secret_key=TEST_SECRET_KEY
    )
    ctx = AppContext.build(settings)
    from sensorhub.migrate import upgrade

    upgrade(ctx.db)
    w = World(ctx)
    w.org("acme")
    w.user("ana@example.com", "acme", "member")
    token = w.pat("ana@example.com", ["entities"])
    with TestClient(create_app(settings, ctx)) as c:
        ready = c.get("/readyz").json()
        assert ready["status"] == "ok" and ready["checks"]["redis"]["status"] == "ok", ready
        for _ in range(3):
            assert c.get("/api/tokens/self", headers=bearer(token)).status_code == 200
        assert ctx.cache.hits >= 2
    assert ctx.bus is not None and not ctx.bus.healthy()  # stopped with the app
    ctx.db.dispose()
