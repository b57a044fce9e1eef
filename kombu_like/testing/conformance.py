"""Transport conformance tests: the behaviour every transport must show.

A transport is done when a subclass of :class:`TransportConformance` passes on it::

    from kombu_like.testing.conformance import TransportConformance

    class TestMyTransport(TransportConformance):
        url = "mytransport://localhost"
        transport_options = {"visibility_timeout": 5}

The topic classes (:class:`PublishConsumeTests`, :class:`AckTests`, ...) can also be mixed
in one by one.  Everything goes through the public API (``Connection``, ``Producer``,
``Consumer``, ``Queue``, ``Exchange``, ``SimpleQueue``), every wait is a
``drain_events(timeout=...)`` and every entity name is unique per test, so the suite can
run against a shared broker.  Entities a test declares are deleted when it ends.

Tests that need an optional capability (priority, TTL, an exchange type) skip with a
reason naming it when ``connection.transport.capabilities`` does not declare it.
"""

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

from kombu_like import Connection, Consumer, Exchange, Message, Producer, Queue
from kombu_like.exceptions import ChannelError, ContentDisallowed, DecodeError, MessageStateError, NotFound

__all__ = [
    "AckTests",
    "CompressionTests",
    "ConformanceBase",
    "DeclarationTests",
    "DecodeErrorTests",
    "EventLoopTests",
    "ExchangeTypeTests",
    "HeadersAndPropertiesTests",
    "PriorityTests",
    "PublishConsumeTests",
    "SeamTests",
    "SimpleQueueTests",
    "TTLTests",
    "TransportConformance",
]

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


class PublishConsumeTests(ConformanceBase):
    """Publishing and consuming through Producer/Consumer."""

    def test_json_round_trip(self, conn: Connection) -> None:
        queue = self.new_queue("pc_json")
        body = {"text": "h\u00e9llo \u2603", "n": 42, "items": [1, 2.5, None, True], "nested": {"k": "v"}}
        self.publish(conn, body, queue)
        [message] = self.collect(conn, queue, 1)
        assert message.payload == body
        assert message.content_type == "application/json"

    def test_callbacks_receive_body_and_message(self, conn: Connection) -> None:
        queue = self.new_queue("pc_callbacks")
        self.publish(conn, {"n": 1}, queue)
        calls: list[tuple[Any, Message]] = []

        def callback(body: Any, message: Message) -> None:
            calls.append((body, message))
            message.ack()

        with Consumer(conn, [queue], callbacks=[callback, lambda body, message: calls.append((body, message))]):
            self.drain_until(conn, lambda: len(calls) >= 2)
        assert [body for body, _ in calls] == [{"n": 1}, {"n": 1}]
        assert calls[0][1] is calls[1][1]

    def test_named_exchange_routes_by_key(self, conn: Connection) -> None:
        exchange = self.new_exchange("pc_ex")
        queue = self.new_queue("pc_named", exchange, routing_key="the.key")
        self.publish(conn, "via exchange", queue)
        [message] = self.collect(conn, queue, 1)
        assert message.payload == "via exchange"
        assert message.delivery_info["exchange"] == exchange.name
        assert message.delivery_info["routing_key"] == "the.key"

    def test_default_exchange_routes_by_queue_name(self, conn: Connection) -> None:
        queue = self.new_queue("pc_default")
        self.declare(conn, queue)
        conn.Producer().publish({"to": "queue"}, exchange="", routing_key=queue.name)
        [message] = self.collect(conn, queue, 1)
        assert message.payload == {"to": "queue"}

    def test_messages_arrive_in_order(self, conn: Connection) -> None:
        queue = self.new_queue("pc_order")
        producer = conn.Producer()
        for n in range(10):
            producer.publish({"n": n}, exchange="", routing_key=queue.name, declare=[queue])
        received = self.collect(conn, queue, 10)
        assert [m.payload["n"] for m in received] == list(range(10))

    def test_consumer_on_several_queues(self, conn: Connection) -> None:
        first, second = self.new_queue("pc_multi_a"), self.new_queue("pc_multi_b")
        self.publish(conn, "a", first)
        self.publish(conn, "b", second)
        received = self.collect(conn, [first, second], 2)
        assert sorted(m.payload for m in received) == ["a", "b"]

    def test_producer_and_consumer_on_separate_connections(self, conn: Connection) -> None:
        queue = self.new_queue("pc_two_conns")
        other = self.connection()
        self.declare(conn, queue)
        self.publish(other, {"from": "other"}, queue)
        [message] = self.collect(conn, queue, 1)
        assert message.payload == {"from": "other"}

    def test_drain_events_times_out_when_nothing_arrives(self, conn: Connection) -> None:
        queue = self.new_queue("pc_timeout")
        with Consumer(conn, [queue], callbacks=[lambda body, message: None]):
            started = time.monotonic()
            with pytest.raises(socket.timeout):
                conn.drain_events(timeout=self.quiet)
            assert time.monotonic() - started < self.quiet + self.wait

    def test_timeout_is_the_builtin_timeout_error(self, conn: Connection) -> None:
        queue = self.new_queue("pc_timeout_builtin")
        with Consumer(conn, [queue], callbacks=[lambda body, message: None]):
            with pytest.raises(TimeoutError):
                conn.drain_events(timeout=self.quiet)

    def test_cancelled_consumer_gets_nothing(self, conn: Connection) -> None:
        queue = self.new_queue("pc_cancel")
        received: list[Any] = []
        consumer = Consumer(conn, [queue], callbacks=[lambda body, message: received.append(body)])
        consumer.consume()
        consumer.cancel()
        self.publish(conn, "after cancel", queue)
        self.drain_quietly(conn)
        assert received == []
        assert self.message_count(conn, queue) == 1

    def test_many_messages(self, conn: Connection) -> None:
        queue = self.new_queue("pc_many")
        producer = conn.Producer()
        producer.maybe_declare(queue)
        for n in range(200):
            producer.publish(n, exchange="", routing_key=queue.name)
        received = self.collect(conn, queue, 200)
        assert sorted(m.payload for m in received) == list(range(200))

    def test_large_message(self, conn: Connection) -> None:
        queue = self.new_queue("pc_large")
        body = "x" * 60_000 + "\u00e9" * 1000
        self.publish(conn, {"blob": body}, queue)
        [message] = self.collect(conn, queue, 1)
        assert message.payload == {"blob": body}

    def test_batch_publishes_every_message(self, conn: Connection) -> None:
        queue = self.new_queue("pc_batch")
        self.declare(conn, queue)
        producer = conn.Producer()
        with producer.batch():
            for n in range(20):
                producer.publish(n, exchange="", routing_key=queue.name)
        received = self.collect(conn, queue, 20)
        assert sorted(m.payload for m in received) == list(range(20))


