"""A private PostgreSQL primary and its streaming replica, started from the PostgreSQL binaries in
temporary directories (for the read-replica tests and ``bench/scale/bench_scale.py``).

Both listen on 127.0.0.1 on ports of their own; the replica is made with ``pg_basebackup -R`` and
streams from the primary. As root, the servers run as the ``postgres`` user (``runuser``), which
PostgreSQL requires."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("SENSORHUB_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


class Unavailable(RuntimeError):
    """The PostgreSQL binaries (or the user to run them as) are missing."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class Server:
    data: Path
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        _run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", *args)

    def start(self) -> None:
        opts = f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.data}"
        self.pg_ctl("-o", opts, "start")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "stop")

    def sql(self, statement: str, dbname: str = "postgres") -> str:
        """Run ``statement`` with psql; its unaligned output."""
        where = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", dbname]
        out = subprocess.run(
            [str(PG_BIN / "psql"), *where, "-Atqc", statement],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"psql on port {self.port}: {statement}: {out.stderr.strip()}")
        return out.stdout.strip()


def _run(*cmd: str) -> None:
    r = subprocess.run([*_as_postgres(), *cmd], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stdout}{r.stderr}")


@dataclass
class Cluster:
    primary: Server
    replica: Server

    def url(self, server: Server, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{server.port}/{dbname}"

    def wait_replayed(self, timeout: float = 20.0) -> None:
        """Until the replica has replayed everything the primary has written so far, and its snapshots
        see every transaction the primary had completed: the replay position passing the primary's WAL
        position is not enough, a standby's snapshot can trail it for a moment (seen: ~0.2 s under load)."""
        target = self.primary.sql("SELECT pg_current_wal_lsn()")
        xmax = int(self.primary.sql("SELECT txid_snapshot_xmax(txid_current_snapshot())"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            replayed = self.replica.sql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") == "t"
            if (
                replayed
                and int(self.replica.sql("SELECT txid_snapshot_xmax(txid_current_snapshot())")) >= xmax
            ):
                return
            time.sleep(0.05)
        raise TimeoutError(f"the replica did not replay up to {target} (transactions below {xmax})")

    def pause_replay(self) -> None:
        self.replica.sql("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.replica.sql("SELECT pg_wal_replay_resume()")


@contextmanager
def primary_and_replica(fast: bool = True) -> Iterator[Cluster]:
    """Start a primary and a streaming replica of it; both stopped and deleted at the end. ``fast``:
    fsync off (a scratch cluster nothing survives)."""
    if not (PG_BIN / "initdb").exists() or (os.geteuid() == 0 and shutil.which("runuser") is None):
        raise Unavailable(f"no PostgreSQL binaries in {PG_BIN} (SENSORHUB_TEST_PG_BIN)")
    root = Path(tempfile.mkdtemp(prefix="sensorhub-pgrepl-", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    primary = Server(root / "primary", _free_port(), root / "primary.log")
    replica = Server(root / "replica", _free_port(), root / "replica.log")
    started: list[Server] = []
    try:
        _run(str(PG_BIN / "initdb"), "-D", str(primary.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        settings = ["wal_level = replica", "max_wal_senders = 4", "hot_standby = on"]
        if fast:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with (primary.data / "postgresql.conf").open("a") as f:
            f.write("\n".join(settings) + "\n")
        primary.start()
        started.append(primary)
        _run(
            str(PG_BIN / "pg_basebackup"),
            *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
            *("-D", str(replica.data), "-R", "-X", "stream", "-c", "fast"),
        )
        replica.start()
        started.append(replica)
        deadline = time.monotonic() + 20
        while True:  # a standby accepts connections once it reached a consistent state
            try:
                replica.sql("SELECT 1")
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield Cluster(primary, replica)
    finally:
        for server in reversed(started):
            with contextlib.suppress(RuntimeError):  # already stopped (a test stops the replica)
                server.stop()
        shutil.rmtree(root, ignore_errors=True)
