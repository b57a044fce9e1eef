"""Conformance tests for transports driven by an event loop (Kombu's Hub).

Part of :class:`~kombu_like.testing.conformance.TransportConformance`; every test skips
on a transport that does not declare ``capabilities.asynchronous`` (``memory://``
declares it with its ``event_loop`` transport option).  The consumers are
registered with ``Connection.register_with_event_loop(hub)`` and driven by
``hub.run_once()`` / ``hub.run_forever()`` only, never by ``drain_events``, the way
Celery's worker drives them.

Blocking API only: the Hub is the blocking API's event loop (the asyncio API runs on
asyncio's), so these tests do not take the ``api`` parameter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kombu_like import Connection, Consumer, Message, Producer
from kombu_like.asynchronous import Hub

from .base import ConformanceBase

__all__ = ["EventLoopTests"]


class _Boom(Exception):
    """Raised by a test's callback in the middle of a batch."""


class EventLoopTests(ConformanceBase):
    """Consumers driven by a :class:`~kombu_like.asynchronous.Hub`."""

    @pytest.fixture
    def hub(self) -> Iterator[Hub]:
        """A new event loop, closed after the test."""
        loop = Hub()
        yield loop
        loop.close()

    def evented(self, hub: Hub) -> Connection:
        """A new connection registered with ``hub`` (skips unless the transport can be)."""
        conn = self.connection()
        self.require_capability(conn, "asynchronous")
        assert conn.is_evented
        conn.register_with_event_loop(hub)
        return conn

    def run_until(self, hub: Hub, done: Callable[[], bool], timeout: float | None = None) -> None:
        """Run ``hub`` round by round until ``done()``; fail after ``timeout`` seconds."""
        timeout = self.wait if timeout is None else timeout
        deadline = time.monotonic() + timeout
        # the timer bounds each round's wait, so the deadline is checked in time
        entry = hub.call_repeatedly(min(timeout, 0.05), lambda: None)
        try:
            while not done():
                if time.monotonic() >= deadline:
                    pytest.fail(f"condition not met within {timeout}s of running the event loop")
                hub.run_once()
        finally:
            if entry is not None:
                entry.cancel()

    def run_quietly(self, hub: Hub, seconds: float | None = None) -> None:
        """Run ``hub`` for ``seconds`` (nothing need happen)."""
        seconds = self.quiet if seconds is None else seconds
        end = time.monotonic() + seconds
        self.run_until(hub, lambda: time.monotonic() >= end, seconds + self.wait)

    def test_messages_published_before_and_after_registering(self, hub: Hub) -> None:
        conn = self.evented(hub)
        queue = self.new_queue("ev_before_after")
        publisher = self.connection()
        self.publish(publisher, "before", queue)
        received: list[Any] = []

        def on_message(message: Message) -> None:
            received.append(message.payload)
            message.ack()
            if len(received) == 2:
                hub.stop()

        with Consumer(conn, [queue], on_message=on_message):
            self.run_until(hub, lambda: received == ["before"])
            self.run_quietly(hub)  # idle, waiting on the broker
            # from another thread, as a producer elsewhere would: the loop must wake up
            threading.Thread(target=self.publish, args=(publisher, "after", queue)).start()
            stopper = hub.call_later(self.wait, hub.stop)
            hub.run_forever()
            if stopper is not None:
                stopper.cancel()
        assert received == ["before", "after"]

    def test_prefetch_limits_deliveries_and_room_lets_the_next_flow(self, hub: Hub) -> None:
        conn = self.evented(hub)
        queue = self.new_queue("ev_prefetch")
        for n in range(6):
            self.publish(conn, n, queue)
        received: list[Message] = []
        # RabbitMQ applies a per-consumer limit only to consumers made after it, so a change
        # while running needs the channel-wide one there, which Celery uses for that reason
        apply_global = not conn.qos_semantics_matches_spec
        consumer = Consumer(conn, [queue], on_message=received.append)
        consumer.qos(prefetch_count=2, apply_global=apply_global)
        with consumer:
            self.run_until(hub, lambda: len(received) >= 2)
            self.run_quietly(hub)
            assert len(received) == 2, "more unacked messages delivered than prefetch_count allows"
            received[0].ack()  # outside any callback: the loop must notice the room
            self.run_until(hub, lambda: len(received) >= 3)
            self.run_quietly(hub)
            assert len(received) == 3
            # a QoS change while running (Celery's autoscale)
            consumer.qos(prefetch_count=5, apply_global=apply_global)
            self.run_until(hub, lambda: len(received) >= 6)
            for message in received[1:]:
                message.ack()
        assert sorted(m.payload for m in received) == list(range(6))
        assert self.message_count(conn, queue) == 0

    def test_loop_stopped_mid_batch_loses_nothing(self, hub: Hub) -> None:
        conn = self.evented(hub)
        queue = self.new_queue("ev_stopped")
        for n in range(3):
            self.publish(conn, n, queue)
        seen: list[Any] = []

        def on_message(message: Message) -> None:
            seen.append(message.payload)
            if len(seen) == 2:
                raise _Boom("callback failed in the middle of a batch")

        consumer = Consumer(conn, [queue], on_message=on_message)
        consumer.consume()
        with pytest.raises(_Boom):
            self.run_until(hub, lambda: False)
        conn.release()  # nothing acknowledged: every message must come back
        again = self.connection()
        back = self.collect(again, queue, 3)
        assert sorted(m.payload for m in back) == [0, 1, 2]

    def test_closing_leaves_nothing_in_the_loop(self, hub: Hub) -> None:
        threads_before = set(threading.enumerate())
        timers_before = {entry.entry for entry in hub.timer.queue}
        conn = self.evented(hub)
        queue = self.new_queue("ev_close")
        received: list[Any] = []

        def on_message(message: Message) -> None:
            received.append(message.payload)
            message.ack()

        with Consumer(conn, [queue], on_message=on_message):
            self.publish(self.connection(), "one", queue)
            self.run_until(hub, lambda: received == ["one"])
            watched = set(hub.readers)
            assert watched, "the connection watches nothing while it consumes"
        conn.release()
        assert not watched & set(hub.readers), "descriptors of a closed connection stay in the loop"
        live = {e.entry for e in hub.timer.queue if not e.entry.canceled} - timers_before
        assert not live, f"timers of a closed connection stay in the loop: {live}"
        assert set(threading.enumerate()) <= threads_before, "a thread outlived its connection"
        self.run_quietly(hub)  # and the loop runs on without it

    def test_fanout_under_the_loop(self, hub: Hub) -> None:
        conn = self.evented(hub)
        self.require_exchange_type(conn, "fanout")
        exchange = self.new_exchange("ev_fanout", "fanout")
        queues = [self.new_queue(f"ev_fanout{n}", exchange, routing_key="") for n in range(2)]
        received: list[tuple[str, Any]] = []
        consumers = []

        def on_message(message: Message) -> None:
            received.append((message.delivery_info["name"], message.payload))
            message.ack()

        for queue in queues:
            consumer = Consumer(conn, [queue], on_message=_tagged(on_message, queue.name))
            consumer.consume()
            consumers.append(consumer)
        try:
            Producer(self.connection()).publish("to all", exchange=exchange, routing_key="")
            self.run_until(hub, lambda: len(received) >= 2)
            self.run_quietly(hub)
        finally:
            for consumer in consumers:
                consumer.cancel()
        assert sorted(received) == sorted((q.name, "to all") for q in queues)


def _tagged(callback: Callable[[Message], None], name: str) -> Callable[[Message], None]:
    """``callback`` with the consuming queue's ``name`` put in the delivery info."""

    def on_message(message: Message) -> None:
        message.delivery_info["name"] = name
        callback(message)

    return on_message
