"""The list transport (redis://) on the session's Redis Cluster of three masters.

With ``key_layout="cluster"`` a URL naming any node of the cluster finds its masters and
routes each command to the master of its key's slot (kombu_like.transport.redis.cluster):
the conformance suite runs there, as do a slot moved to another master under load
(``ASK`` and ``MOVED`` met for real) and a master killed under load (failover).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any

import pytest

from kombu_like import Connection, Consumer, Exchange, Message, Producer, Queue
from kombu_like.aio import Connection as AsyncConnection
from kombu_like.asynchronous import Hub
from kombu_like.testing.conformance import ExchangeTypeTests, TransportConformance
from kombu_like.transport.redis import looping
from kombu_like.transport.redis.compat import key_slot
from t.integration.test_redis_conformance import AMQP_SEMANTICS
from t.integration.test_redis_evloop import run_until
from t.redis_cluster import RedisClusterNodes

pytestmark = [pytest.mark.redis, pytest.mark.redis_cluster]

CLUSTER_LAYOUT = MappingProxyType({**AMQP_SEMANTICS, "key_layout": "cluster"})


class TestConformanceOnACluster(TransportConformance):
    """Everything the transport does, its queues spread over three masters."""

    redelivery_wait = 10.0
    quiet = 0.2
    transport_options = CLUSTER_LAYOUT
    apis = ("sync",)

    @pytest.fixture(autouse=True)
    def _broker(self, redis_cluster: RedisClusterNodes) -> None:
        self.url = redis_cluster.url("redis")


class TestDurableFanoutOnACluster(ExchangeTypeTests):
    """Fanout copied into every bound queue's list, on whichever master serves it."""

    redelivery_wait = 10.0
    quiet = 0.2
    transport_options = MappingProxyType({**CLUSTER_LAYOUT, "fanout_mode": "durable"})
    apis = ("sync",)

    @pytest.fixture(autouse=True)
    def _broker(self, redis_cluster: RedisClusterNodes) -> None:
        self.url = redis_cluster.url("redis")


class TestAsyncioOnACluster(TransportConformance):
    """The asyncio API with the cluster option: the I/O-thread driver runs the routed store."""

    redelivery_wait = 10.0
    quiet = 0.2
    transport_options = MappingProxyType({**AMQP_SEMANTICS, "cluster": True})
    apis = ("async",)

    @pytest.fixture(autouse=True)
    def _broker(self, redis_cluster: RedisClusterNodes) -> None:
        self.url = redis_cluster.url("redis")


def test_asyncio_finds_a_cluster_of_several_masters_without_the_option(
    redis_cluster: RedisClusterNodes, unique_name: str
) -> None:
    # the loop's own connection meets the cluster; the routed store takes over
    async def round_trip() -> Any:
        options = {"key_layout": "cluster"}
        async with AsyncConnection(redis_cluster.url("redis"), transport_options=options) as conn:
            queue = Queue(unique_name, routing_key=unique_name)
            await conn.Producer().publish("there", routing_key=unique_name, declare=[queue])
            async with conn.SimpleQueue(queue) as simple:
                message = await simple.get(timeout=5)
                await message.ack()
                return message.payload

    assert asyncio.run(round_trip()) == "there"


# -- redirects and failover, for real ---------------------------------------------------


