"""SimpleQueue/SimpleBuffer and the helpers of kombu_like.common, on memory://."""

from __future__ import annotations

import logging
import queue as stdlib_queue
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kombu_like import Connection, Consumer, Exchange, Producer, Queue
from kombu_like.common import (
    PREFETCH_COUNT_MAX,
    Broadcast,
    QoS,
    collect_replies,
    declaration_cached,
    drain_consumer,
    eventloop,
    ignore_errors,
    insured,
    itermessages,
    maybe_declare,
    oid_from,
    send_reply,
    uuid,
)
from kombu_like.exceptions import ChannelError, ConnectionError, ContentDisallowed
from kombu_like.transport.memory import Broker


@pytest.fixture
def broker() -> Broker:
    return Broker()


@pytest.fixture
def conn(broker: Broker) -> Iterator[Connection]:
    connection = Connection("memory://", transport_options={"broker": broker})
    yield connection
    connection.release()


def _other(conn: Connection) -> Connection:
    return conn.clone()


class TestSimpleQueue:
    def test_put_get_ack(self, conn: Connection) -> None:
        with conn.SimpleQueue("sq") as q:
            q.put({"a": 1}, headers={"h": "v"})
            message = q.get(timeout=5)
            assert message.payload == {"a": 1}
            assert message.headers["h"] == "v"
            message.ack()
            assert q.qsize() == 0

    def test_empty_after_timeout_and_nowait(self, conn: Connection) -> None:
        with conn.SimpleQueue("sq_empty") as q:
            assert q.Empty is stdlib_queue.Empty
            with pytest.raises(stdlib_queue.Empty):
                q.get(timeout=0.05)
            with pytest.raises(stdlib_queue.Empty):
                q.get_nowait()
            with pytest.raises(stdlib_queue.Empty):
                q.get(block=False)
            q.put("x")
            assert q.get_nowait().payload == "x"

    def test_get_waits_for_a_put_from_another_thread(self, conn: Connection) -> None:
        other = _other(conn)
        with conn.SimpleQueue("sq_wait") as q:
            thread = threading.Timer(0.05, lambda: other.SimpleQueue("sq_wait").put("late"))
            thread.start()
            assert q.get(timeout=10).payload == "late"
            thread.join()
        other.release()

    def test_qsize_len_clear(self, conn: Connection) -> None:
        with conn.SimpleQueue("sq_size") as q:
            for n in range(4):
                q.put(n)
            assert q.qsize() == 4
            assert len(q) == 4
            assert bool(q)
            assert q.clear() == 4
            assert q.qsize() == 0

    def test_qsize_and_clear_count_messages_taken_with_the_one_returned(self, conn: Connection) -> None:
        with conn.SimpleQueue("sq_size_taken") as q:
            for n in range(4):
                q.put(n)
            q.get(timeout=5).ack()
            # the other three were taken from the broker with it: still waiting, as in Kombu
            assert q.qsize() == 3
            assert q.clear() == 3
            assert q.qsize() == 0
            q.put("after")
            assert q.get(timeout=5).payload == "after"

    def test_close_gives_buffered_messages_back(self, conn: Connection) -> None:
        with conn.SimpleQueue("sq_buffered") as q:
            for n in range(5):
                q.put(n)
            first = q.get(timeout=5)
            first.ack()
            # the consumer received more than get() returned
            conn.drain_events(timeout=5)
            assert len(q.buffer) == 1
        # that one, and the three taken from the broker with the first and not handed out
        # yet, are back in the queue for another connection (this one stays open)
        other = _other(conn)
        with other.SimpleQueue("sq_buffered") as again:
            got = []
            for _ in range(4):
                message = again.get(timeout=5)
                got.append(message.payload)
                message.ack()
        assert sorted(got) == [1, 2, 3, 4]
        other.release()

    def test_unacked_message_comes_back_after_connection_closes(self, broker: Broker) -> None:
        first = Connection("memory://", transport_options={"broker": broker})
        with first.SimpleQueue("sq_unacked") as q:
            q.put("again")
            assert q.get(timeout=5).payload == "again"
        first.release()
        second = Connection("memory://", transport_options={"broker": broker})
        with second.SimpleQueue("sq_unacked") as q:
            message = q.get(timeout=5)
            assert message.payload == "again"
            assert message.redelivered
            message.ack()
        second.release()

    def test_custom_queue_and_options(self, conn: Connection) -> None:
        exchange = Exchange("sq_ex", type="topic")
        queue = Queue("sq_custom", exchange, routing_key="a.*")
        with conn.SimpleQueue(queue) as q:
            q.put("routed", routing_key="a.b")
            assert q.get(timeout=5).payload == "routed"
        with conn.SimpleQueue("sq_args", queue_args={"x-max-priority": 5}, serializer="json") as q:
            q.put("low", priority=1)
            q.put("high", priority=5)
            assert [q.get(timeout=5).payload for _ in range(2)] == ["high", "low"]

    def test_accept_refuses_other_content(self, conn: Connection) -> None:
        with conn.SimpleQueue("sq_accept", accept=["json"]) as q:
            q.put(b"raw", content_type="application/x-custom", content_encoding="binary")
            with pytest.raises(ContentDisallowed, match="application/x-custom") as info:
                q.get(timeout=5)
            assert "sq_accept" in str(info.value)

    def test_simple_buffer_is_no_ack_and_transient(self, conn: Connection, broker: Broker) -> None:
        # the buffer's queue is auto_delete: deleted when its consumer goes, as on RabbitMQ,
        # on a broker that honours it (memory:// keeps it by default, as Kombu's does)
        broker.honour_auto_delete = True
        with conn.SimpleBuffer("sb") as buf:
            assert buf.no_ack
            assert buf.queue.auto_delete and not buf.queue.durable
            buf.put("fleeting")
            message = buf.get(timeout=5)
            assert message.payload == "fleeting"
            message.ack()  # accepted and ignored: the broker forgot it on delivery
        assert "sb" not in broker.queues

    def test_closing_buffer_with_undelivered_messages_says_so(
        self, conn: Connection, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING, logger="kombu_like.simple"):
            with conn.SimpleBuffer("sb_lost") as buf:
                for n in range(3):
                    buf.put(n)
                buf.get(timeout=5)
                conn.drain_events(timeout=5)  # received, never taken with get()
        assert "never taken with get()" in caplog.text
        # the third was taken from the broker but not handed out: not lost, it is back
        with conn.SimpleBuffer("sb_lost") as buf:
            assert buf.get(timeout=5).payload == 2


