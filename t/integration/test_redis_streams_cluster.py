"""``redis+streams://`` on a Redis Cluster (three masters, three replicas, started by the
tests: ``t/redis_cluster.py``): the conformance suite, replication-confirmed publishes
(``wait_replicas``) and a master failing over under publishers and consumers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import redis

from kombu_like import Connection, Consumer, Message, Queue
from kombu_like.exceptions import IrrecoverableConnectionError, MessageNacked
from kombu_like.testing.conformance import TransportConformance
from kombu_like.transport.redis_streams.keys import StreamKeys
from t.integration.failover_load import kill_a_master_under_load, wait_online
from t.integration.test_redis_streams_conformance import StreamsAsyncAPITests
from t.redis_cluster import RedisClusterNodes

pytestmark = pytest.mark.redis


def delete_prefixed(cluster: RedisClusterNodes, prefix: str) -> None:
    """Delete every key under ``prefix`` on every master."""
    for port in cluster.masters():
        with contextlib.closing(cluster.node(port).client()) as client:
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                client.delete(key)


class TestRedisStreamsClusterConformance(TransportConformance, StreamsAsyncAPITests):
    """Every conformance test on both APIs, the keys spread over three masters."""

    redelivery_wait = 10.0

    @pytest.fixture(autouse=True)
    def _cluster(self, redis_cluster: RedisClusterNodes) -> Iterator[None]:
        prefix = f"klcluster-{uuid.uuid4().hex[:8]}:"
        self.url = redis_cluster.url()
        self.transport_options = MappingProxyType({"cluster": True, "global_keyprefix": prefix, "lease": 2.0})
        yield
        delete_prefixed(redis_cluster, prefix)


# -- helpers ------------------------------------------------------------------------------


def drain(conn: Connection, done: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        with contextlib.suppress(socket.timeout):
            conn.drain_events(timeout=0.5)


def names_spread(cluster: RedisClusterNodes, prefix: str, base: str) -> list[str]:
    """Four queue names: three on distinct masters, and a fourth in another slot of the
    first one's master (one XREAD may not name two slots, even on one master)."""
    first, *others = cluster.names_on_distinct_masters(base, 3)
    keys = StreamKeys(prefix)
    master = cluster.master_of_key(keys.stream(first))
    for n in range(1000):
        name = f"{base}.same.{n}"
        if cluster.master_of_key(keys.stream(name)) == master and name != first:
            return [first, *others, name]
    raise AssertionError("no second queue name on one master")


@pytest.fixture
def prefix(redis_cluster: RedisClusterNodes) -> Iterator[str]:
    """A key prefix of this test's own, its keys deleted when it ends."""
    value = f"klcluster-{uuid.uuid4().hex[:8]}:"
    yield value
    redis_cluster.heal()
    delete_prefixed(redis_cluster, value)


# -- routing and waiting across masters ---------------------------------------------------


def test_a_consumer_of_queues_on_three_masters_wakes_for_each(
    redis_cluster: RedisClusterNodes, prefix: str, unique_name: str
) -> None:
    # the wait for messages is one XREAD BLOCK per slot: each must wake the consumer
    names = names_spread(redis_cluster, prefix, unique_name)
    queues = [Queue(name, routing_key=name) for name in names]
    options = {"cluster": True, "global_keyprefix": prefix}
    got: list[str] = []

    def on_message(message: Message) -> None:
        got.append(message.payload)
        message.ack()

    with Connection(redis_cluster.url(), transport_options=options) as conn:
        with Connection(redis_cluster.url(), transport_options=options) as publisher:
            producer = publisher.Producer()
            for queue in queues:
                queue(conn.default_channel).declare()
            with Consumer(conn, queues, on_message=on_message):
                for name in reversed(names):  # the last-listed queue first
                    # published while the consumer waits (a message already there when
                    # the wait starts would not show that the wait wakes)
                    timer = threading.Timer(0.3, producer.publish, args=(name,), kwargs={"routing_key": name})
                    timer.start()
                    started = len(got)
                    drain(conn, lambda started=started: len(got) > started, 10)
                    timer.join()
                    assert got[-1:] == [name]
    assert sorted(got) == sorted(names)


