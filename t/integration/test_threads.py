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
from t.integration.test_amqp import tls_files, tls_relay  # noqa: F401 - fixtures for amqps


class Target:
    """Connections to the transport under test, and how many messages a thread sends."""

    def __init__(
        self, url: str, options: dict[str, Any] | None = None, per_thread: int = 1_500, ssl: Any = None
    ) -> None:
        self.url = url
        self.options = options or {}
        self.per_thread = per_thread
        self.ssl = ssl

    def __call__(self) -> Connection:
        return Connection(self.url, transport_options=self.options, ssl=self.ssl)


@pytest.fixture(params=["memory", "sqlite", "redis", "sqs", "amqp", "amqp-confirms", "amqps"])
def connect(request: pytest.FixtureRequest, tmp_path: Any) -> Target:
    kind = request.param
    if kind == "memory":
        return Target("memory://")
    if kind == "sqlite":
        return Target(f"sqlite:///{tmp_path / 'threads.db'}")
    if kind == "sqs":
        host = request.getfixturevalue("sqs_endpoint").split("://", 1)[1]
        # moto answers over HTTP, one request per message: fewer messages keep it quick
        return Target(f"sqs://testing:testing@{host}", {"region": "us-east-1", "wait_time_seconds": 1}, 60)
    if kind == "redis":
        return Target(request.getfixturevalue("redis_url"))
    if kind == "amqps":
        # TLS through a relay: one SSL object must never be read and written at once
        relay = request.getfixturevalue("tls_relay")
        cert, _ = request.getfixturevalue("tls_files")
        return Target(
            f"amqps://guest:guest@localhost:{relay.port}//", {"confirm_publish": True}, ssl={"ca_certs": cert}
        )
    url = request.getfixturevalue("amqp_url")
    if kind == "amqp-confirms":
        return Target(url, {"confirm_publish": True, "confirm_timeout": 20})
    return Target(url)


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


def test_two_threads_publish_through_one_producer(connect: Target, unique_name: str) -> None:
    per_thread = connect.per_thread
    exchange = Exchange(unique_name, type="direct", durable=False)
    queue = Queue(unique_name, exchange, routing_key=unique_name, durable=False)
    with connect() as conn:
        producer = Producer(conn, exchange=exchange, routing_key=unique_name)
        queue(conn.default_channel).declare()

        def publisher(offset: int) -> Callable[[], None]:
            def run() -> None:
                for i in range(offset, offset + per_thread):
                    producer.publish({"id": i}, declare=[queue])

            return run

        _run_threads(publisher(0), publisher(per_thread))
        ids = _drain_ids(conn, queue, 2 * per_thread)
        queue(conn.default_channel).delete()
    assert sorted(ids) == list(range(2 * per_thread))


def test_one_thread_drains_while_another_publishes(connect: Target, unique_name: str) -> None:
    per_thread = connect.per_thread
    exchange = Exchange(unique_name, type="direct", durable=False)
    queue = Queue(unique_name, exchange, routing_key=unique_name, durable=False)
    received: list[int] = []
    done = threading.Event()
    with connect() as conn:
        queue(conn.default_channel).declare()

        def on_message(body: Any, message: Any) -> None:
            received.append(body["id"])
            message.ack()
            if len(received) >= per_thread:
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
            for i in range(per_thread):
                producer.publish({"id": i})

        _run_threads(drainer, publisher)
        consumer.cancel()
        queue(conn.default_channel).delete()
    assert sorted(received) == list(range(per_thread))


def test_publisher_is_not_held_up_by_a_slow_consumer_callback(connect: Target, unique_name: str) -> None:
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