class TestMaybeDeclare:
    def test_declares_once_per_connection(self, conn: Connection, broker: Broker) -> None:
        queue = Queue("md_q", Exchange("md_ex"), "md")
        channel = conn.default_channel
        assert maybe_declare(queue, channel) is True
        assert "md_q" in broker.queues
        assert declaration_cached(queue, channel)
        assert maybe_declare(queue, channel) is False
        broker.queues.pop("md_q")
        assert maybe_declare(queue, channel) is False  # cached: not asked again
        conn.release()
        conn.connect()
        assert maybe_declare(queue, conn.default_channel) is True
        assert "md_q" in broker.queues

    def test_auto_delete_entities_are_not_cached(self, conn: Connection) -> None:
        queue = Queue("md_auto", auto_delete=True)
        assert maybe_declare(queue, conn.default_channel) is True
        assert maybe_declare(queue, conn.default_channel) is True

    def test_bound_entity_and_server_named_queue(self, conn: Connection) -> None:
        queue = Queue("", exclusive=True)
        assert maybe_declare(queue, conn.default_channel) is True
        assert queue.name.startswith("amq.gen-")
        bound = Queue("md_bound")(conn.default_channel)
        assert maybe_declare(bound) is True
        with pytest.raises(ChannelError, match="not bound"):
            maybe_declare(Queue("md_unbound"))

    def test_with_retry(self, conn: Connection, broker: Broker) -> None:
        assert (
            maybe_declare(Exchange("md_retry_ex", type="topic"), conn.default_channel, retry=True, max_retries=1)
            is True
        )
        assert broker.table.exchange("md_retry_ex") is not None


