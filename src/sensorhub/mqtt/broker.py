"""The embedded MQTT broker: amqtt (a maintained MQTT 3.1.1 broker) with sensorhub's tokens, topic ACLs
and ingest service plugged in. Nothing of the MQTT protocol is implemented here.

- **Connect**: the token is the password, and the username is the same token (Datacake's convention).
  It is checked like an HTTP request's (format and checksum first, cache, database, expiry, owner,
  IP allowlist, HTTPS-only → TLS-only); a connection whose token has neither ``ingest`` nor
  ``telemetry`` is refused (CONNACK 5, not authorised), with one log line without secrets.
- **Publish** (``ingest``): :meth:`MqttService.on_publish` stores the message through the one ingest
  service (:mod:`sensorhub.timeseries.ingest`: same validation, limits, write windows, all-or-nothing,
  idempotent on (series, timestamp)) *before* the QoS 1 PUBACK is sent: :class:`IngestHandler` replaces
  amqtt's publish handling, which acknowledges first. A refused message stores nothing and closes the
  connection (MQTT 3.1.1 has no negative PUBACK; closing is what the standard allows, and it tells a
  QoS 1 publisher the message was not taken), with a log line naming the credential id and the reason.
  Client messages are never forwarded by the broker: subscribers only get values that were stored.
- **Subscribe** (``telemetry``): filters under ``sensorhub/``; every stored value is delivered to each
  connected subscriber whose filter matches its topic and whose credential may read that entity at
  that timestamp (the same :class:`~sensorhub.authz.access.Access` as the HTTP reads).
- **Revocation**: every change to what credentials may do (``db.auth_changed`` → the app context's
  invalidation, or another process's through the epoch file / Redis) makes the service re-resolve the
  credential of every session from the database; a revoked, expired or disabled one is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action, BrokerConfig, ListenerConfig, ListenerType
from amqtt.errors import BrokerError
from amqtt.mqtt.constants import QOS_0, QOS_1
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.publish import PublishPacket
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.plugins.manager import PluginManager
from amqtt.session import Session as MqttSession
from anyio import to_thread
from sqlalchemy.orm import Session

from sensorhub import metrics
from sensorhub.accounts.models import Organisation, Workspace
from sensorhub.auth.principal import Principal
from sensorhub.auth.token_format import digest as token_digest
from sensorhub.authz.access import Access
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.db import utcnow
from sensorhub.errors import SensorhubError
from sensorhub.kit.time import iso, to_us
from sensorhub.mqtt import rules, topics
from sensorhub.push.live import FeedClosed, LiveEvent, LiveFeed, Selection, TokenViewer
from sensorhub.timeseries import ingest, provisioning

log = logging.getLogger("sensorhub.mqtt")

# How often credentials of connected sessions are re-checked when nothing told us to (expiry, and
# invalidations from other processes that only the epoch file or Redis carries).
RECHECK_SECONDS = 0.25


@dataclass
class Client:
    """One authenticated connection: its credential as of the last check."""

    client_id: str
    digest: str
    principal: Principal
    ip: str
    tls: bool
    closed: bool = False


class Refused(Exception):
    """A publish that stores nothing; ``reason`` goes to the log (never a secret)."""


class StoreFailed(SensorhubError):
    """The transaction of a batch failed as a whole (the database): nothing of it is stored, and the
    message may be sent again."""


def admit(
    ctx: AppContext, principal: Principal, topic: str, payload: bytes, received: datetime
) -> tuple[Access, topics.Target, bytes, bool]:
    """What storing one published message takes — the ingest access, the target, the backfill body,
    whether it is a single record — or :class:`Refused` with nothing stored: the topic rules
    (:func:`rules.publish_target`), the credential's rate limit and the payload limit. Both brokers'
    ingest paths go through here (the embedded one, and the Mosquitto bridge)."""
    checked = rules.publish_target(principal, topic, received)
    if isinstance(checked, str):
        raise Refused(checked)
    target, access = checked
    decision = ctx.limiter.hit(f"cred:{principal.credential_id}", principal.rate_limit_per_minute, 60)
    if not decision.allowed:
        raise Refused(f"rate limit of {decision.limit} messages per minute exceeded")
    limit = ctx.settings.mqtt_max_payload_bytes
    if len(payload) > limit:
        raise Refused(
            f"payload of {len(payload)} bytes is larger than {limit} (SENSORHUB_MQTT_MAX_PAYLOAD_BYTES)"
        )
    record = target.attribute is not None
    try:
        raw = topics.body_of(target, payload, iso(to_us(received)) if record else None)
    except SensorhubError as e:
        raise Refused(e.message) from None
    return access, target, raw, record


@dataclass(slots=True)
class _Item:
    access: Access
    target: topics.Target
    raw: bytes
    received: datetime
    done: asyncio.Future[dict[str, int]]
    # A plain number on an attribute topic, timestamped on receipt: its body is one record that can be
    # stored together with the device's other such records of the batch.
    record: bool
    writer: provisioning.Writer | None = None


_NOTHING = {"accepted": 0, "duplicates": 0}


class GroupWriter:
    """Stores the messages of every session through the ingest service, several per transaction
    (group commit), a message acknowledged only once its transaction has committed.

    All or nothing per message: each is stored in a SAVEPOINT of its own, so a refused one is rolled back
    alone and the others commit. Plain numbers on attribute topics (one timestamped record each) of one
    device and tenant are first tried as one ingest call (a list of records: the ingest service's cost
    is per call, not per record); if that call is refused, they are stored one by one, so only the
    message at fault is refused. One transaction per message would make the commit (and on SQLite the
    write lock) the cost of every message."""

    MAX_BATCH = 1000

    def __init__(self, ctx: AppContext, limits: ingest.Limits) -> None:
        self.ctx = ctx
        self.limits = limits
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def store(self, principal: Principal, topic: str, payload: bytes, received: datetime) -> None:
        """Store one message ``principal`` published: :func:`admit`, then queued (:meth:`submit`) and
        counted in the metrics once its transaction has committed. Raises :class:`Refused` (nothing
        stored, for good: refused by the admission or by the ingest service) or :class:`StoreFailed`
        (the database failed: nothing stored, the message may be sent again). Both brokers' ingest
        paths store through here."""
        access, target, raw, record = admit(self.ctx, principal, topic, payload, received)
        writer = provisioning.Writer(principal.credential_id, principal.user_id, "mqtt")
        try:
            stored = await self.submit(access, target, raw, received, record, writer)
        except StoreFailed:
            raise
        except SensorhubError as e:
            raise Refused(e.message) from None
        ingest.count_stored(stored)
        metrics.mqtt_stored.inc()

    def submit(
        self,
        access: Access,
        target: topics.Target,
        raw: bytes,
        received: datetime,
        record: bool,
        writer: provisioning.Writer | None = None,
    ) -> asyncio.Future[dict[str, int]]:
        """Queue one message (in arrival order); the future is its result once committed, or the ingest
        error that refused it."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="sensorhub-mqtt-writer")
        done: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(access, target, raw, received, done, record, writer))
        return done

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            items = [await self._queue.get()]
            while not self._queue.empty() and len(items) < self.MAX_BATCH:
                items.append(self._queue.get_nowait())
            try:
                results = await to_thread.run_sync(self._store_all, items)
            except Exception as e:  # the transaction failed as a whole: nothing of it is stored
                log.warning("mqtt ingest transaction failed (%d messages refused): %s", len(items), e)
                failed = StoreFailed("the database could not store the message; send it again")
                results = [failed] * len(items)
            for item, result in zip(items, results, strict=True):
                if item.done.done():
                    continue
                if isinstance(result, BaseException):
                    item.done.set_exception(result)
                else:
                    item.done.set_result(result)

    def _store_all(self, items: list[_Item]) -> list[dict[str, int] | SensorhubError]:
        out: dict[int, dict[str, int] | SensorhubError] = {}
        groups: dict[tuple[Access, provisioning.Writer | None, str, str], list[int]] = {}
        for i, item in enumerate(items):
            if item.record:
                key = (item.access, item.writer, item.target.tenant, item.target.device)
                groups.setdefault(key, []).append(i)
        with self.ctx.db.transaction() as s:
            for members in groups.values():
                stored = self._store_records(s, [items[i] for i in members]) if len(members) > 1 else None
                if stored is not None:
                    out.update({i: _NOTHING for i in members})
                    out[members[0]] = stored
            for i, item in enumerate(items):
                if i not in out:
                    out[i] = self._store_one(s, item)
        return [out[i] for i in range(len(items))]

    def _store_records(self, s: Session, group: list[_Item]) -> dict[str, int] | None:
        """The group's records as one ingest call in a SAVEPOINT; None if refused (rolled back)."""
        raw = b"[" + b",".join(item.raw for item in group) + b"]"
        try:
            return self._ingest(s, group[0], raw)
        except Exception:
            return None

    def _store_one(self, s: Session, item: _Item) -> dict[str, int] | SensorhubError:
        try:
            return self._ingest(s, item, item.raw)
        except SensorhubError as e:
            return e
        except Exception:  # rolled back to its savepoint; the others still commit
            log.exception("mqtt message could not be stored")
            return SensorhubError("the message could not be stored")

    def _ingest(self, s: Session, item: _Item, raw: bytes) -> dict[str, int]:
        """``raw`` (``item``'s body, or its group's) stored for ``item``'s device in a SAVEPOINT of its
        own. As the HTTP backfill: the body is checked entirely (prepare) before it touches the
        database, then stored (store repeats every check the database decides) with its outbox events."""
        prepared = ingest.prepare(raw, item.received, self.limits)
        with s.begin_nested():
            return ingest.store(s, item.access, item.target.device, prepared, self.limits, writer=item.writer)