class Traffic:
    """A publisher thread (numbered messages, retry=True) and a consumer thread (acks
    each) on ``queues``, on their own connections; what was confirmed and received."""

    def __init__(self, url: str, queues: list[Queue], options: dict[str, Any]) -> None:
        self.url, self.queues, self.options = url, queues, options
        self.confirmed: set[int] = set()
        self.received: list[int] = []
        self.errors: list[str] = []
        self.stop_publishing = threading.Event()
        self.stop_consuming = threading.Event()
        #: set by the test to pause publishing (the publisher waits on it between messages)
        self.go = threading.Event()
        self.go.set()
        self.paused = threading.Event()
        self.flowing = threading.Event()
        self.threads = [
            threading.Thread(target=self._guard, args=(self._publish,), name="publisher"),
            threading.Thread(target=self._guard, args=(self._consume,), name="consumer"),
        ]

    def _guard(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:  # reported by the test, with where it was raised
            self.errors.append(f"{threading.current_thread().name}: {''.join(traceback.format_exception(exc))}")

    def _publish(self) -> None:
        with Connection(self.url, transport_options=self.options) as conn:
            producer = conn.Producer()
            n = 0
            while not self.stop_publishing.is_set() and n < 5000:
                if not self.go.is_set():
                    self.paused.set()
                    if not self.go.wait(30):
                        raise TimeoutError("publishing was paused for too long")
                    self.paused.clear()
                queue = self.queues[n % len(self.queues)]
                producer.publish({"n": n}, routing_key=queue.name, retry=True, retry_policy=POLICY)
                self.confirmed.add(n)
                n += 1
                # a pace the consumer keeps up with, so the queues stay short and busy
                self.stop_publishing.wait(0.002)

    def _consume(self) -> None:
        def on_message(message: Message) -> None:
            self.received.append(message.payload["n"])
            message.ack()
            if len(self.received) >= 50:
                self.flowing.set()

        with Connection(self.url, transport_options=self.options) as conn:
            consumer = Consumer(conn, self.queues, on_message=on_message)
            drain = conn.ensure(consumer, lambda: conn.drain_events(timeout=0.5), **POLICY)
            consumer.consume()
            while not self.stop_consuming.is_set():
                with contextlib.suppress(socket.timeout):
                    drain()
            consumer.cancel()

    def __enter__(self) -> Traffic:
        with Connection(self.url, transport_options=self.options) as setup:
            for queue in self.queues:
                queue(setup.default_channel).declare()
        for thread in self.threads:
            thread.start()
        assert self.flowing.wait(20), f"nothing flows: {self.errors}"
        return self

    def finish(self, published_more: int = 100) -> None:
        """Publish ``published_more`` messages more, stop, and wait until every confirmed
        message arrived."""
        target = len(self.confirmed) + published_more
        deadline = time.monotonic() + 30
        while len(self.confirmed) < target and not self.errors and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stop_publishing.set()
        self.threads[0].join(30)
        while not self.confirmed <= set(self.received) and not self.errors and time.monotonic() < deadline:
            time.sleep(0.05)

    def __exit__(self, *exc_info: Any) -> None:
        self.go.set()
        self.stop_publishing.set()
        self.stop_consuming.set()
        for thread in self.threads:
            thread.join(30)


POLICY: dict[str, Any] = {"max_retries": 200, "interval_start": 0.1, "interval_step": 0.1, "interval_max": 0.3}
OPTIONS: dict[str, Any] = {"key_layout": "cluster", "socket_timeout": 2.0, "socket_connect_timeout": 1.0}


def _node_id(cluster: RedisClusterNodes, port: int) -> str:
    with contextlib.closing(cluster.node(port).client()) as client:
        return str(client.execute_command("CLUSTER", "MYID").decode())


def move_slot(cluster: RedisClusterNodes, slot: int, source: int, target: int) -> None:
    """Move ``slot`` from master ``source`` to master ``target`` as redis-cli's resharding
    does: IMPORTING/MIGRATING, its keys MIGRATEd, then the slot given to ``target``.
    Clients keep working throughout, meeting ASK, TRYAGAIN and then MOVED."""
    source_id, target_id = _node_id(cluster, source), _node_id(cluster, target)
    src, dst = cluster.node(source).client(), cluster.node(target).client()
    try:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10):
            # one key at a time: between two, the slot's scripts find some keys here and
            # some there, and clients meet ASK and TRYAGAIN
            for key in keys:
                src.execute_command("MIGRATE", "127.0.0.1", target, key, 0, 5000)
        for client in (dst, src):
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        for port in cluster.masters():
            if port not in (source, target):
                with contextlib.closing(cluster.node(port).client()) as other:
                    other.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    finally:
        src.close()
        dst.close()


