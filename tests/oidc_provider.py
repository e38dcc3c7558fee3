"""A real OpenID Connect provider for tests: panva's ``oidc-provider`` (npm, version pinned in
tests/oidc/package.json + package-lock.json) run by ``tests/oidc/provider.js`` on loopback, and a
sensorhub server (uvicorn) configured to sign people in with it.

The provider is installed on first use (``npm ci`` into tests/oidc/node_modules, once per machine, under
a file lock for parallel test workers). Without node the tests skip, unless SENSORHUB_REQUIRE_SERVICES=1
(CI), where they fail.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from sensorhub.app import create_app
from sensorhub.config import Settings
from sensorhub.context import AppContext
from tests.conftest import service_unavailable

HERE = Path(__file__).parent / "oidc"
CLIENT_ID = "sensorhub"
CLIENT_SECRET = "test-client-secret-0123456789"
OTHER_CLIENT_ID = "other-app"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_installed() -> str:
    """The node binary, with oidc-provider installed next to provider.js."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        service_unavailable("node and npm (for the OpenID Connect provider)", RuntimeError("not on PATH"))
        raise AssertionError("unreachable")
    marker = HERE / "node_modules" / "oidc-provider" / "package.json"
    if not marker.exists():
        with open(HERE / ".install.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not marker.exists():
                subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                    cwd=HERE,
                    check=True,
                    timeout=300,
                )
    return node


@dataclass
class RunningProvider:
    issuer: str
    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@contextmanager
def oidc_provider(
    redirect_uris: list[str],
    accounts: dict[str, dict[str, Any]],
    *,
    issuer: str | None = None,
    log_dir: Path | None = None,
) -> Iterator[RunningProvider]:
    """The provider, with two clients (sensorhub's and another app's) and ``accounts`` (id → claims)."""
    node = ensure_installed()
    port = free_port()
    issuer = issuer or f"http://127.0.0.1:{port}"
    clients = [
        {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": redirect_uris},
        {"client_id": OTHER_CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": redirect_uris},
    ]
    env = dict(
        os.environ,
        OIDC_ISSUER=issuer,
        OIDC_PORT=str(port),
        OIDC_CLIENTS=json.dumps(clients),
        OIDC_ACCOUNTS=json.dumps(accounts),
    )
    out = open((log_dir or Path("/tmp")) / f"oidc-provider-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([node, str(HERE / "provider.js")], env=env, stdout=out, stderr=subprocess.STDOUT)
    running = RunningProvider(issuer, port, proc)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"the OIDC provider exited: see {out.name}"
            assert time.monotonic() < deadline, "the OIDC provider did not start"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield running
    finally:
        running.stop()
        out.close()


@contextmanager
def sensorhub_server(settings: Settings, port: int) -> Iterator[tuple[str, AppContext]]:
    import uvicorn

    ctx = AppContext.build(settings)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, ctx), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", ctx
    finally:
        server.should_exit = True
        thread.join(10)
        ctx.db.dispose()


def oidc_settings(settings: Settings, issuer: str, **extra: Any) -> Settings:
    """``settings`` (a test backend's) signing people in with the provider at ``issuer``."""
    return settings.model_copy(
        update={
            "oidc_issuer": issuer,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": CLIENT_SECRET,
            "oidc_display_name": "Test SSO",
            "embedded_worker": False,
            **extra,
        }
    )


_FORM_RE = re.compile(r'<form[^>]*action="([^"]+)"[^>]*method="post"', re.I)
_HIDDEN_RE = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', re.I)


def start(client: httpx.Client, sensorhub_url: str, next_path: str | None = None) -> str:
    """Click "Sign in with …": the provider's authorization URL sensorhub redirects to."""
    params = {"next": next_path} if next_path else {}
    r = client.get(f"{sensorhub_url}/login/oidc", params=params, follow_redirects=False)
    assert r.status_code == 303, r.text
    return r.headers["location"]


def authorize(client: httpx.Client, auth_url: str, login: str, sensorhub_url: str) -> str:
    """Go through the provider's login and consent pages as ``login``; the callback URL it sends us to."""
    url = auth_url
    r = client.get(url, follow_redirects=False)
    for _ in range(20):
        if r.is_redirect:
            url = urljoin(url, r.headers["location"])
            if url.startswith(sensorhub_url):
                return url
            r = client.get(url, follow_redirects=False)
            continue
        assert r.status_code == 200, f"{r.status_code} from the provider at {url}: {r.text[:500]}"
        form = _FORM_RE.search(r.text)
        assert form, f"no form on the provider's page: {r.text[:500]}"
        data = {k: unescape(v) for k, v in _HIDDEN_RE.findall(r.text)}
        if data.get("prompt") == "login":
            data.update(login=login, password="any password")
        url = urljoin(url, unescape(form.group(1)))
        r = client.post(url, data=data, follow_redirects=False)
    raise AssertionError("the provider never sent the browser back")


def sign_in(
    client: httpx.Client, sensorhub_url: str, login: str, next_path: str | None = None
) -> httpx.Response:
    """The whole flow; sensorhub's answer to the callback (not followed)."""
    callback = authorize(client, start(client, sensorhub_url, next_path), login, sensorhub_url)
    return client.get(callback, follow_redirects=False)
