"""What the MQTT tests share: paho devices that record what happens to them, the organisation they
publish for, and a factory of connected devices. Each test module says where the broker is: a fixture
``broker``, the port of a running broker (the embedded one, or a Mosquitto of the test's own)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest

from sensorhub.context import AppContext
from tests.builders import World

T = 10.0  # seconds: the upper bound of every wait (events normally arrive in milliseconds)
DEVICE = "urn:ngsi-ld:Device:pump-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Device:
    """A paho client that records what happens to it."""

    def __init__(self, port: int, token: str | None, username: str | None = None, **kw: Any) -> None:
        kw.setdefault("protocol", mqtt.MQTTv311)
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, reconnect_on_failure=False, **kw)
        if token is not None:
            self.c.username_pw_set(username if username is not None else token, token)
        self.connected = threading.Event()
        self.closed = threading.Event()
        self.subscribed = threading.Event()
        self.reason: Any = None
        self.disconnect_reason: Any = None  # MQTT 5: the DISCONNECT's reason code, if the broker sent one
        self.granted: list[int] = []
        self.messages: list[tuple[str, Any]] = []
        self.got = threading.Condition()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message
        self.port = port

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.reason = reason
        self.connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.disconnect_reason = reason
        self.closed.set()

    def _on_subscribe(self, _c: Any, _u: Any, _mid: Any, codes: Any, _p: Any) -> None:
        self.granted = [int(getattr(x, "value", x)) for x in codes]
        self.subscribed.set()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self.got:
            self.messages.append((msg.topic, orjson.loads(msg.payload)))
            self.got.notify_all()

    def start(self) -> Device:
        self.c.connect("127.0.0.1", self.port, keepalive=30)
        self.c.loop_start()
        assert self.connected.wait(T)
        return self

    @property
    def accepted(self) -> bool:
        return not self.reason.is_failure

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, timeout: float = T) -> bool:
        """True when the broker acknowledged (QoS 1) the message; False when it closed the connection."""
        info = self.c.publish(topic, payload, qos=qos)
        if qos == 0:
            return True
        done = threading.Event()

        def wait() -> None:
            # paho raises when the connection closed first: read below as not acknowledged
            with contextlib.suppress(RuntimeError):
                info.wait_for_publish(timeout)
            done.set()

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        while not done.is_set() and not self.closed.is_set():
            done.wait(0.01)
        try:
            return info.is_published()
        except RuntimeError:  # paho: the connection closed before the message was acknowledged
            return False

    def subscribe(self, topic_filter: str, qos: int = 1) -> list[int]:
        self.subscribed.clear()
        self.c.subscribe(topic_filter, qos=qos)
        assert self.subscribed.wait(T)
        return self.granted

    def wait_messages(self, n: int) -> list[tuple[str, Any]]:
        with self.got:
            assert self.got.wait_for(lambda: len(self.messages) >= n, T), self.messages
            return list(self.messages)

    def stop(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def w(ctx: AppContext) -> World:
    w = World(ctx)
    w.org("acme", workspaces=("plant", "lab"))
    w.user("dev@acme.test", "acme", role="admin")
    w.entity("acme", "plant", DEVICE)
    w.entity("acme", "lab", "urn:ngsi-ld:Device:lab-1")
    return w


@pytest.fixture
def devices(broker: int) -> Iterator[Callable[..., Device]]:
    """``devices(token, **kw)``: a started Device on the broker; all stopped at the end."""
    made: list[Device] = []

    def make(token: str | None, **kw: Any) -> Device:
        d = Device(broker, token, **kw)
        made.append(d)
        return d.start()

    yield make
    for d in made:
        d.stop()
