"""The SQS transport driven by Kombu's Hub, against moto's standalone server.

What the conformance suite's event-loop tests cannot see: how many messages the receive
thread takes out of SQS (read behind the library's back with a plain boto3 client), that
messages received and never handed to a consumer are made visible again when the
connection closes, and that the receive thread is gone by then.
"""

from __future__ import annotations

import select
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from kombu_like import Connection, Consumer, Message, Queue
from kombu_like.asynchronous import Hub

pytestmark = pytest.mark.sqs

OPTIONS = {"region": "us-east-1", "wait_time_seconds": 1}
WAIT = 20.0


@pytest.fixture
def raw(sqs_endpoint: str) -> Any:
    """A plain boto3 client on the moto server, to look at SQS behind the library's back."""
    session = boto3.Session(region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    return session.client("sqs", endpoint_url=sqs_endpoint)


@pytest.fixture
def connect(sqs_endpoint: str) -> Iterator[Any]:
    """Make connections to moto, released after the test."""
    made: list[Connection] = []
    host = sqs_endpoint.split("://", 1)[1]

    def make() -> Connection:
        conn = Connection(f"sqs://testing:testing@{host}", transport_options=dict(OPTIONS))
        made.append(conn)
        return conn

    yield make
    for conn in made:
        conn.release()


@pytest.fixture
def hub() -> Iterator[Hub]:
    loop = Hub()
    yield loop
    loop.close()


@pytest.fixture
def queue(raw: Any) -> Iterator[Queue]:
    name = f"evloop-{uuid.uuid4().hex[:12]}"
    yield Queue(name)
    try:
        raw.delete_queue(QueueUrl=raw.get_queue_url(QueueName=name)["QueueUrl"])
    except raw.exceptions.QueueDoesNotExist:
        pass


def counts(raw: Any, name: str) -> tuple[int, int]:
    """(visible, in flight) messages of SQS queue ``name``; moto's counts are exact."""
    url = raw.get_queue_url(QueueName=name)["QueueUrl"]
    values = raw.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(values["ApproximateNumberOfMessages"]), int(values["ApproximateNumberOfMessagesNotVisible"])


def receive_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "kombu_like-sqs-receive"]


def run_until(hub: Hub, done: Any, timeout: float = WAIT) -> None:
    """Run ``hub`` until ``done()``; fail after ``timeout`` seconds."""
    stopper = hub.call_later(timeout, hub.stop)
    ticker = hub.call_repeatedly(0.05, lambda: done() and hub.stop())
    try:
        if not done():
            hub.run_forever()
    finally:
        stopper.cancel()
        ticker.cancel()
    assert done(), f"condition not met within {timeout}s of running the event loop"


def run_for(hub: Hub, seconds: float) -> None:
    stopper = hub.call_later(seconds, hub.stop)
    try:
        hub.run_forever()
    finally:
        stopper.cancel()


def publish(conn: Connection, queue: Queue, bodies: range) -> None:
    producer = conn.Producer()
    for body in bodies:
        producer.publish(body, routing_key=queue.name, declare=[queue])


def test_the_receive_thread_takes_no_more_than_the_prefetch_room(
    connect: Any, hub: Hub, raw: Any, queue: Queue
) -> None:
    publish(connect(), queue, range(6))
    conn = connect()
    conn.register_with_event_loop(hub)
    received: list[Message] = []
    with Consumer(conn, [queue], prefetch_count=2, on_message=received.append):
        run_until(hub, lambda: len(received) >= 2)
        run_for(hub, 1.5)  # a long poll and more: the thread asks for nothing past the room
        assert len(received) == 2
        assert counts(raw, queue.name) == (4, 2), "messages taken out of SQS beyond the prefetch room"
        received[0].ack()
        run_until(hub, lambda: len(received) >= 3)
        run_for(hub, 0.5)
        assert len(received) == 3
    conn.release()
    # the unacknowledged ones are back at once, and the receive thread is gone
    assert counts(raw, queue.name) == (5, 0)
    assert not receive_threads()


