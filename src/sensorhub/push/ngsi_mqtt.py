"""The NGSI-LD MQTT notification binding (ETSI GS CIM 009 V1.8 §7.4 and annex C).

An endpoint ``mqtt://[user:password@]host[:port]/topic`` (``mqtts://`` over TLS) with ``notifierInfo``
``MQTT-Version`` (``mqtt3.1.1``, the default, or ``mqtt5.0``) and ``MQTT-QoS`` (0, the default, 1 or 2).
The message published to ``topic``: for MQTT 3.1.1 ``{"metadata": {HTTP binding headers}, "body":
Notification}``; for MQTT 5.0 the Notification as the payload and the headers as user properties.

The password in the URI is taken out before the subscription is stored (sealed with the push secrets
key) and never shown again: the subscription shows the URI with ``***`` in its place. Publishing reuses
the MQTT connector's client (:func:`sensorhub.push.kinds.mqtt_publish`, the same SSRF check at send
time).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson

from sensorhub.config import Settings
from sensorhub.errors import BadRequest
from sensorhub.push.crypto import decrypt, encrypt
from sensorhub.push.kinds import Outcome, mqtt_publish
from sensorhub.push.ssrf import TargetRefused, check_host

SCHEMES = ("mqtt", "mqtts")
VERSIONS = ("mqtt3.1.1", "mqtt5.0")
NOTIFIER_KEYS = ("MQTT-Version", "MQTT-QoS")
MASK = "***"
FIELD = "notification.endpoint.uri"


def is_mqtt(uri: str) -> bool:
    return urlsplit(uri).scheme in SCHEMES


def _parts(uri: str) -> tuple[str, int, str, bool]:
    """``(host, port, topic, tls)``; 400 naming what is wrong."""
    parts = urlsplit(uri)
    tls = parts.scheme == "mqtts"
    if not parts.hostname:
        raise BadRequest(f"'{FIELD}' must name the broker: mqtt://[user:password@]host[:port]/topic")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise BadRequest(f"'{FIELD}' has an invalid port") from None
    topic = unquote(parts.path[1:])
    if not topic or topic.endswith("/") or "+" in topic or "#" in uri or "?" in uri:
        raise BadRequest(
            f"'{FIELD}' must end with the topic to publish to, without wildcards, query or fragment: "
            "mqtt://host[:port]/topic"
        )
    return parts.hostname, port, topic, tls


def check_uri(uri: str) -> None:
    _parts(uri)


def notifier_info(value: Any) -> list[dict[str, str]]:
    """``notifierInfo`` checked: a list of ``{key, value}``; only the MQTT keys, each at most once."""
    where = "notification.endpoint.notifierInfo"
    if not isinstance(value, list) or not value:
        raise BadRequest(f"'{where}' must be a non-empty list of {{key, value}} objects")
    out: dict[str, str] = {}
    for i, kv in enumerate(value):
        if not isinstance(kv, dict) or set(kv) != {"key", "value"}:
            raise BadRequest(f"'{where}[{i}]' must be an object with exactly key and value")
        key, val = kv["key"], kv["value"]
        if key not in NOTIFIER_KEYS:
            raise BadRequest(
                f"'{where}[{i}].key' {key!r} is not supported; notifierInfo may hold "
                f"{' and '.join(NOTIFIER_KEYS)}"
            )
        if key in out:
            raise BadRequest(f"'{where}' names {key} twice")
        if key == "MQTT-Version" and val not in VERSIONS:
            raise BadRequest(f"'{where}[{i}]': MQTT-Version must be {' or '.join(VERSIONS)}")
        if key == "MQTT-QoS" and val not in ("0", "1", "2", 0, 1, 2):
            raise BadRequest(f"'{where}[{i}]': MQTT-QoS must be 0, 1 or 2")
        out[key] = str(val)
    return [{"key": k, "value": v} for k, v in out.items()]


def check_target(uri: str, allow_private: bool) -> None:
    """The SSRF check of the MQTT connector on the broker's host (400 naming the field)."""
    host, port, _topic, _tls = _parts(uri)
    try:
        check_host(host, port, allow_private)
    except TargetRefused as e:
        raise BadRequest(f"{FIELD}: {e}") from None


def seal(spec: dict[str, Any], settings: Settings, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """``spec`` with the password taken out of an MQTT endpoint's URI and stored sealed.

    ``previous`` is the stored spec an update starts from: a URI sent back as it was shown, with ``***``
    for the password, keeps the stored password when user, broker and topic are unchanged (a client that
    GETs, edits another member and PATCHes the whole notification back must not store ``***``)."""
    endpoint = spec["notification"]["endpoint"]
    parts = urlsplit(endpoint["uri"])
    if parts.scheme not in SCHEMES or parts.password is None:
        return spec
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
    uri = urlunsplit(parts._replace(netloc=f"{user}@{netloc}"))
    if parts.password == MASK:
        before = ((previous or {}).get("notification") or {}).get("endpoint") or {}
        if "secret" not in before or before.get("uri") != uri:
            raise BadRequest(
                f"'{FIELD}': '{MASK}' is how the stored password is shown, not a password; send the real "
                "password, or the unchanged URI to keep the stored one"
            )
        secret = before["secret"]
    else:
        secret = encrypt(settings, {"password": unquote(parts.password)})
    sealed = {**endpoint, "uri": uri, "secret": secret}
    return {**spec, "notification": {**spec["notification"], "endpoint": sealed}}


def shown(endpoint: dict[str, Any]) -> dict[str, Any]:
    """The endpoint as the owner sees it: no sealed secret, ``***`` where the password was."""
    out = {k: v for k, v in endpoint.items() if k != "secret"}
    if "secret" in endpoint:
        parts = urlsplit(endpoint["uri"])
        user, host = parts.netloc.rsplit("@", 1)
        out["uri"] = urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))
    return out


def publish(
    endpoint: dict[str, Any], body: bytes, content_type: str, link: str | None, key: str, settings: Settings
) -> Outcome:
    """Publish one Notification (already JSON) to the endpoint's broker and topic."""
    host, port, topic, tls = _parts(endpoint["uri"])
    info = {kv["key"]: kv["value"] for kv in endpoint.get("notifierInfo", [])}
    version = info.get("MQTT-Version", "mqtt3.1.1")
    qos = int(info.get("MQTT-QoS", "0"))
    metadata = {"Content-Type": content_type}
    if link:
        metadata["Link"] = link
    user = urlsplit(endpoint["uri"]).username
    password = decrypt(settings, endpoint["secret"]).get("password") if "secret" in endpoint else None
    if version == "mqtt5.0":
        payload, properties = body, metadata
    else:
        payload = orjson.dumps({"metadata": metadata, "body": orjson.loads(body)})
        properties = None
    return mqtt_publish(
        host,
        port,
        [(topic, payload, qos, False)],
        settings,
        tls=tls,
        username=unquote(user) if user else None,
        password=password,
        client_id=f"sensorhub-{key}",
        mqtt5=version == "mqtt5.0",
        user_properties=properties,
    )
