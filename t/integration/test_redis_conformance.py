"""The transport conformance suite on the real Redis server.

Kombu's Redis defaults differ from AMQP on purpose in two places (lower priority numbers
are consumed first; a fanout binding key is a pattern on the routing key), so the suite
runs once with the options that select AMQP semantics -- plain and under a
``global_keyprefix`` -- and once with every default, where those two behaviours are
checked as Kombu defines them instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import pytest
import redis

from kombu_like import Connection, Exchange, Message
from kombu_like.testing.conformance import AsyncAPITests, ExchangeTypeTests, TransportConformance
from kombu_like.testing.hostile import HostileInputTests

pytestmark = pytest.mark.redis

AMQP_SEMANTICS: Mapping[str, Any] = MappingProxyType({"priority_order": "amqp", "fanout_patterns": False})


class RedisBroker:
    """Points the suite at the Redis of ``redis_url`` and checks nothing is left behind."""

    #: seconds the consumer sits on an unacked message after its connection went away;
    #: restore on close is immediate, so this only bounds slow machines
    redelivery_wait = 10.0
    quiet = 0.2

    @pytest.fixture(autouse=True)
    def _broker(self, redis_url: str) -> None:
        self.url = redis_url


class TestRedisConformance(RedisBroker, TransportConformance):
    transport_options = AMQP_SEMANTICS
    # the same options under a key prefix run on both APIs below: once is enough for the
    # asyncio API's (the suite's time is at its budget)
    apis = ("sync",)


class TestRedisConformanceWithKeyprefix(RedisBroker, TransportConformance, AsyncAPITests):
    """Every key and pub/sub channel under a prefix of its own; none outside it.  The
    asyncio API's tests run here too (cancels need real time to land mid-delivery: a
    take is a round trip)."""

    cancel_pause = 0.00025
    cancel_count = 300

    @pytest.fixture(autouse=True)
    def _prefix(self, redis_url: str) -> Iterator[None]:
        prefix = f"kltest-{uuid.uuid4().hex[:8]}:"
        self.transport_options = MappingProxyType({**AMQP_SEMANTICS, "global_keyprefix": prefix})
        yield
        client = redis.Redis.from_url(redis_url)
        try:
            names = [*self._queues_to_delete, *self._exchanges_to_delete]
            outside = [
                key
                for name in names
                for key in client.scan_iter(match=f"*{name}*")
                if not key.startswith(prefix.encode())
            ]
            assert not outside, f"keys written outside global_keyprefix: {outside[:5]}"
        finally:
            for key in client.scan_iter(match=f"{prefix}*"):
                client.delete(key)
            client.close()


class TestRedisConformanceClusterLayout(RedisBroker, TransportConformance, AsyncAPITests):
    """The cluster key layout on one Redis: every key of a queue (lists, unacked store,
    dead-letter list) and of an exchange's bindings carries its hash tag, under the
    prefix; only the two declaration hashes are global."""

    cancel_pause = 0.00025
    cancel_count = 300

    @pytest.fixture(autouse=True)
    def _prefix(self, redis_url: str) -> Iterator[None]:
        prefix = f"kltest-{uuid.uuid4().hex[:8]}:"
        self.transport_options = MappingProxyType(
            {**AMQP_SEMANTICS, "global_keyprefix": prefix, "key_layout": "cluster"}
        )
        yield
        client = redis.Redis.from_url(redis_url)
        try:
            keys = [key.decode() for key in client.scan_iter(match=f"{prefix}*")]
            declarations = {f"{prefix}_kombu_like.queues", f"{prefix}_kombu_like.exchanges"}
            untagged = [
                key for key in keys if key not in declarations and not key.startswith(f"{prefix}{{") and "{" not in key
            ]
            assert not untagged, f"keys without a hash tag: {untagged[:5]}"
            assert not [key for key in keys if key == f"{prefix}unacked" or key == f"{prefix}unacked_index"]
            for key in keys:
                client.delete(key)
        finally:
            client.close()


class TestRedisHostileInputClusterLayout(RedisBroker, HostileInputTests):
    """Hostile messages under the cluster layout (dead-letter lists carry the queue's tag)."""

    transport_options = MappingProxyType({**AMQP_SEMANTICS, "key_layout": "cluster"})


class TestRedisConformanceDurableFanout(RedisBroker, ExchangeTypeTests):
    """Fanout copied into every bound queue's list: it reaches queues nobody consumes."""

    transport_options = MappingProxyType({**AMQP_SEMANTICS, "fanout_mode": "durable"})

    def test_fanout_reaches_queue_without_consumer(self, conn: Connection) -> None:
        exchange = self.new_exchange("durable_fanout", "fanout")
        queues = [self.new_queue(f"durable_fanout_{i}", exchange, "") for i in range(2)]
        self.declare(conn, *queues)
        conn.Producer().publish({"n": 1}, exchange=exchange, routing_key="k")
        for queue in queues:
            assert self.message_count(conn, queue) == 1
            [message] = self.collect(conn, queue, 1)
            assert message.payload == {"n": 1}


class TestRedisKombuDefaults(RedisBroker, TransportConformance):
    """Every option at Kombu's default."""

    def test_capabilities_follow_kombu_semantics(self, conn: Connection) -> None:
        capabilities = conn.transport.capabilities
        assert capabilities.priority is False
        assert capabilities.fanout is False
        assert capabilities.extra["priority_order"] == "kombu"

    def test_lower_priority_number_first(self, conn: Connection) -> None:
        queue = self.new_queue("kombu_prio", max_priority=10)
        # every declaration of a priority queue under Kombu's order warns the user that it
        # is lowest-first; here that order is what is being checked
        with pytest.warns(RuntimeWarning, match=r"priority 0 is served first"):
            for priority in (1, 9, 0, 5):
                self.publish(conn, priority, queue, priority=priority)
            received = self.collect(conn, queue, 4, prefetch_count=1)
        # steps 0-2, 3-5, 6-8 and 9 are separate lists, emptied lowest step first
        assert [m.payload for m in received] == [1, 0, 5, 9]

    def test_fanout_reaches_every_bound_queue(self, conn: Connection) -> None:
        # replaces the AMQP test: with fanout_patterns (Kombu's default) a message goes to
        # channel /<db>.<exchange>/<routing key> and a binding key is a glob on it ('#'
        # read as '*'); an empty routing key or binding key means /<db>.<exchange> itself
        exchange: Exchange = self.new_exchange("kombu_fanout", "fanout")
        queues = {
            "any": self.new_queue("kombu_fanout_any", exchange, "#"),
            "empty": self.new_queue("kombu_fanout_empty", exchange, ""),
            "other": self.new_queue("kombu_fanout_other", exchange, "other"),
        }
        self.declare(conn, *queues.values())
        got: dict[str, list[str]] = {label: [] for label in queues}
        consumers = []
        for label, queue in queues.items():

            def on_message(message: Message, label: str = label) -> None:
                got[label].append(message.payload["key"])
                message.ack()

            consumer = conn.Consumer([queue], on_message=on_message)
            consumer.consume()
            consumers.append(consumer)
        producer = conn.Producer()
        for key in ("", "k.x"):
            producer.publish({"key": key}, exchange=exchange, routing_key=key)
        self.drain_until(conn, lambda: sum(map(len, got.values())) >= 2)
        self.drain_quietly(conn)
        for consumer in consumers:
            consumer.cancel()
        assert got == {"any": ["k.x"], "empty": [""], "other": []}

    def test_fanout_message_is_not_kept_for_a_queue_nobody_consumes(self, conn: Connection) -> None:
        exchange = self.new_exchange("kombu_fanout_lossy", "fanout")
        queue = self.new_queue("kombu_fanout_lossy", exchange, "")
        self.declare(conn, queue)
        conn.Producer().publish("nobody listens", exchange=exchange, routing_key="")
        assert self.message_count(conn, queue) == 0
        received: list[Message] = []
        self.drain_quietly(conn)
        assert received == []


class TestRedisHostileInput(RedisBroker, HostileInputTests):
    """Hostile messages, some of them pushed onto the queue's list by another program."""

    transport_options = AMQP_SEMANTICS
