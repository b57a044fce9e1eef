"""A connection cut right after a take whose reply never reached it, while Redis cannot be
reached to give that take's messages back: once reconnected, the connection's new store
takes them over at once (redelivered, each once), not when their lease lapses -- and never
takes over another live connection's messages.  On the blocking API (``ensure``, and a new
client connection as Celery and ``ConsumerMixin`` make), under the Hub and on the asyncio
API."""
# ruff: noqa: F401, F811 - the fixtures of streams_fixtures are imported and taken as parameters

from __future__ import annotations

import asyncio
import logging
import select
import threading
import time
import uuid
from typing import Any

import pytest
import redis

from kombu_like import Connection, Consumer, Message, Queue
from kombu_like.asynchronous import Hub
from kombu_like.transport.redis_streams import StreamKeys
from kombu_like.transport.redis_streams.keys import GROUP
from t.faultproxy import FaultProxy
from t.integration.streams_fixtures import prefix, url
from t.integration.test_redis_streams_evloop import hub, run_until

pytestmark = pytest.mark.redis

#: long: a lapsed lease cannot be what brings the messages back within the test
LEASE = 60.0


def publish(url: str, opts: dict[str, Any], queue: Queue, bodies: list[Any]) -> None:
    with Connection(url, transport_options=opts) as conn:
        producer = conn.Producer()
        for body in bodies:
            producer.publish(body, routing_key=queue.name, declare=[queue], serializer="json")


def consumer_names(raw: redis.Redis, stream: str) -> set[str]:
    return {c["name"].decode() for c in raw.xinfo_consumers(stream, GROUP)}


def wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_take_lost_with_its_connection_comes_back_at_once_and_no_other_consumer_is_taken_over(
    redis_url: str, url: str, prefix: str
) -> None:
    opts = {"global_keyprefix": prefix, "lease": LEASE, "socket_timeout": 3}
    queue = Queue(f"takeover-{uuid.uuid4().hex[:6]}")
    raw = redis.Redis.from_url(redis_url)
    stream = StreamKeys(prefix).stream(queue.name)
    publish(url, opts, queue, ["other-1", "other-2", "other-3"])

    # another connection holds three messages, unacknowledged, while the cut happens
    other_held: list[Message] = []
    with Connection(url, transport_options=opts) as other:
        other_consumer = other.Consumer([queue], on_message=other_held.append, prefetch_count=3, accept=["json"])
        with other_consumer:
            while len(other_held) < 3:
                other.drain_events(timeout=5)
            other_name = next(iter(consumer_names(raw, stream)))
            assert raw.xpending(stream, GROUP)["pending"] == 3

            bodies = list(range(5))
            got: list[tuple[Any, bool]] = []

            def on_message(message: Message) -> None:
                got.append((message.payload, bool(message.delivery_info.get("redelivered"))))
                message.ack()

            with FaultProxy("127.0.0.1", raw.connection_pool.connection_kwargs["port"]) as proxy:
                with Connection(proxy.url_for(url), transport_options=opts) as conn:
                    consumer = conn.Consumer([queue], on_message=on_message, prefetch_count=10, accept=["json"])

                    def cut_after_the_take() -> None:
                        # the take ran in Redis (its entries are pending), its reply is held back;
                        # the cut comes while no new connection can be made, so the old store's
                        # close cannot give them back
                        wait_for(lambda: raw.xpending(stream, GROUP)["pending"] == 3 + len(bodies))
                        proxy.refuse(True)
                        proxy.cut()  # the take's reply goes with it
                        proxy.hold_replies(False)

                    def on_connection_error(exc: BaseException, interval: float) -> None:
                        proxy.refuse(False)  # the old store is closed: Redis can be reached again

                    with consumer:
                        with pytest.raises(TimeoutError):  # nothing to take: connected, waiting
                            conn.drain_events(timeout=0.2)
                        proxy.hold_replies(True)
                        publish(url, opts, queue, bodies)
                        cutter = threading.Thread(target=cut_after_the_take, daemon=True)
                        cutter.start()
                        drain = conn.ensure(consumer, conn.drain_events, errback=on_connection_error, max_retries=5)
                        deadline = time.monotonic() + LEASE / 4
                        while len(got) < len(bodies) and time.monotonic() < deadline:
                            try:
                                drain(timeout=0.5)
                            except TimeoutError:
                                pass
                        cutter.join(10)
                        assert proxy.cuts == 1
                        assert sorted(got) == [(n, True) for n in bodies]  # each once, flagged
                        # the cut connection's consumer left its group; the live one was not touched
                        names = consumer_names(raw, stream)
                        assert other_name in names and len(names) == 2, names
                        held = {e["message_id"] for e in raw.xpending_range(stream, GROUP, "-", "+", 10, other_name)}
                        assert len(held) == 3
            for message in other_held:
                message.ack()
            assert [m.payload for m in other_held] == ["other-1", "other-2", "other-3"]
    assert raw.xpending(stream, GROUP)["pending"] == 0
    assert raw.xlen(stream) == 0
    raw.close()


