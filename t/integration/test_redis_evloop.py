"""The Redis transport driven by Kombu's Hub, on the real Redis server.

The conformance suite (``EventLoopTests``) covers delivery, prefetch, stopping, closing
and fanout under the loop; these are the Redis-specific parts: a connection cut while the
loop waits on it, and the visibility-timeout restore run from the loop's timer.
"""

from __future__ import annotations

import logging
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
from t.integration.test_redis_servers import redis_server

pytestmark = pytest.mark.redis


@pytest.fixture
def hub() -> Iterator[Hub]:
    loop = Hub()
    yield loop
    loop.close()


def run_until(hub: Hub, done: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    tick = hub.call_repeatedly(0.05, lambda: None)  # bounds each round's wait
    try:
        while not done():
            assert time.monotonic() < deadline, f"condition not met within {timeout}s of running the loop"
            hub.run_once()
    finally:
        if tick is not None:
            tick.cancel()


def kill_clients(url: str, name: str) -> int:
    """Cut every connection whose client name is ``name``, as a server restart would."""
    client = redis.Redis.from_url(url)
    try:
        ids = [c["id"] for c in client.client_list() if c.get("name") == name]
        for client_id in ids:
            client.client_kill_filter(_id=client_id)
        return len(ids)
    finally:
        client.close()


def test_connection_cut_while_waiting_raises_recoverable_and_loses_nothing(
    hub: Hub, redis_url: str, unique_name: str
) -> None:
    options = {"client_name": unique_name}
    queue = Queue(unique_name)
    received: list[tuple[Any, bool]] = []
    held: list[Message] = []

    def on_message(message: Message) -> None:
        received.append((message.payload, bool(message.delivery_info.get("redelivered"))))
        if message.payload == "acked":
            message.ack()
        else:
            held.append(message)

    with Connection(redis_url) as producer_conn:
        producer = Producer(producer_conn)
        producer.publish("acked", routing_key=queue.name, declare=[queue])
        producer.publish("held", routing_key=queue.name)
        conn = Connection(redis_url, transport_options=options)
        try:
            conn.register_with_event_loop(hub)
            with Consumer(conn, [queue], on_message=on_message):
                run_until(hub, lambda: len(received) == 2)
                # idle now: the loop waits on the take connection's tracking
                end = time.monotonic() + 0.2
                run_until(hub, lambda: time.monotonic() >= end)
                assert kill_clients(redis_url, unique_name) >= 2
                with pytest.raises(conn.recoverable_connection_errors):
                    run_until(hub, lambda: False)
                assert not hub.readers, "the cut connection's socket is still watched"
        finally:
            conn.collect()  # as Celery does with a connection that failed
        producer.publish("after the cut", routing_key=queue.name)

        # the caller reconnects and registers the new connection with the same loop
        again = Connection(redis_url, transport_options=options)
        try:
            again.register_with_event_loop(hub)
            received.clear()

            def on_again(message: Message) -> None:
                received.append((message.payload, bool(message.delivery_info.get("redelivered"))))
                message.ack()

            with Consumer(again, [queue], on_message=on_again):
                run_until(hub, lambda: len(received) >= 2)
                end = time.monotonic() + 0.2
                run_until(hub, lambda: time.monotonic() >= end)
        finally:
            again.release()
        # the unacknowledged message came back (flagged), the acked one did not
        assert sorted(received) == [("after the cut", False), ("held", True)]
        channel = producer_conn.channel()
        try:
            assert queue(channel).queue_declare(passive=True).message_count == 0
            queue(channel).delete()
        finally:
            channel.close()


def test_visibility_timeout_restore_runs_from_the_loop_timer(
    hub: Hub, redis_url: str, unique_name: str, own_unacked: dict[str, str]
) -> None:
    options = {**own_unacked, "visibility_timeout": 0.5, "unacked_restore_interval": 0.1}
    queue = Queue(unique_name)
    threads_before = set(threading.enumerate())
    with (
        Connection(redis_url, transport_options=options) as crashed,
        Connection(redis_url, transport_options=options) as conn,
    ):
        Producer(crashed).publish("orphan", routing_key=queue.name, declare=[queue])
        # taken and never acknowledged by a consumer that is gone (it never closes in time)
        taken = queue(crashed.channel()).get()
        assert taken is not None
        got: list[Message] = []
        conn.register_with_event_loop(hub)
        with Consumer(conn, [queue], on_message=got.append):
            run_until(hub, lambda: bool(got), timeout=10)
            assert set(threading.enumerate()) <= threads_before, "the restore ran on a thread"
            [message] = got
            assert message.payload == "orphan"
            assert message.delivery_info.get("redelivered") is True
            message.ack()
        queue(conn.default_channel).delete()


def test_silent_connection_under_the_loop_is_found_by_its_timer(hub: Hub, redis_url: str, unique_name: str) -> None:
    # a half-open connection never turns readable: the work on the hub's timer (a PING,
    # the take after it) must notice the missing answer within health_check_interval plus
    # socket_timeout and raise a recoverable error, as Celery's loop expects
    queue = Queue(unique_name)
    options = {"health_check_interval": 0.2, "socket_timeout": 0.3}
    with FaultProxy("127.0.0.1", 6379) as proxy, Connection(redis_url) as direct:
        Producer(direct).publish("before", routing_key=queue.name, declare=[queue])
        conn = Connection(proxy.url_for(redis_url), transport_options=options)
        try:
            hub.propagate_errors = conn.connection_errors
            conn.register_with_event_loop(hub)
            got: list[Any] = []
            with Consumer(conn, [queue], on_message=lambda m: (got.append(m.payload), m.ack())):  # type: ignore[func-returns-value]
                run_until(hub, lambda: got == ["before"])
                end = time.monotonic() + 0.1
                run_until(hub, lambda: time.monotonic() >= end)  # idle, waiting on Redis
                proxy.stall()
                started = time.monotonic()
                with pytest.raises(conn.recoverable_connection_errors):
                    run_until(hub, lambda: False, timeout=5)
                assert time.monotonic() - started < 3
        finally:
            proxy.stall(False)
            conn.collect()
        queue(direct.default_channel).delete()


def test_loop_that_runs_on_after_a_cut_gets_a_new_take_connection(hub: Hub, redis_url: str, unique_name: str) -> None:
    # a program that keeps running the same hub and connection after the error: the next
    # timer tick takes again on a new take connection, and the hub watches its socket
    queue = Queue(unique_name)
    received: list[Any] = []

    def on_message(message: Message) -> None:
        received.append(message.payload)
        message.ack()

    def run_through_errors(done: Callable[[], bool]) -> list[BaseException]:
        errors: list[BaseException] = []
        deadline = time.monotonic() + 10
        while not done():
            assert time.monotonic() < deadline, f"received {received}, errors {errors}"
            try:
                run_until(hub, done, timeout=deadline - time.monotonic())
            except conn.recoverable_connection_errors as exc:
                errors.append(exc)
        return errors

    with Connection(redis_url, transport_options={"client_name": unique_name}) as conn:
        conn.register_with_event_loop(hub)
        with Consumer(conn, [queue], on_message=on_message):
            Producer(conn).publish("before", routing_key=queue.name, declare=[queue])
            run_through_errors(lambda: received == ["before"])
            [watched_before] = hub.readers.items()
            client = redis.Redis.from_url(redis_url)
            try:
                # the take connection is the one speaking RESP3 (client tracking)
                [take] = [c for c in client.client_list() if c.get("name") == unique_name and c.get("resp") == "3"]
                client.client_kill_filter(_id=take["id"])
            finally:
                client.close()
            cut_seen = run_through_errors(lambda: bool(hub.readers) and _take_connections(redis_url, unique_name) == 1)
            assert len(cut_seen) <= 1
            [watched_after] = hub.readers.items()
            # the new socket is registered anew (a new entry, maybe under the old number)
            assert watched_after[1] is not watched_before[1]
            Producer(conn).publish("after", routing_key=queue.name)
            run_through_errors(lambda: received == ["before", "after"])
            queue(conn.default_channel).delete()


def _take_connections(url: str, name: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return sum(1 for c in client.client_list() if c.get("name") == name and c.get("resp") == "3")
    finally:
        client.close()


def test_without_client_tracking_the_loop_looks_on_its_timer(
    hub: Hub, tmp_path: Path, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # a user refused CLIENT: Redis cannot wake the hub, so the consumer takes after each
    # run of the maintenance timer (at least once a second), and a warning says so
    caplog.set_level(logging.WARNING, logger="kombu_like.transport.redis")
    with redis_server(tmp_path / "acl") as port:
        admin = redis.Redis(port=port)
        try:
            admin.execute_command("ACL", "SETUSER", "limited", "on", ">pw", "~*", "&*", "+@all", "-client")
        finally:
            admin.close()
        queue = Queue(unique_name)
        got: list[Any] = []

        def on_message(message: Message) -> None:
            got.append(message.payload)
            message.ack()

        with Connection(f"redis://limited:pw@127.0.0.1:{port}/0") as conn:
            conn.register_with_event_loop(hub)
            with Consumer(conn, [queue], on_message=on_message):
                Producer(conn).publish("one", routing_key=queue.name, declare=[queue])
                run_until(hub, lambda: got == ["one"])
                end = time.monotonic() + 0.1
                run_until(hub, lambda: time.monotonic() >= end)  # idle
                Producer(conn).publish("two", routing_key=queue.name)
                run_until(hub, lambda: got == ["one", "two"], timeout=5)
    assert any("looks for messages every" in r.getMessage() for r in caplog.records)


def test_acks_under_the_loop_reach_redis_and_a_window_short_of_a_fair_share_still_fills(
    hub: Hub, redis_url: str, unique_name: str, own_unacked: dict[str, str]
) -> None:
    # the loop takes for half a prefetch window at a time and writes acks together; room
    # for fewer is still filled, the window is never exceeded, and acks not yet written
    # when the connection closes are written then (none stays in the unacked hash)
    queue = Queue(unique_name)
    received: list[Message] = []
    with Connection(redis_url, transport_options=own_unacked) as conn:
        producer = Producer(conn)
        for n in range(7):
            producer.publish(n, routing_key=queue.name, declare=[queue])
        conn.register_with_event_loop(hub)
        consumer = Consumer(conn, [queue], on_message=received.append)
        consumer.qos(prefetch_count=4)
        with consumer:
            run_until(hub, lambda: len(received) >= 4)
            end = time.monotonic() + 0.1
            run_until(hub, lambda: time.monotonic() >= end)
            assert len(received) == 4, "more unacked messages delivered than prefetch_count allows"
            received[0].ack()  # room for one: less than half the window, filled all the same
            run_until(hub, lambda: len(received) >= 5, timeout=2)
            end = time.monotonic() + 0.1
            run_until(hub, lambda: time.monotonic() >= end)
            assert len(received) == 5
            for message in received[1:]:
                message.ack()
            client = redis.Redis.from_url(redis_url)
            # drained by hand, not by the loop: the acks kept for the loop go first; one
            # message a call, as Kombu's drain_events delivers
            conn.drain_events(timeout=5)
            assert len(received) == 6
            conn.drain_events(timeout=5)
            assert len(received) == 7
            assert client.hlen(own_unacked["unacked_key"]) == 2, "acks kept for the loop were not written"
            for message in received[5:]:
                message.ack()
        # closed right after the acks, with no loop round in between to write them
    assert sorted(m.payload for m in received) == list(range(7))
    try:
        assert client.hlen(own_unacked["unacked_key"]) == 0, "acknowledged messages left in the unacked hash"
        assert client.llen(queue.name) == 0
    finally:
        client.delete(queue.name)
        client.close()
