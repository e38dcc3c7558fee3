"""The one ingest step of the production MQTT path (Mosquitto + the sensorhub plugin): a device message
the plugin relays, with the id of the credential the device connected with and the time Mosquitto
received it, is checked again with that credential's *current* rights (:func:`broker.admit`: the topic
rules, rate limit and payload limit the embedded broker applies) and stored through the one ingest
service (:meth:`broker.GroupWriter.store`: all or nothing per message, auto-provisioning, the outbox that
feeds live values). Two callers: ``sensorhub mqtt-bridge`` for QoS 0 messages (batched, after
Mosquitto has delivered them to the bridge) and ``/internal/mqtt/ingest`` for QoS 1 and 2 messages,
which the plugin asks before Mosquitto acknowledges them (docs/mqtt.md "Delivery guarantees")."""

from __future__ import annotations

from anyio import to_thread

from sensorhub import metrics
from sensorhub.auth.principal import Principal
from sensorhub.auth.resolve import Rejected, resolve_id
from sensorhub.context import AppContext
from sensorhub.db import utcnow
from sensorhub.kit.time import from_us
from sensorhub.mqtt.broker import GroupWriter, Refused
from sensorhub.timeseries import ingest


class RelayedMessages:
    """Stores relayed device messages; credentials are re-read by id once per change of what
    credentials may do (the auth cache's generation)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.writer = GroupWriter(ctx, ingest.Limits.from_settings(ctx.settings))
        self._principals: dict[str, Principal | None] = {}
        self._generation = ctx.cache.generation

    async def store(self, credential_id: str, received_us: int, topic: str, payload: bytes) -> None:
        """Store one message, or raise :class:`Refused` (nothing stored, for good) or
        :class:`broker.StoreFailed` (the database failed: nothing stored, the message may come again)."""
        try:
            received = from_us(received_us)
            principal = await self.principal(credential_id)
            if principal is None:
                raise Refused("the credential was revoked, has expired or its owner was disabled")
            await self.writer.store(principal, topic, payload, received)
        except Refused:
            metrics.mqtt_refused.inc()
            raise

    def forget_credentials(self) -> None:
        self._principals.clear()

    async def principal(self, credential_id: str) -> Principal | None:
        generation = self.ctx.cache.generation
        if generation != self._generation:
            self._principals.clear()
            self._generation = generation
        if credential_id not in self._principals:
            self._principals[credential_id] = await to_thread.run_sync(self._resolve, credential_id)
        return self._principals[credential_id]

    def _resolve(self, credential_id: str) -> Principal | None:
        with self.ctx.db.session() as s:
            try:
                return resolve_id(s, credential_id, self.ctx.settings, utcnow())
            except Rejected:
                return None

    async def stop(self) -> None:
        await self.writer.stop()
