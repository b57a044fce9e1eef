"""Producer.publish and Consumer on the in-memory transport."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from kombu_like import Connection, Consumer, Exchange, Message, Producer, Queue
from kombu_like.exceptions import (
    ContentDisallowed,
    DecodeError,
    MessageReturned,
    NotFound,
    SerializerNotInstalled,
)
from kombu_like.transport import memory

Collect = Callable[..., list[Message]]


def declared(conn: Connection, queue: Queue) -> Queue:
    bound = queue(conn)
    bound.declare()
    return bound


class TestProducerBinding:
    def test_lazy_channel_on_connection(self, conn: Connection) -> None:
        producer = Producer(conn)
        assert not conn.connected
        assert producer.channel is conn.default_channel
        assert producer.connection is conn

    def test_explicit_channel(self, conn: Connection) -> None:
        channel = conn.channel()
        producer = Producer(channel)
        assert producer.channel is channel
        assert producer.connection is conn

    def test_defaults(self, conn: Connection) -> None:
        producer = Producer(conn)
        assert producer.exchange.name == ""
        assert producer.routing_key == ""
        assert producer.serializer is None
        assert producer.compression is None
        assert producer.auto_declare is True

    def test_exchange_by_name(self, conn: Connection) -> None:
        assert Producer(conn, exchange="named").exchange.name == "named"

    def test_auto_declare_declares_exchange(self, conn: Connection) -> None:
        producer = Producer(conn.channel(), exchange=Exchange("auto_ex", "topic"))
        assert producer.exchange.is_bound
        Exchange("auto_ex")(conn.channel()).declare(passive=True)

    def test_auto_declare_false(self, conn: Connection) -> None:
        Producer(conn.channel(), exchange=Exchange("not_declared_ex"), auto_declare=False)
        with pytest.raises(NotFound):
            Exchange("not_declared_ex")(conn.channel()).declare(passive=True)

    def test_revive_rebinds(self, conn: Connection) -> None:
        producer = Producer(conn.channel(), exchange=Exchange("rev_ex"))
        channel = conn.channel()
        producer.revive(channel)
        assert producer.channel is channel
        assert producer.exchange.channel is channel

    def test_context_manager(self, conn: Connection) -> None:
        with Producer(conn) as producer:
            assert isinstance(producer, Producer)

    def test_maybe_declare(self, conn: Connection) -> None:
        producer = Producer(conn)
        queue = Queue("p_maybe")
        assert producer.maybe_declare(queue) is True
        assert producer.maybe_declare(queue) is False
        assert queue(conn.channel()).queue_declare(passive=True).queue == "p_maybe"


class TestPublish:
    def test_routing_key_and_exchange_defaults(self, conn: Connection, collect: Collect) -> None:
        queue = declared(conn, Queue("pd_q", Exchange("pd_ex"), "pd_rk"))
        Producer(conn, exchange=Exchange("pd_ex"), routing_key="pd_rk").publish("defaults")
        [message] = collect(conn, queue)
        assert message.payload == "defaults"
        assert (message.delivery_info["exchange"], message.delivery_info["routing_key"]) == ("pd_ex", "pd_rk")

    def test_exchange_as_name(self, conn: Connection, collect: Collect) -> None:
        queue = declared(conn, Queue("exn_q", Exchange("exn_ex"), "k"))
        Producer(conn).publish(1, exchange="exn_ex", routing_key="k")
        assert [m.payload for m in collect(conn, queue)] == [1]

    def test_exchange_object_is_not_declared(self, conn: Connection) -> None:
        # as Kombu: only the producer's own exchange (and ``declare=``) is declared
        Producer(conn).publish(1, exchange=Exchange("exo_ex", "fanout"), routing_key="k")
        with pytest.raises(NotFound):
            Exchange("exo_ex")(conn.channel()).declare(passive=True)

    def test_producers_own_exchange_is_declared(self, conn: Connection) -> None:
        Producer(conn, exchange=Exchange("own_ex", "fanout")).publish(1, routing_key="k")
        Exchange("own_ex")(conn.channel()).declare(passive=True)

    def test_declare_list(self, conn: Connection, collect: Collect) -> None:
        first = Queue("decl_a", Exchange("decl_ex"), "k")
        second = Queue("decl_b", Exchange("decl_ex"), "k")
        Producer(conn).publish("both", exchange="decl_ex", routing_key="k", declare=[first, second])
        assert [m.payload for m in collect(conn, first(conn))] == ["both"]
        assert [m.payload for m in collect(conn, second(conn))] == ["both"]

    def test_delivery_mode(self, conn: Connection, collect: Collect) -> None:
        queue = declared(conn, Queue("dm_q"))
        producer = Producer(conn)
        producer.publish("default", routing_key="dm_q")
        producer.publish("transient", routing_key="dm_q", delivery_mode="transient")
        producer.publish("one", routing_key="dm_q", delivery_mode=1)
        producer.publish("persistent", routing_key="dm_q", delivery_mode="persistent")
        modes = {m.payload: m.properties["delivery_mode"] for m in collect(conn, queue, 4)}
        assert modes == {"default": 2, "transient": 1, "one": 1, "persistent": 2}

    def test_delivery_mode_from_exchange(self, conn: Connection, collect: Collect) -> None:
        exchange = Exchange("dmx_ex", delivery_mode="transient")
        queue = declared(conn, Queue("dmx_q", exchange, "k"))
        Producer(conn, exchange=exchange, routing_key="k").publish("x")
        [message] = collect(conn, queue)
        assert message.properties["delivery_mode"] == 1

    def test_delivery_mode_from_the_exchange_passed_to_publish(self, conn: Connection, collect: Collect) -> None:
        # as in Kombu: an Exchange given to publish() sets the mode, not the producer's
        exchange = Exchange("dmx_passed", delivery_mode="transient")
        queue = declared(conn, Queue("dmx_passed_q", exchange, "k"))
        Producer(conn).publish("x", exchange=exchange, routing_key="k")
        Producer(conn).publish("y", exchange=exchange, routing_key="k", delivery_mode="persistent")
        modes = {m.payload: m.properties["delivery_mode"] for m in collect(conn, queue, 2)}
        assert modes == {"x": 1, "y": 2}

    def test_priority(self, conn: Connection, collect: Collect) -> None:
        queue = declared(conn, Queue("prio_q"))
        Producer(conn).publish("p", routing_key="prio_q", priority=7)
        Producer(conn).publish("d", routing_key="prio_q")
        priorities = {m.payload: m.properties["priority"] for m in collect(conn, queue, 2)}
        assert priorities == {"p": 7, "d": 0}

    def test_serializer_argument(self, conn: Connection, collect: Collect) -> None:
        queue = declared(conn, Queue("ser_q"))
        Producer(conn).publish({"a": [1, 2]}, routing_key="ser_q", serializer="yaml")
        [message] = collect(conn, queue, accept=["yaml"])
        assert message.content_type == "application/x-yaml"
        assert message.payload == {"a": [1, 2]}

    def test_producer_default_serializer(self, conn: Connection, collect: Collect) -> None:
        queue = declared(conn, Queue("ser_default_q"))
        Producer(conn, serializer="msgpack").publish({"m": 1}, routing_key="ser_default_q")
        [message] = collect(conn, queue, accept=["msgpack"])
        assert message.content_type == "application/x-msgpack"
        assert message.payload == {"m": 1}

    def test_unknown_serializer(self, conn: Connection) -> None:
        with pytest.raises(SerializerNotInstalled):
            Producer(conn).publish({"a": 1}, routing_key="q", serializer="nope")

    def test_bytes_and_text_without_serializer(self, conn: Connection, collect: Collect) -> None:
        queue = declared(conn, Queue("raw_q"))
        producer = Producer(conn)
        producer.publish(b"\x00bytes", routing_key="raw_q")
        producer.publish("text", routing_key="raw_q")
        producer.publish("json text", routing_key="raw_q", serializer="json")
        received = collect(conn, queue, 3)
        assert [(m.content_type, m.content_encoding, m.body) for m in received] == [
            ("application/data", "binary", b"\x00bytes"),
            ("text/plain", "utf-8", b"text"),
            ("application/json", "utf-8", b'"json text"'),
        ]

    def test_content_type_and_encoding(self, conn: Connection, collect: Collect) -> None:
        queue = declared(conn, Queue("ct_q"))
        producer = Producer(conn)
        producer.publish('{"pre": "encoded"}', routing_key="ct_q", content_type="application/json")
        producer.publish(b"\x01\x02", routing_key="ct_q", content_type="application/octet-stream")
        producer.publish("latin \u00e9", routing_key="ct_q", content_type="text/plain", content_encoding="latin-1")
        first, second, third = collect(conn, queue, 3, accept=["json", "application/octet-stream", "text/plain"])
        assert first.payload == {"pre": "encoded"}
        assert (second.body, second.content_encoding) == (b"\x01\x02", "binary")
        assert third.body == "latin \u00e9".encode("latin-1")
        assert third.content_encoding == "latin-1"
        assert third.decode() == "latin \u00e9"

    def test_headers(self, conn: Connection, collect: Collect) -> None:
        queue = declared(conn, Queue("hdr_q"))
        Producer(conn).publish("h", routing_key="hdr_q", headers={"x-trace": "abc", "n": 1})
        [message] = collect(conn, queue)
        assert message.headers == {"x-trace": "abc", "n": 1}

    @pytest.mark.parametrize(
        ("method", "content_type"),
        [
            ("zlib", "application/x-gzip"),
            ("gzip", "application/x-gzip"),
            ("bzip2", "application/x-bz2"),
            ("lzma", "application/x-lzma"),
            ("xz", "application/x-lzma"),
            ("application/x-bz2", "application/x-bz2"),
        ],
    )
    def test_compression(self, conn: Connection, collect: Collect, method: str, content_type: str) -> None:
        queue = declared(conn, Queue("comp_q"))
        Producer(conn).publish({"big": "x" * 1000}, routing_key="comp_q", compression=method, headers={"keep": 1})
        [message] = collect(conn, queue)
        assert message.headers == {"keep": 1, "compression": content_type}
        assert message.payload == {"big": "x" * 1000}

    def test_producer_default_compression(self, conn: Connection, collect: Collect) -> None:
        queue = declared(conn, Queue("comp_default_q"))
        Producer(conn, compression="bzip2").publish("c", routing_key="comp_default_q")
        [message] = collect(conn, queue)
        assert message.headers["compression"] == "application/x-bz2"
        assert message.payload == "c"

    def test_unknown_compression(self, conn: Connection) -> None:
        with pytest.raises(SerializerNotInstalled):
            Producer(conn).publish("c", routing_key="q", compression="nope")

    def test_expiration_in_seconds_becomes_milliseconds(self, conn: Connection, collect: Collect) -> None:
        queue = declared(conn, Queue("exp_q"))
        Producer(conn).publish("e", routing_key="exp_q", expiration=12.5)
        Producer(conn).publish("none", routing_key="exp_q")
        first, second = collect(conn, queue, 2)
        assert first.properties["expiration"] == "12500"
        assert "expiration" not in second.properties

    def test_reply_to_queue_becomes_name(self, conn: Connection, collect: Collect) -> None:
        queue = declared(conn, Queue("rt_q"))
        Producer(conn).publish("r", routing_key="rt_q", reply_to=Queue("replies"))
        Producer(conn).publish("s", routing_key="rt_q", reply_to="reply-string")
        first, second = collect(conn, queue, 2)
        assert first.properties["reply_to"] == "replies"
        assert second.properties["reply_to"] == "reply-string"

    def test_arbitrary_properties(self, conn: Connection, collect: Collect) -> None:
        queue = declared(conn, Queue("props_q"))
        Producer(conn).publish(
            "p",
            routing_key="props_q",
            correlation_id="c1",
            message_id="m1",
            type="task",
            app_id="app",
            user_id="guest",
            timestamp=1700000000,
            custom_property="zz",
        )
        [message] = collect(conn, queue)
        expected = {
            "correlation_id": "c1",
            "message_id": "m1",
            "type": "task",
            "app_id": "app",
            "user_id": "guest",
            "timestamp": 1700000000,
            "custom_property": "zz",
        }
        assert {key: message.properties[key] for key in expected} == expected

    def test_unroutable_message_is_dropped(self, conn: Connection) -> None:
        queue = declared(conn, Queue("unr_q", Exchange("unr_ex"), "right"))
        Producer(conn).publish("lost", exchange="unr_ex", routing_key="wrong")
        assert queue.get() is None

    def test_mandatory_unroutable_raises(self, conn: Connection) -> None:
        Exchange("mand_ex")(conn).declare()
        with pytest.raises(MessageReturned, match="wrong"):
            Producer(conn).publish("lost", exchange="mand_ex", routing_key="wrong", mandatory=True)

    def test_mandatory_unroutable_calls_on_return(self, conn: Connection) -> None:
        Exchange("ret_ex")(conn).declare()
        returned: list[tuple[Any, ...]] = []
        producer = Producer(conn.channel(), on_return=lambda *args: returned.append(args))
        producer.publish({"r": 1}, exchange="ret_ex", routing_key="nowhere", mandatory=True)
        [(exc, exchange, routing_key, message)] = returned
        assert isinstance(exc, MessageReturned)
        assert (exchange, routing_key) == ("ret_ex", "nowhere")
        assert message.payload == {"r": 1}

    def test_publish_with_retry_on_healthy_connection(self, conn: Connection, collect: Collect) -> None:
        queue = declared(conn, Queue("retry_ok_q"))
        Producer(conn).publish("r", routing_key="retry_ok_q", retry=True, retry_policy={"max_retries": 2})
        assert [m.payload for m in collect(conn, queue)] == ["r"]


class TestBatch:
    def test_all_messages_arrive(self, conn: Connection, collect: Collect) -> None:
        queue = declared(conn, Queue("batch_q"))
        producer = Producer(conn)
        with producer.batch():
            for n in range(10):
                producer.publish(n, routing_key="batch_q")
            assert queue.queue_declare(passive=True).message_count == 0
        assert queue.queue_declare(passive=True).message_count == 10
        assert [m.payload for m in collect(conn, queue, 10)] == list(range(10))

    def test_exception_discards_unsent(self, conn: Connection) -> None:
        queue = declared(conn, Queue("batch_fail_q"))
        producer = Producer(conn)
        with pytest.raises(RuntimeError), producer.batch():
            producer.publish(1, routing_key="batch_fail_q")
            raise RuntimeError("stop")
        assert queue.get() is None
        producer.publish(2, routing_key="batch_fail_q")
        message = queue.get()
        assert message is not None and message.payload == 2

    def test_max_size_flushes_early(self, conn: Connection) -> None:
        queue = declared(conn, Queue("batch_max_q"))
        producer = Producer(conn)
        with producer.batch(max_size=3):
            for n in range(4):
                producer.publish(n, routing_key="batch_max_q")
            assert queue.queue_declare(passive=True).message_count == 3
        assert queue.queue_declare(passive=True).message_count == 4

    def test_nested_batch_refused(self, conn: Connection) -> None:
        producer = Producer(conn)
        with producer.batch(), pytest.raises(RuntimeError):
            with producer.batch():
                pass

    def test_batch_routes_through_exchanges(self, conn: Connection, collect: Collect) -> None:
        exchange = Exchange("batch_fan", "fanout")
        first = declared(conn, Queue("batch_fan_a", exchange))
        second = declared(conn, Queue("batch_fan_b", exchange))
        producer = Producer(conn, exchange=exchange)
        with producer.batch():
            producer.publish("everyone")
        assert [m.payload for m in collect(conn, first)] == ["everyone"]
        assert [m.payload for m in collect(conn, second)] == ["everyone"]

    def test_batch_routes_each_message_as_a_publish_would(self, conn: Connection, collect: Collect) -> None:
        topic = Exchange("batch_topic", "topic")
        both = declared(conn, Queue("batch_topic_both", topic, "a.*"))
        only_b = declared(conn, Queue("batch_topic_b", topic, "*.b"))
        headers = Exchange("batch_headers", "headers")
        red = declared(conn, Queue("batch_red", headers, binding_arguments={"colour": "red"}))
        returned: list[tuple[Any, ...]] = []
        producer = Producer(conn.channel(), exchange=topic, on_return=lambda *args: returned.append(args))
        with producer.batch():
            for n in range(3):
                producer.publish(f"ab{n}", routing_key="a.b")  # to both queues
                producer.publish(f"cb{n}", routing_key="c.b")  # to one
            for colour in ("red", "blue", "red"):
                producer.publish(colour, exchange=headers, headers={"colour": colour})
            producer.publish("lost", routing_key="x.y", mandatory=True)
        assert [m.payload for m in collect(conn, both, 3)] == ["ab0", "ab1", "ab2"]
        assert [m.payload for m in collect(conn, only_b, 6)] == ["ab0", "cb0", "ab1", "cb1", "ab2", "cb2"]
        assert [m.payload for m in collect(conn, red, 2)] == ["red", "red"]
        [(exc, exchange, routing_key, message)] = returned
        assert isinstance(exc, MessageReturned) and (exchange, routing_key) == ("batch_topic", "x.y")
        assert message.payload == "lost"

    def test_batch_on_a_transport_without_batch_publishing(self, collect: Collect) -> None:
        # a third-party transport whose channels have no publish_batch: the batch is
        # published message by message when it ends, options and all
        class OneByOneChannel(memory.Channel):
            publish_batch = None
            published: list[dict[str, Any]] = []

            def basic_publish(self, message: Any, *args: Any, **kwargs: Any) -> None:
                self.published.append(kwargs)
                super().basic_publish(message, *args, **kwargs)

        class OneByOne(memory.Transport):
            Channel = OneByOneChannel

        with Connection("memory://one-by-one", transport=OneByOne) as conn:
            queue = declared(conn, Queue("one_by_one"))
            producer = Producer(conn, routing_key="one_by_one")
            with producer.batch():
                producer.publish("first")
                producer.publish("second", timeout=5)
                assert OneByOneChannel.published == []
            assert OneByOneChannel.published == [{}, {"timeout": 5}]
            assert [m.payload for m in collect(conn, queue, count=2)] == ["first", "second"]


class TestConsumer:
    def test_binds_and_declares_queues(self, conn: Connection) -> None:
        consumer = Consumer(conn, [Queue("c_decl", Exchange("c_decl_ex"), "k")])
        assert all(q.is_bound for q in consumer.queues)
        Queue("c_decl")(conn.channel()).queue_declare(passive=True)
        Exchange("c_decl_ex")(conn.channel()).declare(passive=True)

    def test_single_queue_accepted(self, conn: Connection) -> None:
        assert [q.name for q in Consumer(conn, Queue("c_single")).queues] == ["c_single"]

    def test_auto_declare_false(self, conn: Connection) -> None:
        Consumer(conn, [Queue("c_nodecl")], auto_declare=False)
        with pytest.raises(NotFound):
            Queue("c_nodecl")(conn.channel()).queue_declare(passive=True)

    def test_callbacks_get_decoded_body(self, conn: Connection) -> None:
        calls: list[tuple[Any, Message]] = []
        consumer = Consumer(conn, [Queue("c_cb")], callbacks=[lambda b, m: calls.append((b, m))])
        consumer.register_callback(lambda b, m: calls.append((b, m)))
        with consumer:
            Producer(conn).publish({"n": 1}, routing_key="c_cb")
            conn.drain_events(timeout=5)
        assert [body for body, _ in calls] == [{"n": 1}, {"n": 1}]
        assert isinstance(calls[0][1], Message)

    def test_on_message_replaces_callbacks(self, conn: Connection) -> None:
        got: list[Message] = []
        callbacks: list[Any] = []
        with Consumer(conn, [Queue("c_onmsg")], on_message=got.append, callbacks=[lambda b, m: callbacks.append(b)]):
            Producer(conn).publish(b"{not json", routing_key="c_onmsg", content_type="application/json")
            conn.drain_events(timeout=5)
        assert callbacks == []
        assert got[0].body == b"{not json"

    def test_no_callbacks_raises(self, conn: Connection) -> None:
        with Consumer(conn, [Queue("c_nocb")]):
            Producer(conn).publish(1, routing_key="c_nocb")
            with pytest.raises(NotImplementedError):
                conn.drain_events(timeout=5)

    def test_on_decode_error(self, conn: Connection) -> None:
        errors: list[tuple[Message, BaseException]] = []
        with Consumer(
            conn, [Queue("c_decerr")], callbacks=[lambda b, m: None], on_decode_error=lambda m, e: errors.append((m, e))
        ):
            Producer(conn).publish(b"{bad", routing_key="c_decerr", content_type="application/json")
            conn.drain_events(timeout=5)
        [(message, exc)] = errors
        assert isinstance(exc, DecodeError)
        assert message.body == b"{bad"

    def test_undecodable_base64_body_reaches_on_decode_error(self, conn: Connection) -> None:
        # another program wrote an envelope whose body is not base64: the consumer is told,
        # rejects it, and goes on with the next message
        queue = Queue("c_bad_base64")
        errors: list[tuple[Message, BaseException]] = []
        got: list[Any] = []

        def on_decode_error(message: Message, exc: BaseException) -> None:
            errors.append((message, exc))
            message.reject()

        with Consumer(
            conn, [queue], callbacks=[lambda b, m: (got.append(b), m.ack())], on_decode_error=on_decode_error
        ):
            conn.default_channel.store.put(
                queue.name,
                {
                    "body": "%%% not base64 %%%",
                    "content-type": "application/json",
                    "content-encoding": "utf-8",
                    "headers": {},
                    "properties": {
                        "body_encoding": "base64",
                        "delivery_tag": "t-1",
                        "priority": 0,
                        "delivery_info": {"exchange": "", "routing_key": queue.name},
                    },
                },
            )
            Producer(conn).publish({"next": 1}, routing_key=queue.name)
            while len(got) + len(errors) < 2:
                conn.drain_events(timeout=5)
        [(message, exc)] = errors
        assert isinstance(exc, DecodeError)
        assert "base64" in str(exc) and "c_bad_base64" in str(exc)
        assert message.acknowledged
        assert got == [{"next": 1}]
        assert queue(conn.default_channel).get() is None  # rejected, not coming back

    def test_decode_error_without_handler_names_queue_and_content_type(self, conn: Connection) -> None:
        with Consumer(conn, [Queue("c_decraise")], callbacks=[lambda b, m: None]):
            Producer(conn).publish(b"{bad", routing_key="c_decraise", content_type="application/json")
            with pytest.raises(DecodeError) as excinfo:
                conn.drain_events(timeout=5)
        assert "c_decraise" in str(excinfo.value)
        assert "application/json" in str(excinfo.value)

    def test_accept(self, conn: Connection) -> None:
        errors: list[BaseException] = []
        got: list[Any] = []
        with Consumer(
            conn,
            [Queue("c_accept")],
            accept=["yaml"],
            callbacks=[lambda b, m: got.append(b)],
            on_decode_error=lambda m, e: errors.append(e),
        ):
            Producer(conn).publish({"y": 1}, routing_key="c_accept", serializer="yaml")
            Producer(conn).publish({"j": 1}, routing_key="c_accept", serializer="json")
            while len(got) + len(errors) < 2:
                conn.drain_events(timeout=5)
        assert got == [{"y": 1}]
        assert isinstance(errors[0], ContentDisallowed)

    def test_default_accept_is_json_only(self, conn: Connection) -> None:
        errors: list[BaseException] = []
        with Consumer(
            conn,
            [Queue("c_default_accept")],
            callbacks=[lambda b, m: None],
            on_decode_error=lambda m, e: errors.append(e),
        ):
            Producer(conn).publish({"p": 1}, routing_key="c_default_accept", serializer="pickle")
            conn.drain_events(timeout=5)
        assert isinstance(errors[0], ContentDisallowed)

    def test_tag_prefix(self, conn: Connection) -> None:
        got: list[Message] = []
        with Consumer(conn, [Queue("c_tag")], on_message=got.append, tag_prefix="worker-7."):
            Producer(conn).publish(1, routing_key="c_tag")
            conn.drain_events(timeout=5)
        assert got[0].delivery_info["consumer_tag"].startswith("worker-7.")

    def test_consume_cancel_consuming_from(self, conn: Connection) -> None:
        queue = Queue("c_state")
        consumer = Consumer(conn, [queue], callbacks=[lambda b, m: None])
        assert not consumer.consuming_from(queue)
        consumer.consume()
        assert consumer.consuming_from(queue)
        assert consumer.consuming_from("c_state")
        consumer.cancel()
        assert not consumer.consuming_from(queue)

    def test_consume_twice_does_not_duplicate(self, conn: Connection) -> None:
        got: list[Any] = []
        consumer = Consumer(conn, [Queue("c_twice")], callbacks=[lambda b, m: (got.append(b), m.ack())])
        consumer.consume()
        consumer.consume()
        Producer(conn).publish(1, routing_key="c_twice")
        Producer(conn).publish(2, routing_key="c_twice")
        while len(got) < 2:
            conn.drain_events(timeout=5)
        assert got == [1, 2]
        consumer.cancel()

    def test_cancel_by_queue(self, conn: Connection) -> None:
        got: list[Any] = []
        consumer = Consumer(conn, [Queue("c_cbq_a"), Queue("c_cbq_b")], callbacks=[lambda b, m: got.append(b)])
        with consumer:
            consumer.cancel_by_queue("c_cbq_a")
            assert not consumer.consuming_from("c_cbq_a")
            assert consumer.consuming_from("c_cbq_b")
            assert [q.name for q in consumer.queues] == ["c_cbq_b"]
            Producer(conn).publish("a", routing_key="c_cbq_a")
            Producer(conn).publish("b", routing_key="c_cbq_b")
            conn.drain_events(timeout=5)
            with pytest.raises(socket.timeout):
                conn.drain_events(timeout=0.05)
        assert got == ["b"]

    def test_add_queue(self, conn: Connection) -> None:
        got: list[Any] = []
        consumer = Consumer(conn, [Queue("c_add_a")], callbacks=[lambda b, m: got.append(b)])
        with consumer:
            added = consumer.add_queue(Queue("c_add_b"))
            assert added.is_bound
            assert not consumer.consuming_from("c_add_b")
            consumer.consume()
            assert consumer.consuming_from("c_add_b")
            Producer(conn).publish("b", routing_key="c_add_b")
            conn.drain_events(timeout=5)
        assert got == ["b"]

    def test_prefetch_count(self, conn: Connection) -> None:
        got: list[Message] = []
        producer = Producer(conn)
        queue = declared(conn, Queue("c_prefetch"))
        for n in range(3):
            producer.publish(n, routing_key="c_prefetch")
        with Consumer(conn, [queue], on_message=got.append, prefetch_count=1):
            conn.drain_events(timeout=5)
            with pytest.raises(socket.timeout):
                conn.drain_events(timeout=0.05)
            assert len(got) == 1
            got[0].ack()
            conn.drain_events(timeout=5)
            assert len(got) == 2

    def test_qos_changes_prefetch(self, conn: Connection) -> None:
        got: list[Message] = []
        producer = Producer(conn)
        queue = declared(conn, Queue("c_qos"))
        for n in range(4):
            producer.publish(n, routing_key="c_qos")
        consumer = Consumer(conn, [queue], on_message=got.append)
        consumer.qos(prefetch_count=2)
        with consumer:
            while len(got) < 2:
                conn.drain_events(timeout=5)
            with pytest.raises(socket.timeout):
                conn.drain_events(timeout=0.05)
            assert len(got) == 2
            consumer.qos(prefetch_count=0)
            while len(got) < 4:
                conn.drain_events(timeout=5)

    def test_recover_redelivers_unacked(self, conn: Connection) -> None:
        got: list[Message] = []
        queue = declared(conn, Queue("c_recover"))
        Producer(conn).publish("again", routing_key="c_recover")
        consumer = Consumer(conn, [queue], on_message=got.append)
        with consumer:
            conn.drain_events(timeout=5)
            consumer.recover(requeue=True)
            conn.drain_events(timeout=5)
        assert [m.payload for m in got] == ["again", "again"]
        assert not got[0].redelivered and got[1].redelivered

    def test_purge(self, conn: Connection) -> None:
        first, second = declared(conn, Queue("c_purge_a")), declared(conn, Queue("c_purge_b"))
        producer = Producer(conn)
        for name in ("c_purge_a", "c_purge_a", "c_purge_b"):
            producer.publish(1, routing_key=name)
        assert Consumer(conn, [first, second]).purge() == 3
        assert first.get() is None and second.get() is None

    def test_no_ack(self, connect: Callable[..., Connection]) -> None:
        conn = connect()
        got: list[Message] = []
        with Consumer(conn, [Queue("c_noack")], on_message=got.append, no_ack=True):
            Producer(conn).publish(1, routing_key="c_noack")
            conn.drain_events(timeout=5)
        conn.release()
        assert Queue("c_noack")(connect()).get() is None

    def test_queue_no_ack_is_honoured(self, connect: Callable[..., Connection]) -> None:
        conn = connect()
        got: list[Message] = []
        with Consumer(conn, [Queue("c_qnoack", no_ack=True)], on_message=got.append):
            Producer(conn).publish(1, routing_key="c_qnoack")
            conn.drain_events(timeout=5)
        conn.release()
        assert Queue("c_qnoack")(connect()).get() is None

    def test_context_manager_consumes_and_cancels(self, conn: Connection) -> None:
        queue = Queue("c_ctx")
        consumer = Consumer(conn, [queue], callbacks=[lambda b, m: None])
        with consumer as entered:
            assert entered is consumer
            assert consumer.consuming_from(queue)
        assert not consumer.consuming_from(queue)

    def test_revive_resumes_consuming_on_new_channel(self, conn: Connection) -> None:
        got: list[Any] = []
        old_channel = conn.channel()
        consumer = Consumer(old_channel, [Queue("c_revive")], callbacks=[lambda b, m: (got.append(b), m.ack())])
        consumer.consume()
        old_channel.close()  # as when the connection was lost
        new_channel = conn.channel()
        consumer.revive(new_channel)
        assert all(queue.channel is new_channel for queue in consumer.queues)
        assert consumer.channel is new_channel
        assert consumer.consuming_from("c_revive")
        Producer(conn).publish("after revive", routing_key="c_revive")
        conn.drain_events(timeout=5)
        assert got == ["after revive"]

    def test_server_named_queue(self, conn: Connection) -> None:
        got: list[Any] = []
        consumer = Consumer(conn, [Queue("", exclusive=True)], callbacks=[lambda b, m: got.append(b)])
        [queue] = consumer.queues
        assert queue.name
        with consumer:
            assert consumer.consuming_from(queue.name)
            Producer(conn).publish("anon", routing_key=queue.name)
            conn.drain_events(timeout=5)
        assert got == ["anon"]

    def test_repr(self, conn: Connection) -> None:
        assert "c_repr" in repr(Consumer(conn, [Queue("c_repr")]))


class TestOverridesTakePart:
    """Kombu's Consumer and Queue reach the broker through their own public methods, so a
    subclass (or a framework's test double) that overrides one takes part."""

    def test_consumer_declares_consumes_and_purges_through_each_queues_methods(self, conn: Connection) -> None:
        calls: list[str] = []

        class Recording(Queue):
            def declare(self, nowait: bool = False, channel: Any = None) -> Any:
                calls.append("declare")
                return super().declare(nowait=nowait, channel=channel)

            def consume(self, *args: Any, **kwargs: Any) -> Any:
                calls.append("consume")
                return super().consume(*args, **kwargs)

            def purge(self, nowait: bool = False) -> Any:
                calls.append("purge")
                return super().purge(nowait=nowait)

        consumer = Consumer(conn, [Recording("overrides.consumer")])
        consumer.consume()
        assert consumer.purge() == 0
        assert calls == ["declare", "consume", "purge"]

    def test_queue_declare_goes_through_create_methods_exchange_declare_and_bindings(self, conn: Connection) -> None:
        calls: list[str] = []

        class RecordingExchange(Exchange):
            def declare(self, *args: Any, **kwargs: Any) -> Any:
                calls.append(f"exchange {self.name}")
                return super().declare(*args, **kwargs)

        class RecordingQueue(Queue):
            def queue_declare(self, *args: Any, **kwargs: Any) -> Any:
                calls.append("queue_declare")
                return super().queue_declare(*args, **kwargs)

            def queue_bind(self, *args: Any, **kwargs: Any) -> Any:
                calls.append("queue_bind")
                return super().queue_bind(*args, **kwargs)

        from kombu_like import binding

        own = RecordingQueue("overrides.queue", RecordingExchange("overrides.own", "direct"), routing_key="k")
        assert own(conn.default_channel).declare() == "overrides.queue"
        assert calls == ["exchange overrides.own", "queue_declare", "queue_bind"]
        calls.clear()
        # with bindings, as in Kombu, the queue has no exchange of its own
        bound = RecordingQueue(
            "overrides.bound", bindings=[binding(RecordingExchange("overrides.other", "topic"), "#")]
        )
        assert bound(conn.default_channel).declare() == "overrides.bound"
        assert calls == ["queue_declare", "exchange overrides.other"]
