"""Conformance: compression, and messages a consumer cannot decode or does not accept."""

from __future__ import annotations

from typing import Any

import pytest

from kombu_like import Connection, Message, Queue
from kombu_like.exceptions import ContentDisallowed, DecodeError

from .base import COMPRESSION_METHODS, ConformanceBase, _module_available


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

        with conn.Consumer([queue], callbacks=[callback], on_decode_error=lambda m, e: errors.append((m, e))):
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

        with conn.Consumer(
            [queue], accept=["json"], callbacks=[callback], on_decode_error=lambda m, e: errors.append((m, e))
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

        with conn.Consumer([queue], callbacks=[callback]):
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

        with conn.Consumer([queue], accept=["application/json"], callbacks=[callback]):
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
