"""A publisher and a consumer running across a Redis failover (Redis Cluster or Sentinel).

The publisher publishes numbered messages round-robin to its queues, each publish retried
by the connection's retry policy; a publish that returned is *confirmed*.  The consumer
consumes every queue through ``Connection.ensure`` and acknowledges each message.  A test
quiesces both before it kills a master (every confirmed message consumed, its ack in
Redis and replicated), lets them run again, kills the master, and checks once both are
stopped: every confirmed message was consumed, and none acknowledged before the kill came
back.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

import redis

from kombu_like import Connection, Consumer, Message, Queue
from kombu_like.exceptions import MessageNacked, OperationalError

__all__ = ["FAILOVER_POLICY", "FailoverLoad", "kill_a_master_under_load", "wait_online"]

if TYPE_CHECKING:
    from t.redis_cluster import RedisClusterNodes


def wait_online(master: redis.Redis, timeout: float = 10, probe: str = "_kl_probe") -> None:
    """Until ``master``'s replica acknowledges writes (every write made before this is
    replicated then: the replication stream is ordered).  A replica just synced may answer
    its first ``WAIT`` only with its once-a-second acknowledgement.  ``probe`` is the key
    written (on a cluster node: one of its slots)."""
    deadline = time.monotonic() + timeout
    master.set(probe, 1)
    while master.wait(1, 100) < 1:
        assert time.monotonic() < deadline, "the replica does not acknowledge writes"
    master.delete(probe)
    master.close()


class FailoverLoad:
    """A publisher thread and a consumer thread on ``url``; use as a context manager (the
    block's end stops both, the consumer once it has every confirmed message)."""

    def __init__(
        self,
        url: str,
        options: Mapping[str, Any],
        names: Sequence[str],
        policy: Mapping[str, Any],
        limit: int = 2000,
    ) -> None:
        self.url, self.options, self.names, self.policy, self.limit = url, dict(options), names, dict(policy), limit
        self.confirmed: set[int] = set()
        #: deliveries of each message number
        self.deliveries: Counter[int] = Counter()
        #: confirmed publishes since the test said the servers are whole again
        self.confirmed_since_restart = 0
        self.tracebacks: list[str] = []
        self._changed = threading.Condition()
        self._restarted = False
        self._hold = False
        self._held = False
        #: what had been consumed when a wait for messages last timed out: every ack of
        #: those was written and its reply read by then
        self._settled: set[int] = set()
        self._stop_publishing = threading.Event()
        self._stop_consuming = threading.Event()
        self._threads = [
            threading.Thread(target=self._guarded, args=(self._publish,), name="publisher"),
            threading.Thread(target=self._guarded, args=(self._consume,), name="consumer"),
        ]

    # -- the threads ------------------------------------------------------------------------
    def _guarded(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:  # reported by the test, with where it was raised
            with self._changed:
                self.tracebacks.append(f"{threading.current_thread().name}: {''.join(traceback.format_exception(exc))}")
                self._changed.notify_all()

    def _publish(self) -> None:
        with Connection(self.url, transport_options=self.options) as conn:
            producer = conn.Producer()
            for n in range(self.limit):
                with self._changed:
                    self._held = self._hold
                    self._changed.notify_all()
                    self._changed.wait_for(lambda: not self._hold or self._stop_publishing.is_set(), timeout=60)
                    self._held = False
                if self._stop_publishing.is_set():
                    return
                name = self.names[n % len(self.names)]
                try:
                    producer.publish({"n": n}, routing_key=name, retry=True, retry_policy=self.policy)
                except (MessageNacked, OperationalError):
                    continue  # not confirmed: it may arrive or not
                with self._changed:
                    self.confirmed.add(n)
                    self.confirmed_since_restart += self._restarted
                    self._changed.notify_all()

    def _consume(self) -> None:
        def on_message(message: Message) -> None:
            with self._changed:
                self.deliveries[message.payload["n"]] += 1
                self._changed.notify_all()
            message.ack()

        with Connection(self.url, transport_options=self.options) as conn:
            queues = [Queue(name, routing_key=name) for name in self.names]
            consumer = Consumer(conn, queues, on_message=on_message)
            drain = conn.ensure(consumer, lambda: conn.drain_events(timeout=0.5), **self.policy)
            consumer.consume()
            while not self._stop_consuming.is_set():
                try:
                    drain()
                except socket.timeout:
                    with self._changed:
                        self._settled = set(self.deliveries)
                        self._changed.notify_all()
            consumer.cancel()

    # -- the test's side -------------------------------------------------------------------
    def __enter__(self) -> FailoverLoad:
        with Connection(self.url, transport_options=self.options) as setup:
            for name in self.names:
                Queue(name, routing_key=name)(setup.default_channel).declare()
        for thread in self._threads:
            thread.start()
        return self

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 30) -> None:
        """Until ``predicate()`` holds (checked whenever either thread made progress)."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate() or bool(self.tracebacks), timeout):
                raise AssertionError(f"{what} within {timeout} s")
            assert not self.tracebacks, "\n".join(self.tracebacks)

    def flowing(self, more: int, timeout: float = 20) -> None:
        """Until ``more`` messages beyond those delivered so far are consumed."""
        target = len(self.deliveries) + more
        self.wait_for(f"{more} more messages were not consumed", lambda: len(self.deliveries) >= target, timeout)

    def quiesce(self, timeout: float = 20) -> set[int]:
        """Hold the publisher, wait until every confirmed message is consumed and its ack
        settled in Redis; returns what was consumed (then :meth:`resume`)."""
        with self._changed:
            self._hold = True
        self.wait_for(
            "the load did not quiesce",
            lambda: self._held and self.confirmed <= self._settled,
            timeout,
        )
        return set(self._settled)

    def resume(self) -> None:
        with self._changed:
            self._hold = False
            self._changed.notify_all()

    def restarted(self, confirmed: int = 30, timeout: float = 30) -> None:
        """The servers are whole again: until ``confirmed`` publishes more are confirmed."""
        with self._changed:
            self._restarted = True
        self.wait_for(
            f"publishing did not recover ({self.confirmed_since_restart} confirmed)",
            lambda: self.confirmed_since_restart >= confirmed,
            timeout,
        )

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop_publishing.set()
        self.resume()
        self._threads[0].join(30)
        with contextlib.suppress(AssertionError):
            self.wait_for("", lambda: self.confirmed <= set(self.deliveries), 30)
        self._stop_consuming.set()
        self._threads[1].join(30)

    def check(self, acked_before: set[int]) -> None:
        """Every confirmed message consumed; none acknowledged in ``acked_before`` again."""
        assert not self.tracebacks, "\n".join(self.tracebacks)
        assert not any(thread.is_alive() for thread in self._threads)
        lost = sorted(self.confirmed - set(self.deliveries))
        assert not lost, f"{len(lost)} of {len(self.confirmed)} confirmed messages were never consumed: {lost[:20]}"
        again = sorted(n for n in acked_before if self.deliveries[n] > 1)
        assert not again, f"messages acknowledged before the failover were delivered again: {again[:20]}"


#: an attempt per node listed in the URL, a pause once each was tried: 50 rounds
FAILOVER_POLICY = MappingProxyType(
    {"max_retries": 300, "interval_start": 0.1, "interval_step": 0.1, "interval_max": 0.3}
)


def kill_a_master_under_load(
    cluster: RedisClusterNodes, url: str, options: Mapping[str, Any], names: Sequence[str]
) -> None:
    """SIGKILL the master of ``names[0]`` (queues of the session's Redis Cluster, every
    key of one in the slot of its ``{name}`` hash tag) while a publisher and a consumer
    run on ``names``: every publish that returned is consumed, both recover once the
    replica took over, and acks settled before the kill are not undone by it."""
    victim = cluster.master_of_key(f"{{{names[0]}}}")
    with FailoverLoad(url, options, names, FAILOVER_POLICY) as load:
        load.flowing(30)
        acked = load.quiesce()
        for name in names:  # the acks are on the replicas too
            node = cluster.node(cluster.master_of_key(f"{{{name}}}"))
            wait_online(node.client(), probe=f"{{{name}}}:probe")
        load.resume()
        load.flowing(10)
        promoted = cluster.kill_master(victim)
        assert cluster.master_of_key(f"{{{names[0]}}}") == promoted
        # the promoted replica has no replica of its own until the killed node is back
        cluster.restart(victim)
        load.restarted()
    load.check(acked)
