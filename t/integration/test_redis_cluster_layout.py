"""The list transport's cluster key layout on a Redis Cluster node.

The node is a cluster of its own, serving every slot: it refuses any script or command
whose keys span two slots (``CROSSSLOT``), as a cluster of many nodes does, and never
redirects one.  The conformance suite (and durable fanout) runs on it with
``key_layout="cluster"``, and a killed consumer's message comes back from its queue's own
unacked store; connecting with Kombu's layout is refused, on this node and on the
session's cluster of three masters.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from kombu_like import Connection, Consumer, Message, Producer, Queue
from kombu_like.exceptions import IrrecoverableConnectionError
from kombu_like.testing.conformance import ExchangeTypeTests, TransportConformance
from t.conftest import free_port
from t.integration.test_redis_conformance import AMQP_SEMANTICS
from t.integration.test_redis_reliability import kill_consumer_holding
from t.redis_cluster import ClusterNode, RedisClusterNodes

pytestmark = pytest.mark.redis


def _start_one_node_cluster(workdir: Path) -> ClusterNode:
    port, bus = free_port(), free_port()
    while bus == port:
        bus = free_port()
    node = ClusterNode(port, bus, workdir)
    node.start()
    client = node.client()
    try:
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 10
        while client.cluster("INFO").get("cluster_state") != "ok":
            if time.monotonic() > deadline:
                node.stop()
                raise RuntimeError("the one-node cluster did not come up")
            time.sleep(0.05)
    finally:
        client.close()
    return node


@pytest.fixture(scope="module")
def cluster_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterNode]:
    node = _start_one_node_cluster(tmp_path_factory.mktemp("one-node-cluster"))
    try:
        yield node
    finally:
        node.stop()


class TestConformanceOnAClusterNode(TransportConformance):
    """Everything the transport does, with no script or command spanning two slots."""

    redelivery_wait = 10.0
    quiet = 0.2
    transport_options = MappingProxyType({**AMQP_SEMANTICS, "key_layout": "cluster"})
    apis = ("sync",)

    @pytest.fixture(autouse=True)
    def _broker(self, cluster_node: ClusterNode) -> None:
        self.url = f"redis://{cluster_node.address}/0"


def test_kombus_layout_is_refused_by_a_cluster_node(cluster_node: ClusterNode, unique_name: str) -> None:
    # Kombu's take script names the global unacked hash next to the queue's list: the
    # node would refuse it at the first take; connecting says what to set instead
    with Connection(f"redis://{cluster_node.address}/0") as conn:
        with pytest.raises(IrrecoverableConnectionError, match="key_layout"):
            conn.connect()


@pytest.mark.xdist_group("redis-cluster")
def test_kombus_layout_is_refused_by_a_cluster_of_several_masters(redis_cluster: RedisClusterNodes) -> None:
    # the cluster layout routes across the masters (t/integration/test_redis_list_cluster.py);
    # Kombu's cannot: connecting fails at once, naming the way out
    with Connection(redis_cluster.url("redis")) as conn:
        with pytest.raises(IrrecoverableConnectionError, match="key_layout.*served by 3 masters"):
            conn.connect()


def test_without_client_tracking_a_consumer_of_several_queues_gets_every_queues_messages(
    cluster_node: ClusterNode, unique_name: str
) -> None:
    # a user refused CLIENT waits with BRPOP, which may name one slot's lists only: it
    # waits on the first queue, and the others are taken after each maintenance round
    admin = cluster_node.client()
    try:
        admin.execute_command("ACL", "SETUSER", unique_name, "on", ">pw", "~*", "&*", "+@all", "-client")
    finally:
        admin.close()
    queues = [Queue(f"{unique_name}.{i}", routing_key=f"{unique_name}.{i}") for i in range(3)]
    options: dict[str, Any] = {"key_layout": "cluster", "unacked_restore_interval": 0.3}
    got: list[Any] = []

    def on_message(message: Message) -> None:
        got.append(message.payload)
        message.ack()

    url = f"redis://{unique_name}:pw@{cluster_node.address}/0"
    with Connection(url, transport_options=options) as conn:
        with Consumer(conn, queues, on_message=on_message):
            for queue in queues:
                Producer(conn).publish(queue.name, routing_key=queue.name, declare=[queue])
            deadline = time.monotonic() + 10
            while len(got) < 3 and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    pass

            # published while the consumer waits: on the first queue (BRPOP) and another
            def publish_later() -> None:
                with Connection(url, transport_options=options) as other:
                    for queue in (queues[0], queues[2]):
                        Producer(other).publish(f"later {queue.name}", routing_key=queue.name)

            timer = threading.Timer(0.5, publish_later)
            timer.start()
            try:
                while len(got) < 5 and time.monotonic() < deadline:
                    try:
                        conn.drain_events(timeout=1)
                    except TimeoutError:
                        pass
            finally:
                timer.join(10)
    assert sorted(got) == sorted([q.name for q in queues] + [f"later {queues[0].name}", f"later {queues[2].name}"])


class TestDurableFanoutOnAClusterNode(ExchangeTypeTests):
    """Fanout copied into every bound queue's list, each copy in its queue's slot."""

    redelivery_wait = 10.0
    quiet = 0.2
    transport_options = MappingProxyType({**AMQP_SEMANTICS, "key_layout": "cluster", "fanout_mode": "durable"})
    apis = ("sync",)

    @pytest.fixture(autouse=True)
    def _broker(self, cluster_node: ClusterNode) -> None:
        self.url = f"redis://{cluster_node.address}/0"


def test_a_killed_consumers_message_comes_back_from_its_queues_own_unacked_store(
    cluster_node: ClusterNode, unique_name: str
) -> None:
    # the sweep of a connection consuming another queue finds it: it reads the unacked
    # index of every declared queue
    url = f"redis://{cluster_node.address}/0"
    options: dict[str, Any] = {"key_layout": "cluster"}
    queue = Queue(unique_name, routing_key=unique_name)
    with Connection(url, transport_options=options) as conn:
        Producer(conn).publish({"n": 1}, routing_key=unique_name, declare=[queue], serializer="json")
    kill_consumer_holding(url, unique_name, options=options)
    client = cluster_node.client()
    try:
        assert client.llen(f"{{{unique_name}}}") == 0
        assert client.hlen(f"{{{unique_name}}}:unacked") == 1
        assert not client.exists("unacked") and not client.exists("unacked_index")
        sweeping = {**options, "visibility_timeout": 1, "unacked_restore_interval": 0.2}
        other = Queue(f"{unique_name}.other", routing_key=f"{unique_name}.other")
        with Connection(url, transport_options=sweeping) as conn, Consumer(conn, [other], callbacks=[]):
            deadline = time.monotonic() + 10
            while client.llen(f"{{{unique_name}}}") == 0 and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0.3)
        assert client.hlen(f"{{{unique_name}}}:unacked") == 0
        got: list[Message] = []
        with Connection(url, transport_options=options) as conn:
            with Consumer(conn, [queue], on_message=lambda m: (got.append(m), m.ack())):
                conn.drain_events(timeout=5)
        [message] = got
        assert message.payload == {"n": 1}
        assert message.redelivered
        assert client.hlen(f"{{{unique_name}}}:unacked") == 0
    finally:
        client.close()


def test_the_cluster_option_on_a_server_that_is_no_cluster_node_is_refused(redis_url: str) -> None:
    # retrying cannot make it one: the error says to turn the option off
    with Connection(redis_url, transport_options={"cluster": True}) as conn:
        with pytest.raises(IrrecoverableConnectionError, match="cluster option"):
            conn.connect()