class ExchangeTypeTests(ConformanceBase):
    """Routing through direct, topic, fanout and headers exchanges."""

    def _route(
        self,
        conn: Connection,
        queues: Sequence[Queue],
        publishes: Sequence[tuple[Exchange, str, Mapping[str, Any] | None]],
        expected_total: int,
    ) -> dict[str, list[str]]:
        """Publish ``(exchange, routing_key, headers)`` items and return queue -> bodies.

        Each body is the routing key plus the headers, so a test can tell which publish
        went where.  Consumers run before publishing (for transports whose fanout only
        reaches listening consumers); after ``expected_total`` arrived, every queue must be
        empty, so a message routed to a wrong queue is caught.
        """
        self.declare(conn, *queues)
        got: dict[str, list[str]] = {q.name: [] for q in queues}
        consumers = []
        for queue in queues:

            def on_message(message: Message, name: str = queue.name) -> None:
                got[name].append(message.payload)
                message.ack()

            consumer = Consumer(conn, [queue], on_message=on_message)
            consumer.consume()
            consumers.append(consumer)
        try:
            producer = conn.Producer()
            for exchange, routing_key, headers in publishes:
                label = routing_key if not headers else f"{routing_key}{sorted(headers.items())}"
                producer.publish(label, exchange=exchange, routing_key=routing_key, headers=dict(headers or {}))
            self.drain_until(conn, lambda: sum(map(len, got.values())) >= expected_total)
        finally:
            for consumer in consumers:
                consumer.cancel()
        for queue in queues:
            assert self.message_count(conn, queue) == 0, f"unexpected message left in {queue.name}"
        return {name: sorted(bodies) for name, bodies in got.items()}

    def test_direct_routes_on_exact_key(self, conn: Connection) -> None:
        self.require_exchange_type(conn, "direct")
        exchange = self.new_exchange("direct", "direct")
        red = self.new_queue("direct_red", exchange, "red")
        blue = self.new_queue("direct_blue", exchange, "blue")
        also_red = self.new_queue("direct_red2", exchange, "red")
        got = self._route(
            conn,
            [red, blue, also_red],
            [(exchange, "red", None), (exchange, "blue", None), (exchange, "green", None), (exchange, "red.x", None)],
            expected_total=3,
        )
        assert got == {red.name: ["red"], blue.name: ["blue"], also_red.name: ["red"]}

    def test_topic_star_matches_exactly_one_word(self, conn: Connection) -> None:
        self.require_exchange_type(conn, "topic")
        exchange = self.new_exchange("topic_star", "topic")
        star = self.new_queue("topic_star", exchange, "stock.*.nyse")
        keys = ["stock.ibm.nyse", "stock.nyse", "stock.ibm.x.nyse", "stock.ibm.nasdaq", "stock.sap.nyse"]
        got = self._route(conn, [star], [(exchange, key, None) for key in keys], expected_total=2)
        assert got == {star.name: ["stock.ibm.nyse", "stock.sap.nyse"]}

    def test_topic_hash_matches_zero_or_more_words(self, conn: Connection) -> None:
        self.require_exchange_type(conn, "topic")
        exchange = self.new_exchange("topic_hash", "topic")
        prefix = self.new_queue("topic_prefix", exchange, "audit.#")
        suffix = self.new_queue("topic_suffix", exchange, "#.error")
        middle = self.new_queue("topic_middle", exchange, "a.#.z")
        keys = ["audit", "audit.user.login", "auditx.y", "error", "app.db.error", "error.app", "a.z", "a.b.c.z", "a.b"]
        got = self._route(conn, [prefix, suffix, middle], [(exchange, k, None) for k in keys], expected_total=6)
        assert got == {
            prefix.name: ["audit", "audit.user.login"],
            suffix.name: ["app.db.error", "error"],
            middle.name: ["a.b.c.z", "a.z"],
        }

    def test_topic_hash_alone_matches_everything(self, conn: Connection) -> None:
        self.require_exchange_type(conn, "topic")
        exchange = self.new_exchange("topic_all", "topic")
        everything = self.new_queue("topic_all", exchange, "#")
        exact = self.new_queue("topic_exact", exchange, "a.b")
        keys = ["a.b", "x", "a.b.c"]
        got = self._route(conn, [everything, exact], [(exchange, k, None) for k in keys], expected_total=4)
        assert got == {everything.name: ["a.b", "a.b.c", "x"], exact.name: ["a.b"]}

    def test_fanout_reaches_every_bound_queue(self, conn: Connection) -> None:
        self.require_exchange_type(conn, "fanout")
        exchange = self.new_exchange("fanout", "fanout")
        queues = [self.new_queue(f"fanout_{i}", exchange, f"ignored{i}") for i in range(3)]
        got = self._route(conn, queues, [(exchange, "any.key", None)], expected_total=3)
        assert got == {q.name: ["any.key"] for q in queues}

    def test_headers_match_all(self, conn: Connection) -> None:
        self.require_exchange_type(conn, "headers")
        exchange = self.new_exchange("headers_all", "headers")
        queue = self.new_queue(
            "headers_all", exchange, "", binding_arguments={"x-match": "all", "format": "pdf", "type": "report"}
        )
        publishes: list[tuple[Exchange, str, Mapping[str, Any] | None]] = [
            (exchange, "m1", {"format": "pdf", "type": "report"}),
            (exchange, "m2", {"format": "pdf", "type": "report", "extra": "yes"}),
            (exchange, "m3", {"format": "pdf"}),
            (exchange, "m4", {"format": "zip", "type": "report"}),
            (exchange, "m5", None),
        ]
        got = self._route(conn, [queue], publishes, expected_total=2)
        assert [label[:2] for label in got[queue.name]] == ["m1", "m2"]

    def test_headers_match_any(self, conn: Connection) -> None:
        self.require_exchange_type(conn, "headers")
        exchange = self.new_exchange("headers_any", "headers")
        queue = self.new_queue(
            "headers_any", exchange, "", binding_arguments={"x-match": "any", "format": "pdf", "type": "report"}
        )
        publishes: list[tuple[Exchange, str, Mapping[str, Any] | None]] = [
            (exchange, "m1", {"format": "pdf", "type": "log"}),
            (exchange, "m2", {"type": "report"}),
            (exchange, "m3", {"format": "zip", "type": "log"}),
            (exchange, "m4", None),
        ]
        got = self._route(conn, [queue], publishes, expected_total=2)
        assert [label[:2] for label in got[queue.name]] == ["m1", "m2"]

    def test_unbound_queue_stops_receiving(self, conn: Connection) -> None:
        self.require_exchange_type(conn, "direct")
        exchange = self.new_exchange("unbind", "direct")
        kept = self.new_queue("unbind_kept", exchange, "k")
        dropped = self.new_queue("unbind_dropped", exchange, "k")
        self.declare(conn, kept, dropped)
        dropped(conn.default_channel).unbind_from(exchange, "k")
        got = self._route(conn, [kept], [(exchange, "k", None)], expected_total=1)
        assert got == {kept.name: ["k"]}
        assert self.message_count(conn, dropped) == 0


