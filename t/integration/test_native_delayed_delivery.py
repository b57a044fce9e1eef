"""RabbitMQ native delayed delivery (the topology Celery uses for ETA tasks on quorum
queues), declared by kombu_like and exercised end to end."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from kombu_like import Connection, Exchange, Queue
from kombu_like.transport.native_delayed_delivery import (
    MAX_LEVEL,
    bind_queue_to_native_delayed_delivery_exchange,
    calculate_routing_key,
    declare_native_delayed_delivery_exchanges_and_queues,
    level_name,
)

pytestmark = pytest.mark.amqp


@pytest.fixture
def conn(amqp_url: str) -> Iterator[Connection]:
    with Connection(amqp_url) as connection:
        yield connection


def _delete_topology(conn: Connection, prefix: str, extra_queues: list[str], extra_exchanges: list[str]) -> None:
    channel = conn.channel()
    try:
        for level in range(MAX_LEVEL + 1):
            channel.queue_delete(level_name(level, prefix))
            channel.exchange_delete(level_name(level, prefix))
        channel.exchange_delete(f"{prefix}_celery_delayed_delivery")
        for queue in extra_queues:
            channel.queue_delete(queue)
        for exchange in extra_exchanges:
            channel.exchange_delete(exchange)
    finally:
        channel.close()


def test_delayed_message_waits_then_reaches_its_queue(conn: Connection, unique_name: str) -> None:
    prefix = unique_name
    destination = Exchange(f"{prefix}_dest", type="topic")
    queue = Queue(f"{prefix}_tasks", destination, routing_key="task.#")
    try:
        declare_native_delayed_delivery_exchanges_and_queues(conn, "classic", prefix)
        queue(conn.default_channel).declare()
        bind_queue_to_native_delayed_delivery_exchange(conn, queue, prefix)
        key = calculate_routing_key(2, "task.run")
        sent = time.monotonic()
        conn.Producer().publish({"n": 1}, exchange=level_name(MAX_LEVEL, prefix), routing_key=key)
        with conn.SimpleQueue(queue) as simple:
            message = simple.get(timeout=20)
            received = time.monotonic()
            assert message.payload == {"n": 1}
            assert message.delivery_info["routing_key"] == key
            message.ack()
        # the shortest level holding it has a 2 s TTL: it cannot arrive before that
        assert received - sent >= 2.0 - 0.1
    finally:
        _delete_topology(conn, prefix, [queue.name], [destination.name])


def test_direct_exchanges_are_skipped_with_a_warning(
    conn: Connection, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue = Queue(f"{unique_name}_direct", Exchange(f"{unique_name}_dx", type="direct"), routing_key="k")
    try:
        queue(conn.default_channel).declare()
        with caplog.at_level("WARNING"):
            bind_queue_to_native_delayed_delivery_exchange(conn, queue, unique_name)
        assert "direct exchange" in caplog.text
    finally:
        channel = conn.channel()
        channel.queue_delete(queue.name)
        channel.exchange_delete(f"{unique_name}_dx")
        channel.close()


def test_queue_type_is_checked(conn: Connection) -> None:
    with pytest.raises(ValueError, match="classic or quorum"):
        declare_native_delayed_delivery_exchanges_and_queues(conn, "stream")
