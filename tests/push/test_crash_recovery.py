"""At least once across kill -9: a real ``sensorhub serve`` is killed during a burst of backfills and
restarted (now with its jobs in two ``sensorhub worker`` processes); every accepted point still reaches
the receiver, and the idempotency keys let the receiver drop the repeats a crash can cause."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sensorhub.accounts.models import User
from sensorhub.accounts.service import get_org
from sensorhub.config import Settings
from sensorhub.context import AppContext
from tests.builders import World
from tests.production.conftest import SENSORHUB, free_port
from tests.push.conftest import Receiver, connector_with_rules

DEV = "urn:ngsi-ld:Device:crash-1"
FAST_ENV = {
    "SENSORHUB_ENV": "test",
    "SENSORHUB_PUSH_ALLOW_PRIVATE_TARGETS": "1",
    "SENSORHUB_PUSH_POLL_SECONDS": "0.05",
    "SENSORHUB_PUSH_RETRY_BASE_SECONDS": "0.05",
    "SENSORHUB_PUSH_RETRY_MAX_SECONDS": "0.2",
    "SENSORHUB_PUSH_LEASE_SECONDS": "2",
}


class Procs:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORHUB_")}
        env.update(FAST_ENV, SENSORHUB_DATA_DIR=str(self.settings.data_dir), **extra)
        if self.settings.database_url:
            env["SENSORHUB_DATABASE_URL"] = self.settings.database_url
            env["SENSORHUB_SECRET_KEY"] = str(self.settings.secret_key)
        return env

    def start(self, args: list[str], log: Path, **extra: str) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            p = subprocess.Popen(
                [SENSORHUB, *args],
                env=self.env(**extra),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(p)
        return p

    def kill(self, p: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)


@pytest.fixture
def procs(settings: Settings) -> Iterator[Procs]:
    ps = Procs(settings)
    yield ps
    for p in ps.procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                ps.kill(p)


def _wait_up(url: str, p: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert p.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_kill_9_during_a_burst_then_restart_delivers_every_accepted_point(
    settings: Settings, ctx: AppContext, world: World, receiver: Receiver, procs: Procs, tmp_path: Path
) -> None:
    world.org("acme")
    world.entity("acme", "main", DEV)
    owner = world.user("owner@acme.test", "acme", role="owner")
    key = world.api_key("acme", scopes=["ingest"])
    with ctx.db.transaction() as s:
        org = get_org(s, "acme")
        user = s.get(User, owner.id)
        assert user is not None
        connector_with_rules(s, org, user, settings, "webhook", "hook", {"url": receiver.url})
    log = tmp_path / "server.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = procs.start(["serve", "--port", str(port), "--no-migrate", "--no-mqtt"], log)
    _wait_up(url, server, log)

    accepted: list[float] = []
    stop = threading.Event()

    def burst(start: int, n: int) -> None:
        with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=5) as http:
            for i in range(start, start + n):
                if stop.is_set():
                    return
                body = {"timestamp": f"2026-01-01T{i // 60:02d}:{i % 60:02d}:00Z", "data": {"v": float(i)}}
                try:
                    r = http.post(f"/v3/devices/{DEV}/backfill", json=body)
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200 and r.json()["accepted"] == 1:
                    accepted.append(float(i))

    t = threading.Thread(target=burst, args=(0, 400))
    t.start()
    deadline = time.monotonic() + 30
    while len(accepted) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    procs.kill(server)  # kill -9 in the middle of the burst (and of deliveries)
    stop.set()
    t.join(10)
    killed_at = len(accepted)
    assert killed_at >= 40

    # Restart: the API without its embedded jobs, and two workers sharing them.
    server = procs.start(
        ["serve", "--port", str(port), "--no-migrate", "--no-mqtt"], log, SENSORHUB_EMBEDDED_WORKER="0"
    )
    for _ in range(2):
        procs.start(["worker"], tmp_path / "worker.log")
    _wait_up(url, server, log)
    stop.clear()
    burst(1000, 30)

    def delivered() -> dict[str, list[float]]:
        by_key: dict[str, list[float]] = {}
        for m in receiver.received:
            p = m.json()
            by_key[p["id"]] = [pt["value"] for d in p["data"] for pt in d["points"]]
        return by_key

    receiver.wait_for(lambda _r: set(accepted) <= {v for vs in delivered().values() for v in vs}, timeout=40)
    got = delivered()
    values = [v for vs in got.values() for v in vs]
    assert set(accepted) <= set(values)
    # Repeats only ever carry a key seen before (the receiver drops them); deliveries made after the
    # restart, shared by two workers, arrive once each.
    keys = [m.json()["id"] for m in receiver.received]
    after = [k for k, vs in got.items() if min(vs) >= 1000]
    assert after and all(keys.count(k) == 1 for k in after)
