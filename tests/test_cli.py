"""The CLI, as an operator uses it: create a user, mint a token, revoke it; all against one data dir."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sensorhub.app import create_app
from sensorhub.cli import app as cli
from sensorhub.config import Settings
from tests.builders import bearer

runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # --data-dir exports SENSORHUB_DATA_DIR for the server it starts; keep it out of other tests.
    monkeypatch.setenv("SENSORHUB_DATA_DIR", "/nonexistent-unused")


def run(*args: str) -> str:
    r = runner.invoke(cli, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def test_cli_user_token_revoke_roundtrip(tmp_path: Path) -> None:
    d = str(tmp_path / "data")
    assert "database ready" in run("init", "--data-dir", d)
    out = run(
        "admin",
        "create-user",
        "--email",
        "ops@example.com",
        "--password",
        "secret-pass-1",
        "--org",
        "farmco",
        "--role",
        "member",
        "--workspace",
        "north",
        "--data-dir",
        d,
    )
    assert "created user ops@example.com as member of 'farmco'" in out
    out = run(
        "admin",
        "create-token",
        "--email",
        "ops@example.com",
        "--name",
        "cli",
        "--scopes",
        "timeseries,entities",
        "--expires-in-days",
        "7",
        "--data-dir",
        d,
    )
    token = re.search(r"shub_pat_[0-9A-Za-z]{49}", out)
    assert token, out
    token_id = re.search(r"token id: (\S+)", out).group(1)  # type: ignore[union-attr]

    app = create_app(Settings(data_dir=Path(d)))
    with TestClient(app) as c:
        me = c.get("/api/tokens/self", headers=bearer(token.group(0)))
        assert me.status_code == 200
        assert me.json()["scopes"] == ["entities", "timeseries"]
        assert [g["department_slug"] for g in me.json()["grants"]] == ["north"]
        # The user can log in with the password given on the command line.
        assert (
            c.post(
                "/api/auth/login", json={"email": "ops@example.com", "password": "secret-pass-1"}
            ).status_code
            == 200
        )

        assert "revoked" in run("admin", "revoke-token", "--id", token_id, "--data-dir", d)
        # The running app learns of it through the data dir's epoch file, on the very next request.
        assert c.get("/api/tokens/self", headers=bearer(token.group(0))).status_code == 401
    assert "already revoked" in run("admin", "revoke-token", "--id", token_id, "--data-dir", d)


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    d = str(tmp_path / "data")
    r = runner.invoke(
        cli,
        [
            "admin",
            "create-token",
            "--email",
            "nobody@example.com",
            "--name",
            "x",
            "--scopes",
            "timeseries",
            "--data-dir",
            d,
        ],
    )
    assert r.exit_code == 2 and "no user with email 'nobody@example.com'" in r.output
    r = runner.invoke(cli, ["admin", "disable-user", "--email", "nobody@example.com", "--data-dir", d])
    assert r.exit_code == 2 and "no user with email 'nobody@example.com'" in r.output
    run(
        "admin",
        "create-user",
        "--email",
        "a@example.com",
        "--password",
        "secret-pass-1",
        "--org",
        "o",
        "--data-dir",
        d,
    )
    r = runner.invoke(
        cli,
        [
            "admin",
            "create-token",
            "--email",
            "a@example.com",
            "--name",
            "x",
            "--scopes",
            "timeseries,root",
            "--data-dir",
            d,
        ],
    )
    assert r.exit_code == 2 and "unknown scope 'root'" in r.output
    r = runner.invoke(
        cli,
        [
            "admin",
            "create-user",
            "--email",
            "b@example.com",
            "--password",
            "short",
            "--org",
            "o",
            "--data-dir",
            d,
        ],
    )
    assert r.exit_code == 2 and "at least 8" in r.output


def test_cli_help_lists_the_commands() -> None:
    out = run("--help")
    for cmd in ("init", "serve", "demo", "admin"):
        assert cmd in out
    out = run("admin", "--help")
    for cmd in ("create-user", "create-token", "revoke-token", "disable-user"):
        assert cmd in out


def test_the_default_mqtt_port_moves_when_taken_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """A machine that already runs an MQTT broker on 1883 can still `make demo`: the embedded broker takes
    the next free port and the console says which."""
    import socket

    from sensorhub.cli import _default_mqtt_listen

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        chosen = _default_mqtt_listen(first=port)
    assert chosen.startswith("127.0.0.1:") and int(chosen.rsplit(":", 1)[1]) > port
    assert f"127.0.0.1:{port} is in use" in capsys.readouterr().err
