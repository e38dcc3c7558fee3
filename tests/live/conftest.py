"""A real uvicorn server per test (SSE streams need one: the TestClient buffers whole responses)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from sensorhub.app import create_app
from sensorhub.config import Settings
from sensorhub.context import AppContext
from tests.builders import World


@dataclass
class Server:
    url: str
    ctx: AppContext
    world: World


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(settings: Settings) -> Iterator[Server]:
    import uvicorn

    s = settings.model_copy(
        update={"live_heartbeat_seconds": 0.3, "embedded_worker": False, "push_poll_seconds": 0.5}
    )
    ctx = AppContext.build(s)
    app = create_app(s, ctx)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield Server(f"http://127.0.0.1:{port}", ctx, World(ctx))
    finally:
        srv.should_exit = True
        thread.join(10)
        ctx.db.dispose()


@pytest.fixture
def server(settings: Settings) -> Iterator[Server]:
    with running(settings) as srv:
        yield srv


@pytest.fixture
def other_worker(settings: Settings, server: Server) -> Iterator[Server]:
    """A second server process's worth of state (its own context, caches and live hub) on the same
    database and data directory, as another worker of the same deployment."""
    with running(settings) as srv:
        yield srv