def test_event_loop_consumer_of_queues_on_three_masters(
    redis_cluster: RedisClusterNodes, prefix: str, unique_name: str
) -> None:
    from kombu_like.asynchronous import Hub

    names = names_spread(redis_cluster, prefix, unique_name)
    queues = [Queue(name, routing_key=name) for name in names]
    options = {"cluster": True, "global_keyprefix": prefix}
    got: list[str] = []

    def on_message(message: Message) -> None:
        got.append(message.payload)
        message.ack()

    hub = Hub()
    try:
        with Connection(redis_cluster.url(), transport_options=options) as conn:
            with Connection(redis_cluster.url(), transport_options=options) as publisher:
                producer = publisher.Producer()
                for queue in queues:
                    queue(conn.default_channel).declare()
                with Consumer(conn, queues, on_message=on_message):
                    conn.register_with_event_loop(hub)
                    for name in reversed(names):
                        started = len(got)
                        hub.call_later(0.2, lambda name=name: producer.publish(name, routing_key=name))
                        deadline = time.monotonic() + 10
                        while len(got) == started and time.monotonic() < deadline:
                            hub.run_once()
                        assert got[-1:] == [name]
    finally:
        hub.close()
    assert sorted(got) == sorted(names)


def test_startup_nodes_any_one_answering_is_enough(redis_cluster: RedisClusterNodes, prefix: str) -> None:
    from t.conftest import free_port

    dead = f"redis+streams://127.0.0.1:{free_port()}"
    url = f"{dead};{redis_cluster.url()}"
    queue = Queue(f"{prefix}q", routing_key=f"{prefix}q")
    with Connection(url, transport_options={"cluster": True, "global_keyprefix": prefix}) as conn:
        conn.Producer().publish({"n": 1}, routing_key=queue.name, declare=[queue])
        with conn.SimpleQueue(queue) as simple:
            message = simple.get(timeout=5)
            assert message.payload == {"n": 1}
            message.ack()


@pytest.mark.parametrize("start", ["}", "~"])
def test_a_queue_named_with_a_leading_brace_keeps_its_keys_in_one_slot(
    redis_cluster: RedisClusterNodes, prefix: str, start: str
) -> None:
    # Redis hashes a whole key whose braces hold nothing ("{}x}"): such a name gets an
    # encoded hash tag, else its priority streams, delayed set and metadata spread over
    # slots and every script touching two of them fails with CROSSSLOT
    name = f"{start}odd.{uuid.uuid4().hex[:8]}"
    queue = Queue(name, routing_key=name, max_priority=3)
    options = {"cluster": True, "global_keyprefix": prefix}
    with Connection(redis_cluster.url(), transport_options=options) as conn:
        producer = conn.Producer()
        producer.publish({"n": "later"}, routing_key=name, declare=[queue], headers={"x-delay": 100})
        producer.publish({"n": "low"}, routing_key=name, priority=1)
        producer.publish({"n": "high"}, routing_key=name, priority=3)
        assert queue(conn.default_channel).queue_declare(passive=True).message_count == 2
        with conn.SimpleQueue(queue) as simple:
            got = []
            for _ in range(3):
                message = simple.get(timeout=5)
                got.append(message.payload["n"])
                message.ack()
        assert got == ["high", "low", "later"]
        queue(conn.default_channel).delete()
        assert not redis_cluster_keys(redis_cluster, prefix)


def redis_cluster_keys(cluster: RedisClusterNodes, prefix: str) -> list[bytes]:
    """The keys under ``prefix`` on every master (the declared-names sets aside)."""
    found: list[bytes] = []
    for port in cluster.masters():
        with contextlib.closing(cluster.node(port).client()) as client:
            found += [key for key in client.scan_iter(match=f"{prefix}*", count=1000) if b"{_kls" not in key]
    return found


def test_pidbox_broadcast_reaches_nodes_on_three_masters_and_every_reply_comes_back(
    redis_cluster: RedisClusterNodes, prefix: str, unique_name: str
) -> None:
    # remote control as Celery's revoke and inspect use it: one fanout publish copied
    # into each node's queue (one slot each), the replies routed to the caller's queue
    from kombu_like import pidbox

    keys = StreamKeys(prefix)
    mailbox = pidbox.Mailbox(unique_name, type="fanout")
    hostnames: dict[int, str] = {}
    for n in range(1000):
        hostname = f"n{n}@host"
        hostnames.setdefault(redis_cluster.master_of_key(keys.stream(mailbox.get_queue(hostname).name)), hostname)
        if len(hostnames) == 3:
            break
    assert len(hostnames) == 3, "no node names whose queues are on three masters"
    options = {"cluster": True, "global_keyprefix": prefix}
    with Connection(redis_cluster.url(), transport_options=options) as server:
        with Connection(redis_cluster.url(), transport_options=options) as client:
            for hostname in hostnames.values():
                node = mailbox(server).Node(hostname, state={"name": hostname}, channel=server.channel())
                node.handlers["whoami"] = lambda state: state["name"]
                node.listen()
            stop = threading.Event()

            def serve() -> None:
                while not stop.is_set():
                    with contextlib.suppress(socket.timeout):
                        server.drain_events(timeout=0.2)

            serving = threading.Thread(target=serve)
            serving.start()
            try:
                replies = mailbox(client).multi_call("whoami", timeout=5, limit=3)
            finally:
                stop.set()
                serving.join(10)
    assert sorted(replies, key=str) == sorted(({h: h} for h in hostnames.values()), key=str)


