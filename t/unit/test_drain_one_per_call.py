"""drain_events hands out one message a call while takes from the store stay batched.

Messages taken and not handed out yet count against prefetch and go back to the head of
their queue, in order and not marked redelivered, whenever their consumer could no longer
receive them.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from kombu_like import Connection, Consumer, Message, Producer, Queue
from kombu_like.asynchronous import Hub


def publish(conn: Connection, queue: Queue, *bodies: Any) -> None:
    producer = Producer(conn)
    for body in bodies:
        producer.publish(body, routing_key=queue.name, declare=[queue])


def ready(conn: Connection, queue: Queue) -> int:
    return int(queue(conn.default_channel).queue_declare(passive=True).message_count)


def consume_all(conn: Connection, queue: Queue, count: int) -> list[tuple[Any, bool]]:
    """``count`` messages of ``queue`` from a new channel: (body, redelivered), acked."""
    got: list[tuple[Any, bool]] = []

    def on_message(message: Message) -> None:
        got.append((message.payload, message.redelivered))
        message.ack()

    channel = conn.channel()
    with Consumer(channel, [queue], on_message=on_message):
        for _ in range(count):
            conn.drain_events(timeout=5)
    channel.close()
    return got


def test_taken_messages_count_against_prefetch(connect: Callable[..., Connection]) -> None:
    conn, other = connect(), connect()
    queue = Queue("one_prefetch")
    publish(conn, queue, *range(5))
    received: list[Message] = []
    with Consumer(conn.channel(), [queue], on_message=received.append, prefetch_count=2):
        conn.drain_events(timeout=5)
        assert [m.payload for m in received] == [0]
        # the second was taken with the first, no more (only this connection counts
        # messages it took and has not handed out as still in the queue)
        assert ready(other, queue) == 3
        assert ready(conn, queue) == 4
        conn.drain_events(timeout=5)
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=0.05)  # the window is full
        received[0].ack()
        conn.drain_events(timeout=5)
        assert [m.payload for m in received] == [0, 1, 2]


def test_cancelled_consumer_gets_nothing_more_and_the_rest_goes_back_in_order(conn: Connection) -> None:
    first, second = Queue("one_cancel_a"), Queue("one_cancel_b")
    publish(conn, first, "a0", "a1", "a2")
    got: list[Any] = []
    with Consumer(conn, [second], callbacks=[lambda body, m: (got.append(body), m.ack())]):
        consumer = Consumer(conn, [first], callbacks=[lambda body, m: (got.append(body), m.ack())])
        consumer.consume()
        conn.drain_events(timeout=5)
        assert got == ["a0"]
        consumer.cancel()
        assert ready(conn, first) == 2
        publish(conn, second, "b0")
        conn.drain_events(timeout=5)
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=0.05)
    assert got == ["a0", "b0"]
    assert consume_all(conn, first, 2) == [("a1", False), ("a2", False)]


@pytest.mark.parametrize("how", ["basic_recover", "channel close", "connection close"])
def test_given_back_with_the_unacknowledged_ones(how: str, connect: Callable[..., Connection]) -> None:
    conn = connect()
    queue = Queue(f"one_back_{how.replace(' ', '_')}")
    publish(conn, queue, *range(4))
    channel = conn.channel()
    received: list[Message] = []
    with Consumer(channel, [queue], on_message=received.append):
        conn.drain_events(timeout=5)
        assert [m.payload for m in received] == [0]
        if how == "basic_recover":
            channel.basic_recover(requeue=True)
        elif how == "channel close":
            channel.close()
        else:
            conn.release()
        other = conn if how != "connection close" else connect()
        assert ready(other, queue) == 4
    # the unacknowledged one first, then those never handed out, not marked redelivered
    assert consume_all(other, queue, 4) == [(0, True), (1, False), (2, False), (3, False)]


def test_smaller_prefetch_window_gives_back_what_it_cannot_hold(connect: Callable[..., Connection]) -> None:
    conn, other = connect(), connect()
    queue = Queue("one_qos")
    publish(conn, queue, *range(5))
    received: list[Message] = []
    with Consumer(conn.channel(), [queue], on_message=received.append) as consumer:
        conn.drain_events(timeout=5)
        consumer.qos(prefetch_count=2)
        assert ready(other, queue) == 4
        conn.drain_events(timeout=5)
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=0.05)
    assert [m.payload for m in received] == [0, 1]


def test_event_loop_hands_out_what_drain_events_left(connect: Callable[..., Connection]) -> None:
    conn = connect(transport_options={"event_loop": True})
    queue = Queue("one_hub")
    publish(conn, queue, *range(4))
    got: list[Any] = []
    hub = Hub()
    try:
        with Consumer(conn, [queue], callbacks=[lambda body, m: (got.append(body), m.ack())]):
            conn.drain_events(timeout=5)
            assert got == [0]
            conn.register_with_event_loop(hub)
            for _ in range(20):
                if len(got) == 4:
                    break
                hub.run_once()
    finally:
        hub.close()
    assert got == [0, 1, 2, 3]


@pytest.mark.parametrize("how", ["purge", "delete"])
@pytest.mark.parametrize("transport", ["memory", "sqlite"])
def test_taken_messages_are_counted_and_purged_with_the_queue(
    transport: str, how: str, connect: Callable[..., Connection], tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    if transport == "memory":
        conn = connect()
    else:
        conn = Connection(f"sqlite:///{tmp_path / 'one.db'}")
        request.addfinalizer(conn.release)
    queue = Queue(f"one_purge_{how}")
    publish(conn, queue, *range(10))
    got: list[Any] = []
    with Consumer(conn.channel(), [queue], callbacks=[lambda body, m: (got.append(body), m.ack())]):
        conn.drain_events(timeout=5)
        # taken with the first and not handed out yet: still in the queue for its users
        assert ready(conn, queue) == 9
        channel = conn.channel()
        fetched = queue(channel).get()
        assert fetched is not None and fetched.payload == 1  # the head of the queue
        fetched.ack()
        assert ready(conn, queue) == 8
        assert (queue(channel).purge() if how == "purge" else queue(channel).delete()) == 8
        queue(channel).declare()
        assert ready(conn, queue) == 0
        publish(conn, queue, "after")
        if how == "purge":
            conn.drain_events(timeout=5)  # the next one is the new one, to the same consumer
    if how == "delete":
        # its consumers went with the queue
        assert consume_all(conn, queue, 1) == [("after", False)]
    assert got == ([0, "after"] if how == "purge" else [0])
    unacked_count = getattr(conn.default_channel.store, "unacked_count", None)
    if unacked_count is not None:
        # forgotten by the store too: nothing left to come back when a lease runs out
        assert unacked_count(queue.name) == 0


@pytest.mark.parametrize("driver", ["drain_events", "event loop"])
def test_callback_purging_its_queue_mid_take(driver: str, connect: Callable[..., Connection]) -> None:
    conn = connect(transport_options={"event_loop": True})
    queue = Queue(f"one_purge_cb_{driver.replace(' ', '_')}")
    publish(conn, queue, *range(10))
    got: list[Any] = []
    purged: list[int] = []

    def on_body(body: Any, message: Message) -> None:
        got.append(body)
        message.ack()
        if body == 0:
            purged.append(queue(conn.channel()).purge())

    hub = Hub()
    try:
        with Consumer(conn, [queue], callbacks=[on_body]):
            if driver == "event loop":
                conn.register_with_event_loop(hub)
            for expected in (1, 2):
                if expected == 2:
                    publish(conn, queue, "after")
                if driver == "event loop":
                    for _ in range(20):
                        if len(got) >= expected:
                            break
                        hub.run_once()
                else:
                    conn.drain_events(timeout=5)
    finally:
        hub.close()
    assert purged == [9]
    assert got == [0, "after"]