def test_closing_gives_back_received_messages_no_consumer_got(connect: Any, hub: Hub, raw: Any, queue: Queue) -> None:
    publisher = connect()
    publish(publisher, queue, range(0))
    conn = connect()
    conn.register_with_event_loop(hub)
    received: list[Any] = []
    with Consumer(conn, [queue], prefetch_count=4, on_message=lambda m: received.append(m.payload)):
        run_for(hub, 0.3)  # the queue is empty: the thread long-polls for the consumer
        publish(publisher, queue, range(1))
        # the thread got it and woke the loop, which does not run now: received, not delivered
        fds = list(hub.readers)
        readable, _, _ = select.select(fds, [], [], WAIT)
        assert readable, "the receive thread never signalled the loop"
        assert counts(raw, queue.name) == (0, 1)
        assert received == []
        conn.release()
    # visible again as soon as close returns, not after the visibility timeout (30 min)
    assert counts(raw, queue.name) == (1, 0)
    assert not receive_threads()
    assert not set(fds) & set(hub.readers)


def test_a_hub_stopped_in_the_middle_loses_nothing(connect: Any, hub: Hub, raw: Any, queue: Queue) -> None:
    publish(connect(), queue, range(5))
    conn = connect()
    conn.register_with_event_loop(hub)
    seen: list[Any] = []

    def on_message(message: Message) -> None:
        seen.append(message.payload)
        if len(seen) == 1:
            hub.stop()

    with Consumer(conn, [queue], prefetch_count=3, on_message=on_message):
        stopper = hub.call_later(WAIT, hub.stop)
        hub.run_forever()
        stopper.cancel()
        assert seen, "nothing was delivered before the hub stopped"
    conn.release()  # nothing acknowledged: delivered, received and in-flight all come back
    assert not receive_threads()
    back: list[Any] = []
    again = connect()
    with Consumer(again, [queue], on_message=lambda m: (back.append(m.payload), m.ack())):
        while len(back) < 5:
            again.drain_events(timeout=WAIT)
    assert sorted(back) == [0, 1, 2, 3, 4]


