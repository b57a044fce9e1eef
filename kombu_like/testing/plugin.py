"""pytest plugin: an isolated ``memory://`` broker per test, and a look inside it.

Installed with the package (entry point ``pytest11``: ``kombu_like``), so a test suite
gets these fixtures without any set-up:

``kombu_url``
    A ``memory://`` URL naming a broker no other test sees.  Code under test that builds
    its own :class:`~kombu_like.Connection` from a URL uses the same broker when given it.

``kombu_connection``
    A :class:`~kombu_like.Connection` to that broker, closed after the test.

``kombu_broker``
    A :class:`BrokerInspector`: what is waiting in which queue (decoded bodies, headers,
    properties, routing) without consuming anything.

``kombu_aio_connection``
    A :class:`kombu_like.aio.Connection` to that broker, for asyncio code; not connected
    yet, so the test connects it in its own event loop (``async with
    kombu_aio_connection as conn:``), under ``asyncio.run`` or an async test runner.

``kombu_clean_memory``
    For code that connects to plain ``memory://`` (the process-wide broker every such
    Connection shares, as in Kombu): empties that broker -- queues, exchanges and
    bindings -- before and after the test, so nothing leaks from one test to the next.

::

    def test_order_is_published(kombu_connection, kombu_broker):
        place_order(kombu_connection, order_id=7)
        assert kombu_broker.bodies("orders") == [{"id": 7}]
        assert kombu_broker.messages("orders")[0].headers["x-source"] == "shop"

The broker is dropped when the test ends, with every message still in it.

To run the same tests against a real broker, give its URL: ``pytest --kombu-like-url
amqp://guest:guest@localhost//`` (or ``kombu_like_url = ...`` in the ``[pytest]`` ini
section, or ``$KOMBU_LIKE_TEST_URL``; the option wins over the ini setting, which wins over
the variable).  ``kombu_url`` and ``kombu_connection`` then use that broker.  On Redis each test gets a
key prefix of its own (``global_keyprefix``), deleted with its keys afterwards, so tests
stay apart as on memory://; on other brokers every test shares the broker, so give each
test queue names of its own.  A test that asks for ``kombu_broker``, which looks inside the
in-memory broker, is skipped with the reason.

With plugin autoloading disabled, load it by its entry-point name (``-p kombu_like``); from a source
checkout that is not installed, by module (``-p kombu_like.testing.plugin``).
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from kombu_like.aio import Connection as AsyncConnection
    from kombu_like.connection import Connection
    from kombu_like.transport.memory import Broker

__all__ = [
    "BrokerInspector",
    "PublishedMessage",
    "kombu_aio_connection",
    "kombu_broker",
    "kombu_clean_memory",
    "kombu_connection",
    "kombu_url",
]

#: prefix of the virtual hosts the fixtures create
VHOST_PREFIX = "pytest-"
#: the ini setting, and the environment variable, naming a real broker for the fixtures
INI_URL = "kombu_like_url"
ENV_URL = "KOMBU_LIKE_TEST_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kombu_like", "kombu_like fixtures")
    group.addoption(
        "--kombu-like-url",
        dest="kombu_like_url",
        default=None,
        metavar="URL",
        help=f"run the kombu_url/kombu_connection fixtures against this broker instead of a "
        f"per-test memory:// one (also the '{INI_URL}' ini setting, or ${ENV_URL})",
    )
    parser.addini(INI_URL, "broker URL for the kombu_url/kombu_connection fixtures (default: memory://)", default="")


def configured_url(config: pytest.Config) -> str | None:
    """The real broker the fixtures use, or ``None`` for a fresh memory broker per test."""
    url = config.getoption("kombu_like_url", None) or config.getini(INI_URL) or os.environ.get(ENV_URL)
    return str(url) if url else None


def pytest_report_header(config: pytest.Config) -> str | None:
    url = configured_url(config)
    if url is None:
        return None
    from kombu_like.utils.url import maybe_sanitize_url

    return f"kombu_like fixtures use {maybe_sanitize_url(url)}"


@dataclass(frozen=True)
class PublishedMessage:
    """A message waiting in a queue, as the publisher sent it."""

    #: the queue it waits in
    queue: str
    #: the body as stored (after compression, before decoding)
    raw: bytes | str
    content_type: str | None
    content_encoding: str | None
    headers: Mapping[str, Any]
    properties: Mapping[str, Any]
    exchange: str
    routing_key: str
    priority: int
    _envelope: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def body(self) -> Any:
        """The decoded body (any installed serializer, pickle included: these are your
        own test's messages)."""
        from kombu_like.compression import decompress
        from kombu_like.serialization import loads

        data: Any = self.raw
        compression = self.headers.get("compression")
        if compression:
            data = decompress(data if isinstance(data, bytes) else data.encode("latin-1"), compression)
        return loads(data, self.content_type, self.content_encoding, force=True)

    payload = body

    @property
    def correlation_id(self) -> Any:
        return self.properties.get("correlation_id")

    @property
    def reply_to(self) -> Any:
        return self.properties.get("reply_to")


def _published(queue: str, envelope: Mapping[str, Any]) -> PublishedMessage:
    properties = dict(envelope.get("properties") or {})
    info = properties.get("delivery_info") or {}
    raw = envelope.get("body")
    if properties.get("body_encoding") == "base64" and raw:
        raw = base64.b64decode(raw)
    return PublishedMessage(
        queue=queue,
        raw=raw if raw is not None else b"",
        content_type=envelope.get("content-type"),
        content_encoding=envelope.get("content-encoding"),
        headers=dict(envelope.get("headers") or {}),
        properties=properties,
        exchange=str(info.get("exchange") or ""),
        routing_key=str(info.get("routing_key") or ""),
        priority=int(properties.get("priority") or 0),
        _envelope=envelope,
    )


class BrokerInspector:
    """Read-only view of an in-memory broker (plus :meth:`purge`).

    Shows messages waiting in queues: a message delivered to a consumer and not
    acknowledged yet is with that consumer, not in the queue.
    """

    def __init__(self, broker: Broker, url: str) -> None:
        self.broker = broker
        self.url = url

    @classmethod
    def for_url(cls, url: str) -> BrokerInspector:
        """The inspector of the process-wide broker a ``memory://`` URL names."""
        from kombu_like.transport.memory import get_broker

        return cls(get_broker(_registry_key(url)), url)

    def queues(self) -> list[str]:
        """Names of the queues that exist, sorted."""
        return sorted(self.broker.queues)

    def messages(self, queue: str) -> list[PublishedMessage]:
        """The messages waiting in ``queue``, in delivery order."""
        return [_published(queue, envelope) for envelope in self.broker.peek(queue)]

    def bodies(self, queue: str) -> list[Any]:
        """The decoded bodies of the messages waiting in ``queue``."""
        return [message.body for message in self.messages(queue)]

    def count(self, queue: str) -> int:
        """How many messages wait in ``queue``."""
        return len(self.broker.peek(queue))

    def all_messages(self) -> dict[str, list[PublishedMessage]]:
        """Every non-empty queue's messages."""
        out = {name: self.messages(name) for name in self.queues()}
        return {name: items for name, items in out.items() if items}

    def bindings(self, exchange: str) -> list[tuple[str, str]]:
        """``(queue, routing key)`` of the bindings of ``exchange``."""
        return [(b.queue, b.routing_key) for b in self.broker.table.get_bindings(exchange)]

    def purge(self, queue: str | None = None) -> int:
        """Drop the waiting messages of ``queue`` (of every queue if ``None``); return how many."""
        from kombu_like.transport.memory import MemoryStore

        store = MemoryStore(self.broker)
        names = [queue] if queue is not None else self.queues()
        return sum(store.purge(name) for name in names)

    def __repr__(self) -> str:
        return f"<BrokerInspector {self.url} queues={self.queues()}>"


def _registry_key(url: str) -> str:
    from kombu_like.connection import Connection
    from kombu_like.transport.memory import broker_name

    connection = Connection(url)
    return broker_name(connection.hostname, connection.virtual_host)


def _uses_memory(url: str) -> bool:
    return url.partition(":")[0] == "memory"


def _is_redis(url: str) -> bool:
    return url.partition(":")[0] in ("redis", "rediss")


def _redis_of_its_own(url: str) -> Iterator[str]:
    """``url`` with a key prefix of this test's own; its keys are deleted afterwards.

    Every key and pub/sub channel of the transport carries the prefix, so tests that use
    the same queue names do not see each other's messages -- as with memory://.
    """
    import redis

    prefix = f"{VHOST_PREFIX}{uuid.uuid4().hex}."
    try:
        yield f"{url}{'&' if '?' in url else '?'}global_keyprefix={prefix}"
    finally:
        client = redis.Redis.from_url(url.partition("?")[0])
        try:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@pytest.fixture
def kombu_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A ``memory://`` URL of a broker only this test uses (or the ``--kombu-like-url`` broker)."""
    from kombu_like.transport.memory import forget_broker

    configured = configured_url(request.config)
    if configured is not None and not _uses_memory(configured):
        if _is_redis(configured) and "global_keyprefix=" not in configured:
            yield from _redis_of_its_own(configured)
        else:
            yield configured
        return
    url = f"memory:///{VHOST_PREFIX}{uuid.uuid4().hex}"
    try:
        yield url
    finally:
        forget_broker(_registry_key(url))


@pytest.fixture
def kombu_connection(kombu_url: str) -> Iterator[Connection]:
    """A :class:`~kombu_like.Connection` to this test's broker, closed afterwards."""
    from kombu_like.connection import Connection

    connection = Connection(kombu_url)
    try:
        yield connection
    finally:
        connection.release()


@pytest.fixture
def kombu_aio_connection(kombu_url: str) -> AsyncConnection:
    """A :class:`kombu_like.aio.Connection` to this test's broker, to connect in the test's
    event loop (``async with kombu_aio_connection as conn:`` closes it too)."""
    from kombu_like.aio import Connection as AsyncConnection

    return AsyncConnection(kombu_url)


@pytest.fixture
def kombu_broker(kombu_url: str) -> BrokerInspector:
    """A :class:`BrokerInspector` of this test's broker (in-memory brokers only)."""
    if not _uses_memory(kombu_url):
        from kombu_like.utils.url import maybe_sanitize_url

        pytest.skip(f"kombu_broker inspects the in-memory broker; the fixtures use {maybe_sanitize_url(kombu_url)}")
    return BrokerInspector.for_url(kombu_url)


def _empty_default_broker() -> None:
    from kombu_like.transport.memory import Channel, Transport

    Channel.queues.clear()
    Transport.global_state.clear()


@pytest.fixture
def kombu_clean_memory() -> Iterator[BrokerInspector]:
    """Empty the process-wide ``memory://`` broker before and after the test.

    Yields the :class:`BrokerInspector` of that broker.
    """
    _empty_default_broker()
    try:
        yield BrokerInspector.for_url("memory://")
    finally:
        _empty_default_broker()
