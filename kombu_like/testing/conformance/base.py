"""Connections, unique names, clean-up and waiting helpers shared by the conformance topics."""

from __future__ import annotations

import contextlib
import importlib.util
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import pytest

from kombu_like import Connection, Consumer, Exchange, Message, Queue

#: compression method -> (content type Kombu puts in the ``compression`` header,
#: modules of which one must be importable for the method to be available)
COMPRESSION_METHODS: Mapping[str, tuple[str, tuple[str, ...]]] = MappingProxyType(
    {
        "zlib": ("application/x-gzip", ("zlib",)),
        "bzip2": ("application/x-bz2", ("bz2",)),
        "lzma": ("application/x-lzma", ("lzma",)),
        "zstd": ("application/zstd", ("zstandard", "compression.zstd", "backports.zstd")),
        "brotli": ("application/x-brotli", ("brotli", "brotlicffi")),
    }
)


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def drain_until(conn: Connection, done: Callable[[], bool], timeout: float) -> None:
    """Call ``conn.drain_events`` until ``done()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"condition not met within {timeout}s of drain_events")
        try:
            conn.drain_events(timeout=remaining)
        except socket.timeout:
            continue


class ConformanceBase:
    """Connections, unique names, clean-up and waiting helpers shared by the topic classes.

    Override :attr:`url` and :attr:`transport_options` (or :meth:`make_connection`) for the
    transport under test; raise the wait times for brokers that need longer.
    """

    #: broker URL of the transport under test
    url: str = "memory://"
    #: transport options passed to every connection (copied, never mutated)
    transport_options: Mapping[str, Any] = MappingProxyType({})
    #: seconds to wait for a message that must arrive
    wait: float = 5.0
    #: seconds to listen when a test checks that nothing (more) arrives
    quiet: float = 0.2
    #: seconds after which the broker has given back the messages of a closed connection
    redelivery_wait: float = 10.0

    # -- overridable -------------------------------------------------------------------
    def make_connection(self) -> Connection:
        """A new, unconnected connection to the broker under test."""
        return Connection(self.url, transport_options=dict(self.transport_options))

    def unique(self, prefix: str) -> str:
        """An entity name no other test or test run uses."""
        clean = re.sub(r"[^A-Za-z0-9_-]", "_", prefix)[:40]
        return f"kl-{clean}-{uuid.uuid4().hex[:12]}"

    # -- resources -----------------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _conformance_resources(self) -> Iterator[None]:
        self._open_connections: list[Connection] = []
        self._queues_to_delete: list[str] = []
        self._exchanges_to_delete: list[str] = []
        yield
        for connection in reversed(self._open_connections):
            with contextlib.suppress(Exception):
                connection.release()
        self._delete_entities()

    def _delete_entities(self) -> None:
        if not (self._queues_to_delete or self._exchanges_to_delete):
            return
        cleaner = self.make_connection()
        try:
            for name in self._queues_to_delete:
                with contextlib.suppress(Exception):
                    chan = cleaner.channel()
                    Queue(name, channel=chan).delete()
                    chan.close()
            for name in self._exchanges_to_delete:
                with contextlib.suppress(Exception):
                    chan = cleaner.channel()
                    Exchange(name, channel=chan).delete()
                    chan.close()
        finally:
            with contextlib.suppress(Exception):
                cleaner.release()

    @pytest.fixture
    def conn(self) -> Connection:
        """A connection to the broker under test, released after the test."""
        return self.connection()

    def connection(self) -> Connection:
        """A new connection, released when the test ends."""
        connection = self.make_connection()
        self._open_connections.append(connection)
        return connection

    def new_exchange(self, prefix: str, type: str = "direct", **kwargs: Any) -> Exchange:
        """An exchange with a unique name, deleted when the test ends."""
        exchange = Exchange(self.unique(prefix), type=type, **kwargs)
        self._exchanges_to_delete.append(exchange.name)
        return exchange

    def new_queue(
        self,
        prefix: str,
        exchange: Exchange | None = None,
        routing_key: str | None = None,
        **kwargs: Any,
    ) -> Queue:
        """A queue with a unique name, deleted when the test ends.

        Without ``exchange`` it is reached through the default exchange by its name.
        """
        name = self.unique(prefix)
        queue = Queue(name, exchange, routing_key if routing_key is not None else name, **kwargs)
        self.track_queue(name)
        return queue

    def track_queue(self, name: str) -> None:
        """Delete the queue ``name`` when the test ends."""
        self._queues_to_delete.append(name)

    def track_exchange(self, name: str) -> None:
        """Delete the exchange ``name`` when the test ends."""
        self._exchanges_to_delete.append(name)

    def require_capability(self, conn: Connection, name: str) -> None:
        """Skip unless ``conn``'s transport declares capability ``name``."""
        if not getattr(conn.transport.capabilities, name):
            pytest.skip(f"transport {conn.transport.driver_type!r} lacks capability {name!r}")

    def require_exchange_type(self, conn: Connection, exchange_type: str) -> None:
        """Skip unless ``conn``'s transport routes ``exchange_type`` exchanges."""
        if exchange_type not in conn.transport.capabilities.exchange_types:
            pytest.skip(
                f"transport {conn.transport.driver_type!r} lacks capability "
                f"'exchange_types' for {exchange_type!r} exchanges"
            )

    # -- publishing ------------------------------------------------------------------
    def declare(self, conn: Connection, *entities: Queue | Exchange) -> None:
        """Declare ``entities`` (queues with their exchanges and bindings) now."""
        for entity in entities:
            entity(conn.default_channel).declare()

    def publish(self, conn: Connection, body: Any, queue: Queue, **kwargs: Any) -> None:
        """Publish ``body`` to ``queue`` through its exchange and routing key (declaring it)."""
        kwargs.setdefault("exchange", queue.exchange)
        kwargs.setdefault("routing_key", queue.routing_key or queue.name)
        conn.Producer().publish(body, declare=[queue], **kwargs)

    # -- consuming -------------------------------------------------------------------
    def drain_until(self, conn: Connection, done: Callable[[], bool], timeout: float | None = None) -> None:
        """Call ``conn.drain_events`` until ``done()`` is true; fail after ``timeout`` seconds."""
        drain_until(conn, done, self.wait if timeout is None else timeout)

    def drain_quietly(self, conn: Connection, seconds: float | None = None) -> None:
        """Deliver whatever arrives within ``seconds`` (nothing need arrive)."""
        seconds = self.quiet if seconds is None else seconds
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                conn.drain_events(timeout=remaining)
            except socket.timeout:
                return

    def drain_until_error(
        self, conn: Connection, error: type[BaseException], timeout: float | None = None
    ) -> BaseException:
        """Drain until ``drain_events`` raises ``error``; return the exception."""
        timeout = self.wait if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"drain_events did not raise {error.__name__} within {timeout}s")
            try:
                conn.drain_events(timeout=remaining)
            except socket.timeout:
                continue
            except error as exc:
                return exc

    def collect(
        self,
        conn: Connection,
        queues: Queue | Sequence[Queue],
        count: int,
        *,
        ack: bool = True,
        channel: Any = None,
        timeout: float | None = None,
        **consumer_options: Any,
    ) -> list[Message]:
        """Consume until ``count`` messages arrived and return them (all that arrived).

        Messages are acknowledged in the callback unless ``ack=False``; they are not
        decoded (``message.payload`` decodes).  The consumer is cancelled on return.
        """
        received: list[Message] = []

        def on_message(message: Message) -> None:
            received.append(message)
            if ack:
                message.ack()

        with Consumer(channel or conn, queues, on_message=on_message, **consumer_options):
            self.drain_until(conn, lambda: len(received) >= count, timeout)
        return received

    def basic_get(self, conn: Connection, queue: Queue, **kwargs: Any) -> Message | None:
        """One message from ``queue`` without consuming, or None (``Queue.get``)."""
        return queue(conn.default_channel).get(**kwargs)

    def message_count(self, conn: Connection, queue: Queue) -> int:
        """Ready messages in ``queue`` (passive declare on a fresh channel)."""
        chan = conn.channel()
        try:
            return int(queue(chan).queue_declare(passive=True)[1])
        finally:
            chan.close()
