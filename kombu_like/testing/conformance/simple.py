"""Conformance: SimpleQueue and SimpleBuffer over the transport."""

from __future__ import annotations

import pytest

from kombu_like import Connection

from .base import ConformanceBase


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
