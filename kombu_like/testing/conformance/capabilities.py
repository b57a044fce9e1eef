"""Conformance: optional capabilities (priority, TTL) a transport declares as flags."""

from __future__ import annotations

import time

from kombu_like import Connection

from .base import ConformanceBase


class PriorityTests(ConformanceBase):
    """Queues with ``max_priority`` deliver higher priorities first (capability ``priority``)."""

    def test_higher_priority_first(self, conn: Connection) -> None:
        self.require_capability(conn, "priority")
        queue = self.new_queue("prio", max_priority=10)
        for priority in (1, 9, 0, 5):
            self.publish(conn, priority, queue, priority=priority)
        received = self.collect(conn, queue, 4, prefetch_count=1)
        assert [m.payload for m in received] == [9, 5, 1, 0]

    def test_same_priority_keeps_order(self, conn: Connection) -> None:
        self.require_capability(conn, "priority")
        queue = self.new_queue("prio_fifo", max_priority=5)
        for label, priority in (("a", 2), ("b", 4), ("c", 2), ("d", 4)):
            self.publish(conn, label, queue, priority=priority)
        received = self.collect(conn, queue, 4, prefetch_count=1)
        assert [m.payload for m in received] == ["b", "d", "a", "c"]


class TTLTests(ConformanceBase):
    """Per-message ``expiration`` and queue ``message_ttl`` (capability ``ttl``)."""

    #: seconds a short-lived message lives
    short_ttl: float = 0.1
    #: seconds to wait for it to expire
    expiry_wait: float = 0.5

    def test_expired_message_is_not_delivered(self, conn: Connection) -> None:
        self.require_capability(conn, "ttl")
        queue = self.new_queue("ttl_msg")
        self.publish(conn, "short", queue, expiration=self.short_ttl)
        self.publish(conn, "long", queue, expiration=60)
        self.publish(conn, "forever", queue)
        time.sleep(self.expiry_wait)  # let the short one expire
        received = self.collect(conn, queue, 2)
        assert sorted(m.payload for m in received) == ["forever", "long"]
        [long_lived] = [m for m in received if m.payload == "long"]
        assert long_lived.properties["expiration"] == "60000"
        assert self.basic_get(conn, queue) is None

    def test_queue_message_ttl(self, conn: Connection) -> None:
        self.require_capability(conn, "ttl")
        short = self.new_queue("ttl_queue_short", message_ttl=self.short_ttl)
        long = self.new_queue("ttl_queue_long", message_ttl=60)
        self.publish(conn, "expires", short)
        self.publish(conn, "stays", long)
        time.sleep(self.expiry_wait)  # let the short-lived one expire
        assert self.basic_get(conn, short) is None
        assert self.message_count(conn, short) == 0
        [message] = self.collect(conn, long, 1)
        assert message.payload == "stays"
