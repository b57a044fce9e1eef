"""Conformance: exchange types, declarations, and bindings as the transport seam keeps them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest

from kombu_like import Connection, Exchange, Message, Queue
from kombu_like.exceptions import ChannelError, NotFound

from .base import ConformanceBase


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

            consumer = conn.Consumer([queue], on_message=on_message)
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
        if getattr(conn, "publishes_handed_over", False):
            pytest.skip("asyncio API: publishes are handed to an I/O thread, a store error is raised by the next one")
        store = getattr(conn.connection, "store", None)
        if store is None:
            pytest.skip(f"transport {conn.transport.driver_type!r} has no queue store to inject a fault into")
        raised: list[Exception] = []
        # every way a store appends: put_plain too, which a plain publish may take
        originals = {name: getattr(store, name) for name in ("put", "put_many", "put_plain") if hasattr(store, name)}

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
                conn.Producer().publish("lost?", routing_key=queue.name)
        assert raised == [error]
        assert info.value is not error
        assert info.value.__cause__ is error

    def test_publish_with_retry_survives_a_store_error(self, conn: Connection) -> None:
        queue = self.new_queue("seam_retry")
        self.declare(conn, queue)
        with self.failing_put(conn, self.driver_error()) as raised:
            conn.Producer().publish(
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
        producer = conn.Producer()
        producer.publish("after delete", exchange=exchange, routing_key="seam.key")
        channel = conn.channel()
        with pytest.raises(NotFound):
            queue(channel).queue_declare(passive=True)
        # declared again but not bound: the old binding must not come back with it
        Queue(queue.name, channel=conn.default_channel).queue_declare()
        producer.publish("after redeclare", exchange=exchange, routing_key="seam.key")
        self.drain_quietly(conn)
        assert self.message_count(conn, queue) == 0
