"""The SQS transport against moto's standalone server, reached by boto3 over real HTTP.

What the conformance suite cannot see: URL forms and transport options, what ends up in
SQS (checked with a plain boto3 client), how many requests each operation costs (counted
with a botocore hook, never timed), FIFO queues, visibility timeouts, size limits, and
how botocore's errors surface.  Errors SQS would send but moto cannot be made to send
(throttling, refused access, expired credentials, dropped connections) come from a small
HTTP proxy in front of moto that answers chosen operations with SQS's error format.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import botocore.exceptions
import botocore.handlers
import pytest

from kombu_like import Connection, Consumer, Exchange, Message, Queue
from kombu_like.exceptions import (
    AccessRefused,
    BatchPublishError,
    ChannelError,
    ConnectionError,
    MessageTooLarge,
    NotFound,
)

pytestmark = pytest.mark.sqs

ONE_RETRY = {"retries": {"max_attempts": 1}}
NO_RETRIES = {"retries": {"max_attempts": 0}}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET = "s3cr3t/Secret+Value"


# -- helpers -----------------------------------------------------------------------------
class RequestLog:
    """The SQS operations botocore sends (every attempt) from clients created while active."""

    def __init__(self) -> None:
        self.operations: list[str] = []
        self.user_agents: list[str] = []
        self._seen: dict[str, threading.Event] = defaultdict(threading.Event)
        self._lock = threading.Lock()

    def _on_send(self, event_name: str = "", request: Any = None, **kwargs: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        with self._lock:
            self.operations.append(operation)
            if request is not None:
                agent = request.headers.get("User-Agent", b"")
                self.user_agents.append(agent.decode() if isinstance(agent, bytes) else str(agent))
            self._seen[operation].set()

    def __enter__(self) -> RequestLog:
        botocore.handlers.BUILTIN_HANDLERS.append(("before-send.sqs", self._on_send))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        botocore.handlers.BUILTIN_HANDLERS.remove(("before-send.sqs", self._on_send))

    def mark(self) -> int:
        return len(self.operations)

    def since(self, mark: int) -> Counter[str]:
        with self._lock:
            return Counter(self.operations[mark:])

    def wait_for(self, operation: str, timeout: float) -> bool:
        return self._seen[operation].wait(timeout)


FAULTS = {
    "throttle": (400, "Throttling;Sender", "com.amazonaws.sqs#ThrottlingException", "Rate exceeded"),
    "denied": (
        403,
        "AccessDenied;Sender",
        "com.amazon.coral.service#AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/app is not authorized to perform: sqs:SendMessage",
    ),
    "expired": (
        403,
        None,
        "com.amazon.coral.service#ExpiredTokenException",
        "The security token included in the request is expired",
    ),
    "unavailable": (500, None, "com.amazon.coral.service#InternalFailure", "We encountered an internal error."),
}


class FaultyEndpoint:
    """An HTTP proxy in front of moto that answers chosen operations with SQS errors.

    ``inject("SendMessage", "throttle", "throttle")`` makes the next two SendMessage
    requests fail with throttling; ``"drop"`` closes the connection without an answer.
    Everything else is forwarded to moto unchanged.
    """

    def __init__(self, upstream: str) -> None:
        host, port = upstream.split("://", 1)[1].split(":")
        self.upstream = (host, int(port))
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.forever: dict[str, str] = {}
        self.attempts: Counter[str] = Counter()
        self.forwarded: dict[str, threading.Event] = defaultdict(threading.Event)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                operation = (self.headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1]
                fault = proxy._take(operation)
                if fault == "drop":
                    self.close_connection = True
                    return
                if fault in FAULTS:
                    status, query_code, error_type, text = FAULTS[fault]
                    self._answer(status, json.dumps({"__type": error_type, "message": text}).encode(), query_code)
                    return
                failed_entry = None
                if fault in ("fail-entry", "reject-entry"):
                    # the last entry of the batch is not stored, and reported as failed
                    request = json.loads(body)
                    failed_entry = request["Entries"].pop()
                    body = json.dumps(request).encode()
                headers = {k: v for k, v in self.headers.items() if k.lower() != "content-length"}
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    upstream.request("POST", self.path, body, headers)
                    response = upstream.getresponse()
                    data = response.read()
                finally:
                    upstream.close()
                if failed_entry is not None:
                    answer = json.loads(data)
                    answer.setdefault("Failed", []).append(
                        {
                            "Id": failed_entry["Id"],
                            "SenderFault": fault == "reject-entry",
                            "Code": "InvalidParameterValue" if fault == "reject-entry" else "InternalError",
                            "Message": "refused for the test" if fault == "reject-entry" else "try again",
                        }
                    )
                    data = json.dumps(answer).encode()
                self._answer(response.status, data, response.getheader("x-amzn-query-error"))
                proxy.forwarded[operation].set()

            def _answer(self, status: int, data: bytes, query_code: str | None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                if query_code:
                    self.send_header("x-amzn-query-error", query_code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _take(self, operation: str) -> str | None:
        with self._lock:
            self.attempts[operation] += 1
            if self.faults[operation]:
                return self.faults[operation].pop(0)
            return self.forever.get(operation)

    def inject(self, operation: str, *faults: str) -> None:
        with self._lock:
            self.faults[operation].extend(faults)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def host(sqs_endpoint: str) -> str:
    """``127.0.0.1:<port>`` of the moto server."""
    return sqs_endpoint.split("://", 1)[1]


@pytest.fixture
def raw(sqs_endpoint: str) -> Any:
    """A plain boto3 client on the moto server, to look at SQS behind the library's back."""
    session = boto3.Session(region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    return session.client("sqs", endpoint_url=sqs_endpoint)


class Connections:
    """Makes connections to moto and releases them all at the end."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.made: list[Connection] = []

    def __call__(self, url: str | None = None, **options: Any) -> Connection:
        options.setdefault("region", "us-east-1")
        options.setdefault("wait_time_seconds", 1)
        conn = Connection(url or f"sqs://testing:{SECRET}@{self.host}", transport_options=options)
        self.made.append(conn)
        return conn

    def release_all(self) -> None:
        while self.made:
            self.made.pop().release()


@pytest.fixture
def connect(host: str) -> Iterator[Connections]:
    """Make connections to moto (released after the test); keyword arguments are options."""
    connections = Connections(host)
    yield connections
    connections.release_all()


@pytest.fixture
def faulty(sqs_endpoint: str, connect: Connections) -> Iterator[FaultyEndpoint]:
    proxy = FaultyEndpoint(sqs_endpoint)
    yield proxy
    # connections through the proxy close (flushing their acks) while it still answers
    connect.release_all()
    proxy.close()


def attributes(raw: Any, name: str) -> dict[str, int]:
    url = raw.get_queue_url(QueueName=name)["QueueUrl"]
    values = raw.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return {
        "ready": int(values["ApproximateNumberOfMessages"]),
        "in_flight": int(values["ApproximateNumberOfMessagesNotVisible"]),
    }


def collect(
    conn: Connection, queue: Queue, count: int, timeout: float = 10, ack: bool = True, **kw: Any
) -> list[Message]:
    received: list[Message] = []

    def on_message(message: Message) -> None:
        received.append(message)
        if ack:
            message.ack()

    deadline = time.monotonic() + timeout
    with Consumer(conn, [queue], on_message=on_message, **kw):
        while len(received) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"received {len(received)} of {count} messages within {timeout}s")
            try:
                conn.drain_events(timeout=remaining)
            except socket.timeout:
                pass
    return received


# -- URL forms and options ----------------------------------------------------------------
def test_default_credential_chain_with_endpoint_url_option(sqs_endpoint: str, unique_name: str) -> None:
    # sqs:// alone: boto3 finds the credentials (here in the environment the fixture set)
    with Connection("sqs://", transport_options={"endpoint_url": sqs_endpoint, "region": "us-east-1"}) as conn:
        queue = Queue(unique_name)
        conn.Producer().publish({"chain": True}, routing_key=unique_name, declare=[queue])
        [message] = collect(conn, queue, 1)
        assert message.payload == {"chain": True}


def test_credentials_never_appear_in_repr(connect: Callable[..., Connection]) -> None:
    conn = connect()
    assert SECRET not in repr(conn)
    assert SECRET not in conn.as_uri()
    assert SECRET not in repr(conn.transport)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("wait_time_seconds", 21),
        ("visibility_timeout", "soon"),
        ("predefined_queues", {"q.fifo": {"url": "http://x/q"}}),
    ],
)
def test_bad_options_are_named(connect: Callable[..., Connection], option: str, value: Any) -> None:
    conn = connect(**{option: value})
    assert "**" in repr(conn)  # printing never fails on a bad option
    with pytest.raises(ValueError) as excinfo:
        conn.connect()
    assert option.split("_")[0] in str(excinfo.value)


def test_host_and_port_name_the_endpoint(connect: Callable[..., Connection], host: str) -> None:
    assert connect().transport.settings.endpoint_url == f"http://{host}"  # type: ignore[attr-defined]
    secure = connect(is_secure=True).transport.settings.endpoint_url  # type: ignore[attr-defined]
    assert secure == f"https://{host}"
    # a bare sqs:// means AWS itself: boto3 picks the endpoint for the region
    with Connection("sqs://") as conn:
        assert conn.transport.settings.endpoint_url is None  # type: ignore[attr-defined]


def test_queue_names_are_sanitized_as_kombu_does(
    connect: Callable[..., Connection], raw: Any, unique_name: str
) -> None:
    from kombu.transport.SQS import Channel as KombuChannel

    from kombu_like.transport.sqs import sqs_queue_name

    for name in ["a.b:c", "x*y@z", "tasks.fifo", "a.b.fifo", "keep-this_one"]:
        assert sqs_queue_name(name) == KombuChannel.entity_name(None, name)  # type: ignore[arg-type]
    conn = connect()
    name = f"{unique_name}.x:y"
    conn.Producer().publish("hi", routing_key=name, declare=[Queue(name)])
    url = raw.get_queue_url(QueueName=f"{unique_name}-x_y")["QueueUrl"]
    assert raw.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages")


def test_queue_name_prefix(connect: Callable[..., Connection], raw: Any, unique_name: str) -> None:
    conn = connect(queue_name_prefix="pfx-")
    queue = Queue(unique_name)
    conn.Producer().publish("prefixed", routing_key=unique_name, declare=[queue])
    assert attributes(raw, f"pfx-{unique_name}")["ready"] == 1
    [message] = collect(conn, queue, 1)
    assert message.payload == "prefixed"
    assert message.delivery_info["routing_key"] == unique_name


def test_visibility_timeout_is_set_on_created_queues(
    connect: Callable[..., Connection], raw: Any, unique_name: str
) -> None:
    Queue(unique_name)(connect(visibility_timeout=42).default_channel).declare()
    url = raw.get_queue_url(QueueName=unique_name)["QueueUrl"]
    values = raw.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    assert values["VisibilityTimeout"] == "42"


def test_predefined_queues_are_never_created_or_listed(
    connect: Callable[..., Connection], raw: Any, unique_name: str
) -> None:
    url = raw.create_queue(QueueName=unique_name)["QueueUrl"]
    predefined = {unique_name: {"url": url, "access_key_id": "other", "secret_access_key": "other-secret"}}
    with RequestLog() as log:
        conn = connect(predefined_queues=predefined)
        queue = Queue(unique_name)
        conn.Producer().publish({"pre": 1}, routing_key=unique_name, declare=[queue])
        [message] = collect(conn, queue, 1)
        assert message.payload == {"pre": 1}
        with pytest.raises(NotFound) as excinfo:
            conn.Producer().publish("x", routing_key="undefined-queue", declare=[Queue("undefined-queue")])
        assert "predefined_queues" in str(excinfo.value)
        sent = set(log.operations)
    assert not sent & {"CreateQueue", "ListQueues", "GetQueueUrl", "DeleteQueue"}
    assert "SendMessage" in sent


@pytest.mark.parametrize("base64_encoding", [True, False])
def test_body_encoding_in_sqs(
    connect: Callable[..., Connection], raw: Any, unique_name: str, base64_encoding: bool
) -> None:
    conn = connect(sqs_base64_encoding=base64_encoding)
    conn.Producer().publish({"k": "v"}, routing_key=unique_name, declare=[Queue(unique_name)], headers={"h": 1})
    url = raw.get_queue_url(QueueName=unique_name)["QueueUrl"]
    [stored] = raw.receive_message(QueueUrl=url, WaitTimeSeconds=0)["Messages"]
    text = base64.b64decode(stored["Body"]).decode() if base64_encoding else stored["Body"]
    assert stored["Body"].startswith("{") is not base64_encoding
    envelope = json.loads(text)
    assert envelope["headers"] == {"h": 1}
    assert envelope["content-type"] == "application/json"
    assert envelope["properties"]["body_encoding"] == "base64"
    assert json.loads(base64.b64decode(envelope["body"])) == {"k": "v"}


def test_client_config_reaches_botocore(connect: Callable[..., Connection], unique_name: str) -> None:
    with RequestLog() as log:
        conn = connect(**{"client-config": {"user_agent_extra": "kl-test-agent"}})
        Queue(unique_name)(conn.default_channel).declare()
    assert log.user_agents and all("kl-test-agent" in agent for agent in log.user_agents)


def test_long_polling_waits_in_one_request(connect: Callable[..., Connection], unique_name: str) -> None:
    queue = Queue(unique_name)
    publisher = connect()
    queue(publisher.default_channel).declare()
    with RequestLog() as log:
        conn = connect(wait_time_seconds=5)
        queue(conn.default_channel).declare()
        mark = log.mark()
        timer = threading.Timer(0.5, lambda: publisher.Producer().publish("late", routing_key=unique_name))
        timer.start()
        try:
            [message] = collect(conn, queue, 1, timeout=10)
        finally:
            timer.join()
        received = log.since(mark)["ReceiveMessage"]
    assert message.payload == "late"
    assert received == 1


def test_short_polling_waits_polling_interval_between_requests(
    connect: Callable[..., Connection], unique_name: str
) -> None:
    with RequestLog() as log:
        conn = connect(wait_time_seconds=0, polling_interval=0.5)
        queue = Queue(unique_name)
        with Consumer(conn, [queue], callbacks=[lambda body, message: None]):
            mark = log.mark()
            with pytest.raises(socket.timeout):
                conn.drain_events(timeout=1.25)
        receives = log.since(mark)["ReceiveMessage"]
    assert 2 <= receives <= 4


# -- what operations cost -------------------------------------------------------------------
def test_consume_and_ack_receive_ten_and_delete_in_batches(
    connect: Callable[..., Connection], raw: Any, unique_name: str
) -> None:
    with RequestLog() as log:
        conn = connect(ack_flush_interval=60)
        queue = Queue(unique_name)
        producer = conn.Producer()
        producer.maybe_declare(queue)
        with producer.batch():
            for n in range(30):
                producer.publish(n, routing_key=unique_name)
        mark = log.mark()
        received = collect(conn, queue, 30, prefetch_count=10)
        assert log.wait_for("DeleteMessageBatch", 10)
        conn.release()
        cost = log.since(mark)
    assert sorted(m.payload for m in received) == list(range(30))
    assert cost["ReceiveMessage"] == 3
    # threshold flushes: ten at a time, not one request per message (the timer was 60 s)
    assert cost["DeleteMessageBatch"] == 3
    assert cost["DeleteMessage"] == 0
    assert attributes(raw, unique_name) == {"ready": 0, "in_flight": 0}


def test_batch_publish_sends_ten_per_request(connect: Callable[..., Connection], raw: Any, unique_name: str) -> None:
    with RequestLog() as log:
        conn = connect()
        producer = conn.Producer()
        producer.maybe_declare(Queue(unique_name))
        mark = log.mark()
        with producer.batch():
            for n in range(25):
                producer.publish({"n": n}, routing_key=unique_name)
        cost = log.since(mark)
    assert cost == Counter({"SendMessageBatch": 3})
    assert attributes(raw, unique_name)["ready"] == 25


def test_acks_below_the_threshold_are_flushed_on_the_timer(
    connect: Callable[..., Connection], raw: Any, unique_name: str
) -> None:
    with RequestLog() as log:
        conn = connect(ack_flush_interval=0.3)
        queue = Queue(unique_name)
        for n in range(3):
            conn.Producer().publish(n, routing_key=unique_name, declare=[queue])
        collect(conn, queue, 3)
        # the connection stays open: only the timer can send these three deletes
        assert log.wait_for("DeleteMessageBatch", 10)
        assert log.operations.count("DeleteMessageBatch") == 1
    assert attributes(raw, unique_name) == {"ready": 0, "in_flight": 0}


def test_requeue_makes_message_visible_at_once(connect: Callable[..., Connection], unique_name: str) -> None:
    with RequestLog() as log:
        conn = connect()  # the queue's visibility timeout is Kombu's default, 30 minutes
        queue = Queue(unique_name)
        conn.Producer().publish("again", routing_key=unique_name, declare=[queue])
        [first] = collect(conn, queue, 1, ack=False)
        first.requeue()
        [second] = collect(conn, queue, 1)
        assert "ChangeMessageVisibilityBatch" in log.operations
    assert second.payload == "again"
    assert second.delivery_info["redelivered"] is True
    assert second.delivery_info["sqs_message"]["Attributes"]["ApproximateReceiveCount"] == "2"


def test_reject_with_redrive_policy_leaves_message_for_dead_letter_queue(
    connect: Callable[..., Connection], raw: Any, unique_name: str
) -> None:
    dlq_name = f"{unique_name}-dlq"
    dlq_url = raw.create_queue(QueueName=dlq_name)["QueueUrl"]
    dlq_arn = raw.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    raw.create_queue(
        QueueName=unique_name,
        Attributes={
            "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1}),
        },
    )
    conn = connect()
    queue = Queue(unique_name)
    conn.Producer().publish({"poison": True}, routing_key=unique_name, declare=[queue])
    [message] = collect(conn, queue, 1, ack=False)
    message.reject()
    conn.release()
    # not deleted: once it is visible again SQS moves it on the next receive
    assert attributes(raw, unique_name)["in_flight"] == 1
    consumer = connect()
    with Consumer(consumer, [queue], callbacks=[lambda body, m: pytest.fail("dead-lettered message came back")]):
        deadline = time.monotonic() + 10
        while attributes(raw, dlq_name)["ready"] == 0 and time.monotonic() < deadline:
            try:
                consumer.drain_events(timeout=1)
            except socket.timeout:
                pass
    [dead] = collect(connect(), Queue(dlq_name), 1)
    assert dead.payload == {"poison": True}


def test_reject_without_redrive_policy_deletes(connect: Callable[..., Connection], raw: Any, unique_name: str) -> None:
    conn = connect()
    queue = Queue(unique_name)
    conn.Producer().publish("bad", routing_key=unique_name, declare=[queue])
    [message] = collect(conn, queue, 1, ack=False)
    message.reject()
    conn.release()
    assert attributes(raw, unique_name) == {"ready": 0, "in_flight": 0}


def test_killed_consumer_messages_return_after_visibility_timeout(
    connect: Callable[..., Connection], host: str, unique_name: str
) -> None:
    conn = connect(visibility_timeout=4)
    queue = Queue(unique_name)
    conn.Producer().publish({"job": 7}, routing_key=unique_name, declare=[queue])
    script = textwrap.dedent(
        """
        import sys, time
        from kombu_like import Connection, Consumer, Queue
        url, name = sys.argv[1], sys.argv[2]
        got = []
        with Connection(url, transport_options={"region": "us-east-1", "wait_time_seconds": 1}) as conn:
            with Consumer(conn, [Queue(name)], callbacks=[lambda body, message: got.append(body)]):
                while not got:
                    try:
                        conn.drain_events(timeout=1)
                    except TimeoutError:
                        pass
                print("received", got[0], flush=True)
                time.sleep(120)
        """
    )
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, f"sqs://testing:testing@{host}", unique_name],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "the consumer process received nothing"
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "received {'job': 7}"
        proc.kill()
        proc.wait(10)
        # in flight until its visibility timeout runs out: nobody else gets it yet
        assert queue(conn.default_channel).get() is None
        [again] = collect(conn, queue, 1, timeout=20)
    finally:
        proc.kill()
        proc.wait(10)
    assert again.payload == {"job": 7}
    assert again.delivery_info["redelivered"] is True


# -- FIFO, delay, attributes ------------------------------------------------------------------
def test_fifo_keeps_order_within_each_group(connect: Callable[..., Connection], raw: Any, unique_name: str) -> None:
    name = f"{unique_name}.fifo"
    conn = connect()
    queue = Queue(name)
    producer = conn.Producer()
    producer.maybe_declare(queue)
    for n in range(8):
        producer.publish({"group": "a", "n": n}, routing_key=name, MessageGroupId="a")
        producer.publish({"group": "b", "n": n}, routing_key=name, MessageGroupId="b")
    with producer.batch():
        for n in range(8, 14):
            producer.publish({"group": "a", "n": n}, routing_key=name, MessageGroupId="a")
    values = raw.get_queue_attributes(QueueUrl=raw.get_queue_url(QueueName=name)["QueueUrl"], AttributeNames=["All"])
    assert values["Attributes"]["FifoQueue"] == "true"
    received = collect(conn, queue, 22, timeout=20, prefetch_count=10)
    by_group: dict[str, list[int]] = defaultdict(list)
    for message in received:
        by_group[message.payload["group"]].append(message.payload["n"])
    assert by_group == {"a": list(range(14)), "b": list(range(8))}


def test_fifo_deduplicates_by_message_deduplication_id(connect: Callable[..., Connection], unique_name: str) -> None:
    name = f"{unique_name}.fifo"
    conn = connect()
    queue = Queue(name)
    producer = conn.Producer()
    for body in ("first", "duplicate"):
        producer.publish(body, routing_key=name, declare=[queue], MessageGroupId="g", MessageDeduplicationId="same")
    producer.publish("other", routing_key=name, MessageGroupId="g")
    received = collect(conn, queue, 2)
    assert [m.payload for m in received] == ["first", "other"]
    assert queue(conn.default_channel).get() is None


def test_fifo_requeue_comes_back_first(connect: Callable[..., Connection], unique_name: str) -> None:
    name = f"{unique_name}.fifo"
    conn = connect()
    queue = Queue(name)
    for n in range(3):
        conn.Producer().publish(n, routing_key=name, declare=[queue], MessageGroupId="g")
    [first] = collect(conn, queue, 1, ack=False, prefetch_count=1)
    assert first.payload == 0
    first.requeue()
    received = collect(conn, queue, 3, prefetch_count=1)
    assert [m.payload for m in received] == [0, 1, 2]
    assert received[0].delivery_info["redelivered"] is True


def test_per_message_delay(connect: Callable[..., Connection], unique_name: str) -> None:
    conn = connect()
    queue = Queue(unique_name)
    conn.Producer().publish("later", routing_key=unique_name, declare=[queue], delay_seconds=2)
    conn.Producer().publish("now", routing_key=unique_name)
    [now] = collect(conn, queue, 1)
    assert now.payload == "now"
    assert queue(conn.default_channel).get() is None  # still delayed
    [later] = collect(conn, queue, 1, timeout=10)
    assert later.payload == "later"


def test_delay_on_fifo_queue_is_ignored_with_a_warning(
    connect: Callable[..., Connection], unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"{unique_name}.fifo"
    conn = connect()
    with caplog.at_level(logging.WARNING):
        conn.Producer().publish("x", routing_key=name, declare=[Queue(name)], delay_seconds=5)
    assert "takes no per-message delay" in caplog.text
    [message] = collect(conn, Queue(name), 1)
    assert message.payload == "x"


def test_message_attributes_travel_beside_the_body(
    connect: Callable[..., Connection], raw: Any, unique_name: str
) -> None:
    conn = connect()
    queue = Queue(unique_name)
    message_attributes = {"tenant": {"DataType": "String", "StringValue": "acme"}}
    conn.Producer().publish("a", routing_key=unique_name, declare=[queue], message_attributes=message_attributes)
    url = raw.get_queue_url(QueueName=unique_name)["QueueUrl"]
    [stored] = raw.receive_message(QueueUrl=url, MessageAttributeNames=["All"], VisibilityTimeout=0)["Messages"]
    assert stored["MessageAttributes"]["tenant"]["StringValue"] == "acme"
    assert "message_attributes" not in json.loads(base64.b64decode(stored["Body"]))["properties"]
    [message] = collect(conn, queue, 1)
    assert message.properties["message_attributes"]["tenant"]["StringValue"] == "acme"
    assert message.delivery_info["sqs_message"]["MessageAttributes"] == message.properties["message_attributes"]


def test_foreign_message_is_delivered_as_text(connect: Callable[..., Connection], raw: Any, unique_name: str) -> None:
    conn = connect()
    queue = Queue(unique_name)
    queue(conn.default_channel).declare()
    url = raw.get_queue_url(QueueName=unique_name)["QueueUrl"]
    raw.send_message(QueueUrl=url, MessageBody='{"Records": [{"eventName": "ObjectCreated:Put"}]}')
    raw.send_message(QueueUrl=url, MessageBody="plain words")
    first, second = collect(conn, queue, 2, accept=["json", "text/plain"])
    assert first.payload == {"Records": [{"eventName": "ObjectCreated:Put"}]}
    assert second.content_type == "text/plain"
    assert second.payload == "plain words"


def test_malformed_envelope_is_delivered_with_an_error_naming_it(
    connect: Callable[..., Connection], raw: Any, unique_name: str
) -> None:
    conn = connect()
    queue = Queue(unique_name)
    queue(conn.default_channel).declare()
    url = raw.get_queue_url(QueueName=unique_name)["QueueUrl"]
    broken = {
        "body": "%%% not base64",
        "content-type": "application/json",
        "headers": {},
        "properties": {"body_encoding": "base64", "delivery_info": {}},
    }
    raw.send_message(QueueUrl=url, MessageBody=json.dumps(broken))
    conn.Producer().publish({"good": True}, routing_key=unique_name)
    errors: list[tuple[Message, BaseException]] = []
    good: list[Any] = []
    with Consumer(
        conn,
        [queue],
        accept=["json"],
        callbacks=[lambda body, m: (good.append(body), m.ack())],
        on_decode_error=lambda m, exc: errors.append((m, exc)),
    ):
        deadline = time.monotonic() + 10
        while not (errors and good) and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=1)
            except socket.timeout:
                pass
    assert good == [{"good": True}]
    [(message, exc)] = errors
    assert "application/x-kombu-like-unreadable" in str(exc)
    assert unique_name in message.headers["x-kombu-like-error"]
    assert "not base64" in message.headers["x-kombu-like-error"]
    assert not message.acknowledged  # still there for whoever can deal with it


# -- size limit -----------------------------------------------------------------------------
def test_oversize_message_raises_before_any_request(
    connect: Callable[..., Connection], raw: Any, unique_name: str
) -> None:
    with RequestLog() as log:
        conn = connect()
        queue = Queue(unique_name)
        queue(conn.default_channel).declare()
        mark = log.mark()
        with pytest.raises(MessageTooLarge) as excinfo:
            conn.Producer().publish("x" * 1_100_000, routing_key=unique_name, serializer="json")
        assert log.since(mark) == Counter()
    text = str(excinfo.value)
    assert unique_name in text and "1,048,576" in text and "application/json" in text
    assert attributes(raw, unique_name)["ready"] == 0


def test_oversize_message_in_a_batch_sends_nothing(
    connect: Callable[..., Connection], raw: Any, unique_name: str
) -> None:
    with RequestLog() as log:
        conn = connect(max_message_size=4096)
        producer = conn.Producer()
        producer.maybe_declare(Queue(unique_name))
        mark = log.mark()
        with pytest.raises(MessageTooLarge):
            with producer.batch():
                producer.publish("small", routing_key=unique_name)
                producer.publish("y" * 5000, routing_key=unique_name)
                producer.publish("small too", routing_key=unique_name)
        assert log.since(mark) == Counter()
    assert attributes(raw, unique_name)["ready"] == 0


def test_queue_maximum_message_size_is_honoured(connect: Callable[..., Connection], raw: Any, unique_name: str) -> None:
    raw.create_queue(QueueName=unique_name, Attributes={"MaximumMessageSize": "1024"})
    conn = connect()
    queue = Queue(unique_name)
    queue(conn.default_channel).declare()
    with pytest.raises(MessageTooLarge) as excinfo:
        conn.Producer().publish("z" * 2000, routing_key=unique_name)
    assert "1,024" in str(excinfo.value)


# -- errors ----------------------------------------------------------------------------------
def test_missing_queue_raises_not_found_and_publish_recreates_it(
    connect: Callable[..., Connection], raw: Any, unique_name: str
) -> None:
    conn = connect()
    queue = Queue(unique_name)
    producer = conn.Producer()
    producer.publish("one", routing_key=unique_name, declare=[queue])
    raw.delete_queue(QueueUrl=raw.get_queue_url(QueueName=unique_name)["QueueUrl"])
    with pytest.raises(NotFound) as excinfo:
        producer.publish("lost?", routing_key=unique_name)
    assert unique_name in str(excinfo.value)
    assert isinstance(excinfo.value.__cause__, botocore.exceptions.ClientError)
    with pytest.raises(NotFound):
        queue(conn.channel()).queue_declare(passive=True)
    producer.publish("two", routing_key=unique_name)  # Kombu creates a queue it publishes to
    [message] = collect(conn, queue, 1)
    assert message.payload == "two"


def test_throttling_is_retried_with_backoff(
    connect: Callable[..., Connection], faulty: FaultyEndpoint, unique_name: str
) -> None:
    conn = connect(f"sqs://testing:testing@127.0.0.1:{faulty.port}")
    queue = Queue(unique_name)
    queue(conn.default_channel).declare()
    faulty.inject("SendMessage", "throttle", "throttle")
    conn.Producer().publish("eventually", routing_key=unique_name)
    assert faulty.attempts["SendMessage"] == 3
    [message] = collect(conn, queue, 1)
    assert message.payload == "eventually"


def test_persistent_throttling_raises_a_recoverable_error(
    connect: Callable[..., Connection], faulty: FaultyEndpoint, unique_name: str
) -> None:
    conn = connect(f"sqs://testing:testing@127.0.0.1:{faulty.port}", **{"client-config": ONE_RETRY})
    queue = Queue(unique_name)
    queue(conn.default_channel).declare()
    faulty.inject("SendMessage", *["throttle"] * 4)
    with pytest.raises(ConnectionError) as excinfo:
        conn.Producer().publish("x", routing_key=unique_name)
    assert isinstance(excinfo.value, conn.recoverable_connection_errors)
    assert "Throttling" in str(excinfo.value)
    assert isinstance(excinfo.value.__cause__, botocore.exceptions.ClientError)
    # the library's retry loop takes over where botocore's stopped
    conn.Producer().publish(
        "through",
        routing_key=unique_name,
        retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.2},
    )
    [message] = collect(conn, queue, 1)
    assert message.payload == "through"


def test_reconnecting_leaves_in_flight_messages_alone(
    connect: Callable[..., Connection], faulty: FaultyEndpoint, raw: Any, unique_name: str
) -> None:
    conn = connect(f"sqs://testing:testing@127.0.0.1:{faulty.port}", **{"client-config": ONE_RETRY})
    queue = Queue(unique_name)
    conn.Producer().publish("held", routing_key=unique_name, declare=[queue])
    [held] = collect(conn, queue, 1, ack=False)
    faulty.inject("SendMessage", "throttle", "throttle")
    conn.Producer().publish(
        "after", routing_key=unique_name, retry=True, retry_policy={"max_retries": 3, "interval_start": 0}
    )
    assert faulty.attempts["SendMessage"] == 4  # one publish, one failed try of two attempts, one more
    # the reconnect did not give the held message back to the queue ...
    assert attributes(raw, unique_name) == {"ready": 1, "in_flight": 1}
    # ... and it can still be acknowledged
    held.ack()
    assert conn.transport.flush_acks(10) == 0  # type: ignore[attr-defined]
    assert attributes(raw, unique_name) == {"ready": 1, "in_flight": 0}


def test_access_denied_is_not_retried_and_hides_credentials(
    connect: Callable[..., Connection], faulty: FaultyEndpoint, unique_name: str
) -> None:
    conn = connect(f"sqs://AKIDEXAMPLE:{SECRET.replace('/', '%2F').replace('+', '%2B')}@127.0.0.1:{faulty.port}")
    queue = Queue(unique_name)
    queue(conn.default_channel).declare()
    faulty.inject("SendMessage", "denied")
    with pytest.raises(AccessRefused) as excinfo:
        conn.Producer().publish("x", routing_key=unique_name, retry=True, retry_policy={"max_retries": 2})
    assert faulty.attempts["SendMessage"] == 1
    assert isinstance(excinfo.value, ChannelError)
    assert not isinstance(excinfo.value, conn.recoverable_connection_errors)
    assert "AccessDenied" in str(excinfo.value) and unique_name in str(excinfo.value)
    assert SECRET not in str(excinfo.value) and "AKIDEXAMPLE" not in str(excinfo.value)
    assert isinstance(excinfo.value.__cause__, botocore.exceptions.ClientError)


def test_expired_credentials_reconnect_and_retry(
    connect: Callable[..., Connection], faulty: FaultyEndpoint, unique_name: str
) -> None:
    conn = connect(f"sqs://testing:testing@127.0.0.1:{faulty.port}")
    queue = Queue(unique_name)
    queue(conn.default_channel).declare()
    faulty.inject("SendMessage", "expired")
    with pytest.raises(ConnectionError) as excinfo:
        conn.Producer().publish("x", routing_key=unique_name)
    assert "ExpiredToken" in str(excinfo.value)
    faulty.inject("SendMessage", "expired")
    conn.Producer().publish("renewed", routing_key=unique_name, retry=True, retry_policy={"interval_start": 0})
    [message] = collect(conn, queue, 1)
    assert message.payload == "renewed"


def test_dropped_connections_are_retried(
    connect: Callable[..., Connection], faulty: FaultyEndpoint, unique_name: str
) -> None:
    conn = connect(f"sqs://testing:testing@127.0.0.1:{faulty.port}")
    queue = Queue(unique_name)
    conn.Producer().publish("survives", routing_key=unique_name, declare=[queue])
    faulty.inject("ReceiveMessage", "drop", "drop")
    [message] = collect(conn, queue, 1)
    assert message.payload == "survives"
    assert faulty.attempts["ReceiveMessage"] >= 3


def test_failed_ack_flush_keeps_track_until_deleted(
    connect: Callable[..., Connection], faulty: FaultyEndpoint, raw: Any, unique_name: str
) -> None:
    conn = connect(
        f"sqs://testing:testing@127.0.0.1:{faulty.port}",
        ack_flush_interval=0.05,
        **{"client-config": ONE_RETRY},
    )
    queue = Queue(unique_name)
    for n in range(4):
        conn.Producer().publish(n, routing_key=unique_name, declare=[queue])
    # two failed attempts per flush: the first two flushes fail, the third gets through
    faulty.inject("DeleteMessageBatch", *["unavailable"] * 4)
    collect(conn, queue, 4)
    assert faulty.forwarded["DeleteMessageBatch"].wait(20)
    assert faulty.attempts["DeleteMessageBatch"] >= 5
    conn.release()
    assert attributes(raw, unique_name) == {"ready": 0, "in_flight": 0}


def test_acks_that_cannot_be_deleted_are_reported_and_come_back(
    connect: Callable[..., Connection], faulty: FaultyEndpoint, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn = connect(
        f"sqs://testing:testing@127.0.0.1:{faulty.port}",
        visibility_timeout=2,
        ack_flush_interval=0.05,
        **{"client-config": NO_RETRIES},
    )
    queue = Queue(unique_name)
    for n in range(2):
        conn.Producer().publish(n, routing_key=unique_name, declare=[queue])
    faulty.forever["DeleteMessageBatch"] = "unavailable"
    collect(conn, queue, 2)
    with caplog.at_level(logging.ERROR):
        conn.release()
    assert "2 acknowledged SQS message(s) could not be deleted" in caplog.text
    faulty.forever.clear()
    # not deleted, so not lost: SQS delivers them again after the visibility timeout
    again = collect(connect(f"sqs://testing:testing@127.0.0.1:{faulty.port}"), queue, 2, timeout=15)
    assert sorted(m.payload for m in again) == [0, 1]
    assert all(m.delivery_info["redelivered"] for m in again)


def test_batch_entries_sqs_failed_are_retried_or_reported(
    connect: Callable[..., Connection], faulty: FaultyEndpoint, raw: Any, unique_name: str
) -> None:
    conn = connect(f"sqs://testing:testing@127.0.0.1:{faulty.port}")
    producer = conn.Producer()
    producer.maybe_declare(Queue(unique_name))
    # SQS failed one entry on its side: that entry alone is sent again
    faulty.inject("SendMessageBatch", "fail-entry")
    with producer.batch():
        for n in range(3):
            producer.publish(n, routing_key=unique_name)
    assert faulty.attempts["SendMessageBatch"] == 2
    assert attributes(raw, unique_name)["ready"] == 3
    # SQS refused one entry: the error says which and how many, the others are sent
    faulty.inject("SendMessageBatch", "reject-entry")
    with pytest.raises(BatchPublishError) as excinfo:
        with producer.batch():
            for n in range(3, 6):
                producer.publish(n, routing_key=unique_name)
    assert "1 of 3 messages were not sent" in str(excinfo.value)
    assert unique_name in str(excinfo.value) and "InvalidParameterValue" in str(excinfo.value)
    assert attributes(raw, unique_name)["ready"] == 5


def test_unreachable_endpoint_raises_connection_error(connect: Callable[..., Connection], unique_name: str) -> None:
    from t.conftest import free_port

    conn = connect(f"sqs://testing:testing@127.0.0.1:{free_port()}", **{"client-config": NO_RETRIES})
    with pytest.raises(ConnectionError) as excinfo:
        Queue(unique_name)(conn.channel()).declare()
    assert isinstance(excinfo.value.__cause__, botocore.exceptions.BotoCoreError)


def test_non_direct_exchange_declares_with_a_warning(
    connect: Callable[..., Connection], unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn = connect()
    assert conn.transport.capabilities.exchange_types == frozenset({"direct"})
    exchange = Exchange(unique_name, type="topic")
    queue = Queue(unique_name, exchange, routing_key="a.*")
    with caplog.at_level(logging.WARNING):
        conn.Producer().publish("routed", exchange=exchange, routing_key="a.b", declare=[queue])
    assert "routes only to queues bound in this process" in caplog.text
    [message] = collect(conn, queue, 1)
    assert message.payload == "routed"


def test_drain_events_timeout_holds_when_the_endpoint_stops_answering(
    connect: Callable[..., Connection], host: str, unique_name: str
) -> None:
    # a long poll whose endpoint goes silent (a half-open connection): botocore alone would
    # wait 60 s per attempt, four attempts, before drain_events(timeout=1) returned
    from t.faultproxy import FaultProxy

    moto_host, moto_port = host.rsplit(":", 1)
    with FaultProxy(moto_host, int(moto_port)) as proxy:
        conn = connect(f"sqs://testing:testing@127.0.0.1:{proxy.port}", wait_time_seconds=10)
        queue = Queue(unique_name)
        queue(conn.default_channel).declare()
        outcome: list[BaseException | None] = []

        def drain() -> None:
            try:
                conn.drain_events(timeout=1)
            except BaseException as exc:
                outcome.append(exc)
            else:
                outcome.append(None)

        with Consumer(conn, [queue], callbacks=[lambda body, message: message.ack()]):
            proxy.stall()
            started = time.monotonic()
            waiter = threading.Thread(target=drain, daemon=True)
            waiter.start()
            waiter.join(20)
            elapsed = time.monotonic() - started
            proxy.stall(False)
            proxy.cut()
        assert not waiter.is_alive(), "drain_events(timeout=1) still waiting after 20 s"
        assert elapsed < 1 + 3 + 2
        [exc] = outcome
        # a timeout, or an error ConsumerMixin and ensure() answer by reconnecting
        assert isinstance(exc, (socket.timeout, *conn.recoverable_connection_errors)), exc
