"""Behaviours frameworks' own test suites rely on (found by running Celery's unit suite on us).

Each test runs the same steps on Kombu 5.7 and on kombu_like where Kombu has the behaviour,
and compares what a caller sees.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from unittest.mock import Mock, patch

import kombu
import kombu.pools
import kombu.utils.objects
import kombu.utils.url
import pytest

import kombu_like
import kombu_like.pools
import kombu_like.utils.objects
import kombu_like.utils.url
from kombu_like import Connection, Consumer, Exchange, Queue
from kombu_like.asynchronous import Hub
from kombu_like.transport.memory import Broker
from kombu_like.transport.native_delayed_delivery import bind_queue_to_native_delayed_delivery_exchange


@pytest.fixture(params=["kombu", "kombu_like"])
def lib(request: pytest.FixtureRequest) -> ModuleType:
    return kombu if request.param == "kombu" else kombu_like


def test_virtual_channel_says_closed(lib: ModuleType) -> None:
    conn = lib.Connection("memory://")
    channel = conn.channel()
    assert channel.closed is False
    channel.close()
    assert channel.closed is True
    conn.release()


@pytest.mark.parametrize("objects", [kombu.utils.objects, kombu_like.utils.objects])
def test_cached_property_on_the_class_returns_itself(objects: ModuleType) -> None:
    prop = objects.cached_property(lambda obj: 1)
    assert prop.__get__(None) is prop
    assert prop.__set__(None, None) is prop
    assert prop.__delete__(None) is prop


def test_a_patched_functional_sleep_replaces_the_retry_waits() -> None:
    # Celery's tests patch kombu.utils.functional.sleep so ensure_connection does not wait
    conn = Connection("memory://")
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 4:
            raise kombu_like.exceptions.OperationalError("down")
        return "up"

    with patch("kombu_like.utils.functional.sleep") as sleep:
        started = time.monotonic()
        result = kombu_like.utils.functional.retry_over_time(
            flaky,
            kombu_like.exceptions.OperationalError,
            interval_start=5,
            interval_step=5,
            interval_max=5,
            callback=lambda: None,
        )
    assert result == "up" and len(attempts) == 4
    assert time.monotonic() - started < 2
    assert sleep.call_count == 15  # three 5 s waits, slept in 1 s slices between callbacks
    conn.release()


class TestFailoverStrategyByName:
    def test_unknown_name_is_kept_as_given(self, lib: ModuleType) -> None:
        conn = lib.Connection("memory://", failover_strategy="foo-bar")
        assert conn.failover_strategy == "foo-bar"

    def test_none_is_round_robin(self, lib: ModuleType) -> None:
        import itertools

        assert lib.Connection("memory://", failover_strategy=None).failover_strategy is itertools.cycle

    def test_unknown_name_with_alternates_is_a_type_error(self, lib: ModuleType) -> None:
        with pytest.raises(TypeError):
            lib.Connection("memory://a;memory://b", failover_strategy="foo-bar")


class TestPoolInternalsKombuSuitesRead:
    def test_limited_producer_pool_lists_its_free_slots(self, lib: ModuleType) -> None:
        conn = lib.Connection("memory://")
        pool = lib.pools.ProducerPool(conn.Pool(limit=2), limit=2)
        assert len(pool._resource.queue) == 2
        first, second = pool.acquire(), pool.acquire()
        assert pool._dirty == {first, second}
        first.release()
        second.release()
        assert pool.acquire() is second  # last released, first reused
        assert not lib.pools.ProducerPool(conn.Pool(limit=2), limit=None)._resource.queue

    def test_unlimited_acquisitions_are_not_dirty(self, lib: ModuleType) -> None:
        pool = lib.Connection("memory://").Pool(limit=None)
        held = pool.acquire()
        assert not pool._dirty
        held.release()

    def test_what_an_unlimited_pool_handed_out_does_not_count_against_a_later_limit(self) -> None:
        conn = Connection("memory://", transport_options={"broker": Broker()})
        pool = kombu_like.pools.ProducerPool(conn.Pool(limit=None), limit=None)
        old = [pool.acquire(), pool.acquire()]
        pool.limit = 2
        fresh = [pool.acquire(), pool.acquire()]  # the two slots are free
        with pytest.raises(kombu_like.exceptions.LimitExceeded):
            pool.acquire(block=False)
        for producer in old + fresh:
            producer.release()
        assert pool.in_use == 0 and len(pool._resource.queue) == 2


def test_consumer_on_a_stand_in_channel() -> None:
    # framework tests hand Consumer a Mock channel: its transport options are not options
    channel = Mock(name="channel")
    consumer = Consumer(channel, [Queue("q", Exchange("x"), "rk")], auto_declare=False)
    assert consumer.max_decompressed_size == kombu_like.messaging.DEFAULT_MAX_DECOMPRESSED_SIZE


def test_direct_exchange_warning_reads_as_kombus(caplog: pytest.LogCaptureFixture) -> None:
    conn = Connection("memory://", transport_options={"broker": Broker()})
    with caplog.at_level(logging.WARNING):
        bind_queue_to_native_delayed_delivery_exchange(conn, Queue("q", Exchange("celery", type="direct")))
    assert [r.getMessage() for r in caplog.records] == [
        "Exchange celery is a direct exchange and native delayed delivery do not support direct exchanges.\n"
        "ETA tasks published to this exchange will block the worker until the ETA arrives."
    ]
    conn.release()


class TestHubWithNothingToWatch:
    @pytest.fixture
    def hub(self) -> Iterator[Hub]:
        hub = Hub()
        yield hub
        hub.close()

    def test_the_poller_is_not_asked(self, hub: Hub) -> None:
        hub.poller = Mock(name="poller")
        hub.call_later(0.01, lambda: None)  # a short wait per round
        loop = hub.create_loop()
        next(loop)
        hub.poller.poll.assert_not_called()

    def test_call_soon_from_another_thread_wakes_it(self, hub: Hub) -> None:
        ran_at: list[float] = []
        hub.call_later(30, lambda: None)  # the loop would otherwise wait its longest
        loop = hub.create_loop()

        def callback() -> None:
            ran_at.append(time.monotonic())
            hub.call_soon(lambda: None)  # more work queued: the round ends without waiting

        threading.Timer(0.1, hub.call_soon, (callback,)).start()
        started = time.monotonic()
        while not ran_at and time.monotonic() - started < 10:
            next(loop)
        assert ran_at and ran_at[0] - started < 1

    def test_a_reader_added_from_another_thread_is_watched_at_once(self, hub: Hub) -> None:
        import socket

        a, b = socket.socketpair()
        seen_at: list[float] = []
        hub.call_later(30, lambda: None)
        loop = hub.create_loop()

        def on_readable() -> None:
            a.recv(10)
            seen_at.append(time.monotonic())
            hub.call_soon(lambda: None)

        def add() -> None:
            hub.add_reader(a, on_readable)
            b.send(b"x")

        threading.Timer(0.1, add).start()
        started = time.monotonic()
        while not seen_at and time.monotonic() - started < 10:
            next(loop)
        assert seen_at and seen_at[0] - started < 1
        hub.remove(a)
        a.close()
        b.close()


@pytest.mark.parametrize("url", ["mongodb://user:secret@db.example", "redis://:secret@h:6379/0", "amqp://u:p@h//"])
def test_sanitized_url_has_kombus_shape(url: str) -> None:
    # Celery's backends print sanitized URLs; a URL without a path gets Kombu's "/"
    assert kombu_like.utils.url.maybe_sanitize_url(url) == kombu.utils.url.maybe_sanitize_url(url)
