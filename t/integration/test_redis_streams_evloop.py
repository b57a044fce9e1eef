"""The Redis Streams transport driven by Kombu's Hub: leases renewed by a thread while a
callback blocks the loop, lapsed leases taken back from the loop's timer, and a watch
connection cut while the loop waits.

The conformance suite (``EventLoopTests``) covers delivery, prefetch, stopping and closing
under the loop."""
# ruff: noqa: F401, F811 - the fixtures of streams_fixtures are imported and taken as parameters

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kombu_like import Connection, Consumer, Message, Queue
from kombu_like.asynchronous import Hub
from t.faultproxy import FaultProxy
from t.integration.streams_fixtures import prefix, url
from t.integration.test_redis_evloop import hub, run_until
from t.integration.test_redis_streams_leases import LEASE, SLACK, hold_and_kill

pytestmark = pytest.mark.redis


def lease_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("kombu_like-streams-leases-")}


def test_loop_consumer_keeps_its_message_while_a_callback_blocks_the_loop(hub: Hub, url: str, prefix: str) -> None:
    # a task run in the loop's own thread (Celery's solo pool) blocks the loop for longer
    # than the lease: the consumer lives, so a thread renews what it holds and the other
    # consumer's claims find nothing; closing the connection leaves no thread behind
    queue = Queue(f"evl-hold-{uuid.uuid4().hex[:6]}")
    options = {"global_keyprefix": prefix, "lease": LEASE}
    held: list[Message] = []
    elsewhere: list[Message] = []
    before = lease_threads()
    other_done = threading.Event()

    def consume_elsewhere(other: Connection) -> None:
        with Consumer(other, [queue], on_message=elsewhere.append):
            while not other_done.is_set():
                try:
                    other.drain_events(timeout=0.05)
                except TimeoutError:
                    pass

    with Connection(url, transport_options=options) as conn, Connection(url, transport_options=options) as other:
        conn.Producer().publish("mine", routing_key=queue.name, declare=[queue])
        conn.register_with_event_loop(hub)
        thread = threading.Thread(target=consume_elsewhere, args=(other,))

        def on_message(message: Message) -> None:
            held.append(message)
            thread.start()  # the other consumer comes once the message is the loop's
            time.sleep(3 * LEASE)  # the loop runs nothing meanwhile

        with Consumer(conn, [queue], on_message=on_message):
            try:
                run_until(hub, lambda: bool(held), timeout=5 + 3 * LEASE)
                # once more past a lease, the loop free again: still nowhere else
                end = time.monotonic() + LEASE
                run_until(hub, lambda: time.monotonic() >= end)
            finally:
                other_done.set()
                if thread.is_alive():
                    thread.join(5)
            assert elsewhere == []
            assert len(held) == 1, "the lease lapsed: the message was delivered again"
            held[0].ack()
            acked_by = time.monotonic() + 0.1
            run_until(hub, lambda: time.monotonic() >= acked_by)  # the ack goes out with the loop's round
        assert queue(other.default_channel).queue_declare(passive=True).message_count == 0
    assert lease_threads() == before, "a lease thread outlived its connection"


def test_loop_consumer_takes_back_a_killed_consumers_messages(hub: Hub, url: str, prefix: str) -> None:
    queue = Queue(f"evl-crash-{uuid.uuid4().hex[:6]}")
    options = {"global_keyprefix": prefix, "lease": LEASE}
    with Connection(url, transport_options=options) as conn:
        producer = conn.Producer()
        for n in range(3):
            producer.publish({"id": n}, routing_key=queue.name, declare=[queue])
    held, killed_at = hold_and_kill(url, queue, 3, options)
    assert held == {0, 1, 2}
    before = lease_threads()
    got: list[tuple[int, bool]] = []

    def on_message(message: Message) -> None:
        got.append((message.payload["id"], bool(message.redelivered)))
        message.ack()

    with Connection(url, transport_options=options) as conn:
        conn.register_with_event_loop(hub)
        with Consumer(conn, [queue], on_message=on_message):
            run_until(hub, lambda: len(got) >= 3, timeout=LEASE + SLACK)
            end = time.monotonic() + 0.3
            run_until(hub, lambda: time.monotonic() >= end)
    assert lease_threads() == before, "a lease thread outlived its connection"
    assert sorted(got) == [(0, True), (1, True), (2, True)]
    assert time.time() - killed_at <= LEASE + SLACK + 1


def test_watch_connection_cut_under_the_loop_loses_nothing(hub: Hub, url: str, prefix: str) -> None:
    queue = Queue(f"evl-cut-{uuid.uuid4().hex[:6]}")
    options = {"global_keyprefix": prefix, "lease": LEASE}
    received: list[tuple[Any, bool]] = []

    def on_message(message: Message) -> None:
        received.append((message.payload, bool(message.redelivered)))
        message.ack()

    with FaultProxy("127.0.0.1", 6379) as proxy, Connection(url, transport_options=options) as direct:
        queue(direct.default_channel).declare()
        conn = Connection(proxy.url_for(url), transport_options=options)
        try:
            conn.register_with_event_loop(hub)
            with Consumer(conn, [queue], on_message=on_message):
                end = time.monotonic() + 0.3
                run_until(hub, lambda: time.monotonic() >= end)  # idle, the watch armed
                proxy.cut()
                direct.Producer().publish("during the cut", routing_key=queue.name)
                with pytest.raises(conn.recoverable_connection_errors):
                    run_until(hub, lambda: False, timeout=5)
                assert not hub.readers, "the cut connection's socket is still watched"
        finally:
            conn.collect()
        again = Connection(proxy.url_for(url), transport_options=options)
        try:
            again.register_with_event_loop(hub)
            with Consumer(again, [queue], on_message=on_message):
                run_until(hub, lambda: bool(received))
        finally:
            again.release()
    assert received == [("during the cut", False)]


def test_silent_connection_under_the_loop_is_found_by_its_timer(hub: Hub, url: str, prefix: str) -> None:
    # a half-open connection never turns readable: the lease work on the loop's timer
    # must notice the missing answers within socket_timeout and raise a recoverable error
    queue = Queue(f"evl-silent-{uuid.uuid4().hex[:6]}")
    options = {"global_keyprefix": prefix, "lease": 0.6, "socket_timeout": 0.5}
    got: list[Any] = []
    with FaultProxy("127.0.0.1", 6379) as proxy, Connection(url, transport_options=options) as direct:
        direct.Producer().publish("before", routing_key=queue.name, declare=[queue])
        conn = Connection(proxy.url_for(url), transport_options=options)
        try:
            hub.propagate_errors = conn.connection_errors
            conn.register_with_event_loop(hub)
            with Consumer(conn, [queue], on_message=lambda m: (got.append(m.payload), m.ack())):  # type: ignore[func-returns-value]
                run_until(hub, lambda: got == ["before"])
                end = time.monotonic() + 0.1
                run_until(hub, lambda: time.monotonic() >= end)  # idle, waiting on Redis
                proxy.stall()
                started = time.monotonic()
                with pytest.raises(conn.recoverable_connection_errors):
                    run_until(hub, lambda: False, timeout=5)
                assert time.monotonic() - started < 3
        finally:
            proxy.stall(False)
            conn.collect()