def test_cluster_option_on_a_single_server_is_refused_at_once(redis_url: str) -> None:
    url = redis_url.replace("redis://", "redis+streams://", 1)
    conn = Connection(url, transport_options={"cluster": True})
    with pytest.raises(IrrecoverableConnectionError, match="not a Redis Cluster node"):
        conn.connect()
    conn.release()


# -- publishes confirmed by replicas ------------------------------------------------------


def test_wait_replicas_publish_returns_once_replicated(redis_cluster: RedisClusterNodes, prefix: str) -> None:
    names = redis_cluster.names_on_distinct_masters("confirmed", 3)
    options = {"cluster": True, "global_keyprefix": prefix, "wait_replicas": 1, "wait_timeout": 5}
    with Connection(redis_cluster.url(), transport_options=options) as conn:
        producer = conn.Producer()
        for name in names:
            producer.publish({"q": name}, routing_key=name, declare=[Queue(name, routing_key=name)])
        with producer.batch():  # one pipeline and one WAIT per master
            for n, name in enumerate(names * 2):
                producer.publish({"n": n}, routing_key=name)
            # a delayed message is confirmed the same way
            producer.publish({"later": 1}, routing_key=names[0], headers={"x-delay": 60_000})
    # each replica has what its master took: read it there, not from the master
    keys = StreamKeys(prefix)
    for name in names:
        master = redis_cluster.master_of_key(keys.stream(name))
        replica = redis_cluster.node(redis_cluster.replica_of(master)).client()
        try:
            replica.execute_command("READONLY")
            assert replica.xlen(keys.stream(name)) == 3
            assert replica.zcard(keys.delayed(name)) == (1 if name == names[0] else 0)
        finally:
            replica.close()


def test_wait_replicas_shortfall_is_an_unconfirmed_publish(redis_cluster: RedisClusterNodes, prefix: str) -> None:
    name = f"{prefix}short"
    options = {"cluster": True, "global_keyprefix": prefix, "wait_replicas": 2, "wait_timeout": 0.2}
    with Connection(redis_cluster.url(), transport_options=options) as conn:
        producer = conn.Producer()
        queue = Queue(name, routing_key=name)
        with pytest.raises(MessageNacked, match=r"1 of the 2 replicas.*not confirmed") as info:
            producer.publish({"n": 1}, routing_key=name, declare=[queue], retry=True)
        assert repr(name) in str(info.value)
        # not confirmed is not undone: the master took it, and a consumer gets it
        with conn.SimpleQueue(queue) as simple:
            message = simple.get(timeout=5)
            assert message.payload == {"n": 1}
            message.ack()


def test_wait_replicas_on_a_single_server_with_a_replica(tmp_path: Path, unique_name: str) -> None:
    from t.integration.test_redis_servers import redis_server

    keys = StreamKeys("")
    queue = Queue(unique_name, routing_key=unique_name)
    with redis_server(tmp_path / "master", "--repl-diskless-sync-delay", "0") as master:
        options = {"wait_replicas": 1, "wait_timeout": 0.5}
        with Connection(f"redis+streams://127.0.0.1:{master}", transport_options=options) as conn:
            producer = conn.Producer()
            with redis_server(
                tmp_path / "replica", "--replicaof", "127.0.0.1", str(master), "--repl-diskless-sync-delay", "0"
            ) as replica_port:
                replica = redis.Redis(port=replica_port)
                wait_online(redis.Redis(port=master))
                producer.publish({"n": 1}, routing_key=unique_name, declare=[queue])
                assert replica.xlen(keys.stream(unique_name)) == 1  # there when publish returned
                replica.close()
            # the replica is gone: the next publish is written but not confirmed
            with pytest.raises(MessageNacked, match="0 of the 1 replicas"):
                producer.publish({"n": 2}, routing_key=unique_name)


# -- a master fails over ------------------------------------------------------------------


def test_failover_under_publishers_and_consumers_loses_no_confirmed_message(
    redis_cluster: RedisClusterNodes, prefix: str, unique_name: str
) -> None:
    # a master is SIGKILLed while a publisher (wait_replicas=1) and a consumer run on its
    # queue and on queues of the other masters: every publish that returned is consumed
    # (its replica had it when it returned), both recover once the replica took over, and
    # acks settled before the kill are not undone by it
    options = {
        "cluster": True,
        "global_keyprefix": prefix,
        "wait_replicas": 1,
        "wait_timeout": 1.0,
        "lease": 1.0,
        "socket_timeout": 2.0,
        "socket_connect_timeout": 1.0,
    }
    names = redis_cluster.names_on_distinct_masters(unique_name, 3)
    kill_a_master_under_load(redis_cluster, redis_cluster.url(all_nodes=True), options, names)


