"""Connector targets may not point into the server's own networks (SSRF).

A target host is resolved and every address it resolves to must be a public unicast address: not
loopback, private (RFC 1918, fc00::/7), link-local (169.254/16 — cloud metadata —, fe80::/10),
shared (100.64/10), multicast, reserved or unspecified. The operator setting
``SENSORHUB_PUSH_ALLOW_PRIVATE_TARGETS=1`` lifts this (an installation whose receivers live on its own
network; the tests' local receivers). The check runs when a connector is created or changed (a clear
400) and again before every attempt (a name that re-resolves to a private address later is refused
then, recorded as the attempt's error).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from sensorhub.errors import BadRequest


class TargetRefused(Exception):
    """The target resolves to an address connectors may not reach (the message says which and why)."""


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"))
    )


def check_host(host: str, port: int, allow_private: bool) -> None:
    """Raise :class:`TargetRefused` unless every address ``host`` resolves to may be reached."""
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as e:
        raise TargetRefused(f"the host {host!r} does not resolve: {e.strerror}") from None
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not _is_public(ip):
            raise TargetRefused(
                f"the host {host!r} resolves to {ip}, a loopback, private or link-local address that "
                "connectors may not reach (operators can allow it: SENSORHUB_PUSH_ALLOW_PRIVATE_TARGETS=1)"
            )


def check_url(
    url: str, allow_private: bool, schemes: tuple[str, ...] = ("https", "http"), field: str = "url"
) -> None:
    """Validate a target URL for a connector (raises :class:`BadRequest` naming ``field``)."""
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise BadRequest(f"{field} must be an absolute {' or '.join(schemes)} URL")
    if parts.username or parts.password:
        raise BadRequest(f"{field} must not carry credentials; use the connector's secret headers")
    try:
        port = parts.port or (443 if parts.scheme in ("https", "mqtts") else 80)
    except ValueError:
        raise BadRequest(f"{field} has an invalid port") from None
    try:
        check_host(parts.hostname, port, allow_private)
    except TargetRefused as e:
        raise BadRequest(f"{field}: {e}") from None
