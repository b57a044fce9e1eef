"""Redis Streams leases with a short lease (1 s): a killed consumer's messages go to
another consumer once its lease lapses, each once; a live consumer keeps what it holds
for as long as it holds it; a message whose consumers keep dying is dead-lettered after
``max_deliveries``; a connection cut while a consumer waits on an empty stream loses
nothing (the wait takes nothing)."""
# ruff: noqa: F401, F811 - the fixtures of streams_fixtures are imported and taken as parameters

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from kombu_like import Connection, Exchange, Message, Queue
from kombu_like.transport.redis_streams import StreamKeys
from t.faultproxy import FaultProxy
from t.integration.streams_fixtures import prefix, url

pytestmark = pytest.mark.redis

HERE = Path(__file__).parent
LEASE = 1.0
#: seconds a consumer may need beyond the moment a lease lapses (a loaded machine)
SLACK = 4.0
#: seconds 500 taken-back messages may need to reach their consumer after the lease
REDELIVERY_SLACK = 0.5


def options(prefix: str, **more: Any) -> dict[str, Any]:
    return {"global_keyprefix": prefix, "lease": LEASE, **more}


def hold_and_kill(url: str, queue: Queue, count: int, opts: dict[str, Any]) -> tuple[set[int], float]:
    """Run ``crash_consumer_proc.py`` until it holds ``count`` messages, SIGKILL it;
    return the ids it held and when it was killed."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent.parent), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, str(HERE / "crash_consumer_proc.py"), url, queue.name, str(count), json.dumps(opts)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("holding ids="), f"the consumer process did not take the messages: {line!r}"
        held = {int(n) for n in line.split()[1].split("=", 1)[1].split(",") if n.strip()}
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        return held, time.time()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def consume(
    conn: Connection, queues: list[Queue], until: Any, seconds: float, hold: Any = None
) -> list[tuple[Any, bool, float, str]]:
    """(payload, redelivered, when, queue) of what arrives until ``until(received)`` and
    then for a quiet half second more (a second copy would arrive there).  Messages whose
    payload ``hold`` accepts are held unacknowledged until the end."""
    received: list[tuple[Any, bool, float, str]] = []
    held: list[Message] = []

    def on_message(message: Message) -> None:
        received.append((message.payload, bool(message.redelivered), time.time(), message.delivery_info["routing_key"]))
        if hold is not None and hold(message.payload):
            held.append(message)
        else:
            message.ack()

    with conn.Consumer(queues, on_message=on_message, prefetch_count=100):
        deadline = time.monotonic() + seconds
        while not until(received) and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.25)
            except socket.timeout:
                pass
        quiet_until = time.monotonic() + 0.5
        while time.monotonic() < quiet_until:
            try:
                conn.drain_events(timeout=0.1)
            except socket.timeout:
                pass
        for message in held:
            message.ack()
    return received


def test_killed_consumers_messages_go_to_another_consumer_once(
    url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue = Queue(f"crash-{uuid.uuid4().hex[:6]}")
    opts = options(prefix)
    held_count = 500
    with Connection(url, transport_options=opts) as conn:
        producer = conn.Producer()
        for n in range(held_count):
            producer.publish({"id": n}, routing_key=queue.name, declare=[queue] if n == 0 else [])
    held, killed_at = hold_and_kill(url, queue, held_count, opts)
    assert held == set(range(held_count))
    with caplog.at_level(logging.WARNING, "kombu_like.transport.redis_streams"):
        with Connection(url, transport_options=opts) as conn:
            # the consumer that takes them back holds a message of its own meanwhile: its
            # renewals and its claims run on the same rounds
            conn.Producer().publish({"id": -1}, routing_key=queue.name)
            until_all = lambda got: len(got) > held_count  # noqa: E731
            received = consume(conn, [queue], until_all, LEASE + SLACK + 3, hold=lambda p: p["id"] == -1)
            queue(conn.default_channel).delete()
    assert not [r for r in caplog.records if "maintenance failed" in r.getMessage()]
    assert received[0][:2] == ({"id": -1}, False)
    received = received[1:]
    ids = [payload["id"] for payload, _, _, _ in received]
    assert sorted(ids) == sorted(held), f"{len(ids)} delivered, {len(set(ids))} distinct of {len(held)} held"
    assert all(redelivered for _, redelivered, _, _ in received)
    first = min(at for _, _, at, _ in received)
    last = max(at for _, _, at, _ in received)
    # a lease lapses three quarters of it after the last renewal (at most a quarter of it
    # before the kill) ...
    assert first - killed_at >= LEASE / 2 - 0.2, f"taken back {first - killed_at:.2f} s after the kill"
    # ... and the other consumer, looking every quarter of it, takes them back within it
    assert last - killed_at <= LEASE + REDELIVERY_SLACK, f"redelivery took {last - killed_at:.2f} s"


def test_live_consumer_keeps_its_message_for_several_leases(
    url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue = Queue(f"live-{uuid.uuid4().hex[:6]}")
    opts = options(prefix)
    with caplog.at_level(logging.WARNING, "kombu_like.transport.redis_streams"):
        with Connection(url, transport_options=opts) as holder, Connection(url, transport_options=opts) as other:
            holder.Producer().publish("mine", routing_key=queue.name, declare=[queue])
            message = queue(holder.channel()).get()
            assert message is not None
            # three leases long: the holder's maintenance renews, the other's claims find nothing
            elsewhere = consume(other, [queue], lambda got: False, 3 * LEASE)
            assert elsewhere == []
            message.ack()
            assert queue(other.default_channel).queue_declare(passive=True).message_count == 0
    # every round of the holder's maintenance went through (a renewal that failed after
    # reaching the server would skip the claims of the same round)
    assert not [r.getMessage() for r in caplog.records if "maintenance failed" in r.getMessage()]


def test_poison_message_is_dead_lettered_after_max_deliveries(
    url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    tag = uuid.uuid4().hex[:6]
    dlx = Exchange(f"dlx-{tag}", type="direct")
    dead = Queue(f"dead-{tag}", dlx, routing_key="dead")
    queue = Queue(
        f"poison-{tag}", queue_arguments={"x-dead-letter-exchange": dlx.name, "x-dead-letter-routing-key": "dead"}
    )
    opts = options(prefix, max_deliveries=2)
    with Connection(url, transport_options=opts) as conn:
        dead(conn.default_channel).declare()
        conn.Producer().publish({"id": 7}, routing_key=queue.name, declare=[queue])
    for _ in range(2):  # each delivery crashes its consumer
        held, _ = hold_and_kill(url, queue, 1, opts)
        assert held == {7}
    with caplog.at_level(logging.WARNING, "kombu_like.transport.redis_streams"):
        with Connection(url, transport_options=opts) as conn:
            received = consume(conn, [queue, dead], lambda got: len(got) >= 1, LEASE + SLACK)
    assert [(payload, key) for payload, _, _, key in received] == [({"id": 7}, "dead")]
    assert any("max_deliveries" in r.getMessage() and queue.name in r.getMessage() for r in caplog.records)


def test_connection_cut_while_waiting_on_an_empty_stream_loses_nothing(url: str, redis_url: str, prefix: str) -> None:
    queue = Queue(f"cut-{uuid.uuid4().hex[:6]}")
    opts = options(prefix)
    raw = redis.Redis.from_url(redis_url)
    with FaultProxy("127.0.0.1", 6379) as proxy, Connection(url, transport_options=opts) as publisher:
        queue(publisher.default_channel).declare()
        through = proxy.url_for(url)
        with Connection(through, transport_options=opts) as consumer:
            got: list[Message] = []

            def cut_then_publish() -> None:
                time.sleep(0.4)  # the consumer is waiting on the empty stream by now
                proxy.cut()
                publisher.Producer().publish("during the cut", routing_key=queue.name)

            cutter = threading.Thread(target=cut_then_publish)
            with consumer.Consumer([queue], on_message=got.append):
                cutter.start()
                with pytest.raises(consumer.connection_errors):
                    consumer.drain_events(timeout=5)
            cutter.join()
        assert got == []
        # the wait took nothing: the message is there for the next consumer at once, fresh
        with Connection(through, transport_options=opts) as again:
            received = consume(again, [queue], lambda r: len(r) >= 1, 2.0)
        assert [(payload, redelivered) for payload, redelivered, _, _ in received] == [("during the cut", False)]
        stream = StreamKeys(prefix).stream(queue.name)
        assert raw.xpending(stream, "kombu_like")["pending"] == 0
    raw.close()


def test_silent_connection_while_waiting_raises_within_socket_timeout(url: str, prefix: str) -> None:
    queue = Queue(f"silent-{uuid.uuid4().hex[:6]}")
    opts = options(prefix, socket_timeout=0.5)
    with FaultProxy("127.0.0.1", 6379) as proxy, Connection(url, transport_options=opts) as direct:
        queue(direct.default_channel).declare()
        with Connection(proxy.url_for(url), transport_options=opts) as consumer:
            with consumer.Consumer([queue], on_message=lambda m: None):
                with pytest.raises(socket.timeout):
                    consumer.drain_events(timeout=0.3)  # waits on the empty stream
                proxy.stall()
                started = time.monotonic()
                try:
                    with pytest.raises(consumer.connection_errors):
                        consumer.drain_events(timeout=10)
                finally:
                    proxy.stall(False)
                assert time.monotonic() - started < 3