class AckTests(ConformanceBase):
    """Acknowledgement, rejection, redelivery, basic_get and prefetch."""

    def test_acked_message_is_gone(self, conn: Connection) -> None:
        queue = self.new_queue("ack_gone")
        self.publish(conn, "once", queue)
        [message] = self.collect(conn, queue, 1)
        assert message.acknowledged
        conn.release()
        other = self.connection()
        assert self.basic_get(other, queue) is None
        assert self.message_count(other, queue) == 0

    def test_first_delivery_is_not_redelivered(self, conn: Connection) -> None:
        queue = self.new_queue("ack_first")
        self.publish(conn, "fresh", queue)
        [message] = self.collect(conn, queue, 1)
        assert not message.delivery_info.get("redelivered")

    def test_requeue_redelivers_with_flag(self, conn: Connection) -> None:
        queue = self.new_queue("ack_requeue")
        self.publish(conn, {"n": 1}, queue)
        [first] = self.collect(conn, queue, 1, ack=False)
        first.requeue()
        assert first.acknowledged
        [again] = self.collect(conn, queue, 1)
        assert again.payload == {"n": 1}
        assert again.delivery_info.get("redelivered") is True

    def test_reject_with_requeue_redelivers(self, conn: Connection) -> None:
        queue = self.new_queue("ack_reject_requeue")
        self.publish(conn, "back", queue)
        [first] = self.collect(conn, queue, 1, ack=False)
        first.reject(requeue=True)
        [again] = self.collect(conn, queue, 1)
        assert again.payload == "back"
        assert again.delivery_info.get("redelivered") is True

    def test_reject_without_requeue_discards(self, conn: Connection) -> None:
        queue = self.new_queue("ack_reject")
        self.publish(conn, "dropped", queue)
        [message] = self.collect(conn, queue, 1, ack=False)
        message.reject()
        conn.release()
        other = self.connection()
        assert self.basic_get(other, queue) is None

    def test_unacked_restored_when_channel_closes(self, conn: Connection) -> None:
        queue = self.new_queue("ack_chan_close")
        self.publish(conn, "keep me", queue)
        channel = conn.channel()
        [first] = self.collect(conn, queue, 1, ack=False, channel=channel)
        assert not first.acknowledged
        channel.close()
        [again] = self.collect(conn, queue, 1, timeout=self.redelivery_wait)
        assert again.payload == "keep me"
        assert again.delivery_info.get("redelivered") is True

    def test_unacked_restored_when_connection_closes(self, conn: Connection) -> None:
        queue = self.new_queue("ack_conn_close")
        self.publish(conn, {"important": True}, queue)
        consumer_conn = self.connection()
        [first] = self.collect(consumer_conn, queue, 1, ack=False)
        consumer_conn.release()
        [again] = self.collect(conn, queue, 1, timeout=self.redelivery_wait)
        assert again.payload == {"important": True}
        assert again.delivery_info.get("redelivered") is True

    def test_no_ack_consumer_messages_are_not_restored(self, conn: Connection) -> None:
        queue = self.new_queue("ack_no_ack")
        self.publish(conn, "fire and forget", queue)
        consumer_conn = self.connection()
        [message] = self.collect(consumer_conn, queue, 1, ack=False, no_ack=True)
        assert message.payload == "fire and forget"
        consumer_conn.release()
        assert self.basic_get(conn, queue) is None

    def test_double_ack_raises(self, conn: Connection) -> None:
        queue = self.new_queue("ack_double")
        self.publish(conn, "x", queue)
        [message] = self.collect(conn, queue, 1)
        with pytest.raises(MessageStateError):
            message.ack()
        with pytest.raises(MessageStateError):
            message.reject()
        with pytest.raises(MessageStateError):
            message.requeue()

    def test_ack_after_reject_raises(self, conn: Connection) -> None:
        queue = self.new_queue("ack_after_reject")
        self.publish(conn, "x", queue)
        [message] = self.collect(conn, queue, 1, ack=False)
        message.reject()
        with pytest.raises(MessageStateError):
            message.ack()

    def test_basic_get(self, conn: Connection) -> None:
        queue = self.new_queue("ack_get")
        self.publish(conn, {"got": 1}, queue)
        message = self.basic_get(conn, queue)
        assert message is not None
        assert message.payload == {"got": 1}
        assert not message.acknowledged
        message.ack()
        assert self.basic_get(conn, queue) is None

    def test_basic_get_on_empty_queue_returns_none(self, conn: Connection) -> None:
        queue = self.new_queue("ack_get_empty")
        self.declare(conn, queue)
        assert self.basic_get(conn, queue) is None

    def test_basic_get_unacked_is_restored_on_close(self, conn: Connection) -> None:
        queue = self.new_queue("ack_get_restore")
        self.publish(conn, "again", queue)
        getter = self.connection()
        message = self.basic_get(getter, queue)
        assert message is not None
        getter.release()
        [again] = self.collect(conn, queue, 1, timeout=self.redelivery_wait)
        assert again.payload == "again"
        assert again.delivery_info.get("redelivered") is True

    def test_basic_get_no_ack_is_not_restored(self, conn: Connection) -> None:
        queue = self.new_queue("ack_get_no_ack")
        self.publish(conn, "gone", queue)
        getter = self.connection()
        message = self.basic_get(getter, queue, no_ack=True)
        assert message is not None and message.payload == "gone"
        getter.release()
        assert self.basic_get(conn, queue) is None

    def test_prefetch_count_limits_unacked_deliveries(self, conn: Connection) -> None:
        queue = self.new_queue("ack_prefetch")
        producer = conn.Producer()
        for n in range(5):
            producer.publish(n, exchange="", routing_key=queue.name, declare=[queue])
        received: list[Message] = []
        with Consumer(conn, [queue], prefetch_count=2, on_message=received.append):
            self.drain_until(conn, lambda: len(received) >= 2)
            self.drain_quietly(conn)
            assert len(received) == 2, "more unacked messages delivered than prefetch_count allows"
            received[0].ack()
            self.drain_until(conn, lambda: len(received) >= 3)
            self.drain_quietly(conn)
            assert len(received) == 3
            for message in received[1:]:
                message.ack()
            self.drain_until(conn, lambda: len(received) >= 5)
            for message in received[3:]:
                message.ack()
        assert sorted(m.payload for m in received) == [0, 1, 2, 3, 4]


