"""Per-request token verification.

parse header → checksum → in-process cache by digest → DB lookup on miss → expiry / revocation /
owner checks → restrictions (IP) → scope for the route → rate limit → debounced usage write.
Object-level checks (which entity, which time window) happen in the services through
:meth:`Principal.access`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from anyio import to_thread
from starlette.requests import Request

from sensorhub import metrics
from sensorhub.auth import token_format
from sensorhub.auth.cache import AuthCache
from sensorhub.auth.org_policy import narrow_to_client
from sensorhub.auth.principal import Principal
from sensorhub.auth.ratelimit import RateLimiter
from sensorhub.auth.resolve import Rejected, resolve
from sensorhub.auth.restrictions import RequestFacts
from sensorhub.auth.usage import UsageTracker, write_usage
from sensorhub.config import Settings
from sensorhub.db import Database, utcnow
from sensorhub.errors import Forbidden, InsufficientScope, RateLimited, ServiceUnavailable, Unauthorized
from sensorhub.net import client_ip, is_secure_transport

log = logging.getLogger("sensorhub.auth")

GENERIC_401 = "Invalid, expired or revoked credentials"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sensorhub", error="invalid_token"'}
CHALLENGE_NONE = {"WWW-Authenticate": 'Bearer realm="sensorhub"'}


@dataclass(frozen=True, slots=True)
class Presented:
    text: str
    via: str  # "bearer" | "token" | "x-api-key" | "query"


class Authenticator:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        cache: AuthCache,
        limiter: RateLimiter,
        usage: UsageTracker,
    ) -> None:
        self.settings = settings
        self.db = db
        self.cache = cache
        self.limiter = limiter
        self.usage = usage
        self.prefix = settings.token_prefix
        self.proxies = tuple(settings.trusted_proxies)
        # Failures by reason, also counted in sensorhub_auth_failures_total.
        self.failures = metrics.FailureCounter()

    # -- extraction -------------------------------------------------------------------------------
    def presented(self, request: Request, ip: str) -> Presented | None:
        auth = request.headers.get("authorization")
        if auth is not None:
            scheme, _, value = auth.strip().partition(" ")
            value = value.strip()
            low = scheme.lower()
            if low not in ("bearer", "token") or not value or " " in value:
                self._fail(request, ip, "malformed_header", auth)
                raise Unauthorized(
                    "Malformed Authorization header: send 'Authorization: Bearer <token>'",
                    headers=CHALLENGE,
                )
            return Presented(value, low)
        key = request.headers.get("x-api-key")
        if key is not None:
            return Presented(key.strip(), "x-api-key")
        # Starlette's query_params decodes keys and values (``%74oken`` is ``token``): this is the same
        # parsing that the log redaction applies (sensorhub.logs), so what authenticates is redacted.
        qtokens = request.query_params.getlist("token")
        if qtokens:
            if not self.settings.allow_query_token:
                self._fail(request, ip, "query_token_disabled", qtokens[0])
                raise Unauthorized(
                    "Tokens in the query string (?token=) are disabled on this server: send the token in "
                    "the 'Authorization: Bearer <token>' header instead (operators can allow query tokens "
                    "with SENSORHUB_ALLOW_QUERY_TOKEN=1)",
                    headers=CHALLENGE,
                )
            if len(qtokens) > 1:
                self._fail(request, ip, "malformed_query_token", "\n".join(qtokens))
                raise Unauthorized("Give the token parameter once: ?token=<token>", headers=CHALLENGE)
            return Presented(qtokens[0], "query")
        return None

    def _fail(self, request: Request, ip: str, reason: str, credential: str) -> None:
        """Count a failed authentication (:meth:`count_failure`); past the limit the failure is answered
        429 instead of 401. Only failures are limited here: a valid credential is never refused because
        its address also sent garbage (it has its own per-credential budget)."""
        self.failures[reason] += 1
        log.info("authentication failed: reason=%s ip=%s path=%s", reason, ip, request.url.path)
        refused = self.count_failure(ip, credential)
        if refused is not None:
            raise refused

    def count_failure(self, ip: str, credential: str) -> RateLimited | None:
        """Count a refused ``credential`` (what was presented, or its digest) against address ``ip``;
        the 429 to answer instead of the refusal when the address is over its budget, else None. Every
        transport counts here (HTTP, the embedded MQTT broker, Mosquitto's plugin); a well-formed token
        counts by its digest, so one token is one refused credential whichever transport presented it
        (as its text or, from HTTP, its digest). Only a hash of it is remembered.

        The address's budget (``SENSORHUB_FAILED_AUTH_LIMIT`` per ``…_WINDOW_SECONDS``) counts *distinct*
        refused credentials: what it guards against is guessing, i.e. many different secrets. The same
        refused credential sent again from the same address in the window — a client whose token
        expired, was revoked or rotated, still polling its routes or reconnecting — counts once, so it
        can neither lock itself into 429s (it keeps being told 401, the answer that says to get a new
        token) nor use up the budget of everyone else behind the same NAT, however many routes it calls.
        Its repeats are bounded like a valid credential's requests: ``SENSORHUB_RATE_LIMIT_PER_MINUTE``,
        then 429."""
        window = self.settings.failed_auth_window_seconds
        parsed = token_format.parse(credential, self.prefix)
        if parsed is not None:
            credential = parsed.digest
        fingerprint = hashlib.blake2b(credential.encode(errors="replace"), digest_size=12).hexdigest()
        seen = f"authfail-seen:{ip}:{fingerprint}"
        if not self.limiter.peek(seen, 1, window).allowed:  # this address was refused it before
            d = self.limiter.hit(
                f"authfail-repeat:{ip}:{fingerprint}", self.settings.rate_limit_per_minute, 60
            )
            if d.allowed:
                return None
            return RateLimited(
                "Too many requests with a refused credential from this address; try again later",
                retry_after=d.retry_after,
            )
        d = self.limiter.hit(f"authfail:{ip}", self.settings.failed_auth_limit, window)
        if not d.allowed:
            # Over the budget nothing more is remembered (memory stays bounded by the budget).
            return RateLimited(
                "Too many failed authentication attempts from this address; try again later",
                retry_after=d.retry_after,
            )
        self.limiter.hit(seen, 1, window)
        return None

    # -- verification -----------------------------------------------------------------------------
    async def authenticate(self, request: Request, scope: str | None) -> Principal:
        ip = client_ip(request, self.proxies)
        presented = self.presented(request, ip)
        if presented is None:
            raise Unauthorized(
                "Authentication required: send 'Authorization: Bearer <token>' (or 'x-api-key: <key>')",
                headers=CHALLENGE_NONE,
            )
        if self.settings.require_https and not is_secure_transport(request, self.proxies):
            raise Forbidden("Tokens are only accepted over HTTPS on this server")
        parsed = token_format.parse(presented.text, self.prefix)
        if parsed is None:
            # Typos and random strings stop here, before any cache or database access.
            self._fail(request, ip, "bad_format_or_checksum", presented.text)
            raise Unauthorized(GENERIC_401, headers=CHALLENGE)
        # A well-formed token is verified even while its address is over the failed-auth limit (there
        # is deliberately no "is this address blocked?" check before this point): behind a NAT or a
        # proxy, one client's garbage must not lock out everyone else's valid tokens. Guessing a
        # 256-bit secret is hopeless, so what the limit guards against is load, and a lookup by
        # digest is one indexed read; a token that fails from a throttled address is answered 429.
        principal = await self._principal(request, ip, parsed.digest)
        now = utcnow()
        principal = self._check_use(request, ip, principal, scope, now, parsed.digest)
        decision = self.limiter.hit(f"cred:{principal.credential_id}", principal.rate_limit_per_minute, 60)
        headers = decision.headers()
        if principal.expires_soon(now):  # one comparison; the header values were made at resolve time
            headers.update(principal.expiry_headers)
        request.state.rate_headers = headers
        if not decision.allowed:
            raise RateLimited(
                f"Rate limit of {decision.limit} requests per minute exceeded for this credential",
                retry_after=decision.retry_after,
                headers=decision.headers(),
            )
        request.state.principal = principal
        if self.usage.due(principal.credential_id, ip):
            try:
                await to_thread.run_sync(self._write_usage, principal, ip, request.url.path)
            except Exception:  # usage bookkeeping must never fail a request
                self.usage.forget(principal.credential_id)
                log.warning("could not record token usage", exc_info=True)
        return principal

    async def _principal(self, request: Request, ip: str, digest: str) -> Principal:
        """The credential with this digest: from the cache, else resolved from the database."""
        principal = self.cache.get(digest)
        if principal is None:
            generation = self.cache.generation
            try:
                principal = await to_thread.run_sync(self._resolve, digest, utcnow())
            except Rejected as r:
                self._fail(request, ip, r.reason, digest)
                raise Unauthorized(GENERIC_401, headers=CHALLENGE) from None
            self.cache.put(digest, principal, generation)
        return principal

    async def principal_of(self, text: str) -> Principal | None:
        """The credential a token names, for transports other than HTTP (MQTT): the same format and
        checksum check (no I/O for garbage), cache and database lookup as :meth:`authenticate`; None for
        a malformed, unknown, revoked or expired token or a disabled owner. The caller checks expiry,
        restrictions and scopes per use, as :meth:`authenticate` does."""
        parsed = token_format.parse(text, self.prefix)
        if parsed is None:
            return None
        return await self.principal_by_digest(parsed.digest)

    async def principal_by_digest(self, digest: str) -> Principal | None:
        principal = self.cache.get(digest)
        if principal is None:
            generation = self.cache.generation
            try:
                principal = await to_thread.run_sync(self._resolve, digest, utcnow())
            except Rejected:
                return None
            self.cache.put(digest, principal, generation)
        return principal

    def _check_use(
        self, request: Request, ip: str, principal: Principal, scope: str | None, now: datetime, digest: str
    ) -> Principal:
        """Refuse an expired credential, one used against its restrictions, or one without ``scope``;
        the principal narrowed to the organisations whose IP allowlist admits this client."""
        if principal.is_expired(now):
            self._fail(request, ip, "expired", digest)
            raise Unauthorized(GENERIC_401, headers=CHALLENGE)
        facts = RequestFacts(client_ip=ip, now=now)
        for restriction in principal.restrictions:
            if not restriction.verify(facts):
                self.failures[restriction.kind] += 1
                raise Forbidden("This credential may not be used from this client address")
        principal = narrow_to_client(principal, ip)
        if scope is not None and scope not in principal.scopes:
            self.failures["insufficient_scope"] += 1
            if principal.withheld and not principal.org_scopes:
                raise Forbidden(
                    "This token may not read "
                    + "; ".join(f"{w.org_slug}: {w.why}" for w in principal.withheld)
                )
            raise InsufficientScope(scope)
        return principal

    def _resolve(self, digest: str, now: object) -> Principal:
        try:
            with self.db.session() as s:
                return resolve(s, digest, self.settings, now)  # type: ignore[arg-type]
        except Rejected:
            raise
        except Exception as e:
            log.exception("credential lookup failed")
            raise ServiceUnavailable("Credential store unavailable; try again shortly") from e

    def _write_usage(self, principal: Principal, ip: str, route: str) -> None:
        with self.db.transaction() as s:
            write_usage(s, principal.credential_id, ip, list(principal.org_scopes), route)
