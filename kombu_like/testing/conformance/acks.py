"""Conformance: acknowledge, reject, requeue, and redelivery of unacknowledged messages."""

from __future__ import annotations

import pytest

from kombu_like import Connection, Message
from kombu_like.exceptions import MessageStateError

from .base import ConformanceBase


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
        with conn.Consumer([queue], prefetch_count=2, on_message=received.append):
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
