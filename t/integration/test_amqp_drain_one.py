"""drain_events on amqp:// hands out one delivery a call, as py-amqp does; deliveries read
with it and not handed out yet never reach a cancelled consumer and never go stale."""

from __future__ import annotations

from typing import Any

from kombu_like import Connection, Consumer, Message, Producer, Queue


def _publish(conn: Connection, queue: Queue, count: int) -> None:
    producer = Producer(conn)
    for n in range(count):
        producer.publish(n, routing_key=queue.name, declare=[queue])


def _drain(conn: Connection, queue: Queue, count: int) -> list[tuple[Any, bool]]:
    got: list[tuple[Any, bool]] = []

    def on_message(message: Message) -> None:
        got.append((message.payload, message.redelivered))
        message.ack()

    with Consumer(conn.channel(), [queue], on_message=on_message):
        for _ in range(count):
            conn.drain_events(timeout=10)
    return got


def test_cancelled_consumer_gets_none_of_what_was_read_for_it(amqp_url: str, unique_name: str) -> None:
    queue = Queue(unique_name, durable=False)
    with Connection(amqp_url) as conn:
        _publish(conn, queue, 4)
        got: list[Any] = []
        consumer = Consumer(conn.channel(), [queue], callbacks=[lambda body, m: (got.append(body), m.ack())])
        consumer.qos(prefetch_count=10)
        consumer.consume()
        conn.drain_events(timeout=10)
        consumer.cancel()
        # the others went back to the queue, in order (RabbitMQ flags them redelivered)
        assert [body for body, _ in _drain(conn, queue, 3)] == [1, 2, 3]
        assert got == [0]
        queue(conn.default_channel).delete()


def test_recover_leaves_no_stale_delivery_behind(amqp_url: str, unique_name: str) -> None:
    queue = Queue(unique_name, durable=False)
    with Connection(amqp_url) as conn:
        _publish(conn, queue, 3)
        channel = conn.channel()
        received: list[Message] = []
        with Consumer(channel, [queue], on_message=received.append):
            conn.drain_events(timeout=10)
            channel.basic_recover(requeue=True)
            for _ in range(10):  # a call may handle the recover-ok instead of a message
                if len(received) == 4:
                    break
                conn.drain_events(timeout=10)
            # every message once more, under delivery tags the broker still knows
            assert [(m.payload, m.redelivered) for m in received[1:]] == [(0, True), (1, True), (2, True)]
            for message in received[1:]:
                message.ack()
        assert queue(conn.default_channel).queue_declare(passive=True).message_count == 0
        queue(conn.default_channel).delete()
