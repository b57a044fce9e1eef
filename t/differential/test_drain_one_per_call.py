"""One ``drain_events`` call delivers one message, as Kombu's transports do.

Code that counts calls (``ConsumerMixin.consume(limit=...)``, Celery's
``EventReceiver.itercapture(limit=...)``) counts messages.  kombu_like still takes (or
reads) several messages at once; those not delivered yet go back to their queue, in
order, when their consumer is cancelled or its channel closes.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import kombu_like

kombu = pytest.importorskip("kombu")


def outcome(lib: Any, url: str, how: str) -> dict[str, Any]:
    queue = lib.Queue(f"t_one_{uuid.uuid4().hex[:12]}")
    got: list[int] = []

    def on_body(body: Any, message: Any) -> None:
        got.append(body)
        message.ack()

    with lib.Connection(url) as conn:
        producer = lib.Producer(conn)
        for n in range(6):
            producer.publish(n, routing_key=queue.name, declare=[queue], serializer="json")
        per_call = []
        channel = conn.channel()
        consumer = lib.Consumer(channel, [queue], callbacks=[on_body], prefetch_count=10)
        consumer.consume()
        for _ in range(3):
            conn.drain_events(timeout=5)
            per_call.append(len(got))
        # with messages left: the next consumer gets each of them once, in order
        if how == "cancel":
            consumer.cancel()
        else:
            channel.close()
        with lib.Consumer(conn.channel(), [queue], callbacks=[on_body]):
            for _ in range(3):
                conn.drain_events(timeout=5)
        left = queue(conn.default_channel).queue_declare().message_count
        queue(conn.default_channel).delete()
    return {"delivered after each call": per_call, "bodies": got, "left": left}


@pytest.mark.parametrize(
    ("transport", "how"),
    # on AMQP, Kombu hands what arrives during basic.cancel to the cancelled consumer
    [("memory", "cancel"), ("redis", "cancel"), ("memory", "close"), ("redis", "close"), ("amqp", "close")],
)
def test_one_message_per_drain_events_call(transport: str, how: str, request: pytest.FixtureRequest) -> None:
    url = "memory://" if transport == "memory" else request.getfixturevalue(f"{transport}_url")
    ours = outcome(kombu_like, url, how)
    assert ours == {"delivered after each call": [1, 2, 3], "bodies": [0, 1, 2, 3, 4, 5], "left": 0}
    assert ours == outcome(kombu, url, how)


def unacked_for(url: str, queue: str) -> int | None:
    """Entries of Redis's unacked hash (Kombu's layout, shared by both) naming ``queue``."""
    if not url.startswith("redis"):
        return None
    import redis

    client = redis.Redis.from_url(url)
    try:
        return sum(1 for value in client.hvals("unacked") if queue.encode() in value)
    finally:
        client.close()


def purged_while_taken(lib: Any, url: str, how: str) -> dict[str, Any]:
    """Ten published, one drain_events call, then one fetched with basic_get, and the
    queue counted and purged (or deleted) from other channels of the consuming connection."""
    name = f"t_one_purge_{uuid.uuid4().hex[:12]}"
    # bound to an exchange of its own: Kombu's virtual queue_delete deletes the messages
    # of a queue through its bindings only
    queue = lib.Queue(name, lib.Exchange(name), routing_key=name)
    got: list[Any] = []

    def on_body(body: Any, message: Any) -> None:
        got.append(body)
        message.ack()

    with lib.Connection(url) as conn:
        producer = lib.Producer(conn)
        for n in range(10):
            producer.publish(n, exchange=queue.exchange, routing_key=name, declare=[queue], serializer="json")
        with lib.Consumer(conn.channel(), [queue], callbacks=[on_body]):
            conn.drain_events(timeout=5)
            fetched = queue(conn.channel()).get(no_ack=True).payload  # the queue's head
            counted = queue(conn.channel()).queue_declare(passive=True).message_count
            if how == "purge":
                removed = queue(conn.channel()).purge()
            else:
                queue(conn.channel()).delete()  # Kombu's virtual channels return None
                removed = None
                queue(conn.channel()).declare()
            # what was taken with the first message is gone: the next one is a new one
            producer.publish("after", exchange=queue.exchange, routing_key=name, serializer="json")
            if how == "purge":
                conn.drain_events(timeout=5)
        if how == "delete":
            # the queue's consumers went with it (kombu_like cancels them, as RabbitMQ does)
            with lib.Consumer(conn.channel(), [queue], callbacks=[on_body]):
                conn.drain_events(timeout=5)
        # not passive: Kombu's redis:// finds an emptied queue missing
        left = queue(conn.channel()).queue_declare().message_count
        unacked = unacked_for(url, name)
        queue(conn.default_channel).delete()
        queue.exchange(conn.default_channel).delete()
    return {
        "fetched": fetched,
        "counted": counted,
        "removed": removed,
        "bodies": got,
        "left": left,
        "unacked": unacked,
    }


@pytest.mark.parametrize("how", ["purge", "delete"])
@pytest.mark.parametrize("transport", ["memory", "redis"])
def test_taken_messages_are_counted_and_purged_as_kombu_counts_them(
    transport: str, how: str, request: pytest.FixtureRequest
) -> None:
    url = "memory://" if transport == "memory" else request.getfixturevalue(f"{transport}_url")
    ours = purged_while_taken(kombu_like, url, how)
    assert ours["fetched"] == 1
    assert ours["counted"] == 8
    assert ours["removed"] == (8 if how == "purge" else None)
    assert ours["bodies"] == [0, "after"]
    assert ours["left"] == 0
    assert ours["unacked"] == (0 if transport == "redis" else None)
    assert ours == purged_while_taken(kombu, url, how)
