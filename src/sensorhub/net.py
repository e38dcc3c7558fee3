"""Client address and scheme, trusting ``X-Forwarded-*`` only from configured proxies."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from starlette.requests import HTTPConnection


@lru_cache(maxsize=64)
def _networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _trusted(host: str, proxies: tuple[str, ...]) -> bool:
    if not proxies:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in n for n in _networks(proxies))


def client_ip(conn: HTTPConnection, trusted_proxies: tuple[str, ...]) -> str:
    peer = conn.client.host if conn.client else "unknown"
    if not _trusted(peer, trusted_proxies):
        return peer
    fwd = conn.headers.get("x-forwarded-for")
    if not fwd:
        return peer
    # Walk from the nearest hop back while hops are our own proxies; the first other one is the client.
    hops = [h.strip() for h in fwd.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted_proxies):
            return hop
    return hops[0] if hops else peer


def is_https(conn: HTTPConnection, trusted_proxies: tuple[str, ...]) -> bool:
    if conn.url.scheme == "https":
        return True
    peer = conn.client.host if conn.client else ""
    return _trusted(peer, trusted_proxies) and conn.headers.get("x-forwarded-proto", "").lower() == "https"


# Headers a reverse proxy adds. Their presence on a loopback connection means the request was relayed
# (e.g. by a proxy on the same host), so the peer address says nothing about the real client.
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip")


def is_secure_transport(conn: HTTPConnection, trusted_proxies: tuple[str, ...]) -> bool:
    """Whether a credential may travel on this connection when HTTPS is required.

    HTTPS itself, or HTTPS as reported by a trusted proxy's ``X-Forwarded-Proto``: when a trusted proxy
    says ``http``, that decides, whatever the proxy's address (a proxy on the same host is loopback
    too). A loopback peer is exempt only when the request is direct, i.e. carries no forwarding header
    at all: health checks and scripts on the host itself."""
    if is_https(conn, trusted_proxies):
        return True
    return is_loopback(_peer(conn)) and not any(h in conn.headers for h in FORWARDING_HEADERS)


def _peer(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else ""


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost", "testclient")