class TestEventLoops:
    def test_eventloop_limit_and_timeouts(self, conn: Connection) -> None:
        received: list[Any] = []
        queue = Queue("el_q")
        with Consumer(conn, [queue], callbacks=[lambda body, m: (received.append(body), m.ack())]):
            Producer(conn).publish("one", routing_key="el_q")
            assert len(list(eventloop(conn, limit=1, timeout=5))) == 1
            assert received == ["one"]
            with pytest.raises(socket.timeout):
                list(eventloop(conn, limit=1, timeout=0.05))
            assert list(eventloop(conn, limit=2, timeout=0.05, ignore_timeouts=True)) == []

    def test_itermessages_yields_every_message(self, conn: Connection) -> None:
        producer = Producer(conn)
        for n in range(10):
            producer.publish(n, routing_key="iter_q", declare=[Queue("iter_q")])
        got = []
        # limit counts drain_events calls, each delivering one message, as in Kombu
        for body, message in itermessages(conn, conn.default_channel, Queue("iter_q"), limit=3, timeout=5):
            got.append(body)
            message.ack()
        assert got == [0, 1, 2]
        # those not delivered went back when the consumer was cancelled, in order
        for body, message in itermessages(conn, conn.default_channel, Queue("iter_q"), limit=7, timeout=5):
            got.append(body)
            message.ack()
        assert got == list(range(10))

    def test_drain_consumer_calls_extra_callbacks(self, conn: Connection) -> None:
        seen: list[Any] = []
        Producer(conn).publish("cb", routing_key="dc_q", declare=[Queue("dc_q")])
        consumer = Consumer(conn, [Queue("dc_q")], no_ack=True)
        out = list(drain_consumer(consumer, limit=1, timeout=5, callbacks=[lambda body, m: seen.append(body)]))
        assert [body for body, _ in out] == ["cb"]
        assert seen == ["cb"]
        assert not consumer.consuming_from("dc_q")

    def test_send_reply_and_collect_replies(self, conn: Connection, broker: Broker) -> None:
        requests = Queue("req_q")
        replies = Queue("reply_q", auto_delete=True)
        producer = Producer(conn)
        producer.publish(
            {"q": 1}, routing_key="req_q", declare=[requests, replies], reply_to="reply_q", correlation_id="c-1"
        )
        request = requests(conn.default_channel).get(accept=["json"])
        assert request is not None
        send_reply(Exchange(""), request, {"a": 2}, producer=producer)
        request.ack()
        got = list(collect_replies(conn, conn.default_channel, replies, limit=1, timeout=5))
        assert got == [{"a": 2}]
        # a virtual transport forgets the reply queue once replies were collected
        assert "reply_q" not in broker.queues

    def test_send_reply_needs_reply_to(self, conn: Connection) -> None:
        Producer(conn).publish("no reply", routing_key="noreply_q", declare=[Queue("noreply_q")])
        request = Queue("noreply_q")(conn.default_channel).get()
        assert request is not None
        with pytest.raises(ValueError, match="reply_to"):
            send_reply(Exchange(""), request, "x", producer=Producer(conn))


