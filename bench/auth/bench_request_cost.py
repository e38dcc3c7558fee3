"""Server CPU per request of sensorhub's token routes against the framework floor (issue 17's target:
a token-authenticated small JSON route ≤ 3× the CPU of a bare Starlette "hello" app, access log on).

Starts, in one run, three servers, each one uvicorn worker with its access log on (level info):
- a bare Starlette app answering ``GET /hello`` (``bench/auth/floor_apps.py``),
- the same with FastAPI,
- a real ``sensorhub serve`` (SQLite in a scratch data dir, ``--no-mqtt``, default log level) with a PAT
  made by ``sensorhub admin create-token`` (and, with ``--postgres``, the same on PostgreSQL — a scratch
  database on 127.0.0.1:5432 —; with ``--compare-src``, the same from another checkout, in a data dir
  of its own),
and drives them interleaved (round after round, each target in turn) with the same load: ``wrk`` (one
thread, 16 connections), or an httpx loop when wrk is missing (the script says which). The figure is the
**server's CPU time per request**, from ``/proc/<pid>/stat`` (user + system of the whole server
process, its threads included) before and after each run: robust to other load on the machine, unlike
requests/s (reported too). Medians over the rounds.

Usage: .venv/bin/python bench/auth/bench_request_cost.py [--seconds 4] [--rounds 3] [--postgres]
       [--compare-src /path/to/other/checkout --compare-label before]   # a second sensorhub, same run
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common
import _common

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    label: str
    url: str
    pid: int
    headers: dict[str, str] = field(default_factory=dict)
    cpu_us: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)


def drive_wrk(t: Target, seconds: float) -> int:
    cmd = ["wrk", "-t1", "-c16", f"-d{max(1, round(seconds))}s"]
    for k, v in t.headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, t.url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        sys.exit(f"{t.label}: non-2xx answers under load:\n{out}")
    m = re.search(r"(\d+) requests in", out)
    assert m, out
    return int(m.group(1))


def drive_httpx(t: Target, seconds: float) -> int:
    n = 0
    end = time.monotonic() + seconds
    with httpx.Client(headers=t.headers) as c:
        while time.monotonic() < end:
            r = c.get(t.url)
            assert r.status_code == 200, (t.label, r.status_code, r.text)
            n += 1
    return n


def make_token(env: dict[str, str]) -> str:
    _common.create_owner(env, workspace=None)
    return _common.create_token(env, "timeseries")


QUIET: dict[str, int] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def start(args: argparse.Namespace, env: dict[str, str], servers: list[Any]) -> list[Target]:
    """Start the floor apps and the sensorhub server(s), one at a time; Starlette's target first."""
    targets: list[Target] = []
    for name, app in (("Starlette hello", "starlette_app"), ("FastAPI hello", "fastapi_app")):
        port = _common.free_port()
        uv = [str(BIN / "uvicorn"), f"floor_apps:{app}", "--app-dir", str(HERE), "--port", str(port)]
        p = subprocess.Popen([*uv, "--log-level", "info"], env=env, **QUIET)  # type: ignore[call-overload]
        servers.append(p)
        targets.append(Target(name, f"http://127.0.0.1:{port}/hello", p.pid))
        _common.wait_http(targets[-1].url)
    sensorhubs = [("sensorhub", env)]
    if args.pg_url:  # the same server on PostgreSQL
        pg = dict(
            env,
            SENSORHUB_DATABASE_URL=args.pg_url,
            SENSORHUB_SECRET_KEY=uuid.uuid4().hex * 2,  # required with PostgreSQL
            SENSORHUB_DATA_DIR=str(Path(env["SENSORHUB_DATA_DIR"]) / "postgres"),
        )
        sensorhubs.append(("sensorhub (PostgreSQL)", pg))
    if args.compare_src:  # the same server from another checkout (e.g. before a change)
        src = Path(args.compare_src).resolve()
        # Its own data dir: its migrations may be older than this checkout's.
        other = dict(
            env,
            PYTHONPATH=f"{src / 'src'}:{src / 'client/src'}",
            SENSORHUB_DATA_DIR=str(Path(env["SENSORHUB_DATA_DIR"]) / "compare"),
        )
        sensorhubs.append((f"sensorhub@{args.compare_label}", other))
    for name, senv in sensorhubs:
        auth = {"Authorization": f"Bearer {make_token(senv)}"}
        port = _common.free_port()
        cmd = [str(BIN / "sensorhub"), "serve", "--port", str(port), "--no-mqtt"]
        p = subprocess.Popen(cmd, env=senv, **QUIET)  # type: ignore[call-overload]
        servers.append(p)
        base = f"http://127.0.0.1:{port}"
        _common.wait_http(
            base + "/healthz"
        )  # one at a time: each one migrates the (shared) database at start
        targets += [
            Target(f"{name} GET /healthz (no auth)", base + "/healthz", p.pid),
            Target(f"{name} GET /api/tokens/self (token)", base + "/api/tokens/self", p.pid, auth),
            Target(f"{name} GET /api/managements (token)", base + "/api/managements", p.pid, auth),
        ]
    for t in targets:
        r = httpx.get(t.url, headers=t.headers)
        assert r.status_code == 200, (t.label, r.status_code, r.text)
    return targets