class LiftOnFailedGiveBack(logging.Handler):
    """Lets connections through the proxy again once a close failed to give back what it
    held: the reconnect that follows can reach Redis."""

    def __init__(self, proxy: FaultProxy) -> None:
        super().__init__()
        self.proxy = proxy
        self.failed = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "could not give back held messages on close" in record.getMessage():
            self.failed += 1
            self.proxy.refuse(False)


def test_on_the_asyncio_api_a_take_lost_with_its_connection_comes_back_at_once(
    redis_url: str, url: str, prefix: str
) -> None:
    from kombu_like.aio import Connection as AsyncConnection

    # short: a maintenance round of the I/O thread may wait on a reply held back
    opts = {"global_keyprefix": prefix, "lease": LEASE, "socket_timeout": 1}
    queue = Queue(f"takeover-aio-{uuid.uuid4().hex[:6]}")
    raw = redis.Redis.from_url(redis_url)
    stream = StreamKeys(prefix).stream(queue.name)
    bodies = list(range(5))
    got: list[tuple[Any, bool]] = []
    log = logging.getLogger("kombu_like.transport.redis_streams")

    async def main(proxy: FaultProxy) -> None:
        async with AsyncConnection(proxy.url_for(url), transport_options=opts) as conn:
            await queue(conn.default_channel).declare()

            async def handle(body: Any, message: Any) -> None:
                got.append((body, bool(message.delivery_info.get("redelivered"))))
                await message.ack()

            async with conn.Consumer([queue], callbacks=[handle], prefetch_count=10) as consumer:
                with pytest.raises(TimeoutError):
                    await conn.drain_events(timeout=0.2)  # nothing to take: connected, waiting
                proxy.hold_replies(True)
                publish(url, opts, queue, bodies)
                # the wait's answer is held back too: a consumer starting makes the take
                async with conn.Consumer([queue], callbacks=[handle], auto_declare=False):
                    await asyncio.to_thread(wait_for, lambda: raw.xpending(stream, GROUP)["pending"] == len(bodies))
                    proxy.refuse(True)  # lifted once the close failed to give back
                    proxy.cut()  # the take's reply goes with it
                    proxy.hold_replies(False)
                    deadline = time.monotonic() + LEASE / 4
                    while len(got) < len(bodies) and time.monotonic() < deadline:
                        try:
                            await conn.ensure(consumer, conn.drain_events, 0.5, max_retries=5, interval_start=0)
                        except TimeoutError:
                            pass

    with FaultProxy("127.0.0.1", raw.connection_pool.connection_kwargs["port"]) as proxy:
        lifter = LiftOnFailedGiveBack(proxy)
        log.addHandler(lifter)
        try:
            asyncio.run(main(proxy))
        finally:
            log.removeHandler(lifter)
    assert lifter.failed == 1
    assert sorted(got) == [(n, True) for n in bodies]
    assert raw.xpending(stream, GROUP)["pending"] == 0
    assert len(consumer_names(raw, stream)) <= 1  # the cut connection's consumer left its group
    raw.close()


def test_a_new_connection_takes_over_what_a_cut_one_of_the_process_held(redis_url: str, url: str, prefix: str) -> None:
    """Celery and ``ConsumerMixin`` reconnect with a new client connection (a clone)."""
    opts = {"global_keyprefix": prefix, "lease": LEASE, "socket_timeout": 3}
    queue = Queue(f"takeover-clone-{uuid.uuid4().hex[:6]}")
    raw = redis.Redis.from_url(redis_url)
    stream = StreamKeys(prefix).stream(queue.name)
    bodies = list(range(5))
    got: list[tuple[Any, bool]] = []

    def on_message(message: Message) -> None:
        got.append((message.payload, bool(message.delivery_info.get("redelivered"))))
        message.ack()

    with FaultProxy("127.0.0.1", raw.connection_pool.connection_kwargs["port"]) as proxy:
        conn = Connection(proxy.url_for(url), transport_options=opts)
        with conn.Consumer([queue], on_message=on_message, prefetch_count=10, accept=["json"]):
            with pytest.raises(TimeoutError):  # nothing to take: connected, waiting
                conn.drain_events(timeout=0.2)
            proxy.hold_replies(True)
            publish(url, opts, queue, bodies)
            raised: list[BaseException] = []

            def take() -> None:
                try:
                    conn.drain_events(timeout=5)
                except BaseException as exc:
                    raised.append(exc)

            taker = threading.Thread(target=take, daemon=True)
            taker.start()
            wait_for(lambda: raw.xpending(stream, GROUP)["pending"] == len(bodies))
            proxy.refuse(True)
            proxy.cut()  # the take's reply goes with it
            proxy.hold_replies(False)
            taker.join(10)
            assert len(raised) == 1 and isinstance(raised[0], conn.connection_errors), raised
        conn.release()  # cannot give back: no connection can be made
        proxy.refuse(False)
        with conn.clone() as again, again.Consumer([queue], on_message=on_message, accept=["json"]):
            deadline = time.monotonic() + LEASE / 4
            while len(got) < len(bodies) and time.monotonic() < deadline:
                try:
                    again.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
    assert sorted(got) == [(n, True) for n in bodies]
    assert raw.xpending(stream, GROUP)["pending"] == 0
    assert len(consumer_names(raw, stream)) == 1  # the clone's; the cut one left the group
    raw.close()


