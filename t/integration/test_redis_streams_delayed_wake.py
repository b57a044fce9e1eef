"""An idle ``redis+streams://`` consumer hears of delayed messages other connections
schedule (the queue's schedule stream, waited on with its streams) instead of polling:
they reach it on time, and while idle it makes almost no round trips to Redis."""
# ruff: noqa: F401, F811 - the fixtures of streams_fixtures are imported and taken as parameters

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from kombu_like import Connection, Consumer, Message, Producer, Queue
from kombu_like.asynchronous import Hub
from t.faultproxy import FaultProxy
from t.integration.streams_fixtures import prefix, url
from t.integration.test_redis_evloop import hub, run_until
from t.integration.test_redis_servers import redis_server, sentinel_setup

pytestmark = pytest.mark.redis

#: how late after its due time a message another connection scheduled may arrive (it
#: usually comes within milliseconds; the margin is for a loaded machine)
ON_TIME = 0.25
#: how early: the due time is the server's clock, the check this machine's (the same one)
EARLY = 0.05
#: round trips a second an idle consumer may make (lease work, the wait renewed)
IDLE_ROUND_TRIPS = 2.0
#: seconds of idling measured
IDLE_FOR = 4.0
#: the lease work (a look for lapsed leases, the expired queues' sweep) comes every
#: quarter of the lease: at most once in the time measured
IDLE_OPTIONS = {"lease": 30.0}


def _options(prefix: str = "", **more: Any) -> dict[str, Any]:
    return {"global_keyprefix": prefix, **more}


class _Schedules:
    """Publishes delayed messages from a connection of its own; body -> (earliest, latest)
    monotonic time it may be due."""

    def __init__(self, url: str, prefix: str, queue: Queue, **options: Any) -> None:
        self.url, self.queue = url, queue
        self.options = _options(prefix, **options)
        self.due: dict[str, tuple[float, float]] = {}

    def publish(self, delays_ms: list[int], queue: Queue | None = None) -> None:
        queue = queue or self.queue
        with Connection(self.url, transport_options=self.options) as other:
            producer = Producer(other)
            for delay in delays_ms:
                body = f"{queue.name}-in-{delay}" if queue is not self.queue else f"in-{delay}"
                before = time.monotonic()
                producer.publish(body, routing_key=queue.name, declare=[queue], headers={"x-delay": delay})
                self.due[body] = (before + delay / 1000, time.monotonic() + delay / 1000)

    def check(self, arrived: dict[str, float]) -> None:
        assert arrived.keys() == self.due.keys()
        for body, at in arrived.items():
            earliest, latest = self.due[body]
            assert earliest - EARLY <= at <= latest + ON_TIME, (
                body,
                {b: round(arrived[b] - self.due[b][1], 3) for b in arrived},
            )


def _recorder() -> tuple[dict[str, float], Callable[[Message], None]]:
    arrived: dict[str, float] = {}

    def on_message(message: Message) -> None:
        arrived[message.payload] = time.monotonic()
        message.ack()

    return arrived, on_message


def _drain_until(conn: Connection, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        left = deadline - time.monotonic()
        assert left > 0, f"not done within {timeout}s"
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=min(left, 1.0))


# the first is due before the others, the second later than the first, the third between
DELAYS = [1000, 300, 650]
#: an idle consumer does not poll: how often a busy one looks does not matter to it
NOT_POLLING = {"delayed_check_interval": 60.0}


def test_a_blocking_consumer_hears_of_messages_another_connection_schedules(url: str, prefix: str) -> None:
    queue = Queue("dw-blocking")
    schedules = _Schedules(url, prefix, queue)
    arrived, on_message = _recorder()
    with Connection(url, transport_options=_options(prefix, **NOT_POLLING)) as conn:
        queue(conn.default_channel).declare()
        with Consumer(conn, [queue], on_message=on_message):
            waiting = threading.Event()
            # scheduled while the consumer waits (it looked at the queue when it started)
            publisher = threading.Thread(target=lambda: (waiting.wait(10), schedules.publish(DELAYS)))
            publisher.start()
            try:
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0.2)  # idle
                waiting.set()
                _drain_until(conn, lambda: len(arrived) == len(DELAYS), timeout=10)
            finally:
                waiting.set()
                publisher.join(10)
    schedules.check(arrived)


def test_a_consumer_under_the_hub_hears_of_messages_another_connection_schedules(
    hub: Hub, url: str, prefix: str
) -> None:
    queue = Queue("dw-hub")
    schedules = _Schedules(url, prefix, queue)
    arrived, on_message = _recorder()
    with Connection(url, transport_options=_options(prefix, **NOT_POLLING)) as conn:
        queue(conn.default_channel).declare()
        conn.register_with_event_loop(hub)
        with Consumer(conn, [queue], on_message=on_message):
            idle = time.monotonic() + 0.2
            run_until(hub, lambda: time.monotonic() >= idle)  # idle, waiting on Redis
            schedules.publish(DELAYS)
            run_until(hub, lambda: len(arrived) == len(DELAYS), timeout=10)
    schedules.check(arrived)


