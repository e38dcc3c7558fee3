"""Offset → keyset translation for clients that page with ``offset`` instead of the Link cursor.

Every page served records where the *next* offset starts (its last key). A later request for that offset
with the same credential and query seeks straight to the key instead of skipping rows, so a client walking
``offset=0, 100, 200 …`` costs the same at any depth. Entries are per process, short-lived, and dropped on
any entity write in this process; a stale entry behaves like a keyset cursor (no duplicates or gaps when
entities were added or removed meanwhile), which is what offset paging over a changing set cannot promise.

The key holds the credential, its complete access rules and the parsed query, so an anchor is never
shared between readers who could see different rows (nor between two integrations of one organisation).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable

MAX_ENTRIES = 20_000
TTL_SECONDS = 300.0

Anchor = tuple[str, str]  # (entity_id, org_id): the last key before the offset


class AnchorCache:
    def __init__(self, max_entries: int = MAX_ENTRIES, ttl: float = TTL_SECONDS) -> None:
        self.max = max_entries
        self.ttl = ttl
        self._d: OrderedDict[Hashable, tuple[Anchor, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Anchor | None:
        with self._lock:
            hit = self._d.get(key)
            if hit is None:
                return None
            if hit[1] < time.monotonic():
                del self._d[key]
                return None
            self._d.move_to_end(key)
            return hit[0]

    def put(self, key: Hashable, anchor: Anchor) -> None:
        with self._lock:
            self._d[key] = (anchor, time.monotonic() + self.ttl)
            self._d.move_to_end(key)
            while len(self._d) > self.max:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


ANCHORS = AnchorCache()
