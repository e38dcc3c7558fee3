"""The OpenID Connect relying party: discovery, the authorization request (code + PKCE S256), the code
exchange, UserInfo and the ID token's verification.

JOSE is joserfc's: the signature is checked against the provider's JWKS (fetched from its ``jwks_uri``,
cached, fetched again once when a token names a key id it does not have — the provider rotated its
keys), with only the asymmetric algorithms the provider announces; the claims with its
``JWTClaimsRegistry``: ``iss`` exactly the configured issuer, ``aud`` containing the client id (and
``azp`` equal to it when there are several audiences, or when it is present), ``exp``/``iat`` with
:data:`LEEWAY_SECONDS` of clock skew, ``nonce`` equal to the one of the login state, ``sub`` present.

Every failure is an :class:`OidcError` whose message says what went wrong, for the person signing in
and the operator reading the log; none of them contains a secret (the client secret, a code, a token).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx
from joserfc import jwt
from joserfc.errors import (
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

from sensorhub.config import Settings
from sensorhub.db import utcnow
from sensorhub.errors import SensorhubError

LEEWAY_SECONDS = 60
DISCOVERY_TTL_SECONDS = 3600
# Asymmetric signatures only: "none" never, and HS* (keyed with the client secret) not either.
ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"}
)


class OidcError(SensorhubError):
    """The sign-in cannot go on; ``status`` 400 for a bad answer, 502 for a provider that cannot be used."""

    status = 400

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ProviderConfig:
    issuer: str
    client_id: str
    client_secret: str | None
    scopes: str
    display_name: str
    timeout_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ProviderConfig | None:
        if not settings.oidc_enabled:
            return None
        assert settings.oidc_issuer and settings.oidc_client_id
        return cls(
            issuer=settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret,
            scopes=settings.oidc_scopes,
            display_name=settings.oidc_display_name,
            timeout_seconds=settings.oidc_timeout_seconds,
        )


@dataclass
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    algorithms: list[str]
    auth_methods: list[str]
    fetched_at: float
    keys: KeySet | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Identity:
    """Who signed in, as the provider vouches for it."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None


_cache: dict[str, ProviderMetadata] = {}
_lock = threading.Lock()


def _get_json(client: httpx.Client, url: str, what: str, **kw: Any) -> dict[str, Any]:
    try:
        r = client.get(url, **kw)
    except httpx.HTTPError as e:
        raise OidcError(
            f"the sign-in provider could not be reached ({what}: {type(e).__name__})", 502
        ) from None
    if r.status_code != 200:
        raise OidcError(f"the sign-in provider answered {r.status_code} to the {what} request", 502)
    try:
        data = r.json()
    except ValueError:
        raise OidcError(f"the sign-in provider's {what} answer is not JSON", 502) from None
    if not isinstance(data, dict):
        raise OidcError(f"the sign-in provider's {what} answer is not a JSON object", 502)
    return data


def _client(config: ProviderConfig) -> httpx.Client:
    return httpx.Client(timeout=config.timeout_seconds, follow_redirects=False)


def metadata(config: ProviderConfig, *, refresh: bool = False) -> ProviderMetadata:
    """The provider's metadata from discovery (cached for an hour); its ``issuer`` must be ours exactly."""
    with _lock:
        cached = _cache.get(config.issuer)
    if cached and not refresh and time.monotonic() - cached.fetched_at < DISCOVERY_TTL_SECONDS:
        return cached
    url = config.issuer.rstrip("/") + "/.well-known/openid-configuration"
    with _client(config) as c:
        doc = _get_json(c, url, "discovery")
    if doc.get("issuer") != config.issuer:
        raise OidcError(
            f"the sign-in provider says its issuer is '{doc.get('issuer')}', but this server is configured "
            f"for '{config.issuer}' (SENSORHUB_OIDC_ISSUER must be exactly the provider's issuer)",
            502,
        )
    missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not doc.get(k)]
    if missing:
        raise OidcError(f"the sign-in provider's discovery document lacks {', '.join(missing)}", 502)
    algs = [
        a for a in doc.get("id_token_signing_alg_values_supported") or ["RS256"] if a in ALLOWED_ALGORITHMS
    ]
    if not algs:
        raise OidcError("the sign-in provider signs ID tokens with no algorithm this server accepts", 502)
    md = ProviderMetadata(
        issuer=doc["issuer"],
        authorization_endpoint=doc["authorization_endpoint"],
        token_endpoint=doc["token_endpoint"],
        jwks_uri=doc["jwks_uri"],
        userinfo_endpoint=doc.get("userinfo_endpoint"),
        algorithms=algs,
        auth_methods=list(doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]),
        fetched_at=time.monotonic(),
    )
    with _lock:
        _cache[config.issuer] = md
    return md


