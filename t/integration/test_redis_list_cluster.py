"""The list transport (redis://) on the session's Redis Cluster of three masters.

With ``key_layout="cluster"`` a URL naming any node of the cluster finds its masters and
routes each command to the master of its key's slot (kombu_like.transport.redis.cluster):
the conformance suite runs there, as do a slot moved to another master under load
(``ASK`` and ``MOVED`` met for real) and a master killed under load (failover).
"""

from __future__ import annotations

import asyncio
from types import MappingProxyType

import pytest

from kombu_like.aio import Connection as AsyncConnection
from kombu_like.exceptions import IrrecoverableConnectionError
from kombu_like.testing.conformance import ExchangeTypeTests, TransportConformance
from t.integration.test_redis_conformance import AMQP_SEMANTICS
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


def test_asyncio_without_the_cluster_option_is_refused_naming_it(redis_cluster: RedisClusterNodes) -> None:
    # the asyncio loop's own connections talk to one server; the option selects the
    # routed store (on the I/O-thread driver, as above)
    async def connect() -> None:
        async with AsyncConnection(redis_cluster.url("redis"), transport_options={"key_layout": "cluster"}) as conn:
            await conn.connect()

    with pytest.raises(IrrecoverableConnectionError, match=r"served by 3 masters.*'cluster': True"):
        asyncio.run(connect())