def test_a_queues_slot_moved_to_another_master_under_load_loses_and_repeats_nothing(
    redis_cluster: RedisClusterNodes, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "kombu_like.transport.redis")
    queues = [Queue(f"{unique_name}.{i}", routing_key=f"{unique_name}.{i}") for i in range(2)]
    tag = f"{{{queues[0].name}}}"
    source = redis_cluster.master_of_key(tag)
    target = next(port for port in redis_cluster.masters() if port != source)
    with Traffic(redis_cluster.url("redis"), queues, dict(OPTIONS)) as traffic:
        move_slot(redis_cluster, key_slot(tag.encode()), source, target)
        assert redis_cluster.master_of_key(tag) == target
        traffic.finish()
    assert not traffic.errors, "\n".join(traffic.errors)
    lost = sorted(traffic.confirmed - set(traffic.received))
    assert not lost, f"{len(lost)} of {len(traffic.confirmed)} messages were never consumed: {lost[:20]}"
    # no connection failed: nothing is delivered twice, and every ack reached the master
    # of its queue's slot (an ack written to the old one came back redirected)
    assert len(traffic.received) == len(set(traffic.received))
    for queue in queues:
        with contextlib.closing(redis_cluster.node(redis_cluster.master_of_key(f"{{{queue.name}}}")).client()) as c:
            assert c.hlen(f"{{{queue.name}}}:unacked") == 0
    assert any("MOVED" in record.getMessage() for record in caplog.records)


def test_a_master_killed_under_load_loses_no_stored_message(redis_cluster: RedisClusterNodes, unique_name: str) -> None:
    # its replica takes over; the publisher and the consumer (on queues of that master
    # and of another) reconnect through their retry policies, and every message whose
    # publish returned before the kill (replicated: WAIT) or after it is consumed.  The
    # URL names the killed master alone: the reconnects ask the nodes the slot map named
    queues = [Queue(f"{unique_name}.{i}", routing_key=f"{unique_name}.{i}") for i in range(2)]
    tag = f"{{{queues[0].name}}}"
    victim = redis_cluster.master_of_key(tag)
    options = {**OPTIONS, "visibility_timeout": 5, "unacked_restore_interval": 1}
    with Traffic(f"redis://127.0.0.1:{victim}", queues, options) as traffic:
        traffic.go.clear()
        assert traffic.paused.wait(10), f"the publisher did not pause: {traffic.errors}"
        with contextlib.closing(redis_cluster.node(victim).client()) as client:
            # replication keeps order: once the replica has this write it has every
            # publish before it
            client.set(f"{tag}.probe", 1)
            assert client.wait(1, 5000) == 1
        before = len(traffic.confirmed)
        promoted = redis_cluster.kill_master(victim)
        traffic.go.set()
        assert redis_cluster.master_of_key(tag) == promoted
        traffic.finish()
    assert not traffic.errors, "\n".join(traffic.errors)
    assert len(traffic.confirmed) >= before + 100
    lost = sorted(traffic.confirmed - set(traffic.received))
    assert not lost, f"{len(lost)} of {len(traffic.confirmed)} messages were never consumed: {lost[:20]}"


@pytest.fixture
def loop() -> Iterator[Hub]:
    hub = Hub()
    yield hub
    hub.close()