def test_an_asyncio_consumer_hears_of_messages_another_connection_schedules(url: str, prefix: str) -> None:
    import asyncio

    from kombu_like.aio import Connection as AsyncConnection

    queue = Queue("dw-aio")
    schedules = _Schedules(url, prefix, queue)
    arrived: dict[str, float] = {}

    async def main() -> None:
        async with AsyncConnection(url, transport_options=_options(prefix, **NOT_POLLING)) as conn:
            await queue(conn.default_channel).declare()
            async with conn.Consumer([queue]) as consumer:
                with contextlib.suppress(TimeoutError):
                    await conn.drain_events(timeout=0.2)  # idle, waiting on Redis
                await asyncio.to_thread(schedules.publish, DELAYS)
                async for message in consumer:
                    arrived[message.payload] = time.monotonic()
                    await message.ack()
                    if len(arrived) == len(DELAYS):
                        return

    asyncio.run(asyncio.wait_for(main(), 10))
    schedules.check(arrived)


@pytest.mark.parametrize("driven", ["blocking", "hub"])
def test_a_busy_consumer_still_finds_messages_another_connection_schedules(
    url: str, prefix: str, driven: str, request: pytest.FixtureRequest
) -> None:
    # a consumer that always finds messages never waits on the schedule stream: it looks
    # at the delayed set every delayed_check_interval instead
    queue = Queue(f"dw-busy-{driven}")
    schedules = _Schedules(url, prefix, queue)
    arrived: dict[str, float] = {}
    interval = 0.2

    with Connection(url, transport_options=_options(prefix, delayed_check_interval=interval)) as conn:
        producer = Producer(conn)
        producer.publish("work", routing_key=queue.name, declare=[queue])

        def on_message(message: Message) -> None:
            if message.payload == "work":  # the queue is never empty
                producer.publish("work", routing_key=queue.name)
            else:
                arrived[message.payload] = time.monotonic()
            message.ack()

        def until(done: Callable[[], bool], timeout: float) -> None:
            if driven == "hub":
                run_until(loop, done, timeout)
            else:
                _drain_until(conn, done, timeout)

        if driven == "hub":
            loop: Hub = request.getfixturevalue("hub")
            conn.register_with_event_loop(loop)
        with Consumer(conn, [queue], on_message=on_message, prefetch_count=1):
            busy_until = time.monotonic() + 0.5
            until(lambda: time.monotonic() >= busy_until, 5)
            schedules.publish([300])
            until(lambda: bool(arrived), 10)
    earliest, latest = schedules.due["in-300"]
    assert earliest - EARLY <= arrived["in-300"] <= latest + interval + 0.3


def test_a_message_scheduled_while_the_watch_connection_is_cut_arrives_on_time(hub: Hub, url: str, prefix: str) -> None:
    # nothing is lost with a cut: the delayed set is the truth, and a reconnected consumer
    # looks at it first
    queue = Queue("dw-cut")
    schedules = _Schedules(url, prefix, queue)
    arrived, on_message = _recorder()
    options = _options(prefix, **NOT_POLLING)
    with FaultProxy("127.0.0.1", 6379) as proxy, Connection(url, transport_options=options) as direct:
        queue(direct.default_channel).declare()
        conn = Connection(proxy.url_for(url), transport_options=options)
        try:
            conn.register_with_event_loop(hub)
            with Consumer(conn, [queue], on_message=on_message):
                idle = time.monotonic() + 0.2
                run_until(hub, lambda: time.monotonic() >= idle)  # idle, waiting on Redis
                proxy.cut()
                schedules.publish([800])
                with pytest.raises(conn.recoverable_connection_errors):
                    run_until(hub, lambda: False, timeout=5)
        finally:
            conn.collect()
        again = Connection(proxy.url_for(url), transport_options=options)
        try:
            again.register_with_event_loop(hub)
            with Consumer(again, [queue], on_message=on_message):
                run_until(hub, lambda: bool(arrived))
        finally:
            again.release()
    schedules.check(arrived)