class SimpleQueueTests(ConformanceBase):
    """``Connection.SimpleQueue`` / ``SimpleBuffer``: Queue.Queue-like put/get."""

    def simple_name(self, prefix: str) -> str:
        name = self.unique(prefix)
        # a SimpleQueue declares a queue and a direct exchange of the same name
        self.track_queue(name)
        self.track_exchange(name)
        return name

    def test_put_get(self, conn: Connection) -> None:
        with conn.SimpleQueue(self.simple_name("sq_put_get")) as queue:
            queue.put({"hello": "world"})
            message = queue.get(timeout=self.wait)
            assert message.payload == {"hello": "world"}
            message.ack()

    def test_get_in_order(self, conn: Connection) -> None:
        with conn.SimpleQueue(self.simple_name("sq_order")) as queue:
            for n in range(5):
                queue.put(n)
            got = []
            for _ in range(5):
                message = queue.get(timeout=self.wait)
                got.append(message.payload)
                message.ack()
            assert got == [0, 1, 2, 3, 4]

    def test_get_raises_empty_after_timeout(self, conn: Connection) -> None:
        import queue as stdlib_queue

        with conn.SimpleQueue(self.simple_name("sq_empty")) as queue:
            with pytest.raises(queue.Empty):
                queue.get(timeout=self.quiet)
            assert queue.Empty is stdlib_queue.Empty

    def test_get_nowait(self, conn: Connection) -> None:
        import queue as stdlib_queue

        with conn.SimpleQueue(self.simple_name("sq_nowait")) as queue:
            with pytest.raises(stdlib_queue.Empty):
                queue.get_nowait()
            queue.put("now")
            message = queue.get_nowait()
            assert message.payload == "now"
            message.ack()
            with pytest.raises(stdlib_queue.Empty):
                queue.get(block=False)

    def test_qsize_and_clear(self, conn: Connection) -> None:
        with conn.SimpleQueue(self.simple_name("sq_qsize")) as queue:
            assert queue.qsize() == 0
            for n in range(3):
                queue.put(n)
            assert queue.qsize() == 3
            assert len(queue) == 3
            assert queue.clear() == 3
            assert queue.qsize() == 0

    def test_unacked_get_comes_back(self, conn: Connection) -> None:
        name = self.simple_name("sq_unacked")
        with conn.SimpleQueue(name) as queue:
            queue.put("retry me")
            first = queue.get(timeout=self.wait)
        conn.release()
        other = self.connection()
        with other.SimpleQueue(name) as queue:
            again = queue.get(timeout=self.redelivery_wait)
            assert again.payload == "retry me" == first.payload
            assert again.delivery_info.get("redelivered") is True
            again.ack()

    def test_context_manager_stops_consuming(self, conn: Connection) -> None:
        name = self.simple_name("sq_ctx")
        with conn.SimpleQueue(name) as queue:
            queue.put(1)
            queue.get(timeout=self.wait).ack()
            assert queue.consumer.consuming_from(queue.queue)
        assert not queue.consumer.consuming_from(queue.queue)

    def test_serializer_and_compression(self, conn: Connection) -> None:
        with conn.SimpleQueue(self.simple_name("sq_opts")) as queue:
            queue.put({"k": "v" * 100}, serializer="json", compression="zlib")
            message = queue.get(timeout=self.wait)
            assert message.payload == {"k": "v" * 100}
            assert message.headers.get("compression") == "application/x-gzip"
            message.ack()

    def test_simple_buffer(self, conn: Connection) -> None:
        with conn.SimpleBuffer(self.simple_name("sbuf")) as buffer:
            buffer.put("transient")
            message = buffer.get(timeout=self.wait)
            assert message.payload == "transient"
            assert message.properties.get("delivery_mode") == 1


