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


def test_forged_forwarded_for_is_ignored_for_rate_limits_and_last_used_ip(make_app: Callable[..., tuple[AppContext, World]]) -> None:
    ctx, w = make_app(trusted_proxies=["10.0.0.0/8"], failed_auth_limit=3, last_used_debounce_seconds=0)
    token = w.pat("ana@example.com", ["entities"])
    public = _client(ctx, PUBLIC_PEER)
    # A client that rotates forged X-Forwarded-For values is still one address to the failed-auth limit.
    codes = [public.get("/api/tokens/self", headers={**bearer("shub_pat_nope"), "X-Forwarded-For": f"198.51.100.{i}"}).status_code
             for i in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    # Through a trusted proxy the forwarded address counts: another client is not blocked.
    proxy = _client(ctx, PROXY_PEER)
    assert proxy.get("/api/tokens/self", headers={**bearer(token), "X-Forwarded-For": "198.51.100.50"}).status_code == 200

    mgmt = _client(ctx, ("127.0.0.1", 1))
    login(mgmt, "ana@example.com")
    (tok,) = mgmt.get("/api/tokens").json()
    assert tok["last_used_ip"] == "198.51.100.50"
    other = w.pat("ana@example.com", ["entities"], name="second")
    fresh = _client(ctx, ("203.0.113.10", 1))
    assert fresh.get("/api/tokens/self", headers={**bearer(other), "X-Forwarded-For": "1.2.3.4"}).status_code == 200
    used = {t["name"]: t["last_used_ip"] for t in mgmt.get("/api/tokens").json()}
    assert used["second"] == "203.0.113.10"  # the forged header was not believed


def test_tokens_need_https_when_required_and_hsts_is_sent(make_app: Callable[..., tuple[AppContext, World]]) -> None:
    ctx, w = make_app(require_https=True, trusted_proxies=["10.0.0.0/8"])
    token = w.pat("ana@example.com", ["entities"])
    plain = _client(ctx, PUBLIC_PEER)
    r = plain.get("/api/tokens/self", headers=bearer(token))
    assert r.status_code == 403 and "HTTPS" in r.json()["message"]
    # A forged X-Forwarded-Proto from an untrusted peer does not count.
    assert plain.get("/api/tokens/self", headers={**bearer(token), "X-Forwarded-Proto": "https"}).status_code == 403
    tls = _client(ctx, PUBLIC_PEER, base_url="https://testserver")
    r = tls.get("/api/tokens/self", headers=bearer(token))
    assert r.status_code == 200
    assert r.headers["strict-transport-security"].startswith("max-age=")
    proxied = _client(ctx, PROXY_PEER)
    assert proxied.get("/api/tokens/self", headers={**bearer(token), "X-Forwarded-Proto": "https"}).status_code == 200
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
    assert _client(ctx, PROXY_PEER).get("/metrics", headers={"X-Forwarded-For": "203.0.113.5"}).status_code == 404
    assert _client(ctx, PROXY_PEER).get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"}).status_code == 200
    # Unknown paths are one label, not one per path.
    local.get("/no/such/path/123")
    assert 'route="<unmatched>"' in local.get("/metrics").text
    assert "/no/such/path/123" not in local.get("/metrics").text


def test_json_logs_carry_the_request_id_and_never_the_token(make_app: Callable[..., tuple[AppContext, World]]) -> None:
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
        r = _client(ctx, PUBLIC_PEER).get("/api/tokens/self", headers={**bearer(bad), "X-Request-Id": "req-42abc"})
        assert r.status_code == 401 and r.headers["x-request-id"] == "req-42abc"
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    records = [json.loads(x) for x in lines]
    assert any(rec.get("request_id") == "req-42abc" and "authentication failed" in rec["message"] for rec in records)
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
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp / "cert.pem", tmp / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


@pytest.mark.slow
def test_serve_with_tls(tmp_path: Path, start_server: Callable[..., Server]) -> None:
    certfile, keyfile = _self_signed(tmp_path)
    verify = ssl.create_default_context(cafile=str(certfile))
    srv = start_server({"SENSORHUB_REQUIRE_HTTPS": "1"},
                       ["--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile)],
                       scheme="https", verify=verify, migrate=True)
    r = httpx.get(f"{srv.url}/readyz", verify=verify)
    assert r.status_code == 200 and r.json()["checks"]["database"]["status"] == "ok"
    assert r.headers["strict-transport-security"].startswith("max-age=")
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port is not served
        httpx.get(f"http://127.0.0.1:{srv.port}/healthz", timeout=2)
