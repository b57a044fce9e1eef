"""Hostile input conformance tests: what a broken or malicious producer can put in a queue.

Every transport's test module mixes :class:`HostileInputTests` into a class with its URL,
as for :class:`~kombu_like.testing.conformance.TransportConformance`::

    class TestMyTransportHostileInput(HostileInputTests):
        url = "mytransport://localhost"

The messages are generated with hypothesis -- wrong types in every envelope field
(headers, properties, delivery_info, body, content type and encoding, the compression
header), bodies that are not base64, not UTF-8, truncated or not compressed as claimed,
nested garbage -- and written two ways: through the :class:`~kombu_like.Producer`, and
raw, as another program would (JSON pushed onto a Redis list, a row inserted into the
sqlite file, an SQS message sent with boto3, an envelope put into the memory store, an
AMQP ``basic_publish`` with odd properties through the ``amqp`` package).

What every transport must show, whatever the message:

* ``drain_events`` never fails because of it: the message reaches exactly one of the
  callbacks or ``on_decode_error``, and the good message published after it arrives;
* with :class:`~kombu_like.mixins.ConsumerMixin`, ``run()`` keeps going, each bad message
  is logged on one line naming its queue and the reason, and rejected;
* the Producer either sends a message or raises an error of the library's tree (or a
  ``ValueError``) naming the field;
* a compressed body larger than the consumer's ``max_decompressed_size`` ends in a
  :class:`~kombu_like.exceptions.DecodeError` naming the limit, without the consumer's
  memory growing past it -- a 1 GiB zstd "bomb" is consumed in a child process, whose
  peak RSS must stay under :attr:`HostileInputTests.bomb_rss_limit`.

:attr:`HostileInputTests.hostile_examples` bounds the generated examples per test (a few
seconds per transport); raise it (or set ``HYPOTHESIS_HOSTILE_EXAMPLES``) for a longer
hunt.  :meth:`HostileInputTests.write_raw` knows the built-in transports; a third-party
transport overrides it.

The generated messages and the fixed nasty cases are in :mod:`.strategies`, the
decompression bomb and the child process that consumes it in :mod:`.bomb`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kombu_like import Connection, Consumer, Message, Producer, Queue
from kombu_like.exceptions import KombuError
from kombu_like.mixins import ConsumerMixin

from ..conformance.base import ConformanceBase
from .bomb import BOMB_SCRIPT, zstd_bomb_file
from .strategies import (
    EXPLICIT_AMQP,
    EXPLICIT_RAW,
    garbage,
    producer_arguments,
    raw_amqp_messages,
    raw_envelopes,
    raw_texts,
)

__all__ = [
    "CollectingWorker",
    "HostileInputTests",
    "garbage",
    "producer_arguments",
    "raw_amqp_messages",
    "raw_envelopes",
]


def _hypothesis_settings(examples: int) -> settings:
    return settings(
        max_examples=int(os.environ.get("HYPOTHESIS_HOSTILE_EXAMPLES", examples)),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def _sqs_can_carry(raw: str) -> bool:
    """SQS itself refuses empty bodies, bodies over 256 KiB and most control characters."""
    if not raw or len(raw.encode("utf-8", "surrogatepass")) > 256 * 1024:
        return False
    return not any((ord(c) < 0x20 and c not in "\t\n\r") or 0xD800 <= ord(c) <= 0xDFFF for c in raw)


class _Outcomes:
    """What became of the messages of one example."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.bodies: list[Any] = []
        self.errors: list[BaseException] = []
        self.sentinel = False
        self.lock = threading.Lock()

    def on_body(self, body: Any, message: Message) -> None:
        with self.lock:
            if body == {"sentinel": self.token}:
                self.sentinel = True
            else:
                self.bodies.append(body)
        message.ack()

    def on_error(self, message: Message, exc: BaseException) -> None:
        with self.lock:
            self.errors.append(exc)
        message.reject()

    @property
    def settled(self) -> int:
        return len(self.bodies) + len(self.errors)


