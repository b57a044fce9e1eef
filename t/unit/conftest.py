"""Fixtures for the unit tests: in-memory brokers nobody else sees."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from kombu_like import Connection, Consumer, Message
from kombu_like.testing import conformance
from kombu_like.transport.memory import Broker


@pytest.fixture
def broker() -> Broker:
    """A private in-memory broker for one test."""
    return Broker()


@pytest.fixture
def connect(broker: Broker) -> Iterator[Callable[..., Connection]]:
    """Make connections to the test's private broker; all are released afterwards."""
    made: list[Connection] = []

    def factory(url: str = "memory://", **kwargs: object) -> Connection:
        options = dict(kwargs.pop("transport_options", None) or {})  # type: ignore[call-overload]
        options.setdefault("broker", broker)
        connection = Connection(url, transport_options=options, **kwargs)
        made.append(connection)
        return connection

    yield factory
    for connection in made:
        with contextlib.suppress(Exception):
            connection.release()


@pytest.fixture
def conn(connect: Callable[..., Connection]) -> Connection:
    """A connection to the test's private broker."""
    return connect()


def drain_until(conn: Connection, done: Callable[[], bool], timeout: float = 5.0) -> None:
    """Drain events until ``done()``; fail after ``timeout`` seconds."""
    conformance.drain_until(conn, done, timeout)


@pytest.fixture
def collect() -> Callable[..., list[Message]]:
    """``collect(conn, queues, count=1, ack=True, channel=None, **consumer_options)``: consume messages.

    Drains ``conn`` until ``count`` messages arrived and returns them, acknowledged unless
    ``ack=False``; the consumer runs on ``channel`` (default: the connection's default one).
    """

    def _collect(
        conn: Connection,
        queues: object,
        count: int = 1,
        ack: bool = True,
        timeout: float = 5.0,
        channel: object = None,
        **options: object,
    ) -> list[Message]:
        received: list[Message] = []

        def on_message(message: Message) -> None:
            received.append(message)
            if ack:
                message.ack()

        with Consumer(channel or conn, queues, on_message=on_message, **options):  # type: ignore[arg-type]
            drain_until(conn, lambda: len(received) >= count, timeout)
        return received

    return _collect