def _keys(config: ProviderConfig, md: ProviderMetadata, *, refresh: bool = False) -> KeySet:
    if md.keys is not None and not refresh:
        return md.keys
    with _client(config) as c:
        doc = _get_json(c, md.jwks_uri, "key set (JWKS)")
    try:
        md.keys = KeySet.import_key_set(doc)  # type: ignore[arg-type,unused-ignore]
    except (JoseError, ValueError, KeyError, TypeError):
        raise OidcError("the sign-in provider's key set (JWKS) cannot be read", 502) from None
    return md.keys


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class LoginRequest:
    state: str
    nonce: str
    code_verifier: str
    url: str


def authorization_request(config: ProviderConfig, redirect_uri: str) -> LoginRequest:
    """A fresh state, nonce and PKCE verifier, and the URL that sends the browser to the provider."""
    md = metadata(config)
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48)
    params = {
        "response_type": "code",
        "client_id": config.client_id,
        "redirect_uri": redirect_uri,
        "scope": config.scopes,
        "state": state,
        "nonce": nonce,
        "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
    }
    sep = "&" if "?" in md.authorization_endpoint else "?"
    return LoginRequest(state, nonce, verifier, md.authorization_endpoint + sep + urlencode(params))


def exchange_code(config: ProviderConfig, code: str, code_verifier: str, redirect_uri: str) -> dict[str, Any]:
    """The token endpoint's answer to our code (client_secret_basic, or _post where only that is offered)."""
    md = metadata(config)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    auth: httpx.Auth | None = None
    if config.client_secret is None:
        data["client_id"] = config.client_id
    elif "client_secret_basic" in md.auth_methods or "client_secret_post" not in md.auth_methods:
        # RFC 6749 2.3.1: both parts form-encoded before Basic.
        auth = httpx.BasicAuth(_form(config.client_id), _form(config.client_secret))
    else:
        data.update(client_id=config.client_id, client_secret=config.client_secret)
    try:
        with _client(config) as c:
            r = c.post(
                md.token_endpoint,
                data=data,
                auth=auth or httpx.USE_CLIENT_DEFAULT,
                headers={"Accept": "application/json"},
            )
    except httpx.HTTPError as e:
        raise OidcError(
            f"the sign-in provider could not be reached (token request: {type(e).__name__})", 502
        ) from None
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.status_code != 200 or not isinstance(body, dict):
        err = body.get("error") if isinstance(body, dict) else None
        raise OidcError(
            f"the sign-in provider refused to exchange the authorization code ({r.status_code}"
            + (f", {str(err)[:80]}" if err else "")
            + "); start the sign-in again",
            502 if r.status_code >= 500 or not isinstance(body, dict) else 400,
        )
    if not isinstance(body.get("id_token"), str):
        raise OidcError(
            "the sign-in provider's token answer has no ID token (is 'openid' in the scopes?)", 502
        )
    return body


def _form(value: str) -> str:
    return quote_plus(value)


