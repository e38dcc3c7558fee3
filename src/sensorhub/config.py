"""Typed settings, read from the environment with the ``SENSORHUB_`` prefix."""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SECRET_KEY_FILE = "secret.key"  # noqa: S105  (a file name, not a secret)
# The data directory holds the database, the server secret and exports: only its owner may enter it.
DATA_DIR_MODE = 0o700
DATA_FILE_MODE = 0o600
# What one ingest request may carry and create unless SENSORHUB_INGEST_MAX_* say otherwise: the defaults
# of those settings and of :class:`sensorhub.timeseries.ingest.Limits` alike.
INGEST_MAX_BODY_BYTES = 16 * 1024 * 1024
INGEST_MAX_RECORDS = 100_000
INGEST_MAX_ATTRIBUTES = 500
INGEST_MAX_NEW_SERIES = 100
INGEST_MAX_MONTHS = 600  # 50 years of calendar months (partitions on PostgreSQL) per request

log = logging.getLogger("sensorhub.config")


def restrict_mode(path: Path, mode: int, *, warn: bool = True) -> None:
    """Remove group/other access from ``path`` (if it exists), saying so when it had any."""
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if current & 0o077:
        if warn:
            log.warning("%s was accessible to other users (mode %04o); changed to %04o", path, current, mode)
        os.chmod(path, mode)