class DecodeErrorTests(ConformanceBase):
    """Bad messages: a clear error, the consumer keeps going, the message is not lost."""

    def bad_input_queue(self, prefix: str) -> Queue:
        """A queue bound with a routing key other than its name, so an error message that
        names the queue cannot do so by quoting the routing key."""
        return self.new_queue(prefix, self.new_exchange(f"{prefix}_ex", "direct"), routing_key="bad.input")

    def _publish_bad_json(self, conn: Connection, queue: Queue) -> None:
        self.publish(conn, b"{not json", queue, content_type="application/json", content_encoding="utf-8")

    def _publish_yaml(self, conn: Connection, queue: Queue) -> None:
        self.publish(conn, "a: 1", queue, content_type="application/x-yaml", content_encoding="utf-8")

    def _comes_back(self, queue: Queue, body: bytes) -> None:
        """The message is still in the broker: a new connection gets it, redelivered."""
        [again] = self.collect(self.connection(), queue, 1, timeout=self.redelivery_wait)
        assert again.body == body
        assert again.delivery_info.get("redelivered") is True

    def test_malformed_body_goes_to_on_decode_error(self, conn: Connection) -> None:
        queue = self.bad_input_queue("dec_malformed")
        self._publish_bad_json(conn, queue)
        self.publish(conn, {"good": 1}, queue)
        errors: list[tuple[Message, BaseException]] = []
        good: list[Any] = []

        def callback(body: Any, message: Message) -> None:
            good.append(body)
            message.ack()

        with Consumer(conn, [queue], callbacks=[callback], on_decode_error=lambda m, e: errors.append((m, e))):
            self.drain_until(conn, lambda: bool(errors) and bool(good))
        assert good == [{"good": 1}]
        [(message, exc)] = errors
        assert isinstance(exc, DecodeError)
        assert message.body == b"{not json"
        assert message.content_type == "application/json"
        assert not message.acknowledged
        conn.release()
        self._comes_back(queue, b"{not json")

    def test_disallowed_content_type_goes_to_on_decode_error(self, conn: Connection) -> None:
        queue = self.bad_input_queue("dec_disallowed")
        self._publish_yaml(conn, queue)
        self.publish(conn, {"good": 2}, queue)
        errors: list[tuple[Message, BaseException]] = []
        good: list[Any] = []

        def callback(body: Any, message: Message) -> None:
            good.append(body)
            message.ack()

        with Consumer(
            conn, [queue], accept=["json"], callbacks=[callback], on_decode_error=lambda m, e: errors.append((m, e))
        ):
            self.drain_until(conn, lambda: bool(errors) and bool(good))
        assert good == [{"good": 2}]
        [(message, exc)] = errors
        assert isinstance(exc, ContentDisallowed)
        assert "application/x-yaml" in str(exc)
        assert message.body == b"a: 1"
        assert not message.acknowledged
        conn.release()
        self._comes_back(queue, b"a: 1")

    def test_malformed_body_without_handler_raises_naming_queue(self, conn: Connection) -> None:
        queue = self.bad_input_queue("dec_raise")
        self._publish_bad_json(conn, queue)
        self.publish(conn, {"good": 3}, queue)
        good: list[Any] = []

        def callback(body: Any, message: Message) -> None:
            good.append(body)
            message.ack()

        with Consumer(conn, [queue], callbacks=[callback]):
            exc = self.drain_until_error(conn, DecodeError)
            assert queue.name in str(exc)
            assert "application/json" in str(exc)
            # the consumer keeps running: the next good message is delivered
            self.drain_until(conn, lambda: bool(good))
        assert good == [{"good": 3}]
        conn.release()
        self._comes_back(queue, b"{not json")

    def test_disallowed_content_without_handler_raises_naming_queue(self, conn: Connection) -> None:
        queue = self.bad_input_queue("dec_disallowed_raise")
        self._publish_yaml(conn, queue)
        self.publish(conn, {"good": 4}, queue)
        good: list[Any] = []

        def callback(body: Any, message: Message) -> None:
            good.append(body)
            message.ack()

        with Consumer(conn, [queue], accept=["application/json"], callbacks=[callback]):
            exc = self.drain_until_error(conn, ContentDisallowed)
            assert queue.name in str(exc)
            assert "application/x-yaml" in str(exc)
            self.drain_until(conn, lambda: bool(good))
        assert good == [{"good": 4}]
        conn.release()
        self._comes_back(queue, b"a: 1")


