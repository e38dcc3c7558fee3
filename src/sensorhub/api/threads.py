"""Database work of ``async`` routes, off the event loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from anyio import to_thread
from fastapi import Request
from sqlalchemy.orm import Session

from sensorhub.api.deps import ctx

T = TypeVar("T")


async def read(request: Request, fn: Callable[[Session], T]) -> T:
    """Run ``fn`` with a read session in one worker-thread hop (hot read paths: no write lock, no
    commit; authentication stays async)."""
    db = ctx(request).db

    def work() -> T:
        with db.session() as s:
            return fn(s)

    return await to_thread.run_sync(work)
