"""Connections, unique names, clean-up and waiting helpers shared by the conformance topics,
and the API (blocking or asyncio) each test runs on."""

from __future__ import annotations

import contextlib
import importlib.util
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, cast

import pytest

from kombu_like import Connection, Exchange, Message, Queue

from ...aio import Connection as AsyncConnection
from ...pools import _connection_kwargs
from .bridge import AioBridge, BridgedConnection

#: the APIs a conformance test runs on: the blocking one (:class:`kombu_like.Connection`)
#: and the asyncio one (:mod:`kombu_like.aio`, through a :class:`~.bridge.BridgedConnection`)
APIS = ("sync", "async")

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

    Every test that uses the ``conn`` fixture (or the ``api`` fixture) runs once per API
    in :attr:`apis`: ``sync``, the blocking API, and ``async``, the same test body with
    every operation carried out by :mod:`kombu_like.aio` (see :mod:`.bridge`).  The
    ``async`` runs skip, naming the transport, where the asyncio API does not drive it.
    A test that is about the blocking API alone does not use ``conn``.
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
    #: the APIs the tests using ``conn`` run on (a subset of ``("sync", "async")``)
    apis: Sequence[str] = APIS
    #: test name -> why its ``async`` run is skipped: what it checks is not what the
    #: asyncio API does on this transport (documented differences, not faults)
    async_skips: Mapping[str, str] = MappingProxyType({})
    #: test name -> the asyncio API's known fault that fails it: its ``async`` run is an
    #: expected failure (strict: once it passes, the entry must go)
    async_gaps: Mapping[str, str] = MappingProxyType({})
    #: the API of the running test (set by the ``api`` fixture)
    current_api: str = "sync"

    # -- overridable -------------------------------------------------------------------
    def make_connection(self) -> Connection:
        """A new, unconnected connection to the broker under test."""
        return Connection(self.url, transport_options=dict(self.transport_options))

    def make_async_connection(self) -> AsyncConnection:
        """A new, unconnected asyncio connection with :meth:`make_connection`'s settings."""
        return AsyncConnection(**_connection_kwargs(self.make_connection()))

    def unique(self, prefix: str) -> str:
        """An entity name no other test or test run uses."""
        clean = re.sub(r"[^A-Za-z0-9_-]", "_", prefix)[:40]
        return f"kl-{clean}-{uuid.uuid4().hex[:12]}"

    # -- the API -------------------------------------------------------------------
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "api" not in metafunc.fixturenames:
            return
        unknown = set(self.apis) - set(APIS)
        if unknown:
            raise ValueError(f"apis: {sorted(unknown)} are not among {APIS}")
        for listed in (*self.async_skips, *self.async_gaps):
            if not callable(getattr(self, listed, None)):
                raise ValueError(f"async_skips/async_gaps name {listed!r}, not a test of {type(self).__name__}")
        name = metafunc.function.__name__
        params = [pytest.param(api, marks=self._api_marks(api, name)) for api in self.apis]
        metafunc.parametrize("api", params, indirect=True)

    def _api_marks(self, api: str, test_name: str) -> list[pytest.MarkDecorator]:
        if api != "async":
            return []
        if test_name in self.async_skips:
            return [pytest.mark.skip(reason=f"asyncio API: {self.async_skips[test_name]}")]
        if test_name in self.async_gaps:
            return [pytest.mark.xfail(strict=True, reason=f"asyncio API: {self.async_gaps[test_name]}")]
        return []

    @pytest.fixture(scope="class")
    @classmethod
    def _aio_bridge(cls) -> Iterator[AioBridge]:
        # one event loop thread per test class, started by the first test on the asyncio API
        bridge = AioBridge()
        yield bridge
        bridge.close()

    @pytest.fixture
    def api(self, request: pytest.FixtureRequest, _aio_bridge: AioBridge) -> str:
        """The API the test runs on: ``"sync"`` or ``"async"``."""
        api: str = getattr(request, "param", "sync")
        if api == "async":
            self._bridge = _aio_bridge
            self.require_async_api()
        self.current_api = api
        return api

    def require_async_api(self) -> None:
        """Skip unless the asyncio API drives the transport under test."""
        try:
            self.make_async_connection()._make_driver()
        except NotImplementedError as exc:
            pytest.skip(str(exc))

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
    def conn(self, api: str) -> Connection:
        """A connection to the broker under test on the test's API, released after the test."""
        return self.connection()

    def connection(self) -> Connection:
        """A new connection on the test's API, released when the test ends.

        On the asyncio API it is a :class:`~.bridge.BridgedConnection`, standing in for
        the blocking Connection with the surface the conformance tests use.
        """
        connection: Connection
        if self.current_api == "async":
            connection = cast(Connection, BridgedConnection(self._bridge, self.make_async_connection()))
        else:
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
        if getattr(conn, "publishes_handed_over", False):
            # the publish returned before the store took it (the asyncio API's I/O thread):
            # a call of the same connection made after it waits for it, so another
            # connection finds the message once this returns, as after a blocking publish
            self.message_count(conn, queue)

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

        with conn.Consumer(queues, channel=channel, on_message=on_message, **consumer_options):
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