def _psycopg(url: str) -> str:
    """``postgresql://`` mapped onto SQLAlchemy's psycopg 3 driver; other URLs as they are."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


class SharedSecretMissing(RuntimeError):
    """A deployment several hosts can serve has no ``SENSORHUB_SECRET_KEY``: refused at start."""


class Settings(BaseSettings):
    """Every setting can be set as ``SENSORHUB_<NAME>`` (e.g. ``SENSORHUB_DATA_DIR``)."""

    model_config = SettingsConfigDict(env_prefix="SENSORHUB_", extra="ignore")

    env: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("./sensorhub-data")
    database_url: str | None = None
    # A PostgreSQL streaming replica of database_url for read-only transactions (docs/deployment.md#read-replica):
    # used while its replay lag is at most database_replica_max_lag_seconds (measured at most every
    # database_replica_check_seconds), else, or when it does not answer, those reads use the primary.
    database_replica_url: str | None = None
    database_replica_max_lag_seconds: float = Field(5.0, gt=0)
    database_replica_check_seconds: float = Field(1.0, ge=0, le=60)
    redis_url: str | None = None
    export_store: str | None = None
    s3_endpoint_url: str | None = None
    secret_key: str | None = None
    token_prefix: str = "shub"  # noqa: S105
    allow_query_token: bool = False
    base_url: str | None = None

    default_token_lifetime_days: int = Field(365, ge=1)
    # The longest finite lifetime any token may be given (expires_in_days, expires_at or the default),
    # whatever the organisation policy says; non-expiring tokens remain an explicit organisation opt-in.
    max_token_lifetime_days: int = Field(5 * 365, ge=1, le=36500)
    # Per-credential request budget (requests per minute); API keys may carry their own.
    rate_limit_per_minute: int = Field(1200, ge=1)
    # Failed authentications tolerated per client IP per window before 429.
    failed_auth_limit: int = Field(30, ge=1)
    failed_auth_window_seconds: int = Field(300, ge=1)
    auth_cache_ttl_seconds: float = Field(60.0, gt=0)
    last_used_debounce_seconds: float = Field(60.0, ge=0)
    session_lifetime_hours: int = Field(12, ge=1)
    # Failed logins tolerated per 5 minutes for one (email, client address), and for one client
    # address over all emails; there is no per-email lock (anyone could trigger it).
    login_attempts_per_window: int = Field(10, ge=1)
    login_failures_per_address: int = Field(100, ge=1)
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    # What one ingest request may carry and create (docs/timeseries.md#limits); checked before any lock.
    ingest_max_body_bytes: int = Field(INGEST_MAX_BODY_BYTES, ge=1024)
    ingest_max_records: int = Field(INGEST_MAX_RECORDS, ge=1)
    ingest_max_attributes: int = Field(INGEST_MAX_ATTRIBUTES, ge=1)
    ingest_max_new_series: int = Field(INGEST_MAX_NEW_SERIES, ge=1)
    ingest_max_months: int = Field(INGEST_MAX_MONTHS, ge=1)
    # GraphQL (/graphql, docs/graphql.md#cost): what one operation may ask for, and what a credential may
    # spend per minute, in cost units (about one unit per object or point returned); refused before it runs.
    graphql_max_cost: int = Field(250_000, ge=100)
    graphql_cost_per_minute: int = Field(2_500_000, ge=100)
    # Line protocol: the tags that name the device, first present wins (docs/ingest.md).
    line_protocol_device_tags: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["device", "entity_id", "host"], min_length=1
    )
    # How long a request waits for a database lock (SQLite busy timeout, PostgreSQL lock_timeout)
    # before it is answered 503 with Retry-After.
    db_lock_timeout_seconds: float = Field(10.0, gt=0, le=600)
    # PostgreSQL: connections each process keeps open (and may open beyond that while busy, closing them
    # again when returned), for the primary and the replica alike (docs/configuration.md).
    db_pool_size: int = Field(10, ge=1, le=1000)
    db_max_overflow: int = Field(20, ge=0, le=1000)
    # Comma-separated in the environment (NoDecode: not JSON).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    require_https: bool = False

    # Production mode (see docs/deployment.md). Keys and the invalidation channel live under
    # ``redis_prefix`` so that several installations (or test runs) can share one Redis.
    redis_prefix: str = "sensorhub:"
    # The bus pings Redis this often; a subscription silent for 3 intervals counts as broken and the
    # auth cache is bypassed until it is re-established (bounds revocation delay on a dead link).
    redis_heartbeat_seconds: float = Field(0.25, gt=0, le=5)
    # Client networks allowed to read /metrics (the resolved client address, see trusted_proxies).
    metrics_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            "127.0.0.0/8",
            "::1/128",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "fc00::/7",
        ]
    )

    # Background jobs and push delivery (docs/push.md). The jobs run inside `sensorhub serve` unless
    # embedded_worker is off (production: run `sensorhub worker` processes instead).
    embedded_worker: bool = True
    # Outbox events are kept this long (then pruned, once every consumer is past them).
    push_event_retention_hours: float = Field(168.0, gt=0)
    # The delivery log: delivered/suppressed deliveries (and their attempts) are kept this many days
    # after they finished, dead letters this many after their last attempt (0: keep forever / until
    # replayed). Pruned hourly by the "push-delivery-retention" job.
    push_delivery_retention_days: int = Field(30, ge=0, le=36500)
    push_dead_letter_retention_days: int = Field(90, ge=0, le=36500)
    # A rule's state changes (its history page) are kept this many days (0: forever); same job.
    push_rule_history_retention_days: int = Field(90, ge=0, le=36500)
    # Consumers poll the outbox this often when no notification arrives (a lost one costs this much).
    push_poll_seconds: float = Field(1.0, gt=0, le=60)
    # Connector targets on loopback, link-local or private networks are refused unless this is on.
    push_allow_private_targets: bool = False
    # Attempts per delivery before it becomes a dead letter; backoff base and cap between attempts.
    push_max_attempts: int = Field(10, ge=1, le=100)
    push_retry_base_seconds: float = Field(5.0, gt=0)
    push_retry_max_seconds: float = Field(3600.0, gt=0)
    # One attempt may take this long (connect + send + answer).
    push_timeout_seconds: float = Field(10.0, gt=0, le=120)
    # A worker that claimed a delivery and died: another takes it over after this long.
    push_lease_seconds: float = Field(60.0, gt=0)
    # Outgoing e-mail (sensorhub.mail): connector messages, token expiry notices.
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_sender: str = "sensorhub@localhost"
    smtp_timeout_seconds: float = Field(10.0, gt=0, le=120)
    # Token expiry notices: days before expiry (comma-separated), plus one when a credential expired.
    token_notice_days: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [14, 7, 1])
    token_notice_interval_seconds: float = Field(300.0, gt=0)
    # Shared secret of secret scanners reporting leaked tokens (POST /api/tokens/leaked); unset = off.
    leak_report_secret: str | None = None
    leak_reports_per_minute: int = Field(30, ge=1)
    # Audit events older than this are deleted by the "audit-retention" job (0: keep them forever).
    audit_retention_days: int = Field(365, ge=0, le=36500)
    # The embedded MQTT broker (docs/mqtt.md): listeners as host:port, off when unset. `sensorhub serve`
    # and `sensorhub demo` turn on mqtt_listen (127.0.0.1:1883 by default; --mqtt-listen, --no-mqtt).
    mqtt_listen: str | None = None
    mqtt_tls_listen: str | None = None
    mqtt_ws_listen: str | None = None
    mqtt_wss_listen: str | None = None
    mqtt_certfile: Path | None = None
    mqtt_keyfile: Path | None = None
    mqtt_max_payload_bytes: int = Field(256 * 1024, ge=64, le=16 * 1024 * 1024)
    # Production MQTT (docs/mqtt.md "Production: Mosquitto"): the secret the sensorhub Mosquitto plugin
    # sends to /internal/mqtt/* (unset: those endpoints do not exist) and the bridge's password there;
    # the Mosquitto the bridge connects to; its username and client id; how long the plugin may cache
    # an ACL answer (its plugin_opt_cache_seconds bounds it too).
    mqtt_plugin_secret: str | None = Field(None, min_length=16, max_length=500)
    mqtt_broker: str = "127.0.0.1:1883"
    mqtt_bridge_username: str = "sensorhub-bridge"
    mqtt_bridge_client_id: str | None = None
    mqtt_acl_cache_seconds: int = Field(10, ge=0, le=3600)
    # NGSI-LD user @contexts (docs/ngsi-ld.md): URL prefixes that may be fetched (none by default), a
    # directory of *.jsonld files served at /ngsi-ld/v1/jsonldContexts/, and the fetch timeout.
    ngsi_ld_context_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    ngsi_ld_context_dir: Path | None = None
    ngsi_ld_context_timeout_seconds: float = Field(3.0, gt=0, le=30)

    # OpenID Connect sign-in for people (docs/sign-in.md): off unless an issuer is set. The provider is found
    # by discovery (<issuer>/.well-known/openid-configuration); the client is registered there with the
    # redirect URI <base URL>/login/oidc/callback.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_scopes: str = "openid email profile"
    oidc_display_name: str = "single sign-on"
    # Just-in-time membership: "<e-mail domain>=<organisation>[:<role>]" entries, comma-separated (role
    # member by default; admin, member or viewer, never owner).
    oidc_join_domains: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Create an account at the first sign-in of any verified address (off: only addresses of a join
    # domain, or with a pending invitation, get one).
    oidc_allow_signup: bool = False
    oidc_timeout_seconds: float = Field(10.0, gt=0, le=60)

    pat_export_row_cap: int = Field(10_000, ge=1)
    key_export_row_cap: int = Field(10_000_000, ge=1)
    export_url_ttl_seconds: int = Field(3600, ge=1)
    # Live streams (GET /api/stream, sensorhub.push.live): heartbeat (and re-authorisation) interval, open
    # streams per credential and process, and the event log rows a Last-Event-ID reconnect replays at most.
    live_heartbeat_seconds: float = Field(15.0, gt=0, le=300)
    live_max_streams_per_credential: int = Field(5, ge=1, le=1000)
    live_replay_max: int = Field(1000, ge=1, le=100_000)

    @field_validator("token_prefix")
    @classmethod
    def _prefix_is_simple(cls, v: str) -> str:
        if not v.isalnum() or not v.islower() or len(v) > 16:
            raise ValueError("token_prefix must be 1-16 lowercase letters or digits")
        return v

    @field_validator("token_notice_days")
    @classmethod
    def _notice_days(cls, v: list[int]) -> list[int]:
        if any(d < 1 or d > 365 for d in v):
            raise ValueError("token_notice_days are days before expiry, each 1-365, e.g. 14,7,1")
        return sorted(set(v), reverse=True)

    @field_validator(
        "trusted_proxies",
        "metrics_allow",
        "token_notice_days",
        "ngsi_ld_context_allow",
        "line_protocol_device_tags",
        "oidc_join_domains",
        mode="before",
    )
    @classmethod
    def _split_proxies(cls, v: object) -> object:
        if isinstance(v, str):
            if v.strip().startswith("["):
                return json.loads(v)
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    @field_validator("oidc_join_domains")
    @classmethod
    def _join_domains(cls, v: list[str]) -> list[str]:
        for entry in v:
            domain, _, target = entry.partition("=")
            org, _, role = target.partition(":")
            if not domain.strip() or "@" in domain or not org.strip():
                raise ValueError(
                    f"oidc_join_domains entry '{entry}' must be <e-mail domain>=<organisation>[:<role>], "
                    "e.g. acme.com=acme:member"
                )
            if role and role.strip() not in ("admin", "member", "viewer"):
                raise ValueError(
                    f"oidc_join_domains entry '{entry}': the role must be admin, member or viewer (never owner)"
                )
        return v

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)

    @cached_property
    def resolved_database_url(self) -> str:
        """SQLAlchemy URL; ``postgresql://`` is mapped onto the psycopg 3 driver."""
        return _psycopg(self.database_url or f"sqlite:///{(self.data_dir / 'sensorhub.db').resolve()}")

    @property
    def resolved_replica_url(self) -> str | None:
        """SQLAlchemy URL of the read replica (psycopg 3), or None without one."""
        return _psycopg(self.database_replica_url) if self.database_replica_url else None

    @property
    def serves_several_hosts(self) -> bool:
        """PostgreSQL or Redis configured: a deployment that several hosts may serve at once."""
        return not self.resolved_database_url.startswith("sqlite") or bool(self.redis_url)

    def check_secret_key(self) -> None:
        """Refuse a multi-host capable deployment without ``SENSORHUB_SECRET_KEY``.

        A secret generated per host would make every host refuse the export links the others sign.
        The secret is not kept in the shared database on purpose: reading the database (a dump, a
        replica, a backup) must not be enough to forge download links."""
        if self.secret_key or not self.serves_several_hosts:
            return
        uses = "a PostgreSQL database" if not self.resolved_database_url.startswith("sqlite") else "Redis"
        message = (
            f"SENSORHUB_SECRET_KEY is not set, but this deployment uses {uses}, so several hosts may "
            "serve it and they must all sign export links with the same secret. Set SENSORHUB_SECRET_KEY "
            "to one long random value on every host, e.g. the output of "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
        generated = self.data_dir / SECRET_KEY_FILE
        if generated.exists():
            message += (
                f"; to keep the links this host signed so far valid, use the secret it generated: "
                f"SENSORHUB_SECRET_KEY=$(cat {generated})"
            )
        raise SharedSecretMissing(message)

    @cached_property
    def resolved_secret_key(self) -> str:
        """The server secret: from the environment; in the embedded (SQLite, no Redis) mode, else
        generated once into the data dir. Raises :class:`SharedSecretMissing` when several hosts
        could serve (:meth:`check_secret_key`)."""
        if self.secret_key:
            return self.secret_key
        self.check_secret_key()
        path = self.data_dir / SECRET_KEY_FILE
        if path.exists():
            restrict_mode(path, DATA_FILE_MODE)
            return path.read_text().strip()
        self.ensure_data_dir()
        key = secrets.token_urlsafe(48)
        # Created with mode 0600 so that other local users cannot read it.
        path.touch(mode=DATA_FILE_MODE)
        path.write_text(key + "\n")
        return key

    def ensure_data_dir(self) -> Path:
        """The data directory, created with mode 0700; an existing one open to other users is closed
        (with a warning): it holds the database, the server secret and exports."""
        self.data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        restrict_mode(self.data_dir, DATA_DIR_MODE)
        return self.data_dir
