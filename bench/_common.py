"""What the benchmarks share: free ports, waiting for a server, the sensorhub CLI, a process's CPU time.

A bench script imports it with ``sys.path.insert(0, str(Path(__file__).resolve().parents[1]))`` then
``import _common`` (the scripts run as ``python bench/<area>/<script>.py``; bench/ is not a package).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SENSORHUB = str(BIN / "sensorhub")
TICK = os.sysconf("SC_CLK_TCK")
PASSWORD = "bench-pass-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 120.0) -> None:
    """Until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def wait_http(url: str, timeout: float = 120.0) -> None:
    """Until ``GET url`` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server at {url} did not come up")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from /proc/<pid>/stat: the server's
    own work, whatever else runs on the machine. Without a pid, this process's."""
    if pid is None:
        return time.process_time()
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def sensorhub(env: dict[str, str], *args: str) -> str:
    """Run the sensorhub CLI with ``env``; its standard output."""
    return subprocess.run([SENSORHUB, *args], env=env, check=True, capture_output=True, text=True).stdout


def token_of(out: str) -> str:
    """The token a CLI command printed."""
    m = re.search(r"shub_\w+", out)
    if m is None:
        raise SystemExit(f"no token in: {out!r}")
    return m.group(0)


def create_owner(
    env: dict[str, str], email: str = "b@example.com", org: str = "bench", workspace: str | None = "main"
) -> None:
    """A person who owns organisation ``org`` (with ``workspace``, unless None)."""
    ws = ["--workspace", workspace] if workspace else []
    sensorhub(
        env,
        "admin",
        "create-user",
        "--email",
        email,
        "--password",
        PASSWORD,
        "--org",
        org,
        "--role",
        "owner",
        *ws,
    )


def create_token(env: dict[str, str], scopes: str, email: str = "b@example.com", name: str = "bench") -> str:
    """A PAT of ``email`` with ``scopes`` (comma-separated, as the CLI takes them)."""
    return token_of(
        sensorhub(env, "admin", "create-token", "--email", email, "--name", name, "--scopes", scopes)
    )


def start_sensorhub(
    env: dict[str, str], port: int, *extra: str, log: Path | None = None, wait: bool = True
) -> subprocess.Popen[bytes]:
    """``sensorhub serve`` on 127.0.0.1:``port`` without the MQTT listener (``extra``: more options),
    its output to ``log`` (or nowhere); waits until it accepts connections unless ``wait`` is False."""
    out = log.open("wb") if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(
        [SENSORHUB, "serve", "--port", str(port), "--log-level", "warning", "--no-mqtt", *extra],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
    )
    if wait:
        wait_port(port)
    return proc


def scratch_postgres(env: dict[str, str], pg_admin: str, prefix: str) -> str:
    """Create a scratch PostgreSQL database next to ``pg_admin``'s and point ``env`` at it (with the
    secret key PostgreSQL deployments require); its name, for :func:`drop_scratch_postgres`."""
    import uuid

    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    env["SENSORHUB_DATABASE_URL"] = pg_admin.rsplit("/", 1)[0] + "/" + name
    env.setdefault("SENSORHUB_SECRET_KEY", uuid.uuid4().hex * 2)
    return name


def drop_scratch_postgres(pg_admin: str, name: str | None) -> None:
    if name:
        import psycopg

        with psycopg.connect(pg_admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_victoria_metrics(tmp: Path, port: int, *, cache: bool = True) -> subprocess.Popen[bytes]:
    """VictoriaMetrics (Debian's ``victoria-metrics``) on a scratch directory under ``tmp``, listening on
    127.0.0.1:``port``; ``cache=False`` turns its query cache off (``-search.disableCache``)."""
    args = [
        "victoria-metrics",
        f"-storageDataPath={tmp}/vm",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-retentionPeriod=100y",
        "-loggerLevel=ERROR",
    ]
    if not cache:
        args.append("-search.disableCache")
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Terminate each process, killing one that does not stop within 15 s."""
    for p in procs:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
