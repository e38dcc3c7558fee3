"""Deployment security: TLS in the server, X-Forwarded-* only from trusted proxies, HTTPS-only tokens,
HSTS, the /metrics guard, request ids in JSON logs."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from sensorhub.app import create_app
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.logs import JsonFormatter
from sensorhub.migrate import upgrade
from tests.builders import World, bearer, login
from tests.production.conftest import Server

PUBLIC_PEER = ("203.0.113.9", 40000)
PROXY_PEER = ("10.0.0.2", 40000)


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., tuple[AppContext, World]]]:
    made: list[AppContext] = []

    def make(**overrides: object) -> tuple[AppContext, World]:
        settings = Settings(data_dir=tmp_path / f"d{len(made)}", env="test", **overrides)  # type: ignore[arg-type]
        ctx = AppContext.build(settings)
        upgrade(ctx.db)
        made.append(ctx)
        w = World(ctx)
        w.org("acme")
        w.user("ana@example.com", "acme", "member")
        return ctx, w

    yield make
    for c in made:
        c.db.dispose()


def _client(ctx: AppContext, peer: tuple[str, int], base_url: str = "http://testserver") -> TestClient:
    return TestClient(create_app(ctx.settings, ctx), base_url=base_url, client=peer)


def test_forged_forwarded_for_is_ignored_for_rate_limits_and_last_used_ip(
    make_app: Callable[..., tuple[AppContext, World]],
) -> None:
    ctx, w = make_app(trusted_proxies=["10.0.0.0/8"], failed_auth_limit=3, last_used_debounce_seconds=0)
    token = w.pat("ana@example.com", ["entities"])
    public = _client(ctx, PUBLIC_PEER)
    # A client that rotates forged X-Forwarded-For values (guessing a new token each time) is still one
    # address to the failed-auth limit.
    codes = [
        public.get(
            "/api/tokens/self", headers={**bearer(f"shub_pat_nope{i}"), "X-Forwarded-For": f"198.51.100.{i}"}
        ).status_code
        for i in range(5)
    ]
    assert codes == [401, 401, 401, 429, 429]
    # Through a trusted proxy the forwarded address counts: another client is not blocked.
    proxy = _client(ctx, PROXY_PEER)
    assert (
        proxy.get(
            "/api/tokens/self", headers={**bearer(token), "X-Forwarded-For": "198.51.100.50"}
        ).status_code
        == 200
    )

    mgmt = _client(ctx, ("127.0.0.1", 1))
    login(mgmt, "ana@example.com")
    (tok,) = mgmt.get("/api/tokens").json()
    assert tok["last_used_ip"] == "198.51.100.50"
    other = w.pat("ana@example.com", ["entities"], name="second")
    fresh = _client(ctx, ("203.0.113.10", 1))
    assert (
        fresh.get("/api/tokens/self", headers={**bearer(other), "X-Forwarded-For": "1.2.3.4"}).status_code
        == 200
    )
    used = {t["name"]: t["last_used_ip"] for t in mgmt.get("/api/tokens").json()}
    assert used["second"] == "203.0.113.10"  # the forged header was not believed


def test_tokens_need_https_when_required_and_hsts_is_sent(
    make_app: Callable[..., tuple[AppContext, World]],
) -> None:
    ctx, w = make_app(require_https=True, trusted_proxies=["10.0.0.0/8"])
    token = w.pat("ana@example.com", ["entities"])
    plain = _client(ctx, PUBLIC_PEER)
    r = plain.get("/api/tokens/self", headers=bearer(token))
    assert r.status_code == 403 and "HTTPS" in r.json()["message"]
    # A forged X-Forwarded-Proto from an untrusted peer does not count.
    assert (
        plain.get("/api/tokens/self", headers={**bearer(token), "X-Forwarded-Proto": "https"}).status_code
        == 403
    )
    tls = _client(ctx, PUBLIC_PEER, base_url="https://testserver")
    r = tls.get("/api/tokens/self", headers=bearer(token))
    assert r.status_code == 200
    assert r.headers["strict-transport-security"].startswith("max-age=")
    proxied = _client(ctx, PROXY_PEER)
    assert (
        proxied.get("/api/tokens/self", headers={**bearer(token), "X-Forwarded-Proto": "https"}).status_code
        == 200
    )
    # Loopback is exempt (health checks and local scripts on the host itself).
    assert _client(ctx, ("127.0.0.1", 1)).get("/api/tokens/self", headers=bearer(token)).status_code == 200
    assert "strict-transport-security" in plain.get("/healthz").headers


def test_no_hsts_unless_https_is_required(make_app: Callable[..., tuple[AppContext, World]]) -> None:
    ctx, _ = make_app()
    assert "strict-transport-security" not in _client(ctx, PUBLIC_PEER).get("/healthz").headers


def test_metrics_only_for_allowed_networks(make_app: Callable[..., tuple[AppContext, World]]) -> None:
    ctx, w = make_app(trusted_proxies=["10.0.0.0/8"])
    token = w.pat("ana@example.com", ["entities"])
    local = _client(ctx, ("127.0.0.1", 1))
    assert local.get("/api/tokens/self", headers=bearer(token)).status_code == 200
    assert local.get("/api/tokens/self", headers=bearer("shub_pat_x")).status_code == 401
    r = local.get("/metrics")
    assert r.status_code == 200
    body = r.text
    assert 'sensorhub_http_requests_total{method="GET",route="/api/tokens/self",status="200"}' in body
    assert 'sensorhub_auth_failures_total{reason="bad_format_or_checksum"}' in body
    assert 'sensorhub_auth_cache_lookups_total{result="miss"}' in body
    assert "sensorhub_ingest_points_total" in body and "sensorhub_export_rows_total" in body
    assert _client(ctx, PUBLIC_PEER).get("/metrics").status_code == 404
    # Through a trusted proxy the real client counts: the internet cannot scrape via the proxy.
    assert (
        _client(ctx, PROXY_PEER).get("/metrics", headers={"X-Forwarded-For": "203.0.113.5"}).status_code
        == 404
    )
    assert (
        _client(ctx, PROXY_PEER).get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"}).status_code == 200
    )
    # Unknown paths are one label, not one per path.
    local.get("/no/such/path/123")
    assert 'route="<unmatched>"' in local.get("/metrics").text
    assert "/no/such/path/123" not in local.get("/metrics").text


def test_json_logs_carry_the_request_id_and_never_the_token(
    make_app: Callable[..., tuple[AppContext, World]],
) -> None:
    ctx, _ = make_app()
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Capture()
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("sensorhub.auth")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        bad = "shub_pat_" + "A" * 49
        r = _client(ctx, PUBLIC_PEER).get(
            "/api/tokens/self", headers={**bearer(bad), "X-Request-Id": "req-42abc"}
        )
        assert r.status_code == 401 and r.headers["x-request-id"] == "req-42abc"
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    records = [json.loads(x) for x in lines]
    assert any(
        rec.get("request_id") == "req-42abc" and "authentication failed" in rec["message"] for rec in records
    )
    assert all(bad not in x for x in lines)


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp / "cert.pem", tmp / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return certfile, keyfile


@pytest.mark.slow
def test_serve_with_tls(tmp_path: Path, start_server: Callable[..., Server]) -> None:
    certfile, keyfile = _self_signed(tmp_path)
    verify = ssl.create_default_context(cafile=str(certfile))
    srv = start_server(
        {"SENSORHUB_REQUIRE_HTTPS": "1"},
        ["--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile)],
        scheme="https",
        verify=verify,
        migrate=True,
    )
    r = httpx.get(f"{srv.url}/readyz", verify=verify)
    assert r.status_code == 200 and r.json()["checks"]["database"]["status"] == "ok"
    assert r.headers["strict-transport-security"].startswith("max-age=")
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port is not served
        httpx.get(f"http://127.0.0.1:{srv.port}/healthz", timeout=2)


def test_a_same_host_proxy_saying_http_is_plain_http(
    make_app: Callable[..., tuple[AppContext, World]],
) -> None:
    """Behind a proxy on 127.0.0.1, the proxy's X-Forwarded-Proto decides, not the loopback address."""
    ctx, w = make_app(require_https=True, trusted_proxies=["127.0.0.1"])
    token = w.pat("ana@example.com", ["entities"])
    local_proxy = _client(ctx, ("127.0.0.1", 1))
    relayed = {"X-Forwarded-For": "203.0.113.9"}
    for headers in ({"X-Forwarded-Proto": "http"}, {"X-Forwarded-Proto": "http", **relayed}, relayed):
        r = local_proxy.get("/api/tokens/self", headers={**bearer(token), **headers})
        assert r.status_code == 403 and "HTTPS" in r.json()["message"], headers
    r = local_proxy.get(
        "/api/tokens/self", headers={**bearer(token), "X-Forwarded-Proto": "https", **relayed}
    )
    assert r.status_code == 200
    # A direct request on the host itself (no forwarding header at all) stays exempt.
    assert local_proxy.get("/api/tokens/self", headers=bearer(token)).status_code == 200

    # A loopback peer that is not a trusted proxy but relays (forwarding headers) is not exempt either,
    # and its X-Forwarded-Proto is not believed.
    ctx2, w2 = make_app(require_https=True)
    token2 = w2.pat("ana@example.com", ["entities"])
    untrusted_local = _client(ctx2, ("127.0.0.1", 1))
    for headers in (relayed, {"X-Forwarded-Proto": "https"}, {"Forwarded": "for=203.0.113.9;proto=https"}):
        assert (
            untrusted_local.get("/api/tokens/self", headers={**bearer(token2), **headers}).status_code == 403
        )


