"""An export in a real ``sensorhub serve`` process never splits the embedded database: the CLI, run from
another process afterwards, and the server keep seeing one and the same database.

(Issue 10 #1: ``adbc-driver-sqlite`` used to bring a second SQLite library into the server process;
closing its connection dropped the POSIX locks of the server's own connections, so the next CLI command
deleted the ``-wal``/``-shm`` files the server still had open. ``revoke-token`` then printed "revoked"
while the token kept working, even after a restart.)"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import select

from sensorhub.auth.token_format import digest as digest_of
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.kit.time import to_us
from sensorhub.migrate import upgrade
from sensorhub.timeseries.service import bulk_insert, get_or_create_series
from sensorhub.timeseries.sqlite import CHILD_READER_MIN_POINTS
from sensorhub.tokens.models import Credential
from tests.builders import PASSWORD, World
from tests.exports.conftest import STATION, T0, z
from tests.production.conftest import SENSORHUB, Server

# Enough points that the export reads them in the separate reader process (the large-export path).
BIG = CHILD_READER_MIN_POINTS + 10_000


def cli(data_dir: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORHUB_")}
    env["SENSORHUB_ENV"] = "test"
    p = subprocess.run(
        [SENSORHUB, *args, "--data-dir", str(data_dir)], env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def seed(data_dir: Path) -> dict[str, str]:
    settings = Settings(data_dir=data_dir, env="test")
    ctx = AppContext.build(settings)
    try:
        upgrade(ctx.db)
        w = World(ctx)
        w.org("acme")
        w.user("ana@acme.test", "acme", "member")
        w.user("bob@acme.test", "acme", "member")
        e = w.entity("acme", "main", STATION, "WeatherObserved")
        with ctx.db.transaction() as s:
            series = get_or_create_series(s, e, "temperature", "CEL")
            ts = to_us(T0) + np.arange(BIG, dtype=np.int64) * 1_000_000
            bulk_insert(s, series.id, ts, np.arange(BIG, dtype=np.float64) / 4)
        out = {
            "ana": w.pat("ana@acme.test", ["export"]),
            "bob": w.pat("bob@acme.test", ["export"]),
            "key": w.api_key("acme", ["export"]),
        }
        with ctx.db.session() as s:
            ana_id = s.scalar(select(Credential.id).where(Credential.digest == digest_of(out["ana"])))
        assert ana_id is not None
        out["ana_id"] = ana_id
        return out
    finally:
        ctx.db.dispose()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refused_within(srv: Server, token: str, seconds: float) -> float:
    """Seconds until ``token`` is refused (401) by the running server; fails after ``seconds``."""
    t0 = time.monotonic()
    while True:
        r = httpx.get(f"{srv.url}/api/tokens/self", headers=auth(token), timeout=5)
        if r.status_code == 401:
            return time.monotonic() - t0
        assert r.status_code == 200, r.text
        if time.monotonic() - t0 > seconds:
            raise AssertionError(f"token still accepted {seconds} s after the CLI revoked it")
        time.sleep(0.05)


def export(srv: Server, token: str, seconds: int) -> dict[str, object]:
    body = {
        "start_time": z(T0),
        "end_time": z(T0 + timedelta(seconds=seconds)),
        "series": [{"entity_id": STATION, "attribute": "temperature"}],
        "format": "parquet",
    }
    r = httpx.post(f"{srv.url}/api/datahub/export", json=body, headers=auth(token), timeout=120)
    assert r.status_code == 200, r.text
    got = httpx.get(str(r.json()["download_url"]), timeout=60)
    assert got.status_code == 200 and got.content[-4:] == b"PAR1"
    out: dict[str, object] = r.json()
    return out


def test_cli_and_server_share_one_database_after_exports(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    d = tmp_path / "data"
    tokens = seed(d)
    env = {"SENSORHUB_DATA_DIR": str(d)}
    srv = start_server(env=env)

    # A small export (read in the server process) and a large one (read by the reader process).
    assert export(srv, tokens["ana"], 600)["rows"] == 600
    assert export(srv, tokens["key"], BIG)["rows"] == BIG

    # Another process revokes ana's token and disables bob: the server refuses both within a second.
    assert "revoked" in cli(d, "admin", "revoke-token", "--id", tokens["ana_id"])
    assert refused_within(srv, tokens["ana"], 1.0) < 1.0
    cli(d, "admin", "disable-user", "--email", "bob@acme.test")
    assert refused_within(srv, tokens["bob"], 1.0) < 1.0

    # A user the CLI creates can log in to the running server; a token that server mints is found by
    # the CLI (and its revocation bites).
    cli(d, "admin", "create-user", "--email", "carol@acme.test", "--password", PASSWORD, "--org", "acme")
    with httpx.Client(base_url=srv.url, timeout=10) as browser:
        login = browser.post("/api/auth/login", json={"email": "carol@acme.test", "password": PASSWORD})
        assert login.status_code == 200, login.text
        minted = browser.post(
            "/api/tokens",
            json={"name": "from-the-server", "scopes": ["export"]},
            headers={"X-CSRF-Token": login.json()["csrf_token"]},
        )
        assert minted.status_code == 201, minted.text
    carol = minted.json()
    assert httpx.get(f"{srv.url}/api/tokens/self", headers=auth(carol["token"])).status_code == 200
    out = cli(d, "admin", "revoke-token", "--id", carol["id"])
    assert "revoked" in out and "already" not in out
    assert refused_within(srv, carol["token"], 1.0) < 1.0

    # One more export after all that, then a restart: still refused, the database is intact.
    assert export(srv, tokens["key"], BIG)["rows"] == BIG
    srv.stop()
    with sqlite3.connect(d / "sensorhub.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    again = start_server(env=env)
    for who in ("ana", "bob"):
        r = httpx.get(f"{again.url}/api/tokens/self", headers=auth(tokens[who]), timeout=5)
        assert r.status_code == 401, (who, r.text)
    assert httpx.get(f"{again.url}/api/tokens/self", headers=auth(carol["token"])).status_code == 401
    assert httpx.get(f"{again.url}/api/tokens/self", headers=auth(tokens["key"])).status_code == 200
    assert re.fullmatch(r"[0-9a-f-]{36}", tokens["ana_id"])
