"""Publishes on the list transport (redis://) confirmed by replicas (``wait_replicas``):
a publish returns once the replicas asked for have the message, and raises
:class:`MessageNacked` when fewer confirm within ``wait_timeout`` -- on one server with a
replica (blocking and asyncio API), and on the session's Redis Cluster, where a batch
spread over several masters waits on each of them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from kombu_like import Connection, Queue
from kombu_like.aio import Connection as AsyncConnection
from kombu_like.exceptions import MessageNacked
from kombu_like.transport.redis.keys import KeyLayout
from t.integration.failover_load import kill_a_master_under_load, wait_online
from t.integration.test_redis_servers import redis_server
from t.redis_cluster import RedisClusterNodes

pytestmark = pytest.mark.redis


@pytest.fixture
def master_and_replica(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A master and its replica, replication online."""
    with redis_server(tmp_path / "master", "--repl-diskless-sync-delay", "0") as master:
        with redis_server(
            tmp_path / "replica", "--replicaof", "127.0.0.1", str(master), "--repl-diskless-sync-delay", "0"
        ) as replica:
            wait_online(redis.Redis(port=master))
            yield master, replica


def test_a_confirmed_publish_is_on_the_replica_when_it_returns(
    master_and_replica: tuple[int, int], unique_name: str
) -> None:
    master, replica_port = master_and_replica
    key = KeyLayout().list_key(unique_name)
    queue = Queue(unique_name, routing_key=unique_name)
    options = {"wait_replicas": 1, "wait_timeout": 2}
    with (
        Connection(f"redis://127.0.0.1:{master}", transport_options=options) as conn,
        contextlib.closing(redis.Redis(port=replica_port)) as replica,
    ):
        producer = conn.Producer()
        producer.publish({"n": 0}, routing_key=unique_name, declare=[queue])
        assert replica.llen(key) == 1
        with producer.batch():  # one WAIT after the batch's writes
            for n in range(1, 4):
                producer.publish({"n": n}, routing_key=unique_name)
        assert replica.llen(key) == 4


def test_too_few_replicas_is_an_unconfirmed_publish_that_was_still_written(
    master_and_replica: tuple[int, int], unique_name: str
) -> None:
    master, _ = master_and_replica
    queue = Queue(unique_name, routing_key=unique_name)
    options = {"wait_replicas": 2, "wait_timeout": 0.2}
    with Connection(f"redis://127.0.0.1:{master}", transport_options=options) as conn:
        producer = conn.Producer()
        with pytest.raises(MessageNacked, match=rf"'{unique_name}'.*127\.0\.0\.1:{master}.*1 of the 2 replicas"):
            producer.publish({"n": 1}, routing_key=unique_name, declare=[queue])
        with pytest.raises(MessageNacked, match="batch of 2 messages.*1 of the 2 replicas"):
            with producer.batch():
                producer.publish({"n": 2}, routing_key=unique_name)
                producer.publish({"n": 3}, routing_key=unique_name)
        # not confirmed is not undone: the master took them, and a consumer gets them
        with conn.SimpleQueue(queue) as simple:
            got = []
            for _ in range(3):
                message = simple.get(timeout=5)
                got.append(message.payload["n"])
                message.ack()
        assert sorted(got) == [1, 2, 3]


@pytest.mark.parametrize("scheme", ["redis", "redis+streams"])
def test_the_asyncio_api_awaits_the_replicas(
    master_and_replica: tuple[int, int], unique_name: str, scheme: str
) -> None:
    # the native driver (redis://) and the I/O-thread driver (redis+streams://) hand
    # publishes over unless they are confirmed: with wait_replicas the awaited publish is
    # the confirmed one, its shortfall raised there
    master, replica_port = master_and_replica

    async def publish(replicas: int) -> None:
        options = {"wait_replicas": replicas, "wait_timeout": 0.3}
        async with AsyncConnection(f"{scheme}://127.0.0.1:{master}", transport_options=options) as conn:
            queue = Queue(unique_name, routing_key=unique_name)
            await conn.Producer().publish("x", routing_key=unique_name, declare=[queue])

    asyncio.run(publish(1))
    if scheme == "redis":
        with contextlib.closing(redis.Redis(port=replica_port)) as replica:
            assert replica.llen(KeyLayout().list_key(unique_name)) == 1
    with pytest.raises(MessageNacked, match="1 of the 2 replicas"):
        asyncio.run(publish(2))


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="wait_timeout must be shorter than socket_timeout"):
        Connection("redis://127.0.0.1:6379/0", transport_options={"wait_replicas": 1, "socket_timeout": 1}).connect()
    with pytest.raises(ValueError, match="wait_replicas must be a number of replicas"):
        Connection("redis://127.0.0.1:6379/0", transport_options={"wait_replicas": -1}).connect()


@pytest.mark.redis_cluster
def test_on_a_cluster_each_master_that_took_a_write_waits_for_its_replica(
    redis_cluster: RedisClusterNodes, unique_name: str
) -> None:
    names = redis_cluster.names_on_distinct_masters(unique_name, 3)
    keys = KeyLayout(cluster=True)
    options = {"key_layout": "cluster", "wait_replicas": 1, "wait_timeout": 5}
    with Connection(redis_cluster.url("redis"), transport_options=options) as conn:
        producer = conn.Producer()
        for name in names:
            producer.publish({"q": name}, routing_key=name, declare=[Queue(name, routing_key=name)])
        with producer.batch():  # writes on three masters, a WAIT on each
            for n, name in enumerate(names * 2):
                producer.publish({"n": n}, routing_key=name)
        # each replica has what its master took when the publish returned
        for name in names:
            master = redis_cluster.master_of_key(keys.list_key(name))
            with contextlib.closing(redis_cluster.node(redis_cluster.replica_of(master)).client()) as replica:
                replica.execute_command("READONLY")
                assert replica.llen(keys.list_key(name)) == 3
        options = {**options, "wait_replicas": 2, "wait_timeout": 0.2}
    with Connection(redis_cluster.url("redis"), transport_options=options) as conn:
        with pytest.raises(MessageNacked, match="Redis Cluster masters that took it.*1 of the 2 replicas"):
            conn.Producer().publish({"n": -1}, routing_key=names[0])
        for name in names:
            conn.SimpleQueue(name).clear()


@pytest.mark.redis_cluster
def test_a_master_killed_under_confirmed_publishes_loses_none_of_them(
    redis_cluster: RedisClusterNodes, unique_name: str
) -> None:
    # a master is SIGKILLed while a publisher (wait_replicas=1) and a consumer run on its
    # queue and on queues of the other masters: every publish that returned is consumed
    # (its replica had it when it returned), both recover once the replica took over, and
    # acks settled before the kill are not undone by it
    options = {
        "cluster": True,
        "wait_replicas": 1,
        "wait_timeout": 1.0,
        "socket_timeout": 2.0,
        "socket_connect_timeout": 1.0,
        "visibility_timeout": 5.0,
    }
    names = redis_cluster.names_on_distinct_masters(unique_name, 3)
    kill_a_master_under_load(redis_cluster, redis_cluster.url("redis", all_nodes=True), options, names)