class IngestHandler(BrokerProtocolHandler):
    """amqtt's broker-side protocol handler, except for incoming PUBLISH: the message is stored first,
    then acknowledged (QoS 1 PUBACK, or the QoS 2 flow); a refused one closes the connection. One
    session's messages are stored and acknowledged in the order they arrived [MQTT-4.6.0-2]."""

    def __init__(
        self,
        plugins_manager: PluginManager[Any],
        service: MqttService,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(plugins_manager, loop=loop)
        self.service = service
        self.client: Client | None = None
        self.live: asyncio.Task[None] | None = None  # the session's live feed, from its first subscription
        # Each message waits for the one before it to be acknowledged (or refused) before it is.
        self._previous: asyncio.Future[None] | None = None

    async def start(self) -> None:
        if self.session is not None and self.client is None:
            self.client = self.service.claim(self.session.client_id, self)
        await super().start()

    async def stop(self) -> None:
        self.service.release(self)
        await super().stop()

    async def handle_publish(self, publish_packet: PublishPacket) -> None:
        topic, data = publish_packet.topic_name, publish_packet.data
        if topic is None or data is None:
            return
        received = utcnow()
        # Messages are queued in arrival order (this runs up to submit() without awaiting), stored in
        # batches, and acknowledged in arrival order [MQTT-4.6.0-2]: each waits for its predecessor.
        previous, mine = self._previous, asyncio.get_running_loop().create_future()
        self._previous = mine
        try:
            await self._handle(publish_packet, topic, bytes(data), received, previous)
        finally:
            if not mine.done():
                mine.set_result(None)

    async def _handle(
        self,
        publish_packet: PublishPacket,
        topic: str,
        data: bytes,
        received: datetime,
        previous: asyncio.Future[None] | None,
    ) -> None:
        client = self.client
        if client is None or client.closed:
            return
        refused: Refused | None = None
        try:
            await self.service.on_publish(client, topic, data, received)
        except Refused as r:
            refused = r
        if previous is not None:
            await asyncio.shield(previous)
        if client.closed:
            return
        if refused is not None:
            log.warning(
                "mqtt publish refused, nothing stored; closing the connection: client=%s credential=%s "
                "topic=%r reason=%s",
                client.client_id,
                client.principal.credential_id,
                topic[:200],
                refused,
            )
            metrics.mqtt_refused.inc()
            await self.service.disconnect(self)
            return
        qos = publish_packet.qos
        if qos == QOS_1:
            assert publish_packet.variable_header is not None
            await self._send_packet(PubackPacket.build(publish_packet.variable_header.packet_id))
        elif qos != QOS_0:
            # QoS 2: stored (idempotently); the library's PUBREC/PUBREL/PUBCOMP flow follows, and the
            # topic ACL keeps the broker from forwarding the message itself.
            await super().handle_publish(publish_packet)


class SensorhubBroker(Broker):
    """amqtt's broker with :class:`IngestHandler` as the protocol handler of every connection."""

    def __init__(self, config: BrokerConfig, service: MqttService) -> None:
        super().__init__(config)
        self.service = service

    async def _initialize_client_session(
        self, reader: Any, writer: Any, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, MqttSession]:
        # The library reads and checks CONNECT and sets up the session; only the handler is ours.
        # (amqtt 0.12 has no hook between receiving a PUBLISH and its PUBACK: see docs/mqtt.md.)
        _, session = await super()._initialize_client_session(reader, writer, remote_address, remote_port)
        return IngestHandler(self.plugins_manager, self.service, loop=self._loop), session

    def matches(self, topic: str, topic_filter: str) -> bool:
        """MQTT topic-filter matching, the library's own (wildcards, ``$`` topics)."""
        matched: bool = self._matches(topic, topic_filter)
        return matched


class TokenAuthPlugin(BaseAuthPlugin):
    """CONNECT: a sensorhub token as username and password."""

    @dataclass
    class Config:
        service: Any = None

    async def authenticate(self, *, session: MqttSession) -> bool | None:
        service: MqttService = self.config.service
        ok: bool = await service.authenticate(session)
        return ok


class TopicAclPlugin(BaseTopicPlugin):
    """SUBSCRIBE: filters a ``telemetry`` token may use. The broker itself forwards nothing: published
    messages are stored (and values delivered by :meth:`MqttService.deliver`), will messages dropped."""

    @dataclass
    class Config:
        service: Any = None

    async def topic_filtering(
        self, *, session: MqttSession | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool | None:
        service: MqttService = self.config.service
        if action == Action.SUBSCRIBE and session is not None and topic is not None:
            ok: bool = await service.may_subscribe(session, topic)
            return ok
        return False


class MqttService:
    """The sensorhub side of the broker: credentials of the connected sessions, storing what they
    publish, delivering stored values to subscribers, disconnecting revoked sessions."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.limits = ingest.Limits.from_settings(ctx.settings)
        self.broker: SensorhubBroker | None = None
        self.handlers: set[IngestHandler] = set()
        self._authenticated: dict[str, Client] = {}
        self.changes = CredentialChanges(ctx)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.writer = GroupWriter(ctx, self.limits)
        self._topics = ValueTopics(ctx)

    # -- connect -------------------------------------------------------------------------------------
    async def authenticate(self, session: MqttSession) -> bool:
        ip = session.remote_address or ""
        cid = session.client_id or ""
        user, password = session.username, session.password
        if not password or user != password:
            return self._refuse(ip, cid, password or "", "username and password must both be the token")
        principal = await self.ctx.auth.principal_of(password)
        if principal is None:
            return self._refuse(ip, cid, password, "invalid, expired or revoked token")
        tls = session.ssl_object is not None
        problem = self._unusable(principal, ip, tls)
        if problem is not None:
            return self._refuse(ip, cid, password, problem, principal)
        # A will message would bypass the ingest service (and a retained one reach every later subscriber
        # unfiltered): wills are not supported and dropped here.
        session.will_flag = False
        session.will_retain = False
        self._authenticated[cid] = Client(cid, token_digest(password), principal, ip, tls)
        log.info("mqtt client connected: client=%s credential=%s ip=%s", cid, principal.credential_id, ip)
        return True

    def _unusable(self, principal: Principal, ip: str, tls: bool) -> str | None:
        return rules.connect_refusal(principal, ip, tls, self.settings.require_https, utcnow())

    def _refuse(
        self, ip: str, cid: str, credential: str, reason: str, principal: Principal | None = None
    ) -> bool:
        self.ctx.auth.failures["mqtt_connect_refused"] += 1
        self.ctx.auth.count_failure(ip, credential)
        log.warning(
            "mqtt connect refused: client=%r ip=%s credential=%s reason=%s",
            cid[:64],
            ip,
            principal.credential_id if principal else "-",
            reason,
        )
        return False

    def claim(self, client_id: str, handler: IngestHandler) -> Client | None:
        client = self._authenticated.pop(client_id, None)
        if client is not None:
            self.handlers.add(handler)
        return client

    def release(self, handler: IngestHandler) -> None:
        self.handlers.discard(handler)
        if handler.client is not None:
            handler.client.closed = True
        if handler.live is not None:
            handler.live.cancel()

    async def disconnect(self, handler: IngestHandler) -> None:
        """Close one connection (its session state goes with it; no will message is forwarded)."""
        if handler.client is not None:
            handler.client.closed = True
        self.handlers.discard(handler)
        with contextlib.suppress(Exception):
            await handler.handle_connection_closed()

    # -- publish -------------------------------------------------------------------------------------
    async def on_publish(self, client: Client, topic: str, payload: bytes, received: datetime) -> None:
        """Store one message, or raise :class:`Refused` with nothing stored (a failed database too:
        the connection is closed, and the publisher sends it again)."""
        try:
            await self.writer.store(client.principal, topic, payload, received)
        except StoreFailed as e:
            raise Refused(e.message) from None

    # -- subscribe and deliver -----------------------------------------------------------------------
    def handler_of(self, session: MqttSession) -> IngestHandler | None:
        if self.broker is None or session.client_id is None:
            return None
        handler = self.broker.sessions.get(session.client_id, (None, None))[1]
        return handler if isinstance(handler, IngestHandler) and handler.client is not None else None

    async def may_subscribe(self, session: MqttSession, topic_filter: str) -> bool:
        """A ``telemetry`` token may subscribe to filters under ``sensorhub/``; the first accepted one
        opens the session's live feed (before the SUBACK, so nothing stored after it is missed)."""
        handler = self.handler_of(session)
        if handler is None or handler.client is None or handler.client.closed:
            return False
        client = handler.client
        principal = client.principal
        ok = rules.subscribe_allowed(principal, topic_filter)
        if ok and handler.live is None:
            ok = await self._open_feed(handler)
        if not ok:
            log.info(
                "mqtt subscription refused: client=%s credential=%s filter=%r",
                client.client_id,
                principal.credential_id,
                topic_filter[:200],
            )
        return ok

    async def _open_feed(self, handler: IngestHandler) -> bool:
        client = handler.client
        assert client is not None
        ctx = self.ctx
        viewer = TokenViewer(ctx.db, ctx.settings, ctx.cache, client.principal, "telemetry", client.ip)
        try:
            ctx.live.check_capacity(viewer.key)
            feed = LiveFeed(ctx.live, viewer, Selection())
            await feed.open()
        except (SensorhubError, FeedClosed) as e:
            log.info("mqtt live feed refused: client=%s reason=%s", client.client_id, e)
            return False
        handler.live = asyncio.create_task(
            self._follow(handler, feed), name=f"sensorhub-mqtt-live-{client.client_id}"
        )
        return True

    async def _follow(self, handler: IngestHandler, feed: LiveFeed) -> None:
        """Deliver the session's live feed (the values its credential may read, as they are stored by
        any ingest path) on the topics it subscribed to."""
        try:
            async for item in feed:
                if isinstance(item, LiveEvent) and item.points:
                    await self._deliver(handler, item)
        except FeedClosed as e:
            if handler.client is not None and not handler.client.closed:
                log.warning("mqtt session closed: client=%s reason=%s", handler.client.client_id, e.reason)
                await self.disconnect(handler)
        finally:
            feed.close()

    async def _deliver(self, handler: IngestHandler, ev: LiveEvent) -> None:
        broker, session = self.broker, handler.session
        if broker is None or session is None or session.transitions.state != "connected":
            return
        topic = await self._topics.of(ev)
        if topic is None:
            return
        qos = max(
            (
                q
                for f, subs in list(broker.subscriptions.items())
                if broker.matches(topic, f)
                for x, q in subs
                if x is session
            ),
            default=None,
        )
        if qos is None:
            return
        task = asyncio.create_task(handler.mqtt_publish(topic, value_payload(ev), qos, retain=False))
        self._tasks.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("mqtt delivery failed: %s", task.exception())

    # -- revocation ----------------------------------------------------------------------------------
    async def watch_credentials(self) -> None:
        while True:
            if await self.changes.wait():
                await self.recheck_all()
            else:
                await self.expire()

    async def recheck_all(self) -> None:
        """Re-resolve the credential of every connected session from the database."""
        by_digest: dict[str, list[IngestHandler]] = {}
        for h in list(self.handlers):
            if h.client is not None and not h.client.closed:
                by_digest.setdefault(h.client.digest, []).append(h)
        for digest, handlers in by_digest.items():
            principal = await self.ctx.auth.principal_by_digest(digest)
            for h in handlers:
                assert h.client is not None
                problem = (
                    "revoked or no longer valid"
                    if principal is None
                    else self._unusable(principal, h.client.ip, h.client.tls)
                )
                if problem is None and principal is not None:
                    h.client.principal = principal
                    continue
                log.warning(
                    "mqtt session closed: client=%s credential=%s reason=%s",
                    h.client.client_id,
                    h.client.principal.credential_id,
                    problem,
                )
                await self.disconnect(h)

    async def expire(self) -> None:
        now = utcnow()
        for h in list(self.handlers):
            if h.client is not None and not h.client.closed and h.client.principal.is_expired(now):
                log.warning(
                    "mqtt session closed: client=%s credential=%s reason=expired token",
                    h.client.client_id,
                    h.client.principal.credential_id,
                )
                await self.disconnect(h)


def slugs(s: Session, org_id: str, workspace_id: str) -> tuple[str, str] | None:
    """The organisation and workspace slugs a value's topic is made of."""
    org, ws = s.get(Organisation, org_id), s.get(Workspace, workspace_id)
    return (org.slug, ws.slug) if org is not None and ws is not None else None


class ValueTopics:
    """The MQTT topic each stored value is delivered on (both brokers: the embedded one to its
    subscribers, the Mosquitto bridge to Mosquitto), the slugs of each organisation and workspace read
    once."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._names: dict[tuple[str, str], tuple[str, str] | None] = {}

    async def of(self, ev: LiveEvent) -> str | None:
        """The topic of a live event's values; None when it has none (:func:`topics.value_topic`)."""
        key = (ev.org_id, ev.workspace_id)
        if key not in self._names:
            self._names[key] = await to_thread.run_sync(self._read, ev.org_id, ev.workspace_id)
        names = self._names[key]
        return topics.value_topic(names[0], names[1], ev.entity_id, ev.attribute) if names else None

    def _read(self, org_id: str, workspace_id: str) -> tuple[str, str] | None:
        with self.ctx.db.session() as s:
            return slugs(s, org_id, workspace_id)


def value_payload(ev: LiveEvent) -> bytes:
    """What subscribers receive of a live event: its newest point (a many-point event has several),
    with its unit and Akenza topic (:func:`topics.value_payload`)."""
    ts, value = ev.points[-1]
    return topics.value_payload(iso(ts), value, ev.unit, ev.topic)


class CredentialChanges:
    """Whether what credentials may do has changed, for a loop that re-checks connected clients: told by
    ``db.auth_listeners`` (this process's commits, :meth:`tell`) or seen as a new generation of the auth
    cache (another process's, through the epoch file or Redis)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop that waits; set before listening
        self._told = asyncio.Event()
        self._generation = ctx.cache.generation

    def tell(self) -> None:
        """For ``db.auth_listeners``: runs in the committing thread."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._told.set)

    async def wait(self) -> bool:
        """Wait up to :data:`RECHECK_SECONDS` for a change; whether there was one since the last call."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._told.wait(), RECHECK_SECONDS)
        told = self._told.is_set()
        self._told.clear()
        generation = self.ctx.cache.generation
        if told or generation != self._generation:
            self._generation = generation
            return True
        return False


def broker_config(settings: Settings, service: MqttService) -> BrokerConfig:
    """Listeners from the settings (TCP, TLS, WebSocket, secure WebSocket) and our two plugins only."""
    listeners: dict[str, ListenerConfig] = {}
    tls = {"ssl": True, "certfile": settings.mqtt_certfile, "keyfile": settings.mqtt_keyfile}
    wanted: list[tuple[str, str | None, ListenerType, dict[str, Any]]] = [
        ("mqtt", settings.mqtt_listen, ListenerType.TCP, {}),
        ("mqtts", settings.mqtt_tls_listen, ListenerType.TCP, tls),
        ("ws", settings.mqtt_ws_listen, ListenerType.WS, {}),
        ("wss", settings.mqtt_wss_listen, ListenerType.WS, tls),
    ]
    for name, bind, kind, extra in wanted:
        if bind:
            if extra and not (settings.mqtt_certfile and settings.mqtt_keyfile):
                raise ValueError(
                    f"SENSORHUB_MQTT_{name.upper()}_LISTEN needs SENSORHUB_MQTT_CERTFILE and SENSORHUB_MQTT_KEYFILE"
                )
            # "0.0.0.0:N" and ":N" mean the same; the second never equals amqtt's default bind value,
            # which its config merging would overwrite (below).
            listeners[name] = ListenerConfig(type=kind, bind=bind.replace("0.0.0.0:", ":", 1), **extra)
    if not listeners:
        raise ValueError("no MQTT listener configured (SENSORHUB_MQTT_LISTEN, ...)")
    # amqtt copies every field a listener leaves at its default value from the one named "default": that
    # one must set nothing beyond the defaults, so it is the plain TCP listener, or an unbound one.
    default = listeners.pop("mqtt", None) or ListenerConfig(bind=None)
    listeners = {"default": default, **listeners}
    plugins = {
        f"{TokenAuthPlugin.__module__}.{TokenAuthPlugin.__qualname__}": {"service": service},
        f"{TopicAclPlugin.__module__}.{TopicAclPlugin.__qualname__}": {"service": service},
    }
    return BrokerConfig(listeners=listeners, plugins=plugins)


def mqtt_enabled(settings: Settings) -> bool:
    return bool(
        settings.mqtt_listen
        or settings.mqtt_tls_listen
        or settings.mqtt_ws_listen
        or settings.mqtt_wss_listen
    )


@asynccontextmanager
async def embedded_broker(ctx: AppContext) -> AsyncIterator[MqttService]:
    """Run the broker (and the credential watcher) while the block runs."""
    service = MqttService(ctx)
    broker = SensorhubBroker(broker_config(ctx.settings, service), service)
    service.broker = broker
    service.changes.loop = asyncio.get_running_loop()
    try:
        await broker.start()
    except BrokerError as e:
        binds = ", ".join(str(c.bind) for c in broker.listeners_config.values())
        raise RuntimeError(
            f"the embedded MQTT broker cannot listen on {binds} ({e.__cause__ or e}): choose other addresses "
            "(--mqtt-listen, SENSORHUB_MQTT_*_LISTEN) or turn it off (--no-mqtt)"
        ) from None
    ctx.db.auth_listeners.append(service.changes.tell)
    watcher = asyncio.create_task(service.watch_credentials(), name="sensorhub-mqtt-credentials")
    log.info(
        "mqtt broker listening: %s", ", ".join(f"{n}={c.bind}" for n, c in broker.listeners_config.items())
    )
    try:
        yield service
    finally:
        with contextlib.suppress(ValueError):
            ctx.db.auth_listeners.remove(service.changes.tell)
        await service.writer.stop()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await broker.shutdown()
