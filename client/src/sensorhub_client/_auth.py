"""Token checks and the Bearer auth flow.

Token text is ``<prefix>_<kind>_<secret><checksum>``: prefix ``[a-z0-9]{1,16}`` (``shub`` by default),
kind ``pat`` or ``key``, 43 base62 secret characters and a 6-character base62 CRC32 of everything before
the checksum. Checking it locally turns a mistyped or truncated token into a clear error before anything
goes over the network. Error messages never quote the token, not even partly.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Generator
from typing import Literal

import httpx

from .errors import InvalidTokenFormat

TokenKind = Literal["pat", "key"]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SECRET_LEN = 43
CHECKSUM_LEN = 6
_PREFIX = re.compile(r"[a-z0-9]{1,16}")
_BASE62 = re.compile(r"[0-9A-Za-z]*")


def base62_checksum(head: str) -> str:
    """CRC32 of ``head`` (UTF-8) in base62, most significant digit first, zero-padded to 6."""
    n = zlib.crc32(head.encode("utf-8"))
    digits = []
    while n:
        n, r = divmod(n, 62)
        digits.append(ALPHABET[r])
    return "".join(reversed(digits)).rjust(CHECKSUM_LEN, "0")


def check_token(token: str) -> TokenKind:
    """Return the token's kind, or raise :class:`InvalidTokenFormat` saying what is wrong."""
    if not token:
        raise InvalidTokenFormat("token is empty")
    if token.lower().startswith(("bearer ", "token ")):
        raise InvalidTokenFormat("pass the token itself, without the 'Bearer ' prefix")
    if not token.isascii() or any(ch.isspace() for ch in token):
        raise InvalidTokenFormat(
            "token contains spaces or non-ASCII characters; copy it again from the token page"
        )
    parts = token.split("_")
    if len(parts) != 3:
        raise InvalidTokenFormat(
            "token does not look like a sensorhub token '<prefix>_pat_<49 characters>' "
            "or '<prefix>_key_<49 characters>'"
        )
    prefix, kind, body = parts
    if not _PREFIX.fullmatch(prefix):
        raise InvalidTokenFormat("token prefix must be 1 to 16 lowercase letters or digits")
    if kind not in ("pat", "key"):
        raise InvalidTokenFormat("token kind (between the underscores) must be 'pat' or 'key'")
    expected = SECRET_LEN + CHECKSUM_LEN
    if len(body) != expected:
        raise InvalidTokenFormat(
            f"token has {len(body)} characters after the kind, expected {expected}; "
            "it was probably copied incompletely"
        )
    if not _BASE62.fullmatch(body):
        raise InvalidTokenFormat("token contains characters other than 0-9, A-Z and a-z after the kind")
    if base62_checksum(token[:-CHECKSUM_LEN]) != token[-CHECKSUM_LEN:]:
        raise InvalidTokenFormat("token checksum does not match: the token was mistyped or altered")
    return "pat" if kind == "pat" else "key"


class Secret:
    """Holds the token; its ``repr``/``str`` never show it (use :meth:`reveal` to send it)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and effective port: the unit a credential is scoped to."""
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host, port)


class BearerAuth(httpx.Auth):
    """Adds ``Authorization: Bearer <token>``, but only to requests for the server's own origin.

    The origin check keeps the token away from other hosts: S3 presigned download URLs, or a ``next``
    link that points somewhere unexpected.
    """

    def __init__(self, token: Secret, base_url: httpx.URL) -> None:
        self._token = token
        self._origin = origin(base_url)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if origin(request.url) == self._origin:
            request.headers["Authorization"] = f"Bearer {self._token.reveal()}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(token=<hidden>)"
