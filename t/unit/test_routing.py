"""Exchange routing rules (RabbitMQ's semantics), as plain functions and through a broker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kombu_like import Connection, Exchange, Message, Queue, binding
from kombu_like.exceptions import NotFound
from kombu_like.transport.virtual.routing import Binding, route, topic_matches


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        # exact words
        ("a.b.c", "a.b.c", True),
        ("a.b.c", "a.b", False),
        ("a.b", "a.b.c", False),
        ("a.b.c", "a.x.c", False),
        # '*' is exactly one word
        ("*", "a", True),
        ("*", "a.b", False),
        ("a.*", "a.b", True),
        ("a.*", "a", False),
        ("a.*", "a.b.c", False),
        ("*.b.*", "a.b.c", True),
        ("*.*", "a.b", True),
        ("*.*", "a", False),
        ("a.*", "a.", True),  # an empty word is still a word
        ("*", "", False),  # the empty routing key has no words
        # '#' is zero or more words
        ("#", "", True),
        ("#", "a", True),
        ("#", "a.b.c", True),
        ("a.#", "a", True),
        ("a.#", "a.b", True),
        ("a.#", "a.b.c", True),
        ("a.#", "b.a", False),
        ("a.#", "ab", False),
        ("#.c", "c", True),
        ("#.c", "a.b.c", True),
        ("#.c", "c.a", False),
        ("a.#.c", "a.c", True),
        ("a.#.c", "a.b.c", True),
        ("a.#.c", "a.b.x.c", True),
        ("a.#.c", "a.b.x", False),
        ("#.#", "a", True),
        ("#.#", "", True),
        ("a.#.#.b", "a.b", True),
        ("#.b.#", "b", True),
        ("#.b.#", "a.b.c", True),
        ("#.b.#", "a.c", False),
        ("*.#", "a", True),
        ("*.#", "", False),
        ("#.*", "a.b", True),
        ("a.*.#", "a", False),
        ("a.*.#", "a.b", True),
        ("a.*.#", "a.b.c.d", True),
        # no regex surprises
        ("a.b", "aXb", False),
        ("a+b", "a+b", True),
        ("a$", "a$", True),
        ("", "", True),
        ("", "a", False),
    ],
)
def test_topic_matches(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def bindings(*items: tuple[str, str] | tuple[str, str, dict[str, Any]]) -> list[Binding]:
    return [Binding(*item) for item in items]  # type: ignore[arg-type]


class TestRoute:
    def test_direct(self) -> None:
        table = bindings(("q1", "red"), ("q2", "blue"), ("q3", "red"))
        assert route("direct", table, "red") == ["q1", "q3"]
        assert route("direct", table, "green") == []
        assert route("direct", table, "") == []

    def test_direct_empty_key(self) -> None:
        assert route("direct", bindings(("q1", "")), "") == ["q1"]

    def test_fanout_ignores_key(self) -> None:
        table = bindings(("q1", "x"), ("q2", ""))
        assert route("fanout", table, "anything") == ["q1", "q2"]

    def test_topic(self) -> None:
        table = bindings(("all", "#"), ("star", "a.*"), ("exact", "a.b"))
        assert route("topic", table, "a.b") == ["all", "star", "exact"]
        assert route("topic", table, "a.b.c") == ["all"]

    def test_queue_listed_once_for_several_matching_bindings(self) -> None:
        table = bindings(("q1", "a.*"), ("q1", "#"), ("q2", "a.b"))
        assert route("topic", table, "a.b") == ["q1", "q2"]

    def test_headers_all(self) -> None:
        table = bindings(("q", "", {"x-match": "all", "a": 1, "b": "two"}))
        assert route("headers", table, "", {"a": 1, "b": "two"}) == ["q"]
        assert route("headers", table, "", {"a": 1, "b": "two", "c": 3}) == ["q"]
        assert route("headers", table, "", {"a": 1}) == []
        assert route("headers", table, "", {"a": "1", "b": "two"}) == []
        assert route("headers", table, "", None) == []

    def test_headers_all_is_default(self) -> None:
        table = bindings(("q", "", {"a": 1, "b": 2}))
        assert route("headers", table, "", {"a": 1}) == []
        assert route("headers", table, "", {"a": 1, "b": 2}) == ["q"]

    def test_headers_any(self) -> None:
        table = bindings(("q", "", {"x-match": "any", "a": 1, "b": 2}))
        assert route("headers", table, "", {"a": 1}) == ["q"]
        assert route("headers", table, "", {"b": 2, "z": 0}) == ["q"]
        assert route("headers", table, "", {"a": 2, "b": 1}) == []
        assert route("headers", table, "", {}) == []

    def test_headers_ignore_routing_key_and_x_arguments(self) -> None:
        table = bindings(("q", "some.key", {"x-match": "all", "x-other": "ignored", "a": 1}))
        assert route("headers", table, "different", {"a": 1}) == ["q"]

    def test_headers_all_without_keys_matches_everything(self) -> None:
        table = bindings(("q", "", {"x-match": "all"}))
        assert route("headers", table, "", {"anything": 1}) == ["q"]

    def test_unknown_type(self) -> None:
        with pytest.raises(ValueError, match="x-custom"):
            route("x-custom", [], "")


class TestThroughBroker:
    def test_two_bindings_to_one_queue_deliver_once(
        self, conn: Connection, collect: Callable[..., list[Message]]
    ) -> None:
        exchange = Exchange("rt_topic", "topic")
        queue = Queue("rt_once", bindings=[binding(exchange, "a.*"), binding(exchange, "#")])(conn)
        queue.declare()
        conn.Producer().publish("one copy", exchange=exchange, routing_key="a.b")
        assert [m.payload for m in collect(conn, queue)] == ["one copy"]
        assert queue.get() is None

    def test_binding_added_later_changes_routing(self, conn: Connection) -> None:
        exchange = Exchange("rt_later", "direct")
        queue = Queue("rt_later_q", exchange, "first")(conn)
        queue.declare()
        producer = conn.Producer()
        producer.publish(1, exchange=exchange, routing_key="second")
        assert queue.get() is None
        queue.bind_to(exchange, "second")
        producer.publish(2, exchange=exchange, routing_key="second")
        message = queue.get()
        assert message is not None and message.payload == 2

    def test_deleted_queue_is_no_longer_routed_to(self, conn: Connection) -> None:
        exchange = Exchange("rt_del", "fanout")
        keep = Queue("rt_del_keep", exchange)(conn)
        drop = Queue("rt_del_drop", exchange)(conn)
        keep.declare()
        drop.declare()
        drop.delete()
        conn.Producer().publish("x", exchange=exchange)
        assert keep.get() is not None
        with pytest.raises(NotFound):
            Queue("rt_del_drop")(conn.channel()).queue_declare(passive=True)

    def test_headers_exchange_through_broker(self, conn: Connection) -> None:
        exchange = Exchange("rt_headers", "headers")
        queue = Queue("rt_headers_q", exchange, binding_arguments={"x-match": "any", "kind": "pdf"})(conn)
        queue.declare()
        producer = conn.Producer()
        producer.publish("no", exchange=exchange, headers={"kind": "zip"})
        producer.publish("yes", exchange=exchange, headers={"kind": "pdf"})
        message = queue.get()
        assert message is not None and message.payload == "yes"
        assert queue.get() is None

    def test_unsupported_exchange_type(self, conn: Connection) -> None:
        from kombu_like.exceptions import ChannelError

        with pytest.raises(ChannelError, match="x-consistent-hash"):
            Exchange("rt_bad", "x-consistent-hash")(conn.channel()).declare()