class CompressionTests(ConformanceBase):
    """Every compression method round-trips, with Kombu's ``compression`` header."""

    @pytest.mark.parametrize("method", sorted(COMPRESSION_METHODS))
    def test_round_trip(self, conn: Connection, method: str) -> None:
        content_type, modules = COMPRESSION_METHODS[method]
        if not any(_module_available(module) for module in modules):
            pytest.skip(f"compression {method!r} needs one of {', '.join(modules)} installed")
        queue = self.new_queue(f"comp_{method}")
        body = {"method": method, "data": "abc" * 2000, "text": "\u00e9\u2603"}
        self.publish(conn, body, queue, compression=method)
        [message] = self.collect(conn, queue, 1)
        assert message.headers.get("compression") == content_type
        assert message.payload == body

    def test_compressed_raw_bytes(self, conn: Connection) -> None:
        queue = self.new_queue("comp_raw")
        raw = bytes(range(256)) * 8
        self.publish(
            conn, raw, queue, compression="zlib", content_type="application/octet-stream", content_encoding="binary"
        )
        [message] = self.collect(conn, queue, 1)
        assert message.body == raw


class HeadersAndPropertiesTests(ConformanceBase):
    """Headers, message properties and delivery info survive the broker."""

    def test_headers(self, conn: Connection) -> None:
        queue = self.new_queue("props_headers")
        headers = {"str": "v\u00e9", "int": 42, "bool": True, "list": [1, "two"], "nested": {"a": "b"}}
        self.publish(conn, "h", queue, headers=headers)
        [message] = self.collect(conn, queue, 1)
        for key, value in headers.items():
            assert message.headers[key] == value

    def test_amqp_properties(self, conn: Connection) -> None:
        queue = self.new_queue("props_amqp")
        self.publish(conn, "p", queue, correlation_id="corr-1", reply_to="reply-queue", message_id="msg-1", priority=3)
        [message] = self.collect(conn, queue, 1)
        props = message.properties
        assert props["correlation_id"] == "corr-1"
        assert props["reply_to"] == "reply-queue"
        assert props["message_id"] == "msg-1"
        assert props["priority"] == 3

    def test_delivery_mode(self, conn: Connection) -> None:
        queue = self.new_queue("props_delivery_mode")
        self.publish(conn, "persistent", queue)
        self.publish(conn, "transient", queue, delivery_mode="transient")
        received = self.collect(conn, queue, 2)
        modes = {m.payload: m.properties["delivery_mode"] for m in received}
        assert modes == {"persistent": 2, "transient": 1}

    def test_json_content_type_and_encoding(self, conn: Connection) -> None:
        queue = self.new_queue("props_json")
        self.publish(conn, {"a": 1}, queue, serializer="json")
        [message] = self.collect(conn, queue, 1)
        assert message.content_type == "application/json"
        assert message.content_encoding == "utf-8"

    def test_raw_bytes_with_content_type(self, conn: Connection) -> None:
        queue = self.new_queue("props_raw")
        raw = b"\x00\x01\x80\xfe\xff"
        self.publish(conn, raw, queue, content_type="application/octet-stream", content_encoding="binary")
        [message] = self.collect(conn, queue, 1)
        assert message.body == raw
        assert message.content_type == "application/octet-stream"
        assert message.content_encoding == "binary"

    def test_text_with_content_type(self, conn: Connection) -> None:
        queue = self.new_queue("props_text")
        self.publish(conn, "h\u00e9llo", queue, content_type="text/plain")
        [message] = self.collect(conn, queue, 1, accept=["text/plain"])
        assert message.body == "h\u00e9llo".encode()
        assert message.content_type == "text/plain"
        assert message.content_encoding == "utf-8"
        assert message.decode() == "h\u00e9llo"

    def test_delivery_info(self, conn: Connection) -> None:
        exchange = self.new_exchange("props_info", "direct")
        queue = self.new_queue("props_info", exchange, "info.key")
        self.publish(conn, "i", queue)
        [message] = self.collect(conn, queue, 1)
        assert message.delivery_info["exchange"] == exchange.name
        assert message.delivery_info["routing_key"] == "info.key"
        assert message.delivery_tag is not None