def test_answers_with_secrets_or_credential_metadata_are_never_cached(
    make_app: Callable[..., tuple[AppContext, World]],
) -> None:
    ctx, w = make_app()
    w.user("boss@example.com", "acme", "owner")
    c = _client(ctx, ("127.0.0.1", 1))
    r = c.post("/api/auth/login", json={"email": "boss@example.com", "password": "correct-horse-battery"})
    answers = {"login (csrf_token)": r}
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    answers["me (csrf_token)"] = c.get("/api/auth/me")
    created = c.post("/api/tokens", json={"name": "nb", "scopes": ["entities"]})
    answers["create token"] = created
    answers["list tokens"] = c.get("/api/tokens")
    answers["one token"] = c.get(f"/api/tokens/{created.json()['id']}")
    answers["rotate token"] = c.post(f"/api/tokens/{created.json()['id']}/rotate")
    key = c.post("/api/orgs/acme/api-keys", json={"name": "k", "scopes": ["entities"]})
    answers["create API key"] = key
    answers["list API keys"] = c.get("/api/orgs/acme/api-keys")
    answers["rotate API key"] = c.post(f"/api/orgs/acme/api-keys/{key.json()['id']}/rotate")
    user = c.post("/api/orgs/acme/api-users", json={"name": "etl"}).json()["id"]
    answers["create API-user token"] = c.post(
        f"/api/orgs/acme/api-users/{user}/tokens", json={"name": "t", "scopes": ["entities"]}
    )
    answers["list API-user tokens"] = c.get(f"/api/orgs/acme/api-users/{user}/tokens")
    api = _client(ctx, ("127.0.0.1", 1))
    answers["token introspection"] = api.get(
        "/api/tokens/self", headers=bearer(answers["rotate token"].json()["token"])
    )
    answers["rejected token"] = api.get("/api/tokens/self", headers=bearer("shub_pat_nope"))
    for what, resp in answers.items():
        ok = resp.status_code == 401 if what == "rejected token" else 200 <= resp.status_code < 300
        assert ok, (what, resp.status_code, resp.text)
        assert resp.headers.get("cache-control") == "no-store", (what, resp.status_code, resp.headers)
    # Public, credential-free answers are left to normal caching rules.
    assert "cache-control" not in _client(ctx, ("127.0.0.1", 1)).get("/healthz").headers