def test_under_the_hub_a_take_lost_with_its_connection_comes_back_at_once(
    hub: Hub, redis_url: str, url: str, prefix: str
) -> None:
    opts = {"global_keyprefix": prefix, "lease": LEASE, "socket_timeout": 3}
    queue = Queue(f"takeover-hub-{uuid.uuid4().hex[:6]}")
    raw = redis.Redis.from_url(redis_url)
    stream = StreamKeys(prefix).stream(queue.name)
    bodies = list(range(5))
    got: list[tuple[Any, bool]] = []

    def on_message(message: Message) -> None:
        got.append((message.payload, bool(message.delivery_info.get("redelivered"))))
        message.ack()

    def cut_after_the_take() -> None:
        wait_for(lambda: raw.xpending(stream, GROUP)["pending"] == len(bodies))
        proxy.refuse(True)
        proxy.cut()  # the take's reply goes with it
        proxy.hold_replies(False)

    with FaultProxy("127.0.0.1", raw.connection_pool.connection_kwargs["port"]) as proxy:
        conn = Connection(proxy.url_for(url), transport_options=opts)
        try:
            conn.register_with_event_loop(hub)
            with Consumer(conn, [queue], on_message=on_message, prefetch_count=10):
                end = time.monotonic() + 0.3
                run_until(hub, lambda: time.monotonic() >= end)  # idle, the watch armed
                publish(url, opts, queue, bodies)
                # the watch's answer has come; the take it leads to runs, its reply held
                readable, _, _ = select.select(list(hub.readers), [], [], 5)
                assert readable
                proxy.hold_replies(True)
                cutter = threading.Thread(target=cut_after_the_take, daemon=True)
                cutter.start()
                with pytest.raises(conn.recoverable_connection_errors):
                    run_until(hub, lambda: False, timeout=10)
                cutter.join(10)
        finally:
            conn.collect()  # cannot give back: no connection can be made
        proxy.refuse(False)
        again = conn.clone()
        try:
            again.register_with_event_loop(hub)
            with Consumer(again, [queue], on_message=on_message):
                run_until(hub, lambda: len(got) >= len(bodies), timeout=LEASE / 4)
        finally:
            again.release()
    assert sorted(got) == [(n, True) for n in bodies]
    assert raw.xpending(stream, GROUP)["pending"] == 0
    raw.close()


def test_a_closed_connections_consumer_holding_nothing_leaves_its_group_after_idle_leases(
    redis_url: str, url: str, prefix: str
) -> None:
    """A consumer nobody takes over (closed cleanly, or by a process gone) stays in its
    groups until the queue's other consumers find it idle for 30 leases, holding nothing."""
    opts = {"global_keyprefix": prefix, "lease": 0.05}  # forgotten after 1.5 s idle
    queue = Queue(f"forget-{uuid.uuid4().hex[:6]}")
    raw = redis.Redis.from_url(redis_url)
    stream = StreamKeys(prefix).stream(queue.name)
    publish(url, opts, queue, ["first"])
    got: list[Any] = []

    def on_message(message: Message) -> None:
        got.append(message.payload)
        message.ack()

    with Connection(url, transport_options=opts) as first, first.Consumer([queue], on_message=on_message):
        first.drain_events(timeout=5)
    (gone,) = consumer_names(raw, stream)
    publish(url, opts, queue, ["second"])
    with Connection(url, transport_options=opts) as second, second.Consumer([queue], on_message=on_message):
        second.drain_events(timeout=5)
        assert gone in consumer_names(raw, stream)
        deadline = time.monotonic() + 15
        while gone in consumer_names(raw, stream) and time.monotonic() < deadline:
            try:
                second.drain_events(timeout=0.2)
            except TimeoutError:
                pass
        names = consumer_names(raw, stream)
    assert got == ["first", "second"]
    assert gone not in names  # (the live one too may go while it holds nothing: a take makes it again)
    raw.close()
