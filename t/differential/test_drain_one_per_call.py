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
