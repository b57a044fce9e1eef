"""Exchange, Queue and binding: construction, binding to channels, broker operations."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any
from unittest.mock import Mock

import pytest

from kombu_like import Connection, Exchange, Message, Queue, binding
from kombu_like.entity import maybe_delivery_mode
from kombu_like.exceptions import ContentDisallowed, NotBoundError, NotFound, PreconditionFailed


def fake_channel() -> Mock:
    """A channel that records calls (queue_declare answers like a broker)."""
    channel = Mock(name="channel")
    channel.channel_id = 7
    channel.queue_declare.side_effect = lambda queue="", **kw: (queue or "amq.gen-x", 0, 0)
    return channel


# -- Exchange -------------------------------------------------------------------------
class TestExchangeConstruction:
    def test_defaults(self) -> None:
        exchange = Exchange("media")
        assert exchange.name == "media"
        assert exchange.type == "direct"
        assert exchange.durable is True
        assert exchange.auto_delete is False
        assert exchange.delivery_mode is None
        assert exchange.arguments is None
        assert exchange.passive is False
        assert exchange.no_declare is False
        assert not exchange.is_bound

    def test_default_exchange(self) -> None:
        assert Exchange().name == ""
        assert Exchange(None).name == ""  # type: ignore[arg-type]

    @pytest.mark.parametrize(("given", "expected"), [("transient", 1), ("persistent", 2), (1, 1), (2, 2), (None, None)])
    def test_delivery_mode_names(self, given: Any, expected: int | None) -> None:
        assert Exchange("x", delivery_mode=given).delivery_mode == expected

    def test_arguments_are_copied(self) -> None:
        arguments = {"alternate-exchange": "ae"}
        exchange = Exchange("x", arguments=arguments)
        arguments["other"] = 1
        assert exchange.arguments == {"alternate-exchange": "ae"}

    def test_keyword_flags(self) -> None:
        exchange = Exchange("x", type="topic", durable=False, auto_delete=True, passive=True, no_declare=True)
        assert (exchange.type, exchange.durable, exchange.auto_delete) == ("topic", False, True)
        assert exchange.passive and exchange.no_declare

    def test_str_and_repr_like_kombu(self) -> None:
        assert str(Exchange("media", "topic")) == "Exchange media(topic)"
        assert repr(Exchange("media", "topic")) == "<unbound Exchange media(topic)>"
        assert repr(Exchange("")) == "<unbound Exchange ''(direct)>"

    def test_bound_repr_names_channel(self) -> None:
        bound = Exchange("media")(fake_channel())
        assert repr(bound) == "<Exchange media(direct) bound to chan:7>"

    def test_equality(self) -> None:
        assert Exchange("a") == Exchange("a")
        assert Exchange("a") != Exchange("b")
        assert Exchange("a") != Exchange("a", "topic")
        assert Exchange("a") != Exchange("a", durable=False)
        assert Exchange("a") != Exchange("a", auto_delete=True)
        assert Exchange("a") != Exchange("a", delivery_mode="transient")
        assert Exchange("a") != Exchange("a", arguments={"x": 1})
        assert Exchange("a") != "a"

    def test_hash_by_name(self) -> None:
        assert hash(Exchange("a")) == hash(Exchange("a", "topic"))
        assert len({Exchange("a"), Exchange("a"), Exchange("b")}) == 2

    def test_binding_helper(self) -> None:
        exchange = Exchange("e")
        item = exchange.binding("rk", arguments={"a": 1})
        assert isinstance(item, binding)
        assert item.exchange is exchange
        assert item.routing_key == "rk"
        assert item.arguments == {"a": 1}

    def test_copy_keeps_attributes(self) -> None:
        exchange = Exchange("e", "fanout", durable=False)
        clone = copy.copy(exchange)
        assert clone == exchange and clone is not exchange


class TestExchangeBinding:
    def test_unbound_operations_raise(self) -> None:
        exchange = Exchange("e")
        with pytest.raises(NotBoundError, match="Exchange not bound"):
            exchange.declare()
        with pytest.raises(NotBoundError):
            exchange.delete()
        with pytest.raises(NotBoundError):
            _ = exchange.channel

    def test_call_returns_bound_copy(self) -> None:
        channel = fake_channel()
        exchange = Exchange("e")
        bound = exchange(channel)
        assert bound is not exchange
        assert bound.is_bound and not exchange.is_bound
        assert bound.channel is channel

    def test_bind_returns_bound_copy(self) -> None:
        channel = fake_channel()
        exchange = Exchange("e")
        bound = exchange.bind(channel)
        assert bound is not exchange and bound.is_bound and not exchange.is_bound

    def test_maybe_bind_binds_in_place_once(self) -> None:
        first, second = fake_channel(), fake_channel()
        exchange = Exchange("e")
        assert exchange.maybe_bind(first) is exchange
        assert exchange.channel is first
        exchange.maybe_bind(second)
        assert exchange.channel is first

    def test_rebinding_a_bound_exchange_uses_the_new_channel(self) -> None:
        first, second = fake_channel(), fake_channel()
        rebound = Exchange("e")(first)(second)
        assert rebound.channel is second

    def test_channel_argument_binds(self) -> None:
        channel = fake_channel()
        assert Exchange("e", channel=channel).channel is channel

    def test_bind_to_connection_uses_default_channel(self, conn: Connection) -> None:
        bound = Exchange("e")(conn)
        assert bound.channel is conn.default_channel

    def test_revive_rebinds(self) -> None:
        first, second = fake_channel(), fake_channel()
        bound = Exchange("e")(first)
        bound.revive(second)
        assert bound.channel is second


class TestExchangeDeclare:
    def test_declare_arguments(self) -> None:
        channel = fake_channel()
        Exchange("e", "topic", durable=False, auto_delete=True, arguments={"a": 1})(channel).declare()
        channel.exchange_declare.assert_called_once_with(
            exchange="e", type="topic", durable=False, auto_delete=True, arguments={"a": 1}, nowait=False, passive=False
        )

    def test_passive_attribute_and_argument(self) -> None:
        channel = fake_channel()
        Exchange("e", passive=True)(channel).declare()
        assert channel.exchange_declare.call_args.kwargs["passive"] is True
        Exchange("f")(channel).declare(passive=True)
        assert channel.exchange_declare.call_args.kwargs["passive"] is True

    @pytest.mark.parametrize("exchange", [Exchange(""), Exchange("amq.topic", "topic"), Exchange("x", no_declare=True)])
    def test_not_declared(self, exchange: Exchange) -> None:
        channel = fake_channel()
        assert exchange(channel).declare() is None
        channel.exchange_declare.assert_not_called()

    def test_declare_then_passive_on_broker(self, conn: Connection) -> None:
        exchange = Exchange("ex_passive", "fanout")(conn)
        exchange.declare()
        exchange.declare(passive=True)

    def test_passive_missing_raises_not_found(self, conn: Connection) -> None:
        with pytest.raises(NotFound, match="ex_missing"):
            Exchange("ex_missing")(conn.channel()).declare(passive=True)

    def test_redeclare_with_other_type_fails(self, conn: Connection) -> None:
        Exchange("ex_typed", "direct")(conn).declare()
        with pytest.raises(PreconditionFailed):
            Exchange("ex_typed", "topic")(conn.channel()).declare()

    def test_delete(self, conn: Connection) -> None:
        exchange = Exchange("ex_delete")(conn)
        exchange.declare()
        exchange.delete()
        with pytest.raises(NotFound):
            Exchange("ex_delete")(conn.channel()).declare(passive=True)

    def test_exchange_to_exchange_binding_calls(self) -> None:
        channel = fake_channel()
        destination = Exchange("dest")(channel)
        destination.bind_to(Exchange("src"), routing_key="rk", arguments={"a": 1})
        channel.exchange_bind.assert_called_once_with(
            destination="dest", source="src", routing_key="rk", nowait=False, arguments={"a": 1}
        )
        destination.unbind_from("src", routing_key="rk")
        channel.exchange_unbind.assert_called_once_with(
            destination="dest", source="src", routing_key="rk", nowait=False, arguments=None
        )

    def test_message_and_publish(self, conn: Connection) -> None:
        queue = Queue("ex_pub_q", Exchange("ex_pub"), "k")(conn)
        queue.declare()
        exchange = Exchange("ex_pub", delivery_mode="transient")(conn)
        exchange.publish(exchange.Message(b"raw body", content_type="application/data"), routing_key="k")
        message = queue.get()
        assert message is not None
        assert message.body == b"raw body"
        assert message.properties["delivery_mode"] == 1


# -- binding --------------------------------------------------------------------------
class TestBindingObject:
    def test_str_and_repr(self) -> None:
        item = binding(Exchange("media"), "video")
        assert str(item) == "media->video"
        assert repr(item) == "<binding: media->video>"

    def test_defaults(self) -> None:
        item = binding()
        assert item.exchange is None and item.routing_key == "" and item.arguments is None

    def test_as_dict(self) -> None:
        exchange = Exchange("e")
        assert binding(exchange, "k", {"a": 1}).as_dict() == {
            "exchange": exchange,
            "routing_key": "k",
            "arguments": {"a": 1},
            "unbind_arguments": None,
        }


# -- Queue ----------------------------------------------------------------------------
class TestQueueConstruction:
    def test_defaults(self) -> None:
        queue = Queue("q")
        assert queue.name == "q"
        assert queue.exchange == Exchange("")
        assert queue.routing_key == ""
        assert queue.durable is True
        assert queue.exclusive is False
        assert queue.auto_delete is False
        assert queue.no_ack is False
        assert queue.queue_arguments is None
        assert queue.binding_arguments is None
        assert queue.consumer_arguments is None
        assert not queue.bindings
        assert not queue.is_bound

    def test_exchange_given_by_name(self) -> None:
        queue = Queue("q", "media", "video")
        assert isinstance(queue.exchange, Exchange)
        assert queue.exchange.name == "media"
        assert queue.routing_key == "video"

    def test_exclusive_implies_auto_delete(self) -> None:
        assert Queue("q", exclusive=True).auto_delete is True

    def test_x_arguments_from_keywords(self) -> None:
        channel = fake_channel()
        Queue(
            "q",
            message_ttl=1.5,
            expires=3,
            max_length=10,
            max_length_bytes=1000,
            max_priority=9,
            queue_arguments={"x-queue-mode": "lazy"},
        )(channel).queue_declare()
        arguments = channel.queue_declare.call_args.kwargs["arguments"]
        assert arguments == {
            "x-queue-mode": "lazy",
            "x-message-ttl": 1500,
            "x-expires": 3000,
            "x-max-length": 10,
            "x-max-length-bytes": 1000,
            "x-max-priority": 9,
        }

    def test_no_x_arguments_by_default(self) -> None:
        channel = fake_channel()
        Queue("q")(channel).queue_declare()
        assert not channel.queue_declare.call_args.kwargs["arguments"]

    def test_queue_declare_flags(self) -> None:
        channel = fake_channel()
        Queue("q", durable=False, exclusive=True)(channel).queue_declare(nowait=True)
        kwargs = channel.queue_declare.call_args.kwargs
        assert kwargs["queue"] == "q"
        assert kwargs["durable"] is False
        assert kwargs["exclusive"] is True
        assert kwargs["auto_delete"] is True
        assert kwargs["passive"] is False
        assert kwargs["nowait"] is True

    def test_str_repr_like_kombu(self) -> None:
        queue = Queue("video", Exchange("media"), "video")
        assert repr(queue) == "<unbound Queue video -> <unbound Exchange media(direct)> -> video>"

    def test_bound_repr(self) -> None:
        bound = Queue("video", Exchange("media"), "video")(fake_channel())
        assert repr(bound) == "<Queue video -> <Exchange media(direct) bound to chan:7> -> video bound to chan:7>"

    def test_repr_with_bindings_like_kombu(self) -> None:
        queue = Queue("q2", bindings=[binding(Exchange("media"), "a")])
        assert repr(queue) == "<unbound Queue q2 -> [media->a]>"

    def test_exchange_and_bindings_together_are_accepted(self) -> None:
        # as in Kombu: accepted, and the bindings replace the queue's own exchange
        queue = Queue("q", Exchange("e"), "rk", bindings=[binding(Exchange("x"), "k")])
        assert queue.exchange is None or queue.exchange.name == ""
        assert [b.routing_key for b in queue.bindings] == ["k"]

    def test_equality(self) -> None:
        assert Queue("q") == Queue("q")
        assert Queue("q") != Queue("r")
        assert Queue("q") != Queue("q", durable=False)
        assert Queue("q", "e", "a") != Queue("q", "e", "b")
        assert Queue("q", "e") != Queue("q", "f")
        assert Queue("q") != Queue("q", queue_arguments={"x": 1})
        assert Queue("q") != "q"

    def test_hash_by_name(self) -> None:
        assert hash(Queue("q")) == hash(Queue("q", durable=False))
        assert len({Queue("q"), Queue("q"), Queue("r")}) == 2

    def test_from_dict(self) -> None:
        queue = Queue.from_dict("fq", exchange="fx", exchange_type="topic", routing_key="a.#", durable=False)
        assert queue.name == "fq"
        assert queue.exchange.name == "fx" and queue.exchange.type == "topic"
        assert queue.exchange.durable is False
        assert queue.routing_key == "a.#"
        assert queue.durable is False

    def test_from_dict_with_exchange_object(self) -> None:
        exchange = Exchange("obj", "fanout")
        queue = Queue.from_dict("fq", exchange=exchange, exchange_type="topic")
        assert queue.exchange is exchange

    def test_as_dict(self) -> None:
        data = Queue("q", "e", "rk", max_priority=4).as_dict()
        assert data["name"] == "q"
        assert data["routing_key"] == "rk"
        assert data["max_priority"] == 4
        assert data["exchange"] == Exchange("e")
        assert Queue("q", "e").as_dict(recurse=True)["exchange"]["name"] == "e"


class TestQueueBinding:
    def test_unbound_operations_raise(self) -> None:
        queue = Queue("q")
        for operation in (queue.declare, queue.purge, queue.delete, queue.get, queue.queue_declare):
            with pytest.raises(NotBoundError, match="Queue not bound"):
                operation()

    def test_call_binds_copy_and_its_exchange(self) -> None:
        channel = fake_channel()
        queue = Queue("q", Exchange("e"), "k")
        bound = queue(channel)
        assert bound is not queue and not queue.is_bound
        assert bound.is_bound and bound.exchange.is_bound
        assert bound.exchange.channel is channel
        assert not queue.exchange.is_bound

    def test_rebinding_a_bound_queue_uses_the_new_channel(self) -> None:
        first, second = fake_channel(), fake_channel()
        rebound = Queue("q", Exchange("e"), "k")(first)(second)
        assert rebound.channel is second
        assert rebound.exchange.channel is second

    def test_maybe_bind_in_place(self) -> None:
        channel = fake_channel()
        queue = Queue("q")
        assert queue.maybe_bind(channel) is queue
        assert queue.channel is channel

    def test_bind_keeps_on_declared(self) -> None:
        seen: list[tuple[Any, ...]] = []
        queue = Queue("q", on_declared=lambda *args: seen.append(args))
        queue.bind(fake_channel()).declare()
        assert seen == [("q", 0, 0)]


class TestQueueOnBroker:
    def test_declare_returns_name_and_declares_exchange_and_binding(self, conn: Connection) -> None:
        queue = Queue("qb", Exchange("qb_ex", "topic"), "a.*")(conn)
        assert queue.declare() == "qb"
        Exchange("qb_ex")(conn.channel()).declare(passive=True)
        conn.Producer().publish("routed", exchange="qb_ex", routing_key="a.b")
        message = queue.get()
        assert message is not None and message.payload == "routed"

    def test_on_declared_gets_counts(self, conn: Connection) -> None:
        Queue("qc")(conn).declare()
        conn.Producer().publish(1, routing_key="qc")
        conn.Producer().publish(2, routing_key="qc")
        seen: list[tuple[Any, ...]] = []
        Queue("qc", on_declared=lambda *args: seen.append(args))(conn).declare()
        assert seen == [("qc", 2, 0)]

    def test_queue_declare_result(self, conn: Connection) -> None:
        queue = Queue("qd")(conn)
        result = queue.queue_declare()
        assert tuple(result) == ("qd", 0, 0)
        assert (result.queue, result.message_count, result.consumer_count) == ("qd", 0, 0)

    def test_passive_queue_declare_of_missing_queue(self, conn: Connection) -> None:
        with pytest.raises(NotFound, match="nope"):
            Queue("nope")(conn.channel()).queue_declare(passive=True)

    def test_server_named_queue(self, conn: Connection) -> None:
        queue = Queue("")(conn)
        name = queue.declare()
        assert name and queue.name == name
        conn.Producer().publish("hi", routing_key=name)
        message = queue.get()
        assert message is not None and message.payload == "hi"

    def test_several_bindings(self, conn: Connection, collect: Callable[..., list[Message]]) -> None:
        first, second = Exchange("bind_a", "direct"), Exchange("bind_b", "topic")
        queue = Queue("multi", bindings=[binding(first, "a"), binding(second, "b.#")])(conn)
        queue.declare()
        producer = conn.Producer()
        producer.publish("via a", exchange=first, routing_key="a")
        producer.publish("not routed", exchange=first, routing_key="b.x")
        producer.publish("via b", exchange=second, routing_key="b.x.y")
        received = collect(conn, queue, 2)
        assert sorted(m.payload for m in received) == ["via a", "via b"]
        assert queue.get() is None

    def test_bindings_win_over_the_queue_exchange(
        self, conn: Connection, collect: Callable[..., list[Message]]
    ) -> None:
        # Kombu routes only through the bindings when both are given
        Exchange("both_main")(conn).declare()
        queue = Queue("both", Exchange("both_main"), "main", bindings=[binding(Exchange("both_extra"), "extra")])
        bound = queue(conn)
        bound.declare()
        producer = conn.Producer()
        producer.publish("main", exchange="both_main", routing_key="main")
        producer.publish("extra", exchange="both_extra", routing_key="extra")
        assert [m.payload for m in collect(conn, bound, 1)] == ["extra"]
        assert bound.get() is None

    def test_bind_to_and_unbind_from(self, conn: Connection) -> None:
        queue = Queue("rebind")(conn)
        queue.declare()
        other = Exchange("rebind_ex", "direct")(conn)
        other.declare()
        queue.bind_to(other, "k")
        conn.Producer().publish("one", exchange="rebind_ex", routing_key="k")
        message = queue.get()
        assert message is not None and message.payload == "one"
        message.ack()
        queue.unbind_from("rebind_ex", "k")
        conn.Producer().publish("two", exchange="rebind_ex", routing_key="k")
        assert queue.get() is None

    def test_unbind_own_binding(self, conn: Connection) -> None:
        queue = Queue("own", Exchange("own_ex"), "k")(conn)
        queue.declare()
        queue.unbind()
        conn.Producer().publish("lost", exchange="own_ex", routing_key="k")
        assert queue.get() is None

    def test_purge_and_delete(self, conn: Connection) -> None:
        queue = Queue("pd")(conn)
        queue.declare()
        for n in range(3):
            conn.Producer().publish(n, routing_key="pd")
        assert queue.purge() == 3
        assert queue.purge() == 0
        queue.delete()
        with pytest.raises(NotFound):
            Queue("pd")(conn.channel()).queue_declare(passive=True)

    def test_get_returns_message_and_none_when_empty(self, conn: Connection) -> None:
        queue = Queue("getq")(conn)
        queue.declare()
        assert queue.get() is None
        conn.Producer().publish({"k": "v"}, routing_key="getq")
        message = queue.get()
        assert message is not None
        assert message.payload == {"k": "v"}
        assert not message.acknowledged
        message.ack()
        assert queue.get() is None

    def test_get_no_ack_message_is_not_restored(self, connect: Callable[..., Connection]) -> None:
        first = connect()
        Queue("noack")(first).declare()
        first.Producer().publish("x", routing_key="noack")
        message = Queue("noack")(first).get(no_ack=True)
        assert message is not None
        first.release()
        assert Queue("noack")(connect()).get() is None

    def test_get_unacked_message_is_restored_on_close(self, connect: Callable[..., Connection]) -> None:
        first = connect()
        Queue("unacked")(first).declare()
        first.Producer().publish("x", routing_key="unacked")
        assert Queue("unacked")(first).get() is not None
        first.release()
        message = Queue("unacked")(connect()).get()
        assert message is not None and message.payload == "x"
        assert message.delivery_info["redelivered"] is True

    def test_get_default_no_ack_from_queue(self, connect: Callable[..., Connection]) -> None:
        first = connect()
        Queue("qnoack")(first).declare()
        first.Producer().publish("x", routing_key="qnoack")
        assert Queue("qnoack", no_ack=True)(first).get() is not None
        first.release()
        assert Queue("qnoack")(connect()).get() is None

    def test_get_accept(self, conn: Connection) -> None:
        queue = Queue("acceptq")(conn)
        queue.declare()
        conn.Producer().publish("a: 1", routing_key="acceptq", content_type="application/x-yaml")
        message = queue.get(accept=["json"])
        assert message is not None
        with pytest.raises(ContentDisallowed):
            message.decode()
        conn.Producer().publish("a: 1", routing_key="acceptq", content_type="application/x-yaml")
        message = queue.get(accept=["yaml"])
        assert message is not None and message.decode() == {"a": 1}

    def test_no_declare(self) -> None:
        channel = fake_channel()
        queue = Queue("nd", Exchange("nd_ex"), "k", no_declare=True)(channel)
        assert queue.declare() == "nd"
        channel.queue_declare.assert_not_called()
        channel.exchange_declare.assert_not_called()
        channel.queue_bind.assert_not_called()

    def test_low_level_consume_and_cancel(self, conn: Connection) -> None:
        queue = Queue("lowlevel")(conn)
        queue.declare()
        received: list[Any] = []
        queue.consume("my-tag", callback=received.append)
        conn.Producer().publish("x", routing_key="lowlevel")
        conn.drain_events(timeout=5)
        assert len(received) == 1
        assert received[0].delivery_info["consumer_tag"] == "my-tag"
        queue.cancel("my-tag")
        conn.Producer().publish("y", routing_key="lowlevel")
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=0.05)


def test_maybe_delivery_mode() -> None:
    assert maybe_delivery_mode("transient") == 1
    assert maybe_delivery_mode("persistent") == 2
    assert maybe_delivery_mode(1) == 1
    assert maybe_delivery_mode(None) == 2
    assert maybe_delivery_mode(None, default=1) == 1


def test_declare_of_a_no_declare_queue_needs_no_channel() -> None:
    assert Queue("q-nd", no_declare=True).declare() == "q-nd"
