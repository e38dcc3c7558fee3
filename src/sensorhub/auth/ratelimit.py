"""Fixed-window rate limits (per credential, and failed authentications per client IP).

The in-process limiter serves the embedded mode; :mod:`sensorhub.bus` provides a Redis one that all
workers share. Both implement :class:`RateLimiter`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol


def clock() -> float:
    """Wall-clock seconds; one place to read it (tests pin it inside a window)."""
    return time.time()


def fixed_window(window_seconds: int) -> tuple[int, int]:
    """``(start, end)`` in epoch seconds of the current window of ``window_seconds``."""
    now = int(clock())
    start = now - now % window_seconds
    return start, start + window_seconds


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # epoch seconds when the window ends

    @property
    def retry_after(self) -> int:
        return max(1, self.reset_at - int(clock()))

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


class RateLimiter(Protocol):
    def hit(self, key: str, limit: int, window_seconds: int, cost: int = 1) -> RateDecision: ...

    def peek(self, key: str, limit: int, window_seconds: int) -> RateDecision: ...


class MemoryRateLimiter:
    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self._last_sweep = 0

    def _sweep(self, now: int) -> None:
        if now - self._last_sweep < 60:
            return
        self._last_sweep = now
        self._counts = {k: v for k, v in self._counts.items() if k[1] >= now - 3600}

    def hit(self, key: str, limit: int, window_seconds: int, cost: int = 1) -> RateDecision:
        start, end = fixed_window(window_seconds)
        with self._lock:
            self._sweep(start)
            n = self._counts.get((key, start), 0) + cost
            self._counts[(key, start)] = n
        return RateDecision(n <= limit, limit, max(0, limit - n), end)

    def peek(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        start, end = fixed_window(window_seconds)
        n = self._counts.get((key, start), 0)
        return RateDecision(n < limit, limit, max(0, limit - n), end)
