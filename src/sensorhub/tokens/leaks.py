"""Leaked-token reports: a secret scanner (or a person) sends the token strings it found and where;
every real, live one is revoked at once and its owner is told where it was found.

The answer never says which strings were real credentials: it only counts the well-formed ones it
received, so a report cannot be used to test stolen strings. The scanner authenticates with an HMAC
signature of the request (``SENSORHUB_LEAK_REPORT_SECRET``), and reports are rate-limited per client.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from sensorhub.accounts.models import Organisation
from sensorhub.audit.service import record
from sensorhub.auth import token_format
from sensorhub.config import Settings
from sensorhub.db import utcnow
from sensorhub.errors import BadRequest, Forbidden, Unauthorized
from sensorhub.kit.urls import configured_link
from sensorhub.notices import service as notices
from sensorhub.tokens import expiry, service
from sensorhub.tokens.models import Credential

MAX_STRINGS = 100
MAX_SOURCE = 500
# A signature is valid this long around its timestamp (replays of an old report are refused).
SIGNATURE_WINDOW_SECONDS = 300
SIGNATURE_HEADER = "X-Sensorhub-Signature"
TIMESTAMP_HEADER = "X-Sensorhub-Timestamp"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, "<timestamp>." + body): what a reporter sends."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def check_signature(settings: Settings, timestamp: str | None, given: str | None, body: bytes) -> None:
    secret = settings.leak_report_secret
    if not secret:
        raise Forbidden("Leaked-token reporting is not enabled on this server (SENSORHUB_LEAK_REPORT_SECRET)")
    if not timestamp or not given:
        raise Unauthorized(
            f"Sign the report: send {TIMESTAMP_HEADER} (Unix seconds) and {SIGNATURE_HEADER}: "
            "sha256=<hex HMAC-SHA256 of '<timestamp>.<body>' with the shared secret>"
        )
    try:
        ts = int(timestamp)
    except ValueError:
        raise Unauthorized(f"{TIMESTAMP_HEADER} must be Unix seconds") from None
    if abs(utcnow().timestamp() - ts) > SIGNATURE_WINDOW_SECONDS:
        raise Unauthorized(
            f"{TIMESTAMP_HEADER} is more than {SIGNATURE_WINDOW_SECONDS} s from the server's time"
        )
    if not hmac.compare_digest(signature(secret, timestamp, body), given.strip()):
        raise Unauthorized("The report's signature does not match")


@dataclass(frozen=True)
class Report:
    received: int  # well-formed token strings found in the report (real or not: never said)


def found_tokens(strings: list[str], prefix: str) -> list[str]:
    """The token strings the documented regex finds in ``strings``, each once."""
    pattern = re.compile(token_format.scanner_regex(prefix))
    out: dict[str, None] = {}
    for text in strings:
        for m in pattern.findall(text):
            out[m] = None
    return list(out)


def report(s: Session, strings: list[str], source: str | None, settings: Settings, ip: str | None) -> Report:
    """Revoke every live credential among ``strings`` and tell its owner where it was found."""
    if not strings or len(strings) > MAX_STRINGS:
        raise BadRequest(f"tokens must list 1 to {MAX_STRINGS} strings")
    source = (source or "").strip()
    if len(source) > MAX_SOURCE:
        raise BadRequest(f"source is too long (at most {MAX_SOURCE} characters)")
    found = found_tokens(strings, settings.token_prefix)
    for text in found:
        parsed = token_format.parse(text, settings.token_prefix)
        if parsed is None:  # the checksum is wrong: not one of ours
            continue
        cred = s.scalar(select(Credential).where(Credential.digest == parsed.digest))
        if cred is None or cred.revoked_at is not None:
            continue
        _revoke_leaked(s, cred, source or "an unnamed place", settings, ip)
    return Report(received=len(found))


def _revoke_leaked(s: Session, cred: Credential, source: str, settings: Settings, ip: str | None) -> None:
    service.revoke(s, cred, actor_id=None, ip=ip)
    org_ids = [cred.org_id] if cred.org_id else [None]
    for org_id in org_ids:
        record(
            s,
            "token.leaked",
            org_id=org_id,
            credential_id=cred.id,
            target=cred.name,
            ip=ip,
            details={"source": source},
        )
    for user, org in expiry.recipients(s, cred):
        what = expiry.describe(cred, org)
        notices.notify(
            s,
            user,
            notices.Notice(
                kind="token.leaked",
                dedupe_key=f"token.leaked:{cred.id}",
                subject=f"sensorhub: {what} was found in public and has been revoked",
                body=(
                    f"{what[0].upper()}{what[1:]} ({cred.hint}) was reported as leaked — found at: {source}. "
                    "It was revoked at once, so programs using it are refused now. Create a new token, put it "
                    "somewhere safe (not in code or a public place), and check the audit log for use you do "
                    "not recognise."
                ),
                org_id=org.id if isinstance(org, Organisation) else None,
                credential_id=cred.id,
                link=configured_link(settings.base_url, "/integrations"),
            ),
            settings,
        )
