"""Connector secrets at rest: encrypted with a key derived from the server secret (``SENSORHUB_SECRET_KEY``).

Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) under a key derived with HKDF-SHA256 from the
server secret and a purpose label, so the key is used for nothing else. A database dump alone does not
reveal a connector's signing secret or password; changing the server secret makes stored connector
secrets unreadable (those connectors then fail visibly and must be re-created or given new secrets).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sensorhub.config import Settings

_INFO = b"sensorhub push connector secrets v1"


class SecretsUnreadable(RuntimeError):
    """Raised at delivery time (recorded as the attempt's error), never to an API client."""


def _fernet(settings: Settings) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
        settings.resolved_secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(settings: Settings, data: dict[str, Any]) -> str:
    return _fernet(settings).encrypt(orjson.dumps(data)).decode()


def decrypt(settings: Settings, token: str | None) -> dict[str, Any]:
    if not token:
        return {}
    try:
        out: dict[str, Any] = orjson.loads(_fernet(settings).decrypt(token.encode()))
    except InvalidToken:
        raise SecretsUnreadable(
            "the connector's secrets cannot be decrypted with this server's SENSORHUB_SECRET_KEY "
            "(was it changed?); give the connector new secrets"
        ) from None
    return out