def _claims_registry(config: ProviderConfig, nonce: str) -> jwt.JWTClaimsRegistry:
    return jwt.JWTClaimsRegistry(
        now=lambda: int(utcnow().timestamp()),  # the server's clock (tests move it)
        leeway=LEEWAY_SECONDS,
        iss={"essential": True, "value": config.issuer},
        aud={"essential": True, "value": config.client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )


_CLAIM_MESSAGES = {
    "iss": "the ID token was issued by another issuer than the configured one",
    "aud": "the ID token is meant for another client (its audience does not contain this client id)",
    "nonce": "the ID token's nonce does not match this sign-in (a replayed or injected token)",
    "exp": "the ID token has expired (is this server's clock right?)",
    "iat": "the ID token was issued in the future (is this server's clock right?)",
    "sub": "the ID token names no subject",
}


def verify_id_token(config: ProviderConfig, id_token: str, nonce: str) -> dict[str, Any]:
    """The ID token's claims once its signature and claims are verified; :class:`OidcError` otherwise."""
    md = metadata(config)
    token = _decode(config, md, id_token)
    claims = dict(token.claims)
    try:
        _claims_registry(config, nonce).validate(claims)
    except ExpiredTokenError:
        raise OidcError(_CLAIM_MESSAGES["exp"]) from None
    except (InvalidClaimError, MissingClaimError) as e:
        names = e.claim.split(",")
        first = next((n for n in ("iss", "aud", "nonce", "exp", "iat", "sub") if n in names), names[0])
        what = "is missing" if isinstance(e, MissingClaimError) else "is wrong"
        raise OidcError(_CLAIM_MESSAGES.get(first, f"the ID token's '{first}' claim {what}")) from None
    aud = claims["aud"]
    azp = claims.get("azp")
    if (isinstance(aud, list) and len(aud) > 1 and azp is None) or (
        azp is not None and azp != config.client_id
    ):
        raise OidcError("the ID token was issued to another party (its 'azp' is not this client id)")
    return claims


def _decode(config: ProviderConfig, md: ProviderMetadata, id_token: str) -> jwt.Token:
    for attempt in (0, 1):
        keys = _keys(config, md, refresh=attempt == 1)
        try:
            return jwt.decode(id_token, keys, algorithms=md.algorithms)
        except InvalidKeyIdError:
            if attempt == 0:
                continue  # the provider may have rotated its keys: fetch them once more
            raise OidcError("the ID token is signed with a key the provider does not publish") from None
        except (ValueError, JoseError) as e:
            raise OidcError(
                f"the ID token's signature cannot be verified ({type(e).__name__}); start the sign-in again"
            ) from None
    raise AssertionError("unreachable")


def userinfo(config: ProviderConfig, access_token: str, subject: str) -> dict[str, Any]:
    """The UserInfo answer (for the e-mail when the ID token has none); its ``sub`` must be the token's."""
    md = metadata(config)
    if not md.userinfo_endpoint:
        return {}
    with _client(config) as c:
        info = _get_json(
            c, md.userinfo_endpoint, "UserInfo", headers={"Authorization": f"Bearer {access_token}"}
        )
    if info.get("sub") != subject:
        raise OidcError("the provider's UserInfo answer is about another subject than the ID token")
    return info


def identity_of(config: ProviderConfig, tokens: dict[str, Any], nonce: str) -> Identity:
    """Verify the token answer's ID token and say who signed in (UserInfo fills in a missing e-mail)."""
    claims = verify_id_token(config, tokens["id_token"], nonce)
    if not claims.get("email") and isinstance(tokens.get("access_token"), str):
        info = userinfo(config, tokens["access_token"], claims["sub"])
        for k in ("email", "email_verified", "name"):
            if k in info and k not in claims:
                claims[k] = info[k]
    email = claims.get("email")
    verified = claims.get("email_verified")
    return Identity(
        issuer=config.issuer,
        subject=str(claims["sub"]),
        email=email.strip().lower() if isinstance(email, str) and email.strip() else None,
        email_verified=verified is True or verified == "true",
        name=claims.get("name") if isinstance(claims.get("name"), str) else None,
    )