class DeclarationTests(ConformanceBase):
    """queue_declare, passive declares, purge, delete, server-named queues."""

    def test_queue_declare_returns_name_and_counts(self, conn: Connection) -> None:
        queue = self.new_queue("decl_counts")
        name, messages, consumers = queue(conn.default_channel).queue_declare()
        assert (name, messages, consumers) == (queue.name, 0, 0)
        self.publish(conn, 1, queue)
        self.publish(conn, 2, queue)
        result = queue(conn.default_channel).queue_declare(passive=True)
        assert result[0] == queue.name
        assert result[1] == 2
        assert result.message_count == 2
        assert result.queue == queue.name

    def test_declare_is_idempotent(self, conn: Connection) -> None:
        queue = self.new_queue("decl_twice")
        self.publish(conn, "kept", queue)
        assert queue(conn.default_channel).declare() == queue.name
        assert self.message_count(conn, queue) == 1

    def test_passive_declare_of_missing_queue_raises_not_found(self, conn: Connection) -> None:
        name = self.unique("decl_missing")
        channel = conn.channel()
        with pytest.raises(NotFound) as excinfo:
            Queue(name, channel=channel).queue_declare(passive=True)
        assert isinstance(excinfo.value, ChannelError)
        assert name in str(excinfo.value)

    def test_passive_declare_of_missing_exchange_raises_not_found(self, conn: Connection) -> None:
        name = self.unique("decl_missing_ex")
        channel = conn.channel()
        with pytest.raises(NotFound):
            Exchange(name, "direct", channel=channel).declare(passive=True)

    def test_purge_returns_count(self, conn: Connection) -> None:
        queue = self.new_queue("decl_purge")
        for n in range(3):
            self.publish(conn, n, queue)
        assert queue(conn.default_channel).purge() == 3
        assert self.basic_get(conn, queue) is None
        assert queue(conn.default_channel).purge() == 0

    def test_delete_queue(self, conn: Connection) -> None:
        queue = self.new_queue("decl_delete")
        self.publish(conn, "doomed", queue)
        queue(conn.default_channel).delete()
        channel = conn.channel()
        with pytest.raises(NotFound):
            queue(channel).queue_declare(passive=True)

    def test_delete_exchange(self, conn: Connection) -> None:
        exchange = self.new_exchange("decl_delete_ex", "topic")
        bound = exchange(conn.default_channel)
        bound.declare()
        bound.declare(passive=True)
        bound.delete()
        channel = conn.channel()
        with pytest.raises(NotFound):
            exchange(channel).declare(passive=True)

    def test_server_named_queue(self, conn: Connection) -> None:
        declared: list[tuple[str, int, int]] = []
        queue = Queue("", exclusive=True, on_declared=lambda *args: declared.append(args))
        bound = queue(conn.default_channel)
        name = bound.declare()
        self.track_queue(name)
        assert name
        assert bound.name == name
        assert declared == [(name, 0, 0)]
        conn.Producer().publish("to server-named", exchange="", routing_key=name)
        [message] = self.collect(conn, bound, 1)
        assert message.payload == "to server-named"

    def test_exclusive_queue_goes_away_with_its_connection(self, conn: Connection) -> None:
        owner = self.connection()
        queue = self.new_queue("decl_exclusive", exclusive=True)
        queue(owner.default_channel).declare()
        owner.release()
        channel = conn.channel()
        with pytest.raises(NotFound):
            queue(channel).queue_declare(passive=True)


class PriorityTests(ConformanceBase):
    """Queues with ``max_priority`` deliver higher priorities first (capability ``priority``)."""

    def test_higher_priority_first(self, conn: Connection) -> None:
        self.require_capability(conn, "priority")
        queue = self.new_queue("prio", max_priority=10)
        for priority in (1, 9, 0, 5):
            self.publish(conn, priority, queue, priority=priority)
        received = self.collect(conn, queue, 4, prefetch_count=1)
        assert [m.payload for m in received] == [9, 5, 1, 0]

    def test_same_priority_keeps_order(self, conn: Connection) -> None:
        self.require_capability(conn, "priority")
        queue = self.new_queue("prio_fifo", max_priority=5)
        for label, priority in (("a", 2), ("b", 4), ("c", 2), ("d", 4)):
            self.publish(conn, label, queue, priority=priority)
        received = self.collect(conn, queue, 4, prefetch_count=1)
        assert [m.payload for m in received] == ["b", "d", "a", "c"]


