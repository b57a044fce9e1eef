"""Conformance: publish and consume, and the headers and properties a message carries."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from kombu_like import Connection, Message

from .base import ConformanceBase


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

        with conn.Consumer([queue], callbacks=[callback, lambda body, message: calls.append((body, message))]):
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
        with conn.Consumer([queue], callbacks=[lambda body, message: None]):
            started = time.monotonic()
            with pytest.raises(socket.timeout):
                conn.drain_events(timeout=self.quiet)
            assert time.monotonic() - started < self.quiet + self.wait

    def test_timeout_is_the_builtin_timeout_error(self, conn: Connection) -> None:
        queue = self.new_queue("pc_timeout_builtin")
        with conn.Consumer([queue], callbacks=[lambda body, message: None]):
            with pytest.raises(TimeoutError):
                conn.drain_events(timeout=self.quiet)

    def test_cancelled_consumer_gets_nothing(self, conn: Connection) -> None:
        queue = self.new_queue("pc_cancel")
        received: list[Any] = []
        consumer = conn.Consumer([queue], callbacks=[lambda body, message: received.append(body)])
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
