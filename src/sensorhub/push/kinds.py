"""Connector kinds: what each one's configuration is, and how a message is sent.

A kind is registered in :data:`CONNECTOR_KINDS` by name. It validates a configuration (returning the
part that may be shown again and the secrets, which are stored encrypted and never shown again) and
sends a :class:`Message`, returning an :class:`Outcome`: delivered, failed and worth retrying, failed
for good (a dead letter at once), or gone (the target disables itself, like GitHub on 410).

Kinds: ``webhook`` (HTTPS POST, signed), ``mqtt`` (publish to a broker), ``influxdb`` (line protocol to
``/write`` or ``/api/v2/write``), ``email`` (SMTP through :mod:`sensorhub.mail`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as pysecrets
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

import httpx
import orjson

from sensorhub.config import Settings
from sensorhub.errors import BadRequest
from sensorhub.kit.time import iso
from sensorhub.mail import MailError, SmtpConfig, send_mail
from sensorhub.push.ssrf import TargetRefused, check_host, check_url

SIGNATURE_HEADER = "X-Sensorhub-Signature"
DELIVERY_HEADER = "X-Sensorhub-Delivery"
USER_AGENT = "sensorhub-push/1"
# Signatures older than this should be refused by receivers (documented replay window).
REPLAY_WINDOW_S = 300
MAX_HEADERS = 20
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "content-type", "idempotency-key", "user-agent", "transfer-encoding"}
    | {SIGNATURE_HEADER.lower(), DELIVERY_HEADER.lower(), "connection"}
)


class Points(NamedTuple):
    """The points of one (device, attribute, topic) in a message."""

    device: str
    attribute: str
    unit: str | None
    points: list[tuple[int, Any]]
    topic: str = "default"


@dataclass
class Message:
    """What a connector sends for one delivery: the idempotency key, the sensorhub JSON payload
    (documented in docs/push.md) and a human-readable text (a rule's rendered template, or a summary)."""

    key: str
    payload: dict[str, Any]
    text: str
    subject: str
    # Every point by (device, attribute, topic), for kinds that write points.
    points: list[Points] = field(default_factory=list)
    topic_vars: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    retry: bool = True
    gone: bool = False


class ConnectorKind(Protocol):
    name: str
    CONFIG: set[str]  # the config fields it takes (checked by :func:`validate_config` first)
    SECRETS: set[str]  # the secret fields it takes

    def validate(
        self, config: dict[str, Any], secrets: dict[str, Any], settings: Settings
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(config to store, secrets to store, what to show once at creation) or :class:`BadRequest`;
        called through :func:`validate_config`, so no field is unknown."""
        ...

    def send(
        self, config: dict[str, Any], secrets: dict[str, Any], msg: Message, settings: Settings
    ) -> Outcome: ...


def _only(d: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise BadRequest(
            f"unknown {what} field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def validate_config(
    kind: ConnectorKind, config: dict[str, Any], secrets: dict[str, Any], settings: Settings
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A connector's configuration as ``kind`` stores it: an unknown config or secret field is a 400
    naming it and the allowed ones, then the kind's own checks (:meth:`ConnectorKind.validate`)."""
    _only(config, kind.CONFIG, "config")
    _only(secrets, kind.SECRETS, "secrets")
    return kind.validate(config, secrets, settings)


def _timeout(config: dict[str, Any], settings: Settings) -> float:
    t = config.get("timeout_s")
    if t is None:
        return settings.push_timeout_seconds
    if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t <= settings.push_timeout_seconds:
        raise BadRequest(
            f"config.timeout_s must be a number of seconds in (0, {settings.push_timeout_seconds}]"
        )
    return float(t)


def _http_url(config: dict[str, Any], settings: Settings, missing: str, *, https_only: bool = False) -> str:
    """``config.url``: given (``missing`` says what it should be), https with ``https_only`` unless private
    targets are allowed, and a target the SSRF rules allow."""
    url = config.get("url")
    if not isinstance(url, str):
        raise BadRequest(f"config.url is required: {missing}")
    if https_only and not settings.push_allow_private_targets and not url.startswith("https://"):
        raise BadRequest("config.url must be an https:// URL")
    check_url(url, settings.push_allow_private_targets, ("https", "http"), "config.url")
    return url


def _refused(url: str, settings: Settings) -> Outcome | None:
    """A failure for good when ``url``'s host is, at sending time, a target the SSRF rules refuse."""
    parts = urlsplit(url)
    try:
        check_host(parts.hostname or "", parts.port or 443, settings.push_allow_private_targets)
    except TargetRefused as e:
        return Outcome(False, error=str(e), retry=False)
    return None


def _headers(v: Any, field_name: str) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict) or len(v) > MAX_HEADERS:
        raise BadRequest(f"{field_name} must be an object of at most {MAX_HEADERS} header names to strings")
    out: dict[str, str] = {}
    for k, val in v.items():
        if not isinstance(k, str) or not k or not all(c.isalnum() or c in "-_" for c in k):
            raise BadRequest(f"{field_name}: {k!r} is not a valid header name")
        if k.lower() in RESERVED_HEADERS:
            raise BadRequest(f"{field_name}: {k} is set by sensorhub and cannot be overridden")
        if not isinstance(val, str) or "\n" in val or "\r" in val or len(val) > 4096:
            raise BadRequest(f"{field_name}.{k} must be a one-line string of at most 4096 characters")
        out[k] = val
    return out


def http_error(e: Exception) -> str:
    """What went wrong with an HTTP attempt, in one line of at most 500 characters (timeouts and TLS
    errors named as such). Shared by every HTTP target (webhook, InfluxDB, NGSI-LD subscriptions)."""
    if isinstance(e, httpx.TimeoutException):
        return f"timeout: {type(e).__name__}"
    if isinstance(e, httpx.ConnectError) and "CERTIFICATE" in str(e).upper():
        return f"TLS error: {e}"[:500]
    return f"{type(e).__name__}: {e}"[:500]


# --- webhook ---------------------------------------------------------------------------------------


def new_signing_secret() -> str:
    return "whsec_" + pysecrets.token_urlsafe(32)


def sign(body: bytes, secret: str, t: int) -> str:
    """The ``v1`` signature: hex HMAC-SHA256 over ``"<t>.<body>"`` keyed with the signing secret."""
    return hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(body: bytes, signing: list[dict[str, Any]], now: float | None = None) -> str:
    """``t=<unix>,v1=<hex>[,v1=<hex>]``: one ``v1`` per signing secret still valid (during a rotation,
    the new one first, then the old one until its grace period ends)."""
    now = time.time() if now is None else now
    t = int(now)
    parts = [f"t={t}"]
    for s in signing:
        until = s.get("valid_until")
        if until is None or until > now:
            parts.append(f"v1={sign(body, s['secret'], t)}")
    return ",".join(parts)


def rotate_signing(
    signing: list[dict[str, Any]], grace_s: float, now: float | None = None
) -> tuple[list[dict[str, Any]], str]:
    """A new current secret; the previous one stays valid for ``grace_s`` seconds. Returns the new list
    and the new secret (shown once)."""
    now = time.time() if now is None else now
    new = new_signing_secret()
    kept = [s for s in signing if s.get("valid_until") is None or s["valid_until"] > now][:1]
    for s in kept:
        s["valid_until"] = now + grace_s
    return [{"secret": new, "valid_until": None}, *kept], new


def slack_body(msg: Message) -> dict[str, Any]:
    return {"text": msg.text}


def teams_body(msg: Message) -> dict[str, Any]:
    return {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": msg.subject,
        "title": msg.subject,
        "text": msg.text,
    }


BODY_PRESETS: dict[str, Callable[[Message], dict[str, Any]]] = {
    "sensorhub": lambda m: m.payload,
    "slack": slack_body,
    "teams": teams_body,
}


class Webhook:
    name = "webhook"
    CONFIG = {"url", "body", "headers", "timeout_s", "notices"}
    SECRETS = {"signing_secret", "headers"}

    def validate(
        self, config: dict[str, Any], secrets: dict[str, Any], settings: Settings
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        url = _http_url(config, settings, "the https:// address to POST to", https_only=True)
        body = config.get("body", "sensorhub")
        if body not in BODY_PRESETS:
            raise BadRequest(f"config.body must be one of: {', '.join(BODY_PRESETS)}")
        stored = {"url": url, "body": body, "headers": _headers(config.get("headers"), "config.headers")}
        if "timeout_s" in config:
            stored["timeout_s"] = _timeout(config, settings)
        if "notices" in config:
            if not isinstance(config["notices"], bool):
                raise BadRequest(
                    "config.notices must be true or false (send the organisation's credential notices)"
                )
            stored["notices"] = config["notices"]
        signing = secrets.get("signing_secret") or new_signing_secret()
        if not isinstance(signing, str) or len(signing) < 16:
            raise BadRequest("secrets.signing_secret must be a string of at least 16 characters")
        sec = {
            "signing": [{"secret": signing, "valid_until": None}],
            "headers": _headers(secrets.get("headers"), "secrets.headers"),
        }
        return stored, sec, {"signing_secret": signing}

    def send(
        self, config: dict[str, Any], secrets: dict[str, Any], msg: Message, settings: Settings
    ) -> Outcome:
        url = config["url"]
        refused = _refused(url, settings)
        if refused is not None:
            return refused
        body = orjson.dumps(BODY_PRESETS[config.get("body", "sensorhub")](msg))
        headers = {
            **config.get("headers", {}),
            **secrets.get("headers", {}),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": msg.key,
            DELIVERY_HEADER: msg.key,
            SIGNATURE_HEADER: signature_header(body, secrets.get("signing", [])),
        }
        try:
            r = http_client().post(url, content=body, headers=headers, timeout=_timeout(config, settings))
        except httpx.HTTPError as e:
            return Outcome(False, error=http_error(e))
        return http_outcome(r)


def http_outcome(r: httpx.Response) -> Outcome:
    """A receiver's answer as an :class:`Outcome`: 2xx delivered; 410 gone (the target is disabled);
    5xx, 408, 425 and 429 retried; any other answer failed for good."""
    code = r.status_code
    if 200 <= code < 300:
        return Outcome(True, code)
    text = r.text[:200].strip()
    err = f"HTTP {code}" + (f": {text}" if text else "")
    if code == 410:
        return Outcome(False, code, err, retry=False, gone=True)
    if code >= 500 or code in (408, 425, 429):
        return Outcome(False, code, err)
    return Outcome(False, code, err, retry=False)


_client_lock = threading.Lock()
_clients: dict[int, httpx.Client] = {}


def http_client() -> httpx.Client:
    """One keep-alive client per thread (no redirects: a 3xx is the receiver's answer, not a hop)."""
    tid = threading.get_ident()
    c = _clients.get(tid)
    if c is None:
        with _client_lock:
            c = _clients[tid] = httpx.Client(follow_redirects=False, trust_env=False)
    return c


# --- MQTT ------------------------------------------------------------------------------------------

TOPIC_VARS = ("org", "workspace", "device", "attribute", "type", "topic")


def _broker(config: dict[str, Any], settings: Settings) -> tuple[str, int, bool]:
    host = config.get("host")
    if not isinstance(host, str) or not host or "/" in host:
        raise BadRequest("config.host is required: the broker's host name or address")
    tls = bool(config.get("tls", False))
    port = config.get("port", 8883 if tls else 1883)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise BadRequest("config.port must be a port number")
    try:
        check_host(host, port, settings.push_allow_private_targets)
    except TargetRefused as e:
        raise BadRequest(f"config.host: {e}") from None
    return host, port, tls


def _topic(topic: Any) -> str:
    if not isinstance(topic, str) or not topic or "#" in topic or "+" in topic:
        raise BadRequest("config.topic must be a topic template without wildcards")
    try:
        topic.format(**{k: "x" for k in TOPIC_VARS})
    except (KeyError, IndexError, ValueError) as e:
        raise BadRequest(
            f"config.topic: unknown placeholder {e}; use {', '.join('{' + v + '}' for v in TOPIC_VARS)}"
        ) from None
    return topic


class Mqtt:
    name = "mqtt"
    CONFIG = {
        "host",
        "port",
        "tls",
        "ca_cert",
        "username",
        "topic",
        "qos",
        "retain",
        "timeout_s",
        "client_id",
    }
    SECRETS = {"password"}

    def validate(
        self, config: dict[str, Any], secrets: dict[str, Any], settings: Settings
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        host, port, tls = _broker(config, settings)
        topic = _topic(config.get("topic", "{org}/{workspace}/{device}/{attribute}"))
        qos = config.get("qos", 1)
        if qos not in (0, 1, 2):
            raise BadRequest("config.qos must be 0, 1 or 2")
        ca = config.get("ca_cert")
        if ca is not None and (not isinstance(ca, str) or "BEGIN CERTIFICATE" not in ca):
            raise BadRequest("config.ca_cert must be a PEM certificate")
        user = config.get("username")
        if user is not None and not isinstance(user, str):
            raise BadRequest("config.username must be a string")
        password = secrets.get("password")
        if password is not None and not isinstance(password, str):
            raise BadRequest("secrets.password must be a string")
        stored: dict[str, Any] = {
            "host": host,
            "port": port,
            "tls": tls,
            "topic": topic,
            "qos": qos,
            "retain": bool(config.get("retain", False)),
            "username": user,
        }
        if ca:
            stored["ca_cert"] = ca
        if "timeout_s" in config:
            stored["timeout_s"] = _timeout(config, settings)
        return stored, {"password": password} if password else {}, {}

    def send(
        self, config: dict[str, Any], secrets: dict[str, Any], msg: Message, settings: Settings
    ) -> Outcome:
        publishes: list[tuple[str, bytes, int, bool]] = []
        base = msg.payload
        for device, attribute, _unit, _points, series_topic in msg.points:
            names = {**msg.topic_vars, "device": device, "attribute": attribute, "topic": series_topic}
            data = [
                d
                for d in base.get("data", [])
                if d.get("attribute") == attribute and d.get("topic", "default") == series_topic
            ]
            body = orjson.dumps({**base, "data": data})
            publishes.append((config["topic"].format(**names), body, config["qos"], config["retain"]))
        if not msg.points:  # a test message or a rule without data
            names = {**msg.topic_vars, "device": "test", "attribute": "test", "topic": "default"}
            publishes.append((config["topic"].format(**names), orjson.dumps(base), config["qos"], False))
        return mqtt_publish(
            config["host"],
            config["port"],
            publishes,
            settings,
            tls=bool(config.get("tls")),
            ca_cert=config.get("ca_cert"),
            username=config.get("username"),
            password=secrets.get("password"),
            client_id=f"sensorhub-{msg.key}",
            timeout=_timeout(config, settings),
        )


def mqtt_publish(
    host: str,
    port: int,
    publishes: list[tuple[str, bytes, int, bool]],
    settings: Settings,
    *,
    tls: bool = False,
    ca_cert: str | None = None,
    username: str | None = None,
    password: str | None = None,
    client_id: str = "sensorhub",
    timeout: float | None = None,
    mqtt5: bool = False,
    user_properties: dict[str, str] | None = None,
) -> Outcome:
    """Connect (SSRF-checked on what ``host`` resolves to now), publish each ``(topic, payload, qos,
    retain)``, wait for the broker's acknowledgements, disconnect. ``mqtt5``: MQTT 5.0, with
    ``user_properties`` on every message. Used by the ``mqtt`` kind and NGSI-LD MQTT endpoints."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    try:
        check_host(host, port, settings.push_allow_private_targets)
    except TargetRefused as e:
        return Outcome(False, error=str(e), retry=False)
    wait = settings.push_timeout_seconds if timeout is None else timeout
    protocol = mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id[:64], protocol=protocol)
    if username:
        client.username_pw_set(username, password)
    if tls:
        client.tls_set_context(ssl.create_default_context(cadata=ca_cert))
    props = None
    if user_properties:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call,unused-ignore]
        props.UserProperty = list(user_properties.items())
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, ssl.SSLError) as e:
        return Outcome(False, error=f"cannot connect to the broker: {e}"[:500])
    client.loop_start()
    try:
        infos = [
            client.publish(topic, body, qos=qos, retain=retain, properties=props)
            for topic, body, qos, retain in publishes
        ]
        deadline = time.monotonic() + wait
        for info in infos:
            info.wait_for_publish(max(0.01, deadline - time.monotonic()))
            if not info.is_published():
                return Outcome(
                    False, error=f"the broker did not acknowledge the publish (rc={info.rc}) within {wait}s"
                )
    finally:
        client.disconnect()
        client.loop_stop()
    return Outcome(True)


# --- InfluxDB --------------------------------------------------------------------------------------


def _influx_v1(config: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(config.get("database"), str) or not config["database"]:
        raise BadRequest("config.database is required for InfluxDB 1.x")
    out = {"database": config["database"]}
    for k in ("retention_policy", "username"):
        if config.get(k) is not None:
            out[k] = str(config[k])
    return out


def _influx_v2(config: dict[str, Any], secrets: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k in ("org", "bucket"):
        if not isinstance(config.get(k), str) or not config[k]:
            raise BadRequest(f"config.{k} is required for InfluxDB 2.x")
        out[k] = config[k]
    if not isinstance(secrets.get("token"), str):
        raise BadRequest("secrets.token is required for InfluxDB 2.x")
    return out


class InfluxDB:
    name = "influxdb"
    CONFIG = {
        "url",
        "version",
        "database",
        "retention_policy",
        "org",
        "bucket",
        "measurement",
        "username",
        "timeout_s",
    }
    SECRETS = {"password", "token"}

    def validate(
        self, config: dict[str, Any], secrets: dict[str, Any], settings: Settings
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        url = _http_url(config, settings, "the InfluxDB base URL, e.g. https://influx.example.com:8086")
        version = str(config.get("version", "1"))
        stored: dict[str, Any] = {
            "url": url.rstrip("/"),
            "version": version,
            "measurement": config.get("measurement", "sensorhub"),
        }
        if not isinstance(stored["measurement"], str) or not stored["measurement"]:
            raise BadRequest("config.measurement must be a non-empty string")
        if version == "1":
            stored |= _influx_v1(config)
        elif version == "2":
            stored |= _influx_v2(config, secrets)
        else:
            raise BadRequest("config.version must be '1' (/write) or '2' (/api/v2/write)")
        if "timeout_s" in config:
            stored["timeout_s"] = _timeout(config, settings)
        sec = {k: v for k, v in secrets.items() if isinstance(v, str) and v}
        return stored, sec, {}

    def lines(self, config: dict[str, Any], msg: Message) -> bytes:
        from influxdb_client.client.write.point import Point
        from influxdb_client.domain.write_precision import WritePrecision

        out: list[str] = []
        for device, attribute, unit, points, topic in msg.points:
            for t_us, v in points:
                p = Point(config["measurement"]).tag("device", device)  # type: ignore[no-untyped-call,unused-ignore]
                for k in ("type", "workspace"):
                    if msg.topic_vars.get(k):
                        p = p.tag(k, msg.topic_vars[k])
                p = p.tag("topic", topic)
                if unit:
                    p = p.tag("unit", unit)
                p = p.field(
                    attribute, v if isinstance(v, int | float | str | bool) else orjson.dumps(v).decode()
                )
                out.append(p.time(t_us, WritePrecision.US).to_line_protocol())
        return "\n".join(out).encode()

    def send(
        self, config: dict[str, Any], secrets: dict[str, Any], msg: Message, settings: Settings
    ) -> Outcome:
        refused = _refused(config["url"], settings)
        if refused is not None:
            return refused
        body = self.lines(config, msg)
        if not body:
            return Outcome(True)  # nothing numeric to write (e.g. a rule message)
        headers = {"Content-Type": "text/plain; charset=utf-8", "User-Agent": USER_AGENT}
        if config["version"] == "1":
            url = f"{config['url']}/write"
            params = {"db": config["database"], "precision": "u"}
            if config.get("retention_policy"):
                params["rp"] = config["retention_policy"]
            if config.get("username"):
                params["u"] = config["username"]
                params["p"] = secrets.get("password", "")
        else:
            url = f"{config['url']}/api/v2/write"
            params = {"org": config["org"], "bucket": config["bucket"], "precision": "us"}
            headers["Authorization"] = f"Token {secrets.get('token', '')}"
        try:
            r = http_client().post(
                url, params=params, content=body, headers=headers, timeout=_timeout(config, settings)
            )
        except httpx.HTTPError as e:
            return Outcome(False, error=http_error(e).replace(secrets.get("password", "\0"), "***"))
        return http_outcome(r)


# --- e-mail ----------------------------------------------------------------------------------------


class Email:
    name = "email"
    CONFIG = {"to", "subject"}
    SECRETS: set[str] = set()

    def validate(
        self, config: dict[str, Any], secrets: dict[str, Any], settings: Settings
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        to = config.get("to")
        if isinstance(to, str):
            to = [to]
        if not isinstance(to, list) or not to or len(to) > 50:
            raise BadRequest("config.to must be a list of 1-50 e-mail addresses")
        for a in to:
            if (
                not isinstance(a, str)
                or a.count("@") != 1
                or any(c in a for c in " ,;<>\r\n")
                or len(a) > 320
            ):
                raise BadRequest(f"config.to: {a!r} is not an e-mail address")
        subject = config.get("subject")
        if subject is not None and (not isinstance(subject, str) or "\n" in subject or len(subject) > 200):
            raise BadRequest("config.subject must be one line of at most 200 characters")
        if SmtpConfig.from_settings(settings) is None:
            raise BadRequest(
                "e-mail is not configured on this server (the operator sets SENSORHUB_SMTP_HOST)"
            )
        return {"to": to, "subject": subject}, {}, {}

    def send(
        self, config: dict[str, Any], secrets: dict[str, Any], msg: Message, settings: Settings
    ) -> Outcome:
        smtp = SmtpConfig.from_settings(settings)
        if smtp is None:
            return Outcome(False, error="e-mail is not configured on this server (SENSORHUB_SMTP_HOST)")
        try:
            send_mail(
                smtp,
                config["to"],
                config.get("subject") or msg.subject,
                msg.text + "\n\n" + orjson.dumps(msg.payload, option=orjson.OPT_INDENT_2).decode(),
                headers={DELIVERY_HEADER: msg.key},
            )
        except MailError as e:
            return Outcome(False, error=str(e))
        return Outcome(True)


CONNECTOR_KINDS: dict[str, ConnectorKind] = {k.name: k for k in (Webhook(), Mqtt(), InfluxDB(), Email())}


def summary(msg_payload: dict[str, Any]) -> str:
    """A one-paragraph text for a data message (when no rule template renders one)."""
    dev = msg_payload.get("device", {}).get("id", "?")
    parts = []
    for d in msg_payload.get("data", []):
        pts = d.get("points", [])
        if pts:
            last = pts[-1]
            unit = f" {d['unit']}" if d.get("unit") else ""
            parts.append(
                f"{d['attribute']}={last['value']}{unit} at {last['time']}"
                + (f" (+{len(pts) - 1} more)" if len(pts) > 1 else "")
            )
    return f"{dev}: " + ("; ".join(parts) if parts else "no data")


def now_iso() -> str:
    return iso(int(datetime.now(UTC).timestamp() * 1_000_000))


def grace_until(hours: float) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)
