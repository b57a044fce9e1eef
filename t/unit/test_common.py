"""kombu_like.common: maybe_declare caching, Broadcast, eventloop, ignore_errors, uuid."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any
from unittest.mock import Mock

import pytest

import kombu_like
from kombu_like import Connection, Exchange, Message, Queue
from kombu_like.common import Broadcast, eventloop, ignore_errors, maybe_declare, uuid
from kombu_like.exceptions import ChannelError, ConnectionError, NotFound

NO_WAIT = {"interval_start": 0, "interval_step": 0, "interval_max": 0}


def exists(conn: Connection, name: str) -> bool:
    try:
        Queue(name)(conn.channel()).queue_declare(passive=True)
        return True
    except NotFound:
        return False


class TestMaybeDeclare:
    def test_declares_once_per_connection(self, conn: Connection) -> None:
        queue = Queue("md_once")
        assert maybe_declare(queue, conn.default_channel) is True
        assert exists(conn, "md_once")
        assert maybe_declare(queue, conn.default_channel) is False
        assert maybe_declare(Queue("md_once"), conn.channel()) is False

    def test_cache_is_per_connection(self, connect: Callable[..., Connection]) -> None:
        first, second = connect(), connect()
        assert maybe_declare(Queue("md_conn"), first.default_channel) is True
        assert maybe_declare(Queue("md_conn"), second.default_channel) is True

    def test_cached_declaration_is_really_skipped(self, conn: Connection) -> None:
        queue = Queue("md_skip")
        maybe_declare(queue, conn.default_channel)
        Queue("md_skip")(conn).delete()
        maybe_declare(queue, conn.default_channel)
        assert not exists(conn, "md_skip")

    @pytest.mark.parametrize(
        "make",
        [
            lambda: Queue("md_auto", auto_delete=True),
            lambda: Queue("md_exp", expires=60),
            lambda: Queue("md_args", queue_arguments={"x-expires": 60000}),
            lambda: Exchange("md_ex_auto", auto_delete=True),
        ],
    )
    def test_uncacheable_entities_are_always_declared(self, conn: Connection, make: Callable[[], Any]) -> None:
        assert maybe_declare(make(), conn.default_channel) is True
        assert maybe_declare(make(), conn.default_channel) is True

    def test_exchange(self, conn: Connection) -> None:
        exchange = Exchange("md_ex", "topic")
        assert maybe_declare(exchange, conn.default_channel) is True
        assert maybe_declare(exchange, conn.default_channel) is False
        Exchange("md_ex")(conn.channel()).declare(passive=True)

    def test_bound_entity_needs_no_channel(self, conn: Connection) -> None:
        assert maybe_declare(Queue("md_bound")(conn)) is True
        assert exists(conn, "md_bound")

    def test_unbound_entity_without_channel(self) -> None:
        with pytest.raises(ChannelError, match="md_unbound"):
            maybe_declare(Queue("md_unbound"))

    def test_server_named_queue_gets_its_name(self, conn: Connection) -> None:
        queue = Queue("", exclusive=True)
        maybe_declare(queue, conn.default_channel)
        assert queue.name

    def test_retry(self, conn: Connection) -> None:
        assert maybe_declare(Queue("md_retry"), conn.default_channel, retry=True, max_retries=1, **NO_WAIT) is True
        assert exists(conn, "md_retry")

    def test_cache_cleared_on_reconnect(self, conn: Connection) -> None:
        maybe_declare(Queue("md_reconnect"), conn.default_channel)
        conn.collect()
        assert maybe_declare(Queue("md_reconnect"), conn.default_channel) is True


class TestBroadcast:
    def test_defaults(self) -> None:
        queue = Broadcast("events")
        assert queue.name.startswith("bcast.")
        assert queue.exchange.name == "events"
        assert queue.exchange.type == "fanout"
        assert queue.alias == "events"
        assert queue.auto_delete is True

    def test_named_and_unique(self) -> None:
        assert Broadcast("events", queue="mine").name == "mine"
        unique = Broadcast("events", queue="mine", unique=True)
        assert unique.name.startswith("mine.") and unique.name != "mine."
        assert Broadcast("e", unique=True).name != Broadcast("e", unique=True).name

    def test_every_consumer_gets_every_message(
        self, connect: Callable[..., Connection], collect: Callable[..., list[Message]]
    ) -> None:
        first, second = connect(), connect()
        queue_a, queue_b = Broadcast("bc_events"), Broadcast("bc_events")
        queue_a(first).declare()
        queue_b(second).declare()
        first.Producer().publish("to all", exchange=queue_a.exchange)
        assert [m.payload for m in collect(first, queue_a)] == ["to all"]
        assert [m.payload for m in collect(second, queue_b)] == ["to all"]


class TestEventloop:
    def test_ignore_timeouts(self, conn: Connection) -> None:
        with conn.Consumer([Queue("el_empty")], callbacks=[lambda b, m: None]):
            # as in Kombu, a timed-out call yields nothing but counts towards the limit
            assert list(eventloop(conn, limit=2, timeout=0.02, ignore_timeouts=True)) == []

    def test_timeouts_raise_by_default(self, conn: Connection) -> None:
        with conn.Consumer([Queue("el_raise")], callbacks=[lambda b, m: None]):
            with pytest.raises(socket.timeout):
                next(eventloop(conn, limit=1, timeout=0.02))

    def test_delivers_events(self, conn: Connection) -> None:
        got: list[Any] = []
        queue = Queue("el_events")
        with conn.Consumer([queue], callbacks=[lambda b, m: (got.append(b), m.ack())]):
            producer = conn.Producer()
            producer.publish(1, routing_key="el_events")
            producer.publish(2, routing_key="el_events")
            for _ in eventloop(conn, timeout=5):
                if len(got) == 2:
                    break
        assert got == [1, 2]

    def test_limit(self, conn: Connection) -> None:
        got: list[Any] = []
        with conn.Consumer([Queue("el_limit")], callbacks=[lambda b, m: (got.append(b), m.ack())]):
            conn.Producer().publish(1, routing_key="el_limit")
            assert len(list(eventloop(conn, limit=1, timeout=5))) == 1
        assert got == [1]

    def test_public(self) -> None:
        assert kombu_like.eventloop is eventloop


class TestIgnoreErrors:
    def test_returns_value(self, conn: Connection) -> None:
        assert ignore_errors(conn, lambda a, b=0: a + b, 1, b=2) == 3

    @pytest.mark.parametrize("error", [ConnectionError, ChannelError])
    def test_swallows_connection_and_channel_errors(self, conn: Connection, error: type[Exception]) -> None:
        fun = Mock(side_effect=error("ignored"))
        assert ignore_errors(conn, fun) is None
        fun.assert_called_once()

    def test_other_errors_propagate(self, conn: Connection) -> None:
        with pytest.raises(ValueError):
            ignore_errors(conn, Mock(side_effect=ValueError("boom")))

    def test_context_manager(self, conn: Connection) -> None:
        with ignore_errors(conn):
            raise ConnectionError("ignored")
        with pytest.raises(KeyError), ignore_errors(conn):
            raise KeyError("kept")


def test_uuid() -> None:
    first, second = uuid(), uuid()
    assert isinstance(first, str) and len(first) == 36
    assert first != second
    assert kombu_like.uuid is uuid
