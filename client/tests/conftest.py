"""Fixtures: a fake server, a client wired to it, recorded retry waits, a clean environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sdk_fakes import BASE, TOKEN, FakeServer

import sensorhub_client as sc
from sensorhub_client import _retry


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def client(server: FakeServer) -> Iterator[sc.Client]:
    with sc.Client(base_url=BASE, token=TOKEN, transport=server.transport()) as c:
        yield c


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the client's waits between retries instead of sleeping."""
    recorded: list[float] = []

    def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)

    async def fake_async_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(_retry, "sleep", fake_sleep)
    monkeypatch.setattr(_retry, "async_sleep", fake_async_sleep)
    return recorded


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests decide the environment; a developer's real SENSORHUB_* variables must not leak in."""
    monkeypatch.delenv("SENSORHUB_TOKEN", raising=False)
    monkeypatch.delenv("SENSORHUB_URL", raising=False)