def test_the_hub_is_woken_by_each_master_of_the_queues_it_waits_on(
    redis_cluster: RedisClusterNodes, unique_name: str, loop: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the loop's timer would look for messages only every 30 s here: what arrives sooner
    # was announced by the master of its queue (client tracking on each master's take
    # connection, all watched through one descriptor)
    monkeypatch.setattr(looping, "MAINTENANCE_TICK", 30.0)
    url = redis_cluster.url("redis")
    options = {"key_layout": "cluster", "unacked_restore_interval": 30, "health_check_interval": 0}
    queues = [Queue(name, routing_key=name) for name in redis_cluster.names_on_distinct_masters(unique_name, 3)]
    received: list[str] = []

    def on_message(message: Message) -> None:
        received.append(message.payload)
        message.ack()

    with (
        Connection(url, transport_options=options) as producer_conn,
        Connection(url, transport_options=options) as conn,
    ):
        producer = producer_conn.Producer()
        for queue in queues:
            queue(producer_conn.default_channel).declare()
        conn.register_with_event_loop(loop)
        with Consumer(conn, queues, on_message=on_message):
            end = time.monotonic() + 0.3
            run_until(loop, lambda: time.monotonic() >= end)  # idle: every queue found empty
            for number, queue in enumerate(queues, 1):
                producer.publish(queue.name, routing_key=queue.name)
                run_until(loop, lambda n=number: len(received) == n, timeout=10)  # type: ignore[misc]
        assert received == [queue.name for queue in queues]


def test_an_ack_written_to_the_master_a_slot_left_reaches_its_new_master(
    redis_cluster: RedisClusterNodes, unique_name: str
) -> None:
    # acks are written without waiting for their replies: the MOVED read later sends the
    # ack again, to the new master, instead of dropping it (the message would come back)
    queue = Queue(unique_name, routing_key=unique_name)
    tag = f"{{{unique_name}}}"
    got: list[Message] = []
    with Connection(redis_cluster.url("redis"), transport_options=OPTIONS) as conn:
        Producer(conn).publish("held", routing_key=unique_name, declare=[queue])
        with Consumer(conn, [queue], on_message=got.append):
            conn.drain_events(timeout=5)
            [message] = got
            source = redis_cluster.master_of_key(tag)
            target = next(port for port in redis_cluster.masters() if port != source)
            move_slot(redis_cluster, key_slot(tag.encode()), source, target)
            with contextlib.closing(redis_cluster.node(target).client()) as client:
                assert client.hlen(f"{tag}:unacked") == 1
            message.ack()  # written to the source, which answers MOVED; read with the next command
    with contextlib.closing(redis_cluster.node(target).client()) as client:
        assert client.hlen(f"{tag}:unacked") == 0


def test_a_binding_made_elsewhere_reaches_a_publisher_whose_bindings_are_cached(
    redis_cluster: RedisClusterNodes, unique_name: str
) -> None:
    # the binding cache is kept fresh by each master: the exchange's table is tracked on
    # the master of its slot, whichever that is
    url = redis_cluster.url("redis")
    exchange = Exchange(unique_name, type="direct")
    first, second = (Queue(f"{unique_name}.{i}", exchange, routing_key="k") for i in (1, 2))
    with Connection(url, transport_options=OPTIONS) as publisher, Connection(url, transport_options=OPTIONS) as other:
        producer = publisher.Producer()
        producer.publish("one", exchange=exchange, routing_key="k", declare=[first])
        producer.publish("two", exchange=exchange, routing_key="k")  # routed from the cache
        second(other.default_channel).declare()  # bound by another connection
        producer.publish("three", exchange=exchange, routing_key="k")
        channel = other.default_channel
        assert first(channel).queue_declare(passive=True).message_count == 3
        assert second(channel).queue_declare(passive=True).message_count == 1
        cache = publisher.default_channel.store.cache  # type: ignore[attr-defined]
        assert cache.enabled and cache.tables  # it was used
        for queue in (first, second):
            queue(channel).delete()


def test_under_the_hub_a_killed_master_raises_recoverable_and_a_new_connection_carries_on(
    redis_cluster: RedisClusterNodes, unique_name: str, loop: Hub
) -> None:
    # as a Celery worker sees it: the loop raises a recoverable error when the master of
    # a consumed queue dies, the caller collects the connection and registers a new one
    queue = Queue(unique_name, routing_key=unique_name)
    victim = redis_cluster.master_of_key(f"{{{unique_name}}}")
    url = redis_cluster.url("redis", all_nodes=True)
    received: list[str] = []

    def on_message(message: Message) -> None:
        received.append(message.payload)
        message.ack()

    conn = Connection(url, transport_options=OPTIONS)
    try:
        conn.register_with_event_loop(loop)
        with Consumer(conn, [queue], on_message=on_message):
            Producer(conn).publish("before", routing_key=unique_name, declare=[queue])
            run_until(loop, lambda: received == ["before"])
            redis_cluster.kill_master(victim)
            with pytest.raises(conn.recoverable_connection_errors):
                run_until(loop, lambda: False, timeout=30)
            assert not loop.readers, "the cut connections are still watched"
    finally:
        conn.collect()
    again = Connection(url, transport_options=OPTIONS)
    try:
        again.ensure_connection(max_retries=50, interval_start=0.1, interval_step=0.1, interval_max=0.3)
        again.register_with_event_loop(loop)
        with Consumer(again, [queue], on_message=on_message):
            Producer(again).publish("after", routing_key=unique_name)
            run_until(loop, lambda: received == ["before", "after"])
    finally:
        again.release()