class TestBroadcast:
    def test_every_consumer_gets_every_message(self, conn: Connection) -> None:
        other = _other(conn)
        first, second = Broadcast("bc_ex"), Broadcast("bc_ex")
        assert first.name != second.name and first.name.startswith("bcast.")
        assert first.exchange.type == "fanout" and first.auto_delete
        got: dict[str, list[Any]] = {"first": [], "second": []}
        c1 = Consumer(conn, [first], callbacks=[lambda b, m: (got["first"].append(b), m.ack())])
        c2 = Consumer(other, [second], callbacks=[lambda b, m: (got["second"].append(b), m.ack())])
        with c1, c2:
            Producer(conn).publish("hello all", exchange=first.exchange)
            conn.drain_events(timeout=5)
            other.drain_events(timeout=5)
        assert got == {"first": ["hello all"], "second": ["hello all"]}
        other.release()

    def test_named_and_unique_queues(self) -> None:
        assert Broadcast("x", queue="fixed").name == "fixed"
        unique = Broadcast("x", queue="fixed", unique=True)
        assert unique.name.startswith("fixed.") and unique.name != "fixed"
        assert Broadcast("x").alias == "x"


class TestIgnoreErrors:
    def test_ignores_connection_and_channel_errors_only(self, conn: Connection) -> None:
        def fail(exc: BaseException) -> None:
            raise exc

        assert ignore_errors(conn, fail, ConnectionError("gone")) is None
        assert ignore_errors(conn, lambda: 42) == 42
        with ignore_errors(conn):
            raise ChannelError("closed")
        with pytest.raises(ValueError):
            ignore_errors(conn, fail, ValueError("a bug"))
        with pytest.raises(KeyError):
            with ignore_errors(conn):
                raise KeyError("a bug")


class TestQoS:
    def test_increment_decrement_update(self) -> None:
        applied: list[int] = []
        qos = QoS(lambda prefetch_count: applied.append(prefetch_count), 2)
        qos.update()
        assert applied == [2]
        assert qos.increment_eventually() == 3
        assert qos.decrement_eventually(5) == 1
        qos.update()
        assert applied == [2, 1]
        qos.update()
        assert applied == [2, 1]  # unchanged: not applied again

    def test_zero_is_unlimited_and_limits(self) -> None:
        applied: list[int] = []
        qos = QoS(lambda prefetch_count: applied.append(prefetch_count), 0)
        assert qos.increment_eventually() == 0
        assert qos.decrement_eventually() == 0
        capped = QoS(lambda prefetch_count: applied.append(prefetch_count), 10, max_prefetch=12)
        assert capped.increment_eventually(5) == 12
        capped.set(PREFETCH_COUNT_MAX + 1)
        assert applied[-1] == 0

    def test_thread_safe(self) -> None:
        qos = QoS(lambda prefetch_count: None, 1)

        def bump() -> None:
            for _ in range(1000):
                qos.increment_eventually()

        threads = [threading.Thread(target=bump) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert qos.value == 4001


class TestIds:
    def test_uuid_and_oid(self) -> None:
        assert uuid() != uuid()
        thing = object()
        assert oid_from(thing) == oid_from(thing)
        assert oid_from(thing) != oid_from(object())
        other_thread: list[str] = []
        thread = threading.Thread(target=lambda: other_thread.append(oid_from(thing)))
        thread.start()
        thread.join()
        assert other_thread[0] != oid_from(thing)
        assert oid_from(thing, threads=False) != oid_from(thing)


def test_insured_retries_on_connection_loss(conn: Connection) -> None:
    calls: list[Any] = []

    def publish(body: Any, channel: Any = None, connection: Any = None) -> str:
        calls.append(channel)
        if len(calls) == 1:
            raise ConnectionError("connection lost")
        Producer(channel).publish(body, routing_key="insured_q", declare=[Queue("insured_q")])
        return "sent"

    pool = conn.Pool(limit=1)
    assert insured(pool, publish, ("payload",), {}, interval_start=0, interval_step=0, interval_max=0) == "sent"
    assert len(calls) == 2 and calls[0] is not calls[1]
    with conn.clone().SimpleQueue("insured_q") as q:
        assert q.get(timeout=5).payload == "payload"
