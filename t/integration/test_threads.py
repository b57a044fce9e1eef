"""Threads sharing one Connection and one Producer, on every transport.

The documented contract (``docs/userguide/connections.rst``, "Threads"): a Connection,
its default channel and a Producer on it may be shared by threads that publish, and by
one thread that drains events while others publish.  These tests run both patterns on
real brokers and count what arrived: every message exactly once, no thread fails.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from kombu_like import Connection, Consumer, Exchange, Producer, Queue

PER_THREAD = 1_500


@pytest.fixture(params=["memory", "redis", "amqp", "amqp-confirms"])
def connect(request: pytest.FixtureRequest) -> Callable[[], Connection]:
    """A factory of connections to the transport under test."""
    if request.param == "memory":
        return lambda: Connection("memory://")
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        return lambda: Connection(url)
    url = request.getfixturevalue("amqp_url")
    if request.param == "amqp-confirms":
        return lambda: Connection(url, transport_options={"confirm_publish": True, "confirm_timeout": 20})
    return lambda: Connection(url)


def _run_threads(*targets: Callable[[], None], timeout: float = 60) -> None:
    """Run ``targets`` in threads at the same moment; re-raise the first failure."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets))

    def wrap(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                start.wait(10)
                target()
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(target), daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread is still running (hang)"
    if errors:
        raise errors[0]


def _drain_ids(conn: Connection, queue: Queue, expected: int, timeout: float = 30) -> list[int]:
    ids: list[int] = []

    def on_message(body: Any, message: Any) -> None:
        ids.append(body["id"])
        message.ack()

    with Consumer(conn, [queue], callbacks=[on_message], prefetch_count=200):
        deadline = time.monotonic() + timeout
        while len(ids) < expected and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=1)
            except socket.timeout:
                continue
        # anything beyond the expected count (a duplicate) shows up here
        try:
            conn.drain_events(timeout=0.3)
        except socket.timeout:
            pass
    return ids


def test_two_threads_publish_through_one_producer(connect: Callable[[], Connection], unique_name: str) -> None:
    exchange = Exchange(unique_name, type="direct", durable=False)
    queue = Queue(unique_name, exchange, routing_key=unique_name, durable=False)
    with connect() as conn:
        producer = Producer(conn, exchange=exchange, routing_key=unique_name)
        queue(conn.default_channel).declare()

        def publisher(offset: int) -> Callable[[], None]:
            def run() -> None:
                for i in range(offset, offset + PER_THREAD):
                    producer.publish({"id": i}, declare=[queue])

            return run

        _run_threads(publisher(0), publisher(PER_THREAD))
        ids = _drain_ids(conn, queue, 2 * PER_THREAD)
        queue(conn.default_channel).delete()
    assert sorted(ids) == list(range(2 * PER_THREAD))


def test_one_thread_drains_while_another_publishes(connect: Callable[[], Connection], unique_name: str) -> None:
    exchange = Exchange(unique_name, type="direct", durable=False)
    queue = Queue(unique_name, exchange, routing_key=unique_name, durable=False)
    received: list[int] = []
    done = threading.Event()
    with connect() as conn:
        queue(conn.default_channel).declare()

        def on_message(body: Any, message: Any) -> None:
            received.append(body["id"])
            message.ack()
            if len(received) >= PER_THREAD:
                done.set()

        consumer = Consumer(conn, [queue], callbacks=[on_message], prefetch_count=100)
        consumer.consume()

        def drainer() -> None:
            deadline = time.monotonic() + 40
            while not done.is_set() and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=0.5)
                except socket.timeout:
                    continue

        def publisher() -> None:
            producer = Producer(conn, exchange=exchange, routing_key=unique_name)
            for i in range(PER_THREAD):
                producer.publish({"id": i})

        _run_threads(drainer, publisher)
        consumer.cancel()
        queue(conn.default_channel).delete()
    assert sorted(received) == list(range(PER_THREAD))


def test_publisher_is_not_held_up_by_a_slow_consumer_callback(
    connect: Callable[[], Connection], unique_name: str
) -> None:
    """A callback that takes a while runs in the draining thread; publishes (and their
    confirms) from another thread go on meanwhile instead of waiting for it."""
    exchange = Exchange(unique_name, type="direct", durable=False)
    slow = Queue(unique_name + "_slow", exchange, routing_key="slow", durable=False)
    fast = Queue(unique_name + "_fast", exchange, routing_key="fast", durable=False)
    in_callback = threading.Event()
    release = threading.Event()
    with connect() as conn:
        for queue in (slow, fast):
            queue(conn.default_channel).declare()
        producer = Producer(conn, exchange=exchange)

        def on_message(body: Any, message: Any) -> None:
            in_callback.set()
            release.wait(10)
            message.ack()

        consumer = Consumer(conn, [slow], callbacks=[on_message])
        consumer.consume()
        producer.publish({"id": 0}, routing_key="slow")

        def drainer() -> None:
            while not in_callback.is_set():
                try:
                    conn.drain_events(timeout=1)
                except socket.timeout:
                    continue

        thread = threading.Thread(target=drainer, daemon=True)
        thread.start()
        assert in_callback.wait(10)
        started = time.monotonic()
        for i in range(100):
            producer.publish({"id": i}, routing_key="fast")
        elapsed = time.monotonic() - started
        release.set()
        thread.join(10)
        consumer.cancel()
        assert len(_drain_ids(conn, fast, 100, timeout=10)) == 100
        for queue in (slow, fast):
            queue(conn.default_channel).delete()
    assert elapsed < 8, f"publishing waited {elapsed:.1f} s for another thread's callback"


def test_channel_error_is_raised_in_the_thread_that_caused_it(amqp_url: str, unique_name: str) -> None:
    """On amqp a passive declare of a missing queue closes the channel; the NotFound goes
    to the thread that declared, at once, not to the thread that happened to read it."""
    from kombu_like.exceptions import NotFound

    queue = Queue(unique_name, durable=False)
    stop = threading.Event()
    drain_errors: list[BaseException] = []
    with Connection(amqp_url) as conn:
        declaring_channel = conn.channel()

        def drainer() -> None:
            while not stop.is_set():
                try:
                    conn.drain_events(timeout=0.2)
                except socket.timeout:
                    continue
                except Exception as exc:  # noqa: BLE001 - the assertion below names it
                    drain_errors.append(exc)

        thread = threading.Thread(target=drainer, daemon=True)
        thread.start()
        try:
            time.sleep(0.1)  # the drainer is reading now
            started = time.monotonic()
            with pytest.raises(NotFound):
                queue(declaring_channel).queue_declare(passive=True)
            assert time.monotonic() - started < 5
        finally:
            stop.set()
            thread.join(5)
    assert not drain_errors, drain_errors
