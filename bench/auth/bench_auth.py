"""Auth hot-path cost: requests/s of an authenticated route vs an unauthenticated one, one worker.

Runs a real `sensorhub serve` (SQLite, one worker) and drives it with wrk over loopback:
- GET /healthz                (no auth, same middleware and JSON rendering)
- GET /api/managements        (token: header parse, checksum, cache hit, expiry/IP/scope, rate limit)
- GET /api/managements        with a bad-checksum token (rejected before any I/O; 401)

Usage: .venv/bin/python bench/auth/bench_auth.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common
import _common

ROOT = Path(__file__).resolve().parents[2]


def wrk(url: str, seconds: int, header: str | None = None) -> float:
    cmd = ["wrk", "-t2", "-c32", f"-d{seconds}s", url]
    if header:
        cmd[1:1] = ["-H", header]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert m, out
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk")
    data = Path(tempfile.mkdtemp(prefix="shub-bench-auth-"))
    env = dict(
        os.environ,
        SENSORHUB_DATA_DIR=str(data),
        SENSORHUB_RATE_LIMIT_PER_MINUTE="100000000",
        SENSORHUB_FAILED_AUTH_LIMIT="100000000",
    )
    _common.create_owner(env, workspace=None)
    token = _common.create_token(env, "timeseries")
    bad = token[:-1] + ("A" if token[-1] != "A" else "B")
    port = _common.free_port()
    server = _common.start_sensorhub(env, port, wait=False)
    try:
        base = f"http://127.0.0.1:{port}"
        _common.wait_http(base + "/healthz")
        assert (
            httpx.get(base + "/api/managements", headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )
        base_rps = wrk(base + "/healthz", args.seconds)
        auth_rps = wrk(base + "/api/managements", args.seconds, f"Authorization: Bearer {token}")
        bad_rps = wrk(base + "/api/managements", args.seconds, f"Authorization: Bearer {bad}")
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(data, ignore_errors=True)
    per_req_us = (1 / auth_rps - 1 / base_rps) * 1e6
    print("| route | requests/s | ratio to /healthz |\n|---|---|---|")
    print(f"| GET /healthz (no auth) | {base_rps:,.0f} | 1.00 |")
    print(f"| GET /api/managements (valid token, cached) | {auth_rps:,.0f} | {auth_rps / base_rps:.2f} |")
    print(f"| GET /api/managements (bad checksum → 401) | {bad_rps:,.0f} | {bad_rps / base_rps:.2f} |")
    print(f"\nauth + route cost over /healthz: {per_req_us:.0f} µs per request (one worker)")


if __name__ == "__main__":
    main()