@pytest.mark.parametrize("driven", ["blocking", "hub"])
def test_on_a_redis_cluster_a_consumer_hears_on_every_slot_it_waits_on(
    redis_cluster: Any, unique_name: str, driven: str, request: pytest.FixtureRequest
) -> None:
    # one wait per slot: each names its queue's schedule stream with its streams
    from t.integration.test_redis_streams_cluster import delete_prefixed

    prefix = f"kldw-{unique_name}:"
    queues = [Queue(name) for name in redis_cluster.names_on_distinct_masters("dw", 3)]
    options = {"cluster": True, **NOT_POLLING}
    schedules = _Schedules(redis_cluster.url(), prefix, queues[0], **options)
    arrived, on_message = _recorder()
    try:
        with Connection(redis_cluster.url(), transport_options=_options(prefix, **options)) as conn:
            for queue in queues:
                queue(conn.default_channel).declare()
            if driven == "hub":
                loop: Hub = request.getfixturevalue("hub")
                conn.register_with_event_loop(loop)
            with Consumer(conn, queues, on_message=on_message):
                waiting = threading.Event()

                def publish() -> None:
                    # on a thread of its own: publishing on the loop's thread would hold
                    # the loop (a connection to the cluster may take most of a second on
                    # a busy machine), and what fell due meanwhile would arrive late
                    waiting.wait(10)
                    for n, queue in enumerate(queues):
                        schedules.publish([300 + 200 * n], queue)

                publisher = threading.Thread(target=publish)
                publisher.start()
                try:
                    if driven == "hub":
                        idle = time.monotonic() + 0.2
                        run_until(loop, lambda: time.monotonic() >= idle)  # idle, waiting on Redis
                        waiting.set()
                        run_until(loop, lambda: len(arrived) == len(queues), timeout=10)
                    else:
                        with contextlib.suppress(TimeoutError):
                            conn.drain_events(timeout=0.2)  # idle
                        waiting.set()
                        _drain_until(conn, lambda: len(arrived) == len(queues), timeout=10)
                finally:
                    waiting.set()
                    publisher.join(10)
    finally:
        delete_prefixed(redis_cluster, prefix)
    schedules.check(arrived)


def test_through_sentinel_a_consumer_hears_of_messages_another_connection_schedules(
    sentinel_setup: dict[str, int], unique_name: str
) -> None:
    url = f"sentinel+streams://127.0.0.1:{sentinel_setup['sentinel']}"
    queue = Queue(f"dw-sentinel-{unique_name}")
    options = {"master_name": "mymaster", **NOT_POLLING}
    schedules = _Schedules(url, "", queue, **options)
    arrived, on_message = _recorder()
    with Connection(url, transport_options=options) as conn:
        queue(conn.default_channel).declare()
        with Consumer(conn, [queue], on_message=on_message):
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.2)  # looked at the queue when it started
            schedules.publish([1000, 300])
            _drain_until(conn, lambda: len(arrived) == 2, timeout=10)
    schedules.check(arrived)


@contextlib.contextmanager
def _counting(port: int) -> Iterator[list[tuple[float, str]]]:
    """Every command clients send to the Redis at ``port`` (not those scripts run) while
    the block runs, with the server's time it came (seconds since the epoch)."""
    seen: list[tuple[float, str]] = []
    client = redis.Redis(port=port)
    monitor = client.monitor().__enter__()  # MONITOR sent and answered
    counting = True

    def listen() -> None:
        with contextlib.suppress(redis.RedisError, ValueError, OSError):
            while counting:
                command = monitor.next_command()
                if command.get("client_type") != "lua":
                    seen.append((float(command["time"]), str(command["command"])[:80]))

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        counting = False
        monitor.connection.disconnect()
        thread.join(5)
        client.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[int]:
    """A Redis of the test's own: nobody else's commands are counted."""
    with redis_server(tmp_path / "idle") as port:
        yield port


def _idle_commands(port: int, idle: Callable[[float], None]) -> list[str]:
    """What the consumer sent while ``idle(seconds)`` ran, after it settled (looked at
    its queue once)."""
    with _counting(port) as seen:
        settled = time.time() + 1.0
        idle(1.0 + IDLE_FOR)
        return [command for at, command in seen if at >= settled]


def test_an_idle_blocking_consumer_makes_few_round_trips(own_redis: int) -> None:
    url = f"redis+streams://127.0.0.1:{own_redis}/0"
    queue = Queue("dw-idle")
    with Connection(url, transport_options=IDLE_OPTIONS) as conn, Consumer(conn, [queue], on_message=lambda m: m.ack()):

        def idle(seconds: float) -> None:
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=left)

        counted = _idle_commands(own_redis, idle)
    assert len(counted) < IDLE_ROUND_TRIPS * IDLE_FOR, counted


def test_an_idle_consumer_under_the_hub_makes_few_round_trips(hub: Hub, own_redis: int) -> None:
    url = f"redis+streams://127.0.0.1:{own_redis}/0"
    queue = Queue("dw-idle-hub")
    with Connection(url, transport_options=IDLE_OPTIONS) as conn:
        conn.register_with_event_loop(hub)
        with Consumer(conn, [queue], on_message=lambda m: m.ack()):

            def idle(seconds: float) -> None:
                end = time.monotonic() + seconds
                run_until(hub, lambda: time.monotonic() >= end)

            counted = _idle_commands(own_redis, idle)
    assert len(counted) < IDLE_ROUND_TRIPS * IDLE_FOR, counted