def test_received_messages_nobody_takes_go_back_without_closing(
    connect: Any, hub: Hub, raw: Any, queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kombu_like.transport.sqs import receiver

    monkeypatch.setattr(receiver, "UNTAKEN_RELEASE", 0.3)
    publisher = connect()
    publish(publisher, queue, range(0))
    conn = connect()
    conn.register_with_event_loop(hub)
    consumer = Consumer(conn, [queue], prefetch_count=4, on_message=lambda m: pytest.fail("delivered after cancel"))
    consumer.consume()
    run_for(hub, 0.3)
    publish(publisher, queue, range(2))
    readable, _, _ = select.select(list(hub.readers), [], [], WAIT)
    assert readable, "the receive thread never signalled the loop"
    consumer.cancel()  # received for the consumer, which is gone before the loop runs
    released = threading.Event()
    ticker = hub.call_repeatedly(0.1, lambda: counts(raw, queue.name) == (2, 0) and released.set())
    run_until(hub, released.is_set)
    ticker.cancel()
    assert conn.connected, "the connection stays open: nothing was closed to give them back"


def test_a_failed_receive_is_raised_from_the_loop_translated(connect: Any, hub: Hub, raw: Any, queue: Queue) -> None:
    from kombu_like.exceptions import NotFound

    publish(connect(), queue, range(0))
    conn = connect()
    conn.register_with_event_loop(hub)
    with Consumer(conn, [queue], on_message=lambda m: m.ack()):
        run_for(hub, 0.2)
        raw.delete_queue(QueueUrl=raw.get_queue_url(QueueName=queue.name)["QueueUrl"])
        with pytest.raises(NotFound, match=queue.name):
            run_for(hub, WAIT)
    conn.release()
    assert not receive_threads()


def test_one_consumer_of_two_queues_gets_both(connect: Any, hub: Hub, raw: Any) -> None:
    queues = [Queue(f"evloop-{uuid.uuid4().hex[:12]}") for _ in range(2)]
    try:
        publisher = connect()
        conn = connect()
        conn.register_with_event_loop(hub)
        received: list[Any] = []
        with Consumer(conn, queues, on_message=lambda m: (received.append(m.payload), m.ack())):
            publish(publisher, queues[0], range(1))
            run_for(hub, 0.2)
            publish(publisher, queues[1], range(1, 2))
            run_until(hub, lambda: len(received) >= 2)
        assert sorted(received) == [0, 1]
    finally:
        for queue in queues:
            raw.delete_queue(QueueUrl=raw.get_queue_url(QueueName=queue.name)["QueueUrl"])


def test_a_collected_connection_leaves_the_loop_without_waiting_for_the_long_poll(
    connect: Any, hub: Hub, raw: Any, queue: Queue
) -> None:
    publish(connect(), queue, range(0))
    conn = connect()
    conn.register_with_event_loop(hub)
    with Consumer(conn, [queue], on_message=lambda m: m.ack()):
        run_for(hub, 0.3)  # the receive thread is in its long poll now
        watched = set(hub.readers)
        assert watched and receive_threads()
        conn.collect()  # deemed broken: forgotten without a word to SQS
        assert not watched & set(hub.readers), "a forgotten connection's descriptor stays in the loop"
        for thread in receive_threads():
            thread.join(WAIT)  # it ends by itself once its long poll returns
        assert not receive_threads()
        run_for(hub, 0.2)  # and the loop runs on without it


def test_queue_get_under_the_hub_receives_from_its_own_queue(connect: Any, hub: Hub, raw: Any, queue: Queue) -> None:
    """``Queue.get()`` on a connection whose consumer of another queue runs on the hub asks
    SQS for that queue's head itself, and the consumer keeps its receive thread."""
    other = Queue(f"evloop-{uuid.uuid4().hex[:12]}")
    try:
        publisher = connect()
        publish(publisher, other, range(2))
        conn = connect()
        conn.register_with_event_loop(hub)
        received: list[Any] = []
        with Consumer(conn, [queue], on_message=lambda m: (received.append(m.payload), m.ack())):
            run_for(hub, 0.2)  # the receive thread long-polls the consumer's queue
            got = other(conn.default_channel).get()
            assert got is not None, "Queue.get() found nothing in a queue holding two messages"
            assert counts(raw, other.name) == (1, 1), "only the message got is in flight"
            publish(publisher, queue, range(10, 11))
            run_until(hub, lambda: received == [10])
            assert counts(raw, other.name) == (1, 1), "the receive thread received from the queue got from"
            again = other(conn.default_channel).get()
            assert again is not None
            assert sorted([got.payload, again.payload]) == [0, 1]
            assert other(conn.default_channel).get() is None
            got.ack()
        conn.release()  # the unacknowledged one goes back
        assert counts(raw, other.name) == (1, 0)
    finally:
        raw.delete_queue(QueueUrl=raw.get_queue_url(QueueName=other.name)["QueueUrl"])


def test_queue_get_takes_what_the_receive_thread_got_for_the_consumer(
    connect: Any, hub: Hub, raw: Any, queue: Queue
) -> None:
    publisher = connect()
    publish(publisher, queue, range(0))
    conn = connect()
    conn.register_with_event_loop(hub)
    received: list[Any] = []
    with Consumer(conn, [queue], on_message=lambda m: received.append(m.payload)):
        run_for(hub, 0.3)  # the queue is empty: the thread long-polls for the consumer
        publish(publisher, queue, range(1))
        readable, _, _ = select.select(list(hub.readers), [], [], WAIT)
        assert readable, "the receive thread never signalled the loop"
        # received for the consumer and not delivered yet: the queue's head, once
        got = queue(conn.default_channel).get()
        assert got is not None and got.payload == 0
        assert queue(conn.default_channel).get() is None
        run_for(hub, 0.3)
        assert received == [], "a message got by Queue.get() was delivered to the consumer too"
        assert counts(raw, queue.name) == (0, 1)
    conn.release()
    assert counts(raw, queue.name) == (1, 0)
