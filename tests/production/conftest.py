"""Fixtures for production-mode tests: fresh PostgreSQL databases, real server subprocesses, a private
redis-server, self-signed certificates."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_SECRET_KEY, service_unavailable

ROOT = Path(__file__).resolve().parents[2]
SENSORHUB = str(Path(sys.executable).parent / "sensorhub")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """A private redis-server we may kill and restart (never the machine's own)."""

    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            service_unavailable(
                "redis-server (binary, for a private Redis)", FileNotFoundError("redis-server")
            )
            return
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a silent network partition)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    r = RedisServer(free_port())
    r.start()
    yield r
    r.kill()


@dataclass
class Server:
    """A real ``sensorhub serve`` subprocess."""

    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log: Path
    scheme: str = "http"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            return self.proc.wait()

    def kill_group(self) -> None:
        """SIGKILL the server and every worker it spawned (its own process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``start_server(env={...}, args=[...])`` → a running server (``/healthz`` answered)."""
    servers: list[Server] = []

    def start(
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        *,
        argv: list[str] | None = None,
        scheme: str = "http",
        verify: Any = False,
        wait: bool = True,
        migrate: bool = False,
    ) -> Server:
        port = free_port()
        data_dir = tmp_path / f"server-{len(servers)}-{port}"
        data_dir.mkdir()
        log = data_dir / "server.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORHUB_")}
        full_env.update({"SENSORHUB_DATA_DIR": str(data_dir), "SENSORHUB_ENV": "test"})
        full_env.update(env or {})
        if "SENSORHUB_DATABASE_URL" in full_env or "SENSORHUB_REDIS_URL" in full_env:
            full_env.setdefault("SENSORHUB_SECRET_KEY", TEST_SECRET_KEY)  # one secret for every host
        cmd = argv or [
            SENSORHUB,
            "serve",
            "--port",
            str(port),
            *([] if migrate else ["--no-migrate"]),
            # MQTT is tested in tests/mqtt; here a server binds no broker port (servers start in parallel)
            *([] if any(a.startswith("--mqtt") for a in args or []) else ["--no-mqtt"]),
            *(args or []),
        ]
        cmd = [c.replace("{port}", str(port)) for c in cmd]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT), start_new_session=True
            )
        srv = Server(port, data_dir, proc, log, scheme)
        servers.append(srv)
        if wait:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"server exited with {proc.returncode}:\n{srv.output()}")
                try:
                    if httpx.get(f"{srv.url}/healthz", timeout=1, verify=verify).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"server did not start:\n{srv.output()}")
                time.sleep(0.05)
        return srv

    yield start
    for s in servers:
        s.stop(signal.SIGTERM, timeout=10)
        s.kill_group()