class TTLTests(ConformanceBase):
    """Per-message ``expiration`` and queue ``message_ttl`` (capability ``ttl``)."""

    #: seconds a short-lived message lives
    short_ttl: float = 0.1
    #: seconds to wait for it to expire
    expiry_wait: float = 0.5

    def test_expired_message_is_not_delivered(self, conn: Connection) -> None:
        self.require_capability(conn, "ttl")
        queue = self.new_queue("ttl_msg")
        self.publish(conn, "short", queue, expiration=self.short_ttl)
        self.publish(conn, "long", queue, expiration=60)
        self.publish(conn, "forever", queue)
        time.sleep(self.expiry_wait)  # let the short one expire
        received = self.collect(conn, queue, 2)
        assert sorted(m.payload for m in received) == ["forever", "long"]
        [long_lived] = [m for m in received if m.payload == "long"]
        assert long_lived.properties["expiration"] == "60000"
        assert self.basic_get(conn, queue) is None

    def test_queue_message_ttl(self, conn: Connection) -> None:
        self.require_capability(conn, "ttl")
        short = self.new_queue("ttl_queue_short", message_ttl=self.short_ttl)
        long = self.new_queue("ttl_queue_long", message_ttl=60)
        self.publish(conn, "expires", short)
        self.publish(conn, "stays", long)
        time.sleep(self.expiry_wait)  # let the short-lived one expire
        assert self.basic_get(conn, short) is None
        assert self.message_count(conn, short) == 0
        [message] = self.collect(conn, long, 1)
        assert message.payload == "stays"


class SeamTests(ConformanceBase):
    """The transport seam: driver errors reach the retry engine translated, and a deleted
    queue takes its bindings with it."""

    def driver_error(self) -> Exception:
        """An error as the transport's driver raises it when the connection is lost.

        The transport's ``translate_error`` must map it onto one of its
        ``recoverable_connection_errors``.  Override for a transport that maps a more
        specific class.
        """
        return ConnectionResetError(104, "connection reset by peer (injected by the conformance suite)")

    @contextlib.contextmanager
    def failing_put(self, conn: Connection, error: Exception, times: int = 1) -> Iterator[list[Exception]]:
        """Make the next ``times`` store puts of ``conn`` raise ``error`` (as a driver would).

        Yields the list of errors raised so far.  Queue-store (virtual) transports only;
        others skip unless they override this.
        """
        conn.connect()
        store = getattr(conn.connection, "store", None)
        if store is None:
            pytest.skip(f"transport {conn.transport.driver_type!r} has no queue store to inject a fault into")
        raised: list[Exception] = []
        originals = {name: getattr(store, name) for name in ("put", "put_many")}

        def faulty(name: str) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                if len(raised) < times:
                    raised.append(error)
                    raise error
                return originals[name](*args, **kwargs)

            return call

        for name in originals:
            setattr(store, name, faulty(name))
        try:
            yield raised
        finally:
            for name in originals:
                with contextlib.suppress(AttributeError):
                    delattr(store, name)

    def test_store_error_is_translated_with_the_original_as_cause(self, conn: Connection) -> None:
        queue = self.new_queue("seam_translated")
        self.declare(conn, queue)
        error = self.driver_error()
        with self.failing_put(conn, error) as raised:
            with pytest.raises(conn.recoverable_connection_errors) as info:
                Producer(conn).publish("lost?", routing_key=queue.name)
        assert raised == [error]
        assert info.value is not error
        assert info.value.__cause__ is error

    def test_publish_with_retry_survives_a_store_error(self, conn: Connection) -> None:
        queue = self.new_queue("seam_retry")
        self.declare(conn, queue)
        with self.failing_put(conn, self.driver_error()) as raised:
            Producer(conn).publish(
                "retried", routing_key=queue.name, retry=True, retry_policy={"interval_start": 0, "max_retries": 3}
            )
        assert len(raised) == 1
        [message] = self.collect(conn, queue, 1)
        assert message.payload == "retried"
        self.drain_quietly(conn)
        assert self.basic_get(conn, queue) is None

    def test_deleted_queue_loses_its_bindings(self, conn: Connection) -> None:
        exchange = self.new_exchange("seam_unbound", "direct")
        queue = self.new_queue("seam_unbound", exchange, routing_key="seam.key")
        self.publish(conn, "before", queue)
        queue(conn.default_channel).delete()
        producer = Producer(conn)
        producer.publish("after delete", exchange=exchange, routing_key="seam.key")
        channel = conn.channel()
        with pytest.raises(NotFound):
            queue(channel).queue_declare(passive=True)
        # declared again but not bound: the old binding must not come back with it
        Queue(queue.name, channel=conn.default_channel).queue_declare()
        producer.publish("after redeclare", exchange=exchange, routing_key="seam.key")
        self.drain_quietly(conn)
        assert self.message_count(conn, queue) == 0


# the event-loop tests build on ConformanceBase above
from .eventloop import EventLoopTests  # noqa: E402


class TransportConformance(
    PublishConsumeTests,
    ExchangeTypeTests,
    AckTests,
    SimpleQueueTests,
    DecodeErrorTests,
    CompressionTests,
    HeadersAndPropertiesTests,
    DeclarationTests,
    PriorityTests,
    TTLTests,
    SeamTests,
    EventLoopTests,
):
    """Every conformance test; subclass it as ``Test...`` with the transport's ``url``."""
