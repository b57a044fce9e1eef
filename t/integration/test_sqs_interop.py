"""kombu_like and Kombu 5.7 exchanging messages through the same SQS queues (moto server).

Both sides are driven through their public API with the same URL; what one publishes the
other consumes, acknowledges, and the queue ends up empty.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import boto3
import kombu
import pytest

import kombu_like

pytestmark = [pytest.mark.sqs, pytest.mark.interop]

OPTIONS = {"region": "us-east-1", "wait_time_seconds": 1, "polling_interval": 0.1}


@pytest.fixture
def url(sqs_endpoint: str) -> str:
    return f"sqs://testing:testing@{sqs_endpoint.split('://', 1)[1]}"


@pytest.fixture
def raw(sqs_endpoint: str) -> Any:
    session = boto3.Session(region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    return session.client("sqs", endpoint_url=sqs_endpoint)


@pytest.fixture
def ours(url: str) -> Iterator[kombu_like.Connection]:
    with kombu_like.Connection(url, transport_options=dict(OPTIONS)) as conn:
        yield conn


@pytest.fixture
def theirs(url: str) -> Iterator[kombu.Connection]:
    with kombu.Connection(url, transport_options=dict(OPTIONS)) as conn:
        yield conn


def left_in(raw: Any, sqs_name: str) -> int:
    url = raw.get_queue_url(QueueName=sqs_name)["QueueUrl"]
    values = raw.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(values["ApproximateNumberOfMessages"]) + int(values["ApproximateNumberOfMessagesNotVisible"])


def drain(conn: Any, lib: Any, queue: Any, count: int, timeout: float = 15, **consumer: Any) -> list[Any]:
    """Consume ``count`` messages with ``lib`` (kombu or kombu_like), acking each."""
    received: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        received.append((body, message))
        message.ack()

    deadline = time.monotonic() + timeout
    with lib.Consumer(conn, [queue], callbacks=[on_message], **consumer):
        while len(received) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"{lib.__name__} received {len(received)} of {count} messages in {timeout}s")
            try:
                conn.drain_events(timeout=min(remaining, 2))
            except socket.timeout:
                pass
    return received


@pytest.mark.parametrize("base64_encoding", [True, False], ids=["base64", "plain-json"])
def test_kombu_consumes_what_kombu_like_publishes(
    url: str, theirs: kombu.Connection, raw: Any, unique_name: str, base64_encoding: bool
) -> None:
    # dots and colons are sanitized; both libraries must arrive at the same SQS queue
    name = f"{unique_name}.jobs:v1"
    when = datetime(2024, 5, 6, 7, 8, 9)
    options = dict(OPTIONS, sqs_base64_encoding=base64_encoding)
    with kombu_like.Connection(url, transport_options=options) as ours:
        queue = kombu_like.Queue(name)
        producer = ours.Producer()
        producer.publish(
            {"n": 0, "text": "h\u00e9llo"},
            routing_key=name,
            declare=[queue],
            headers={"task": "add", "when": when},
            correlation_id="c-0",
            reply_to="replies",
        )
        with producer.batch():
            for n in range(1, 4):
                producer.publish({"n": n}, routing_key=name, correlation_id=f"c-{n}")
        producer.publish(
            b"\x00\x01\xff",
            routing_key=name,
            content_type="application/octet-stream",
            content_encoding="binary",
            compression="zlib",
        )
    received = drain(theirs, kombu, kombu.Queue(name), 5, accept=["json", "application/octet-stream"])
    bodies = [body for body, _ in received]
    assert bodies[:4] == [{"n": 0, "text": "h\u00e9llo"}, {"n": 1}, {"n": 2}, {"n": 3}]
    assert bodies[4] == b"\x00\x01\xff"
    first = received[0][1]
    assert first.headers["task"] == "add"
    assert first.headers["when"] == when
    assert first.properties["correlation_id"] == "c-0"
    assert first.properties["reply_to"] == "replies"
    assert first.content_type == "application/json"
    assert first.delivery_info["routing_key"] == name
    assert [m.properties["correlation_id"] for _, m in received[1:4]] == ["c-1", "c-2", "c-3"]
    theirs.release()
    assert left_in(raw, f"{unique_name}-jobs_v1") == 0


def test_kombu_like_consumes_what_kombu_publishes(
    ours: kombu_like.Connection, theirs: kombu.Connection, raw: Any, unique_name: str
) -> None:
    exchange = kombu.Exchange(unique_name, type="direct")
    queue = kombu.Queue(unique_name, exchange, routing_key="work")
    producer = theirs.Producer()
    attributes = {"tenant": {"DataType": "String", "StringValue": "acme"}}
    producer.publish(
        {"job": 1},
        exchange=exchange,
        routing_key="work",
        declare=[queue],
        headers={"task": "process", "retries": 2},
        priority=3,
        message_id="m-1",
        message_attributes=attributes,
    )
    producer.publish("plain text", exchange=exchange, routing_key="work", content_type="text/plain")
    producer.publish({"big": "x" * 5000}, exchange=exchange, routing_key="work", compression="zlib")
    received = drain(ours, kombu_like, kombu_like.Queue(unique_name), 3, accept=["json", "text/plain"])
    (job, first), (text, second), (big, third) = received
    assert job == {"job": 1}
    assert first.headers == {"task": "process", "retries": 2}
    assert first.properties["priority"] == 3
    assert first.properties["message_id"] == "m-1"
    assert first.properties["message_attributes"]["tenant"]["StringValue"] == "acme"
    assert first.delivery_info["exchange"] == unique_name
    assert first.delivery_info["routing_key"] == "work"
    assert first.delivery_info["redelivered"] is False
    assert text == "plain text" and second.content_type == "text/plain"
    assert big == {"big": "x" * 5000} and third.headers["compression"] == "application/x-gzip"
    ours.release()
    assert left_in(raw, unique_name) == 0


def test_kombu_like_requeue_is_seen_by_kombu(
    ours: kombu_like.Connection, theirs: kombu.Connection, unique_name: str
) -> None:
    queue = kombu_like.Queue(unique_name)
    ours.Producer().publish({"again": True}, routing_key=unique_name, declare=[queue])
    message = queue(ours.default_channel).get()
    assert message is not None
    message.requeue()  # visible at once, not after the 30-minute visibility timeout
    [(body, their_message)] = drain(theirs, kombu, kombu.Queue(unique_name), 1, timeout=10)
    assert body == {"again": True}
    receive_count = their_message.delivery_info["sqs_message"]["Attributes"]["ApproximateReceiveCount"]
    assert receive_count == "2"


def test_fifo_order_across_libraries(ours: kombu_like.Connection, theirs: kombu.Connection, unique_name: str) -> None:
    name = f"{unique_name}.fifo"
    queue = kombu.Queue(name)
    producer = theirs.Producer()
    for n in range(6):
        producer.publish({"n": n}, routing_key=name, declare=[queue], MessageGroupId="g")
    received = drain(ours, kombu_like, kombu_like.Queue(name), 6, prefetch_count=10)
    assert [body["n"] for body, _ in received] == list(range(6))
    our_producer = ours.Producer()
    with our_producer.batch():
        for n in range(6, 12):
            our_producer.publish({"n": n}, routing_key=name, MessageGroupId="g")
    received = drain(theirs, kombu, queue, 6)
    assert [body["n"] for body, _ in received] == list(range(6, 12))
