"""Expired messages (``x-message-ttl``, a message's ``expiration``) on ``redis+streams://``:
dead-lettered with reason ``expired`` where their queue has a dead-letter exchange, as on
RabbitMQ; dropped otherwise."""
# ruff: noqa: F401, F811 - the fixtures of streams_fixtures are imported and taken as parameters

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from kombu_like import Connection, Exchange, Message, Queue
from t.integration.streams_fixtures import prefix, url

pytestmark = pytest.mark.redis


@pytest.fixture
def conn(url: str, prefix: str) -> Iterator[Connection]:
    with Connection(url, transport_options={"global_keyprefix": prefix}) as c:
        yield c


def consume(conn: Connection, queue: Queue, seconds: float) -> list[Message]:
    """What arrives from ``queue`` within ``seconds`` (acknowledged)."""
    got: list[Message] = []

    def on_message(message: Message) -> None:
        got.append(message)
        message.ack()

    with conn.Consumer([queue], on_message=on_message):
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(socket.timeout):
                conn.drain_events(timeout=left)
    return got


def queues(**arguments: object) -> tuple[Queue, Queue]:
    """A work queue dead-lettering to a dead-letter queue (declared with ``arguments``)."""
    tag = uuid.uuid4().hex[:6]
    dlx = Exchange(f"dlx-{tag}", type="direct")
    dead = Queue(f"dead-{tag}", dlx, routing_key="expired")
    work = Queue(
        f"work-{tag}",
        queue_arguments={"x-dead-letter-exchange": dlx.name, "x-dead-letter-routing-key": "expired", **arguments},
    )
    return work, dead


def test_messages_past_the_queue_ttl_go_to_its_dead_letter_exchange(conn: Connection) -> None:
    work, dead = queues(**{"x-message-ttl": 200})
    dead(conn.default_channel).declare()
    producer = conn.Producer()
    for n in range(3):
        producer.publish({"n": n}, routing_key=work.name, declare=[work])
    time.sleep(0.3)  # past the TTL (judged by this client's clock)
    # counted out at once, and a publish now does not trim them away
    assert work(conn.default_channel).queue_declare(passive=True).message_count == 0
    producer.publish({"n": 3}, routing_key=work.name)
    assert [m.payload for m in consume(conn, work, 0.5)] == [{"n": 3}]  # the take dead-letters the rest
    letters = consume(conn, dead, 0.5)
    assert sorted(m.payload["n"] for m in letters) == [0, 1, 2]
    for message in letters:
        [death] = message.headers["x-death"]
        assert death["reason"] == "expired" and death["queue"] == work.name
        assert message.delivery_info["routing_key"] == "expired"
    assert work(conn.default_channel).queue_declare(passive=True).message_count == 0


def test_an_expired_message_is_dead_lettered_without_its_expiration(conn: Connection) -> None:
    work, dead = queues()
    dead(conn.default_channel).declare()
    conn.Producer().publish({"n": 1}, routing_key=work.name, declare=[work], expiration=0.1)
    time.sleep(0.2)
    assert consume(conn, work, 0.3) == []
    [letter] = consume(conn, dead, 0.5)
    assert letter.payload == {"n": 1}
    assert letter.properties.get("expiration") is None  # it does not expire again
    [death] = letter.headers["x-death"]
    assert death["reason"] == "expired" and death["original-expiration"] == "100"


def test_expired_messages_of_a_queue_without_dead_letter_exchange_are_dropped(conn: Connection) -> None:
    work = Queue(f"work-{uuid.uuid4().hex[:6]}", message_ttl=0.1)
    conn.Producer().publish({"n": 1}, routing_key=work.name, declare=[work])
    time.sleep(0.2)
    assert consume(conn, work, 0.3) == []
    assert work(conn.default_channel).queue_declare(passive=True).message_count == 0