def test_masters_that_lost_their_scripts_get_them_again(
    redis_cluster: RedisClusterNodes, prefix: str, unique_name: str
) -> None:
    # a promoted replica or a restarted master has an empty script cache; redis-py's
    # cluster pipeline leaves its NOSCRIPT replies to the caller

    def forget_scripts() -> None:
        for port in redis_cluster.masters():
            with contextlib.closing(redis_cluster.node(port).client()) as client:
                client.script_flush()

    queue = Queue(unique_name, routing_key=unique_name, max_length=10)  # publishes run a script
    with Connection(redis_cluster.url(), transport_options={"cluster": True, "global_keyprefix": prefix}) as conn:
        producer = conn.Producer()
        producer.publish({"n": 1}, routing_key=unique_name, declare=[queue])
        forget_scripts()
        producer.publish({"n": 2}, routing_key=unique_name)  # a pipelined script
        with conn.SimpleQueue(queue) as simple:
            forget_scripts()
            first = simple.get(timeout=5)  # a script called alone
            forget_scripts()
            first.requeue()  # a pipelined script
            got = []
            for _ in range(2):
                message = simple.get(timeout=5)
                got.append(message.payload["n"])
                message.ack()
    assert sorted(got) == [1, 2]


def move_slot(cluster: RedisClusterNodes, slot: int, to_port: int) -> None:
    """Move ``slot`` and its keys to the master on ``to_port``, as a resharding does."""
    from_port = next(port for port in cluster.masters() if port != to_port and _owns(cluster, port, slot))
    with contextlib.closing(cluster.node(to_port).client()) as target:
        with contextlib.closing(cluster.node(from_port).client()) as source:
            target_id = target.execute_command("CLUSTER MYID")
            source_id = source.execute_command("CLUSTER MYID")
            target.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
            source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
            keys = source.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)
            if keys:
                source.execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "KEYS", *keys)
            for client in (target, source):
                client.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
    for port in cluster.masters():
        if port not in (from_port, to_port):
            with contextlib.closing(cluster.node(port).client()) as client:
                client.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
    deadline = time.monotonic() + 10
    while not all(_owns(cluster, port, slot, by=to_port) for port in cluster.masters()):
        assert time.monotonic() < deadline, f"slot {slot} did not move to {to_port}"
        time.sleep(0.05)


def _owns(cluster: RedisClusterNodes, port: int, slot: int, by: int | None = None) -> bool:
    """Whether the master on ``port`` says ``by`` (default: itself) serves ``slot``."""
    with contextlib.closing(cluster.node(port).client()) as client:
        for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
            if int(start) <= slot <= int(end):
                return int(master[1]) == (by or port)
    return False


def test_confirmed_publish_follows_a_moved_slot(
    redis_cluster: RedisClusterNodes, prefix: str, unique_name: str
) -> None:
    # the confirmed publish runs on a master's own connection (WAIT needs the writing
    # connection): when the slot moved since the slot map was read, it reads the map
    # again and goes to the new master
    stream = StreamKeys(prefix).stream(unique_name)
    queue = Queue(unique_name, routing_key=unique_name)
    options = {"cluster": True, "global_keyprefix": prefix, "wait_replicas": 1, "wait_timeout": 5}
    with Connection(redis_cluster.url(), transport_options=options) as conn:
        producer = conn.Producer()
        producer.publish({"n": 1}, routing_key=unique_name, declare=[queue])
        with contextlib.closing(redis_cluster.node(redis_cluster.masters()[0]).client()) as any_node:
            slot = int(any_node.execute_command("CLUSTER KEYSLOT", stream))
        old = redis_cluster.master_of_key(stream)
        new = next(port for port in redis_cluster.masters() if port != old)
        move_slot(redis_cluster, slot, new)
        try:
            producer.publish({"n": 2}, routing_key=unique_name)
            with contextlib.closing(redis_cluster.node(new).client()) as client:
                assert client.xlen(stream) == 2
            with conn.SimpleQueue(queue) as simple:
                got = []
                for _ in range(2):
                    message = simple.get(timeout=5)
                    got.append(message.payload["n"])
                    message.ack()
                assert sorted(got) == [1, 2]
        finally:
            move_slot(redis_cluster, slot, old)
