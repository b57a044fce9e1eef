"""ConsumerMixin and ConsumerProducerMixin on memory://, including lost connections."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kombu_like import Connection, Exchange, Message, Producer, Queue
from kombu_like.exceptions import ConnectionError
from kombu_like.mixins import ConsumerMixin, ConsumerProducerMixin, TokenBucket
from kombu_like.transport import memory
from kombu_like.transport.memory import Broker


class FlakyTransport(memory.Transport):
    """memory:// that fails on demand: ``faults`` make drain_events raise, ``refusals``
    make connecting raise (lists shared through transport_options)."""

    def establish_connection(self) -> Any:
        refusals = self.transport_options.get("refusals")
        if refusals:
            raise refusals.pop(0)
        return super().establish_connection()

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> None:
        faults = self.transport_options.get("faults")
        if faults:
            raise faults.pop(0)
        super().drain_events(connection, timeout=timeout, **kwargs)


QUEUE = Queue("mixin_tasks", Exchange("mixin_tasks"), "mixin_tasks")


@pytest.fixture
def options() -> dict[str, Any]:
    return {
        "broker": Broker(),
        "faults": [],
        "refusals": [],
        "interval_start": 0,
        "interval_step": 0.01,
        "interval_max": 0.01,
    }


@pytest.fixture
def conn(options: dict[str, Any]) -> Iterator[Connection]:
    connection = Connection(hostname="localhost", transport=FlakyTransport, transport_options=options)
    yield connection
    connection.release()


def publish(conn: Connection, *bodies: Any, **kwargs: Any) -> None:
    producer = Producer(conn)
    for body in bodies:
        producer.publish(body, exchange=QUEUE.exchange, routing_key="mixin_tasks", declare=[QUEUE], **kwargs)


def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class Worker(ConsumerMixin):
    def __init__(self, connection: Connection, ack: bool = True) -> None:
        self.connection = connection
        self.ack = ack
        self.bodies: list[Any] = []
        self.messages: list[Message] = []
        self.events: list[str] = []
        self.on_body: Callable[[Any, Message], None] | None = None

    def get_consumers(self, Consumer: Any, channel: Any) -> list[Any]:  # noqa: N803
        return [Consumer(queues=[QUEUE], callbacks=[self.on_task])]

    def on_task(self, body: Any, message: Message) -> None:
        self.bodies.append(body)
        self.messages.append(message)
        if self.on_body is not None:
            self.on_body(body, message)
        if self.ack:
            message.ack()

    def on_connection_revived(self) -> None:
        self.events.append("revived")

    def on_consume_ready(self, connection: Connection, channel: Any, consumers: Any, **kwargs: Any) -> None:
        self.events.append(f"ready:{sorted(kwargs)}")

    def on_consume_end(self, connection: Connection, channel: Any) -> None:
        self.events.append("end")

    def on_iteration(self) -> None:
        if "iteration" not in self.events:
            self.events.append("iteration")

    def on_connection_error(self, exc: BaseException, interval: float) -> None:
        self.events.append(f"error:{exc}")


def run_in_thread(worker: ConsumerMixin) -> threading.Thread:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread


def stop(worker: ConsumerMixin, thread: threading.Thread) -> None:
    worker.should_stop = True
    thread.join(10)
    assert not thread.is_alive()


def test_run_consumes_until_stopped(conn: Connection) -> None:
    worker = Worker(conn)
    thread = run_in_thread(worker)
    publish(conn, *range(5))
    assert wait_for(lambda: len(worker.bodies) == 5)
    stop(worker, thread)
    assert worker.bodies == [0, 1, 2, 3, 4]
    assert worker.events[:3] == ["revived", "ready:[]", "iteration"]
    assert worker.events[-1] == "end"
    assert QUEUE(conn.default_channel).queue_declare(passive=True).message_count == 0


def test_consume_with_limit_and_timeout(conn: Connection) -> None:
    worker = Worker(conn)
    publish(conn, "a", "b")
    rounds = list(worker.consume(limit=1, timeout=5, extra=1))
    assert rounds == [None]
    assert worker.bodies == ["a"]  # one drain delivers one message, as in Kombu
    assert "ready:['extra']" in worker.events
    # the other, taken with the first, went back when the consumer was cancelled
    assert list(worker.consume(limit=1, timeout=5)) == [None]
    assert worker.bodies == ["a", "b"]
    with pytest.raises(socket.timeout):
        for _ in worker.consume(limit=5, timeout=0.1, safety_interval=0.05):
            pass


def test_survives_connection_loss_and_gets_unacked_message_again(conn: Connection, options: dict[str, Any]) -> None:
    worker = Worker(conn, ack=False)

    def on_body(body: Any, message: Message) -> None:
        if body == "first" and not message.redelivered:
            # the connection breaks before this message is acked
            options["faults"].append(ConnectionError("connection reset by peer"))
        else:
            message.ack()

    worker.on_body = on_body
    thread = run_in_thread(worker)
    publish(conn, "first")
    assert wait_for(lambda: worker.bodies.count("first") == 2)
    publish(conn, "second")
    assert wait_for(lambda: "second" in worker.bodies)
    stop(worker, thread)
    assert [m.redelivered for m in worker.messages if m.body is not None][:2] == [False, True]
    assert worker.events.count("revived") == 2
    assert QUEUE(conn.default_channel).queue_declare(passive=True).message_count == 0


def test_retries_connecting_with_errback(conn: Connection, options: dict[str, Any]) -> None:
    worker = Worker(conn)
    publish(conn, "after refusals")
    options["refusals"].extend([ConnectionError("refused 1"), ConnectionError("refused 2")])
    thread = run_in_thread(worker)
    assert wait_for(lambda: worker.bodies == ["after refusals"])
    stop(worker, thread)
    assert [e for e in worker.events if e.startswith("error:")] == ["error:refused 1", "error:refused 2"]


def test_stop_while_reconnecting(conn: Connection, options: dict[str, Any]) -> None:
    options["refusals"].extend(ConnectionError(f"down {n}") for n in range(1000))
    options["interval_start"] = options["interval_max"] = 0.5
    worker = Worker(conn)
    thread = run_in_thread(worker)
    assert wait_for(lambda: any(e.startswith("error:") for e in worker.events))
    stop(worker, thread)


def test_decode_error_is_logged_and_rejected(conn: Connection, caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker(conn)
    Producer(conn).publish(
        b'{"not json',
        exchange=QUEUE.exchange,
        routing_key="mixin_tasks",
        declare=[QUEUE],
        content_type="application/json",
        content_encoding="utf-8",
    )
    publish(conn, "good")
    with caplog.at_level(logging.ERROR, logger="kombu_like.mixins"):
        list(worker.consume(limit=2, timeout=5))
    assert worker.bodies == ["good"]
    record = next(r for r in caplog.records if "Can't decode" in r.getMessage())
    text = record.getMessage()
    assert "'mixin_tasks'" in text and "application/json" in text and '{"not json' in text
    assert QUEUE(conn.default_channel).queue_declare(passive=True).message_count == 0


class Replier(ConsumerProducerMixin):
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.producer_connections: list[Connection] = []

    def get_consumers(self, Consumer: Any, channel: Any) -> list[Any]:  # noqa: N803
        return [Consumer(queues=[QUEUE], on_message=self.on_request)]

    def on_request(self, message: Message) -> None:
        self.producer_connections.append(self.producer_connection)
        self.producer.publish(
            {"echo": message.payload},
            routing_key=message.properties["reply_to"],
            correlation_id=message.properties["correlation_id"],
        )
        message.ack()


def test_consumer_producer_mixin_publishes_on_its_own_connection(conn: Connection) -> None:
    replier = Replier(conn)
    replies = Queue("mixin_replies")
    publish(conn, "ping", reply_to="mixin_replies", correlation_id="c1")
    Producer(conn).maybe_declare(replies(conn.default_channel))
    list(replier.consume(limit=1, timeout=5))
    with conn.SimpleQueue(replies) as q:
        reply = q.get(timeout=5)
    assert reply.payload == {"echo": "ping"}
    assert reply.properties["correlation_id"] == "c1"
    publishing = replier.producer_connections[0]
    assert publishing is not conn
    # closed when the consuming round ended
    assert not publishing.connected


def test_token_bucket() -> None:
    bucket = TokenBucket(1000, capacity=1)
    assert bucket.can_consume()
    slow = TokenBucket(0.001, capacity=1)
    assert slow.can_consume()
    assert not slow.can_consume()
    assert slow.expected_time() > 0


def test_should_stop_is_settable(conn: Connection) -> None:
    worker = Worker(conn)
    assert worker.should_stop is False
    worker.should_stop = True
    assert worker.should_stop is True
    worker.run()  # returns at once
    worker.should_stop = False
    assert not worker.should_stop
