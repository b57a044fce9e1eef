"""Connection, channel and producer pools on memory://."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kombu_like import Connection, pools
from kombu_like.exceptions import ChannelLimitExceeded, ConnectionLimitExceeded, LimitExceeded
from kombu_like.pools import ChannelPool, ConnectionPool, PooledConnection, ProducerPool
from kombu_like.transport.memory import Broker


@pytest.fixture
def conn() -> Iterator[Connection]:
    connection = Connection("memory://", transport_options={"broker": Broker()})
    yield connection
    connection.release()


@pytest.fixture
def global_pools() -> Iterator[None]:
    """Leave the process-wide pools and limit as they were."""
    limit = pools.get_limit()
    pools.reset()
    yield
    pools.reset()
    pools.set_limit(limit)


def _consume_all(conn: Connection, queue: str, expected: int) -> list[Any]:
    bodies = []
    with conn.clone().SimpleQueue(queue) as simple:
        for _ in range(expected):
            message = simple.get(timeout=5)
            bodies.append(message.payload)
            message.ack()
    return bodies


class TestConnectionPool:
    def test_acquire_gives_pooled_connection_to_same_broker(self, conn: Connection) -> None:
        pool = conn.Pool(limit=2)
        assert isinstance(pool, ConnectionPool)
        pooled = pool.acquire()
        assert isinstance(pooled, PooledConnection)
        assert pooled is not conn
        # same broker: a message published on the pooled connection is seen by conn
        pooled.SimpleQueue("pool_q").put("via pool")
        assert _consume_all(conn, "pool_q", 1) == ["via pool"]
        pooled.release()

    def test_released_connection_is_reused(self, conn: Connection) -> None:
        pool = conn.Pool(limit=2)
        first = pool.acquire()
        first.connect()
        first.release()
        again = pool.acquire()
        assert again is first
        assert again.connected
        again.release()
        assert pool.in_use == 0 and pool.idle == 1

    def test_limit_exceeded_without_blocking(self, conn: Connection) -> None:
        pool = conn.Pool(limit=2)
        held = [pool.acquire(), pool.acquire()]
        with pytest.raises(ConnectionLimitExceeded) as info:
            pool.acquire()
        assert "all 2" in str(info.value)
        assert isinstance(info.value, LimitExceeded)
        for item in held:
            item.release()
        pool.acquire().release()

    def test_blocking_acquire_times_out(self, conn: Connection) -> None:
        pool = conn.Pool(limit=1)
        held = pool.acquire()
        with pytest.raises(ConnectionLimitExceeded, match="after waiting"):
            pool.acquire(block=True, timeout=0.05)
        held.release()

    def test_blocking_acquire_gets_the_released_connection(self, conn: Connection) -> None:
        pool = conn.Pool(limit=1)
        held = pool.acquire()
        release_now = threading.Event()

        def release_later() -> None:
            release_now.wait(5)
            held.release()

        thread = threading.Thread(target=release_later)
        thread.start()
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(pool.acquire(block=True, timeout=10)))
        waiter.start()
        release_now.set()
        waiter.join(10)
        thread.join(10)
        assert got == [held]
        got[0].release()

    def test_with_block_releases(self, conn: Connection) -> None:
        pool = conn.Pool(limit=1)
        with pool.acquire() as pooled:
            assert pool.in_use == 1
            pooled.connect()
        assert pool.in_use == 0
        assert pool.acquire() is pooled

    def test_exception_in_with_block_replaces_connection(self, conn: Connection) -> None:
        pool = conn.Pool(limit=1)
        with pytest.raises(RuntimeError):
            with pool.acquire() as pooled:
                pooled.connect()
                raise RuntimeError("broken")
        assert not pooled.connected
        fresh = pool.acquire()
        assert fresh is not pooled
        fresh.release()

    def test_close_returns_to_pool(self, conn: Connection) -> None:
        pool = conn.Pool(limit=1)
        pooled = pool.acquire()
        pooled.connect()
        pooled.close()
        assert not pooled.connected
        assert pool.in_use == 0
        again = pool.acquire()
        assert again is pooled
        # a closed pooled connection reconnects on use
        again.SimpleQueue("reconnect_q").put(1)
        assert again.connected
        again.release()

    def test_double_release_is_harmless(self, conn: Connection) -> None:
        pool = conn.Pool(limit=2)
        pooled = pool.acquire()
        pooled.release()
        pooled.release()
        assert pool.idle == 1
        a, b = pool.acquire(), pool.acquire()
        assert a is not b
        a.release()
        b.release()

    def test_unlimited_pool_closes_what_comes_back(self, conn: Connection) -> None:
        pool = conn.Pool(limit=None)
        first = pool.acquire()
        first.connect()
        first.release()
        assert not first.connected
        second = pool.acquire()
        assert second is not first
        second.release()

    def test_threads_never_exceed_the_limit(self, conn: Connection) -> None:
        pool = conn.Pool(limit=3)
        lock = threading.Lock()
        holding = [0]
        most = [0]
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                for _ in range(20):
                    item = pool.acquire(block=True, timeout=10)
                    with lock:
                        holding[0] += 1
                        most[0] = max(most[0], holding[0])
                    time.sleep(0.001)
                    with lock:
                        holding[0] -= 1
                    item.release()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert 1 <= most[0] <= 3
        assert pool.in_use == 0
        assert pool.idle <= 3

    def test_growing_the_limit_wakes_a_waiting_acquire(self, conn: Connection) -> None:
        pool = conn.Pool(limit=1)
        held = pool.acquire()
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(pool.acquire(block=True, timeout=10)))
        waiter.start()
        pool.limit = 2
        waiter.join(10)
        assert len(got) == 1 and got[0] is not held
        got[0].release()
        held.release()

    def test_shrinking_in_use_pool(self, conn: Connection) -> None:
        pool = conn.Pool(limit=3)
        held = pool.acquire()
        with pytest.raises(RuntimeError, match="Can't shrink pool when in use"):
            pool.resize(1)
        assert pool.limit == 3
        pool.resize(1, force=True)
        assert pool.limit == 1
        held.release()

    def test_bool_limit_is_refused(self, conn: Connection) -> None:
        with pytest.raises(TypeError, match="not bool"):
            conn.Pool(limit=True)
        pool = conn.Pool(limit=3)
        with pytest.raises(TypeError):
            pool.limit = True

    def test_closed_pool_refuses_acquire(self, conn: Connection) -> None:
        pool = conn.Pool(limit=2)
        held = pool.acquire()
        held.connect()
        pool.force_close_all()
        assert not held.connected
        with pytest.raises(RuntimeError, match="closed pool"):
            pool.acquire()

    def test_acquire_channel(self, conn: Connection) -> None:
        pool = conn.Pool(limit=1)
        with pool.acquire_channel() as (pooled, channel):
            assert channel is pooled.default_channel
        assert pool.in_use == 0

    def test_repr_has_no_password(self) -> None:
        secret = Connection("memory://user:s3cret@localhost/", transport_options={"broker": Broker()})
        pool = secret.Pool(limit=1)
        pooled = pool.acquire()
        assert "s3cret" not in repr(pool) and "s3cret" not in repr(pooled)
        pooled.release()


class TestChannelPool:
    def test_channels_are_reused_and_limited(self, conn: Connection) -> None:
        pool = conn.ChannelPool(limit=2)
        assert isinstance(pool, ChannelPool)
        a = pool.acquire()
        b = pool.acquire()
        assert a is not b
        with pytest.raises(ChannelLimitExceeded):
            pool.acquire()
        a.release()
        assert pool.acquire() is a

    def test_closed_channel_is_not_handed_out_again(self, conn: Connection) -> None:
        pool = conn.ChannelPool(limit=1)
        channel = pool.acquire()
        channel.close()
        channel.release()
        fresh = pool.acquire()
        assert fresh is not channel
        assert fresh.is_open
        fresh.release()

    def test_pooled_channel_publishes(self, conn: Connection) -> None:
        pool = conn.ChannelPool(limit=1)
        channel = pool.acquire()
        producer = conn.Producer(channel)
        producer.publish({"n": 1}, routing_key="chan_pool_q", declare=[])
        channel.release()
        assert _consume_all(conn, "chan_pool_q", 1) == [{"n": 1}]


@pytest.mark.usefixtures("global_pools")
class TestGlobalPools:
    def test_equal_connections_share_a_pool(self) -> None:
        broker = Broker()
        c1 = Connection("memory://localhost/a", transport_options={"broker": broker})
        c2 = Connection("memory://localhost/b", transport_options={"broker": broker})
        c3 = Connection("memory://localhost/a", transport_options={"broker": broker})
        c4 = Connection("memory://localhost/a", transport_options={"broker": broker, "x": 1})
        assert pools.connections[c1] is pools.connections[c3]
        assert pools.connections[c1] is not pools.connections[c2]
        assert pools.connections[c1] is not pools.connections[c4]
        held = pools.connections[c1].acquire()
        assert pools.connections[c3].in_use == 1
        held.release()

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    def test_a_forked_child_forgets_the_parents_pools(self, conn: Connection) -> None:
        # the parent's sockets are not the child's: its pools and pool groups start empty
        own = conn.Pool(2)
        held = own.acquire()
        held.connect()
        shared = pools.connections[conn].acquire()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            ok = own._closed and own.in_use == 0 and len(pools.connections) == 0
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # the parent keeps its own
        assert not own._closed and own.in_use == 1 and pools.connections[conn].in_use == 1
        held.release()
        shared.release()

    def test_pool_limit_follows_global_limit(self, conn: Connection) -> None:
        pools.set_limit(3)
        assert pools.get_limit() == 3
        pool = pools.connections[conn]
        assert pool.limit == 3
        assert pools.producers[conn].limit == 3
        assert pools.producers[conn].connections is pool
        pools.set_limit(5)
        assert pool.limit == 5

    def test_set_limit_refuses_to_shrink_in_use_pools(self, conn: Connection) -> None:
        pools.set_limit(4)
        pool = pools.connections[conn]
        held = [pool.acquire(), pool.acquire()]
        with pytest.raises(RuntimeError):
            pools.set_limit(1)
        assert pools.get_limit() == 4 and pool.limit == 4
        pools.set_limit(1, force=True)
        assert pools.get_limit() == 1 and pool.limit == 1
        for item in held:
            item.release()

    def test_set_limit_rejects_bool(self) -> None:
        with pytest.raises(TypeError, match="not bool"):
            pools.set_limit(True)

    def test_producer_pool_publishes_and_returns_connection(self, conn: Connection) -> None:
        pool = pools.producers[conn]
        assert isinstance(pool, ProducerPool)
        with pool.acquire(block=True, timeout=5) as producer:
            producer.publish({"hello": "pool"}, routing_key="producer_pool_q")
            assert pools.connections[conn].in_use == 1
        assert pools.connections[conn].in_use == 0
        assert pool.in_use == 0
        # the same producer object comes back, on a connection again
        with pool.acquire(block=True, timeout=5) as again:
            assert again is producer
            again.publish({"hello": "again"}, routing_key="producer_pool_q")
        assert _consume_all(conn, "producer_pool_q", 2) == [{"hello": "pool"}, {"hello": "again"}]

    def test_producer_pool_limit(self, conn: Connection) -> None:
        pools.set_limit(1)
        pool = pools.producers[conn]
        held = pool.acquire()
        with pytest.raises(LimitExceeded):
            pool.acquire()
        with pytest.raises(LimitExceeded):
            pool.acquire(block=True, timeout=0.05)
        held.release()

    def test_producer_pool_threads(self, conn: Connection) -> None:
        pools.set_limit(2)
        errors: list[BaseException] = []

        def publish(n: int) -> None:
            try:
                for i in range(10):
                    with pools.producers[conn].acquire(block=True, timeout=10) as producer:
                        producer.publish({"n": n * 100 + i}, routing_key="threads_q")
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=publish, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        bodies = _consume_all(conn, "threads_q", 40)
        assert sorted(b["n"] for b in bodies) == sorted(n * 100 + i for n in range(4) for i in range(10))
        assert pools.connections[conn].in_use == 0

    def test_reset_forgets_pools(self, conn: Connection) -> None:
        pool = pools.connections[conn]
        held = pool.acquire()
        held.connect()
        pools.reset()
        assert not held.connected
        assert conn not in pools.connections
        assert pools.connections[conn] is not pool

    def test_module_level_names(self, conn: Connection) -> None:
        import kombu_like

        assert kombu_like.connections is pools.connections
        assert kombu_like.producers is pools.producers
