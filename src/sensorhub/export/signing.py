"""Signed download URLs for the local store: HMAC-SHA-256 over (export id, expiry).

The signature is the credential of a download, so it covers everything that grants access: which
export, and until when. The key is derived from the server secret for this one purpose, so a
signature can never be replayed against another use of the same secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

_PURPOSE = b"sensorhub/export-download/v1"


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def sign(secret: str, export_id: str, expires: int) -> str:
    """URL-safe signature (base64url, no padding) of ``export_id`` valid until ``expires`` (Unix s)."""
    mac = hmac.new(_key(secret), f"{export_id}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def verify(secret: str, export_id: str, expires: int, signature: str) -> bool:
    """Constant-time check of a signature (expiry is checked separately, after this)."""
    return hmac.compare_digest(sign(secret, export_id, expires), signature)
