"""Token text: ``<prefix>_<kind>_<secret><checksum>``.

- ``kind`` is ``pat`` (Personal Access Token) or ``key`` (organisation API key);
- ``secret`` is 256 bits from :mod:`secrets`, base62, zero-padded to 43 characters;
- ``checksum`` is the CRC32 of everything before it, base62, zero-padded to 6 characters.

The checksum lets us reject typos and random strings before any I/O, and lets secret scanners
match tokens with a tight pattern (see :func:`scanner_regex`). Only the SHA-256 digest of the
whole text is stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib
from dataclasses import dataclass
from typing import Literal

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SECRET_LEN = 43  # 62**43 > 2**256
CHECKSUM_LEN = 6  # 62**6 > 2**32
BODY_LEN = SECRET_LEN + CHECKSUM_LEN
TokenKind = Literal["pat", "key"]
KINDS: tuple[TokenKind, ...] = ("pat", "key")


def _base62(n: int, width: int) -> str:
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(ALPHABET[r])
    return "".join(reversed(out)).rjust(width, "0")


def _checksum(head: str) -> str:
    return _base62(zlib.crc32(head.encode()), CHECKSUM_LEN)


def generate(prefix: str, kind: TokenKind) -> str:
    secret = _base62(secrets.randbits(256), SECRET_LEN)
    head = f"{prefix}_{kind}_{secret}"
    return head + _checksum(head)


@dataclass(frozen=True, slots=True)
class ParsedToken:
    kind: TokenKind
    text: str

    @property
    def digest(self) -> str:
        return digest(self.text)

    @property
    def hint(self) -> str:
        return f"{self.text[: self.text.index('_', self.text.index('_') + 1) + 1]}…{self.text[-4:]}"


def parse(text: str, prefix: str) -> ParsedToken | None:
    """Return the parsed token if ``text`` is well-formed and its checksum matches, else ``None``.

    Pure and allocation-light: it runs before any cache or database access.
    """
    if len(text) != len(prefix) + 5 + BODY_LEN or not text.startswith(prefix):
        return None
    p = len(prefix)
    if text[p] != "_" or text[p + 4] != "_":
        return None
    kind = text[p + 1 : p + 4]
    if kind not in KINDS:
        return None
    body = text[p + 5 :]
    if not body.isascii() or not body.isalnum():
        return None
    if _checksum(text[:-CHECKSUM_LEN]) != text[-CHECKSUM_LEN:]:
        return None
    return ParsedToken(kind="pat" if kind == "pat" else "key", text=text)


def digest(text: str) -> str:
    """The hex SHA-256 under which a secret is stored and looked up: a token, and likewise a session
    cookie, an OpenID Connect sign-in state and a sign-up link's token (each 256 random bits)."""
    # A plain SHA-256 is enough: the secret has 256 bits of entropy, so there is nothing to brute-force,
    # and the digest stays valid when the installation moves (no pepper to carry along).
    return hashlib.sha256(text.encode()).hexdigest()


def scanner_regex(prefix: str = "shub") -> str:
    """The pattern secret scanners can use to find leaked tokens."""
    return rf"\b{re.escape(prefix)}_(?:pat|key)_[0-9A-Za-z]{{{BODY_LEN}}}\b"