def test_no_page_can_be_framed(make_app: Callable[..., tuple[AppContext, World]]) -> None:
    ctx, _ = make_app()
    c = _client(ctx, ("127.0.0.1", 1))
    for path in ("/api/docs", "/login", "/api/openapi.json", "/healthz"):
        r = c.get(path)
        assert r.status_code == 200, path
        assert r.headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
    assert "<title>sensorhub API</title>" in c.get("/api/docs").text


def _mode(p: Path) -> int:
    return p.stat().st_mode & 0o777


def test_init_creates_private_data_files(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = tmp_path / "fresh" / "data"
    exe = Path(sys.executable).with_name("sensorhub")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    # umask 022, the usual default: the files must be private whatever the caller's umask.
    subprocess.run(
        [str(exe), "init", "--data-dir", str(data)],
        check=True,
        env=env,
        capture_output=True,
        timeout=120,
        umask=0o022,
    )
    assert _mode(data) == 0o700
    files = [p for p in data.iterdir() if p.is_file()]
    assert {"sensorhub.db", "secret.key"} <= {p.name for p in files}
    assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_server_start_closes_a_world_readable_data_dir(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "old"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    settings = Settings(data_dir=data, env="test")
    ctx = AppContext.build(settings)
    upgrade(ctx.db)
    ctx.db.dispose()
    settings.resolved_secret_key
    for p in (data, data / "sensorhub.db", data / "secret.key"):
        p.chmod(0o755 if p.is_dir() else 0o644)  # as an older version left them
    caplog.set_level(logging.WARNING, "sensorhub.config")
    settings2 = Settings(data_dir=data, env="test")
    ctx2 = AppContext.build(settings2)
    with TestClient(create_app(settings2, ctx2)) as c:
        assert c.get("/readyz").status_code == 200
        settings2.resolved_secret_key
    ctx2.db.dispose()
    assert _mode(data) == 0o700
    assert _mode(data / "sensorhub.db") == 0o600 and _mode(data / "secret.key") == 0o600
    for extra in ("sensorhub.db-wal", "sensorhub.db-shm"):
        if (data / extra).exists():
            assert _mode(data / extra) == 0o600, extra
    assert any("accessible to other users" in r.getMessage() for r in caplog.records)
