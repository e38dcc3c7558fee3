"""In-process cache of resolved credentials, with race-free invalidation.

Invalidation is coarse on purpose: any change to credentials, users, memberships, grants or org
policies clears the whole cache (such changes are rare; reads are hot). Three sources bump the
generation:

- this process (after the changing transaction commits),
- other processes on the same host sharing the data directory (an epoch file whose mtime we set;
  one ``stat`` per request),
- other hosts, through the Redis bus when one is configured (see :mod:`sensorhub.bus`).

A lookup records the generation *before* reading the database and the result is only stored if no
invalidation happened meanwhile, so a revocation can never be overwritten by a stale read.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sensorhub import metrics
from sensorhub.auth.principal import Principal


class AuthCache:
    def __init__(self, epoch_file: Path | None, ttl_seconds: float, max_entries: int = 100_000) -> None:
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()
        self._generation = 0
        self._epoch_file = epoch_file
        self._epoch_seen = self._read_epoch()
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self.bypassed = 0
        # When this returns True the cache is out of service: ``get`` misses and ``put`` stores nothing,
        # so every request resolves from the database. The Redis bus sets it while its subscription is
        # not known-healthy — a cache that might not hear about a revocation must not answer.
        self.bypass: Callable[[], bool] | None = None

    def _read_epoch(self) -> int:
        if self._epoch_file is None:
            return 0
        try:
            return os.stat(self._epoch_file).st_mtime_ns
        except FileNotFoundError:
            return 0

    def _sync_epoch(self) -> None:
        epoch = self._read_epoch()
        if epoch != self._epoch_seen:
            with self._lock:
                self._epoch_seen = epoch
                self._generation += 1
                self._entries.clear()

    @property
    def generation(self) -> int:
        self._sync_epoch()
        return self._generation

    def get(self, digest: str) -> Principal | None:
        if self.bypass is not None and self.bypass():
            self.bypassed += 1
            metrics.CACHE_BYPASS.inc()
            return None
        self._sync_epoch()
        item = self._entries.get(digest)
        if item is None:
            self.misses += 1
            metrics.CACHE_MISS.inc()
            return None
        principal, stored = item
        if time.monotonic() - stored > self.ttl:
            self._entries.pop(digest, None)
            self.misses += 1
            metrics.CACHE_MISS.inc()
            return None
        self.hits += 1
        metrics.CACHE_HIT.inc()
        return principal

    def put(self, digest: str, principal: Principal, generation: int) -> None:
        if self.bypass is not None and self.bypass():
            return
        with self._lock:
            if generation != self._generation:
                return  # invalidated while we were reading: the value may be stale
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[digest] = (principal, time.monotonic())

    def clear_local(self) -> None:
        """Drop every entry in this process (used for invalidations received from the bus)."""
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def invalidate(self) -> None:
        """Drop every entry here and tell the other processes on this host."""
        self.clear_local()
        if self._epoch_file is not None:
            self._epoch_file.parent.mkdir(parents=True, exist_ok=True)
            self._epoch_file.touch(exist_ok=True)
            # Set the mtime explicitly and strictly increasing: the kernel's coarse clock could give
            # two invalidations in a row the same mtime, and the second would go unnoticed.
            cur = os.stat(self._epoch_file).st_mtime_ns
            new = max(cur + 1_000, time.time_ns())
            os.utime(self._epoch_file, ns=(new, new))
            with self._lock:
                self._epoch_seen = new