class HostileInputTests(ConformanceBase):
    """Hostile messages: never a crash, never a silent loss, the next message delivered.

    Blocking API only (``apis``): the raw writes reach into the blocking connection's
    store or driver, and one test is about the blocking ``ConsumerMixin``.
    """

    apis = ("sync",)
    #: generated examples per test in the default (CI) profile
    hostile_examples: int = 12
    #: peak RSS (bytes) a consumer may reach while refusing a 1 GiB zstd bomb
    bomb_rss_limit: int = 200 * 1024 * 1024

    # -- writing like another program --------------------------------------------------
    def write_raw(self, conn: Connection, queue: str, raw: str) -> bool:
        """Put ``raw`` (text another program wrote) into ``queue`` without the library's
        producer; return False when this transport cannot carry such a message at all."""
        driver = conn.transport.driver_type
        store = getattr(conn.default_channel, "store", None)
        if driver == "memory":
            # the memory store takes envelopes, not bytes: only JSON objects get there
            try:
                payload = json.loads(raw)
            except ValueError:
                return False
            if not isinstance(payload, dict) or not isinstance(payload.get("properties"), dict):
                return False
            store.put(queue, payload)  # type: ignore[union-attr]
            return True
        if driver == "redis":
            import redis

            client = redis.Redis.from_url(conn.as_uri(include_password=True))
            try:
                client.lpush(store.keys.list_key(queue), raw.encode("utf-8", "surrogatepass"))  # type: ignore[union-attr]
            finally:
                client.close()
            return True
        if driver == "sqlite":
            import sqlite3

            db = sqlite3.connect(store.path)  # type: ignore[union-attr]
            try:
                with db:
                    db.execute("INSERT INTO kl_messages (queue, priority, payload) VALUES (?, 0, ?)", (queue, raw))
            finally:
                db.close()
            return True
        if driver == "sqs":
            if not _sqs_can_carry(raw):
                return False
            import boto3

            info = conn.info()
            endpoint = f"http://{info['hostname']}:{info['port']}" if info.get("port") else None
            client = boto3.client(
                "sqs",
                region_name=conn.transport_options.get("region", "us-east-1"),
                endpoint_url=endpoint,
                aws_access_key_id=info.get("userid") or "testing",
                aws_secret_access_key=info.get("password") or "testing",
            )
            url = client.get_queue_url(QueueName=store.sqs_name(queue))["QueueUrl"]  # type: ignore[union-attr]
            client.send_message(QueueUrl=url, MessageBody=raw)
            return True
        pytest.skip(f"no raw writer for transport {driver!r}: override write_raw")

    def parked(self, conn: Connection, queue: str) -> int:
        """How many messages of ``queue`` the transport has set aside as unreadable, where
        its documentation says it does (Redis: the list ``<deadletter_prefix><queue>``)."""
        if conn.transport.driver_type == "redis":
            store = conn.default_channel.store  # type: ignore[attr-defined]
            return int(store.execute([("LLEN", store.keys.deadletter(queue))])[0])
        return 0

    def write_raw_amqp(self, conn: Connection, queue: str, fields: dict[str, Any]) -> None:
        """``basic_publish`` an ``amqp.Message(**fields)`` to ``queue`` with the ``amqp`` package."""
        import amqp

        info = conn.info()
        raw = amqp.Connection(
            host=f"{info['hostname']}:{info['port'] or 5672}",
            userid=info["userid"] or "guest",
            password=info["password"] or "guest",
            virtual_host=info["virtual_host"] or "/",
            connect_timeout=10,
        )
        raw.connect()
        try:
            channel = raw.channel()
            fields = dict(fields)
            body = fields.pop("body")
            channel.basic_publish(amqp.Message(body, **fields), exchange="", routing_key=queue)
            channel.close()
        finally:
            raw.close()

    # -- one example ------------------------------------------------------------------------
    def _settle(self, conn: Connection, queue: Queue, put: Callable[[], int]) -> _Outcomes:
        """Write what ``put`` writes (it returns how many messages), then a good message;
        consume until the good one and all of put's arrived."""
        outcomes = _Outcomes(uuid.uuid4().hex)
        parked_before = self.parked(conn, queue.name)
        expected = put()
        Producer(conn).publish({"sentinel": outcomes.token}, routing_key=queue.name)

        def accounted() -> int:
            return outcomes.settled + self.parked(conn, queue.name) - parked_before

        with Consumer(conn, [queue], callbacks=[outcomes.on_body], on_decode_error=outcomes.on_error):
            self.drain_until(conn, lambda: outcomes.sentinel and accounted() >= expected)
        assert accounted() == expected, (outcomes.bodies, outcomes.errors)
        return outcomes

    def _hostile_queue(self, conn: Connection, prefix: str) -> Queue:
        queue = self.new_queue(prefix)
        self.declare(conn, queue)
        return queue

    # -- the tests ------------------------------------------------------------------------
    def test_raw_envelopes_never_crash_the_consumer(self, conn: Connection) -> None:
        queue = self._hostile_queue(conn, "hostile_raw")
        if conn.transport.driver_type == "amqp":
            strategy: st.SearchStrategy[Any] = raw_amqp_messages()

            def put_one(fields: Any) -> int:
                self.write_raw_amqp(conn, queue.name, fields)
                return 1
        else:
            strategy = raw_texts(any_properties=conn.transport.driver_type != "memory")

            def put_one(fields: Any) -> int:
                return 1 if self.write_raw(conn, queue.name, fields) else 0

        explicit: tuple[Any, ...] = EXPLICIT_AMQP if conn.transport.driver_type == "amqp" else EXPLICIT_RAW
        for fields in explicit:
            self._settle(conn, queue, lambda: put_one(fields))  # noqa: B023 - called at once

        @_hypothesis_settings(self.hostile_examples)
        @given(strategy)
        def check(fields: Any) -> None:
            self._settle(conn, queue, lambda: put_one(fields))

        check()

    def test_producer_validates_or_delivers(self, conn: Connection) -> None:
        queue = self._hostile_queue(conn, "hostile_producer")

        @_hypothesis_settings(self.hostile_examples)
        @given(producer_arguments())
        def check(kwargs: dict[str, Any]) -> None:
            body = kwargs.pop("body")

            def put() -> int:
                try:
                    Producer(conn).publish(body, routing_key=queue.name, **kwargs)
                except (KombuError, ValueError) as exc:
                    # a refusal names what was wrong, never a bare driver error
                    assert str(exc)
                    return 0
                return 1

            self._settle(conn, queue, put)

        check()

    def test_non_mapping_headers_are_refused_by_the_producer(self, conn: Connection) -> None:
        queue = self._hostile_queue(conn, "hostile_headers")
        bad: list[Any] = [[("a", 1)], "a=1", 5]
        for headers in bad:
            with pytest.raises(ValueError, match="headers must be a mapping") as info:
                Producer(conn).publish({"n": 1}, routing_key=queue.name, headers=headers)
            assert isinstance(info.value, KombuError)

    def test_consumer_mixin_keeps_running(self, conn: Connection) -> None:
        queue = self._hostile_queue(conn, "hostile_mixin")
        raw_strategy = raw_texts(any_properties=conn.transport.driver_type != "memory")
        is_amqp = conn.transport.driver_type == "amqp"
        worker = CollectingWorker(self.make_connection(), queue)
        handler = _Records()
        # every ERROR line of the library: one per bad message, wherever it ends
        mixin_logger = logging.getLogger("kombu_like")
        mixin_logger.addHandler(handler)
        previous_level = mixin_logger.level
        mixin_logger.setLevel(logging.ERROR)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:

            @_hypothesis_settings(max(3, self.hostile_examples // 3))
            @given(st.lists(raw_amqp_messages() if is_amqp else raw_strategy, min_size=1, max_size=3))
            def check(items: list[Any]) -> None:
                token = uuid.uuid4().hex
                logged_before = len(handler.records)
                bodies_before = len(worker.bodies)
                written = 0
                for item in items:
                    if is_amqp:
                        self.write_raw_amqp(conn, queue.name, item)
                        written += 1
                    elif self.write_raw(conn, queue.name, item):
                        written += 1
                Producer(conn).publish({"sentinel": token}, routing_key=queue.name)
                deadline = time.monotonic() + self.wait
                while {"sentinel": token} not in worker.bodies[bodies_before:] or (
                    len(worker.bodies) - bodies_before - 1 + len(handler.records) - logged_before < written
                ):
                    assert thread.is_alive(), "ConsumerMixin.run() returned"
                    assert time.monotonic() < deadline, "the good message did not arrive"
                    time.sleep(0.01)
                good = len(worker.bodies) - bodies_before - 1
                new_records = handler.records[logged_before:]
                assert len(new_records) == written - good, [r.getMessage() for r in new_records]
                for record in new_records:
                    text = record.getMessage()
                    assert "\n" not in text
                    assert repr(queue.name) in text

            check()
            assert thread.is_alive()
        finally:
            worker.should_stop = True
            thread.join(10)
            mixin_logger.removeHandler(handler)
            mixin_logger.setLevel(previous_level)

    @pytest.mark.parametrize("content_type", ["application/json", "application/x-yaml"])
    def test_decompression_bomb_ends_in_decode_error_with_bounded_memory(
        self, conn: Connection, content_type: str
    ) -> None:
        pytest.importorskip("zstandard")
        queue_name = self.unique("hostile_bomb")
        self.track_queue(queue_name)
        options = {k: v for k, v in conn.transport_options.items() if isinstance(v, str | int | float | bool)}
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                BOMB_SCRIPT,
                conn.as_uri(include_password=True),
                json.dumps(options),
                zstd_bomb_file(),
                content_type,
                queue_name,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert result.returncode == 0, result.stderr
        outcome = json.loads(result.stdout.strip().splitlines()[-1])
        assert outcome.get("body") == {"after": 1}, outcome
        peak = outcome["rss_peak_kib"] * 1024
        if content_type == "application/json":
            assert outcome["error"].startswith("DecodeError"), outcome
            assert "limit of 67108864 bytes" in outcome["error"]
        else:  # refused by the accept check, before anything was decompressed
            assert outcome["error"].startswith("ContentDisallowed"), outcome
            assert peak - outcome["rss_before_kib"] * 1024 < 16 * 1024 * 1024, outcome
        assert peak < self.bomb_rss_limit, outcome
        print(
            f"zstd bomb ({content_type}) on {conn.transport.driver_type}: peak RSS {peak / 2**20:.0f} MiB, "
            f"{outcome['rss_before_kib'] / 1024:.0f} MiB before consuming"
        )


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class CollectingWorker(ConsumerMixin):
    """A :class:`~kombu_like.mixins.ConsumerMixin` worker on one queue that keeps the bodies it
    receives (in :attr:`bodies`) and acks them; bad messages take the mixin's path."""

    def __init__(self, connection: Connection, queue: Queue) -> None:
        self.connection = connection
        self.queue = queue
        self.bodies: list[Any] = []

    def get_consumers(self, Consumer: Any, channel: Any) -> list[Any]:  # noqa: N803
        return [Consumer(queues=[self.queue], callbacks=[self.on_task])]

    def on_task(self, body: Any, message: Message) -> None:
        self.bodies.append(body)
        message.ack()

    def consume(self, *args: Any, **kwargs: Any) -> Iterator[None]:
        # a short safety interval: should_stop is noticed quickly when the test ends
        kwargs.setdefault("safety_interval", 0.2)
        return super().consume(*args, **kwargs)
