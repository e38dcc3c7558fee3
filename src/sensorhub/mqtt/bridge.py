"""``sensorhub mqtt-bridge``: sensorhub's side of a production Mosquitto (docs/mqtt.md "Production:
Mosquitto"). A paho-mqtt client that

- **ingests**: an MQTT 5 persistent session (clean start off, a session that never expires, a stable
  client id) with the shared subscription ``$share/sensorhub/sensorhub-ingest/#``: the sensorhub
  plugin moves each device message from
  ``sensorhub/{org}/{workspace}/{device}[/{attribute}]`` to
  ``sensorhub-ingest/{credential id}/{received µs}/sensorhub/...`` (after Mosquitto's ACL check, which
  asked sensorhub), so the bridge knows which credential published and when Mosquitto received it. The
  message is stored by :class:`~sensorhub.mqtt.relayed.RelayedMessages` (checked again with that
  credential's *current* rights, then the one ingest service); the PUBACK to Mosquitto is sent only
  once its transaction has committed. QoS 1 and 2 messages arrive already stored (the plugin had
  ``/internal/mqtt/ingest`` store them before Mosquitto acknowledged them to the device; user property
  ``sensorhub-stored``): the bridge only acknowledges those. A message sensorhub refuses is not stored and is logged, and the bridge asks the plugin
  (``{"command": "kick"}`` on ``$CONTROL/sensorhub/v1``) to disconnect the client that published it,
  named by the message's ``sensorhub-client`` user property (set by the plugin, never by a client),
  as the embedded broker closes that connection. Several bridges share the subscription (Mosquitto
  hands each message to one of them); messages arriving while every bridge is down are queued by
  Mosquitto for the persistent session.
- **publishes live values**: every value stored by any path (the outbox, :mod:`sensorhub.push.live`) on
  ``sensorhub/{org}/{workspace}/{entity}/{attribute}``; Mosquitto delivers it only to subscribers the
  plugin's read check (sensorhub's grants, per value) lets through. One bridge publishes (``--no-live``
  on the others).
- **revocation**: when what credentials may do changes (this process's commits, or another's through
  the epoch file / Redis), it publishes ``{"command": "recheck"}`` on ``$CONTROL/sensorhub/v1``: the
  plugin drops its cached answers and disconnects the clients sensorhub no longer accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import orjson
import paho.mqtt.client as mqtt
from anyio import to_thread
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sensorhub.accounts.models import Organisation
from sensorhub.authz.access import Access, AccessRule
from sensorhub.context import AppContext
from sensorhub.mqtt.broker import CredentialChanges, Refused, StoreFailed, ValueTopics, value_payload
from sensorhub.mqtt.relayed import RelayedMessages
from sensorhub.push.live import FeedClosed, LiveEvent, LiveFeed, Selection

log = logging.getLogger("sensorhub.mqtt")

INGEST_ROOT = "sensorhub-ingest"
SHARED_SUBSCRIPTION = f"$share/sensorhub/{INGEST_ROOT}/#"
CONTROL_TOPIC = "$CONTROL/sensorhub/v1"
CLIENT_PROPERTY = "sensorhub-client"  # the publisher's client id, set by the plugin
STORED_PROPERTY = "sensorhub-stored"  # set by the plugin: sensorhub stored it before Mosquitto's PUBACK
NEVER_EXPIRES = 0xFFFFFFFF  # MQTT 5 session expiry interval: the session outlives every disconnect


def default_client_id() -> str:
    return f"sensorhub-bridge-{socket.gethostname()}"


def user_property(msg: mqtt.MQTTMessage, wanted: str) -> str | None:
    """A user property the plugin attached to the message (a client's own are removed by the plugin):
    ``sensorhub-client``, the publisher's client id (None: an older plugin), or ``sensorhub-stored``."""
    properties = getattr(msg, "properties", None)
    for name, value in getattr(properties, "UserProperty", None) or ():
        if name == wanted:
            return str(value)
    return None


class Everything:
    """The bridge's view of the live feed: every organisation (re-read every few seconds); who may
    receive a value is decided per subscriber by the plugin's read check."""

    key = "mqtt-bridge"

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._access = Access(())
        self._read_at = 0.0

    def _orgs(self) -> Access:
        with self.ctx.db.session() as s:
            ids = s.query(Organisation.id).all()
        return Access(tuple(AccessRule(i) for (i,) in ids))

    async def current(self) -> Access:
        loop = asyncio.get_running_loop()
        if loop.time() - self._read_at > 5:
            self._access = await to_thread.run_sync(self._orgs)
            self._read_at = loop.time()
        return self._access


class Bridge:
    def __init__(self, ctx: AppContext, client_id: str, live: bool = True) -> None:
        settings = ctx.settings
        if not settings.mqtt_plugin_secret:
            raise ValueError(
                "SENSORHUB_MQTT_PLUGIN_SECRET is not set: the bridge logs in to Mosquitto with it"
            )
        self.ctx = ctx
        self.live = live
        self.relayed = RelayedMessages(ctx)
        host, _, port = settings.mqtt_broker.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self.client.username_pw_set(settings.mqtt_bridge_username, settings.mqtt_plugin_secret)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connected = asyncio.Event()
        self.changes = CredentialChanges(ctx)
        self._topics = ValueTopics(ctx)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- MQTT (paho's thread) ------------------------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        if getattr(rc, "is_failure", False):
            log.warning("mqtt bridge: Mosquitto refused the connection: %s", rc)
            return
        client.subscribe(SHARED_SUBSCRIPTION, qos=1)
        log.info(
            "mqtt bridge connected to %s:%s (subscribed to %s)", self.host, self.port, SHARED_SUBSCRIPTION
        )
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.connected.set)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.qos > 0 and user_property(msg, STORED_PROPERTY) is not None:
            # Stored by /internal/mqtt/ingest before Mosquitto acknowledged it to the device (QoS 1 and
            # 2): nothing left to do; its live value comes from the outbox like every stored value's.
            client.ack(msg.mid, msg.qos)
            return
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._received, msg)

    # -- ingest (the event loop) ---------------------------------------------------------------------
    def _received(self, msg: mqtt.MQTTMessage) -> None:
        task = asyncio.create_task(self._store(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store(self, msg: mqtt.MQTTMessage) -> None:
        levels = msg.topic.split("/", 3)
        publisher: str | None = None
        try:
            if len(levels) != 4 or levels[0] != INGEST_ROOT or not levels[2].isdigit():
                raise Refused(f"not a topic the sensorhub plugin writes: {msg.topic[:120]!r}")
            publisher = user_property(msg, CLIENT_PROPERTY)
            await self.relayed.store(levels[1], int(levels[2]), levels[3], bytes(msg.payload))
        except StoreFailed:
            # Not acknowledged: reconnecting makes Mosquitto send it (and every unacknowledged one) again.
            log.warning("mqtt bridge: the database failed; reconnecting so Mosquitto resends")
            self.client.disconnect()
            return
        except Refused as e:
            log.warning(
                "mqtt publish refused, nothing stored%s: client=%s credential=%s topic=%r reason=%s",
                "; disconnecting the client" if publisher is not None else "",
                publisher or "-",
                levels[1] if len(levels) > 1 else "-",
                "/".join(levels[3:])[:200],
                e,
            )
            if publisher is not None:
                self._kick(publisher, levels[1], str(e))
        if msg.qos > 0:
            self.client.ack(msg.mid, msg.qos)  # stored (or refused for good): Mosquitto may drop it

    def _kick(self, client_id: str, credential_id: str, reason: str) -> None:
        """Have the plugin disconnect the client whose message was refused (if still connected with
        that credential), as the embedded broker closes the connection."""
        command = {
            "command": "kick",
            "client": client_id,
            "credential": credential_id,
            "reason": reason[:200],
        }
        self.client.publish(CONTROL_TOPIC, orjson.dumps(command), qos=1)

    # -- live values ---------------------------------------------------------------------------------
    async def publish_live(self) -> None:
        feed = LiveFeed(self.ctx.live, Everything(self.ctx), Selection())
        try:
            await feed.open()
            log.info("mqtt bridge: publishing live values (every value stored from now on)")
            async for item in feed:
                if isinstance(item, LiveEvent) and item.points:
                    await self._publish_value(item)
        except FeedClosed as e:
            log.warning("mqtt bridge: the live feed closed (%s)", e.reason)
        finally:
            feed.close()

    async def _publish_value(self, ev: LiveEvent) -> None:
        topic = await self._topics.of(ev)
        if topic is not None:
            self.client.publish(topic, value_payload(ev), qos=1)

    # -- revocation ----------------------------------------------------------------------------------
    async def watch_credentials(self) -> None:
        while True:
            if await self.changes.wait():
                self.relayed.forget_credentials()
                self.client.publish(CONTROL_TOPIC, orjson.dumps({"command": "recheck"}), qos=1)
                log.info("mqtt bridge: credentials changed; asked Mosquitto to recheck its clients")

    # -- run -----------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self.loop = self.changes.loop = asyncio.get_running_loop()
        self.ctx.db.auth_listeners.append(self.changes.tell)
        session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call,unused-ignore]  # paho: untyped
        session.SessionExpiryInterval = NEVER_EXPIRES
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=session)
        self.client.loop_start()
        tasks = [asyncio.create_task(self.watch_credentials(), name="sensorhub-bridge-credentials")]
        if self.live:
            tasks.append(asyncio.create_task(self.publish_live(), name="sensorhub-bridge-live"))
        try:
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            with contextlib.suppress(ValueError):
                self.ctx.db.auth_listeners.remove(self.changes.tell)
            # Unacknowledged messages stay with Mosquitto (persistent session): they come again.
            self.client.disconnect()
            self.client.loop_stop()
            await self.relayed.stop()