def measure(targets: list[Target], drive: Any, args: argparse.Namespace) -> None:
    for t in targets:  # warm-up: caches, lazy imports, the first usage write
        drive(t, 1)
    for _ in range(args.rounds):
        for t in targets:
            c0, w0 = _common.cpu_seconds(t.pid), time.monotonic()
            n = drive(t, args.seconds)
            c1, w1 = _common.cpu_seconds(t.pid), time.monotonic()
            t.cpu_us.append((c1 - c0) / n * 1e6)
            t.rps.append(n / (w1 - w0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compare-src", help="also serve sensorhub from this checkout (its src/)")
    ap.add_argument("--compare-label", default="before")
    ap.add_argument("--postgres", action="store_true", help="also serve sensorhub on PostgreSQL")
    ap.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    args.pg_url = None
    if shutil.which("wrk") is None and os.geteuid() == 0:
        print("wrk not found: installing it (apt-get install -y wrk)", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True)
    use_wrk = shutil.which("wrk") is not None
    drive = drive_wrk if use_wrk else drive_httpx
    load = "wrk -t1 -c16" if use_wrk else "an httpx keep-alive loop (wrk not installed)"
    print(f"load generator: {load}", file=sys.stderr)

    data = Path(tempfile.mkdtemp(prefix="shub-bench-cost-"))
    env = dict(
        os.environ,
        SENSORHUB_DATA_DIR=str(data),
        SENSORHUB_RATE_LIMIT_PER_MINUTE="100000000",
        SENSORHUB_FAILED_AUTH_LIMIT="100000000",
    )
    servers: list[subprocess.Popen[bytes]] = []
    pg_db = None
    try:
        if args.postgres:
            import psycopg

            pg_db = f"sensorhub_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(args.pg_admin, autocommit=True) as c:
                c.execute(f'CREATE DATABASE "{pg_db}"')
            args.pg_url = args.pg_admin.rsplit("/", 1)[0] + "/" + pg_db
        targets = start(args, env, servers)
        measure(targets, drive, args)
    finally:
        for p in servers:
            p.terminate()
        for p in servers:
            p.wait(15)
        shutil.rmtree(data, ignore_errors=True)
        if pg_db:
            import psycopg

            with psycopg.connect(args.pg_admin, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)')

    floor = statistics.median(targets[0].cpu_us)
    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {load}; "
        f"{args.rounds} rounds × {args.seconds:g} s per target, interleaved; medians\n"
    )
    print("| server, route | server CPU per request | × Starlette | requests/s (wall) |")
    print("|---|---:|---:|---:|")
    for t in targets:
        cpu = statistics.median(t.cpu_us)
        print(f"| {t.label} | {cpu:.0f} µs | {cpu / floor:.2f} | {statistics.median(t.rps):,.0f} |")


if __name__ == "__main__":
    main()
