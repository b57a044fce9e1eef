"""At-least-once delivery on Redis: killed consumers, closed channels, restore sweeps,
dropped and silent connections, and input written by other programs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from kombu_like import Connection, Consumer, Exchange, Message, Queue
from kombu_like.exceptions import ConnectionError as KLConnectionError
from kombu_like.exceptions import OperationalError
from t.faultproxy import FaultProxy
from t.integration.test_redis_servers import redis_server

pytestmark = pytest.mark.redis


@pytest.fixture
def client(redis_url: str, unique_name: str) -> Iterator[redis.Redis]:
    """A plain redis-py client; every key naming the test is deleted afterwards."""
    plain = redis.Redis.from_url(redis_url)
    yield plain
    for key in plain.scan_iter(match=f"*{unique_name}*"):
        plain.delete(key)
    for tag, value in plain.hscan_iter("unacked"):
        if unique_name.encode() in value:
            plain.hdel("unacked", tag)
            plain.zrem("unacked_index", tag)
    plain.close()


def publish(url: str, queue: str, bodies: list[Any], **options: Any) -> None:
    with Connection(url, transport_options=options) as conn:
        producer = conn.Producer()
        producer.maybe_declare(Queue(queue, routing_key=queue))
        for body in bodies:
            producer.publish(body, routing_key=queue)


def collect(conn: Connection, queue: str, count: int, timeout: float = 10.0, ack: bool = True) -> list[Message]:
    received: list[Message] = []

    def on_message(message: Message) -> None:
        received.append(message)
        if ack:
            message.ack()

    with Consumer(conn, [Queue(queue, routing_key=queue)], on_message=on_message):
        deadline = time.monotonic() + timeout
        while len(received) < count and time.monotonic() < deadline:
            with contextlib.suppress(socket.timeout):
                conn.drain_events(timeout=max(deadline - time.monotonic(), 0.01))
    return received


def held_tags(client: redis.Redis, queue: str, key: str = "unacked") -> list[bytes]:
    """Delivery tags of ``queue``'s messages recorded in the unacked hash."""
    return [tag for tag, value in client.hscan_iter(key) if queue.encode() in value]


CHILD = """
import time
from kombu_like import Connection, Queue

queue = Queue({queue!r}, routing_key={queue!r})
with Connection({url!r}, transport_options={options!r}) as conn:
    def on_message(body, message):
        print("got", body["n"], flush=True)
        time.sleep(60)  # SIGKILL arrives here: the message is never acked

    with conn.Consumer([queue], callbacks=[on_message], prefetch_count={prefetch}, accept=["json"]):
        conn.drain_events(timeout=20)
"""


def kill_consumer_holding(url: str, queue: str, prefetch: int = 1, options: dict[str, Any] | None = None) -> None:
    """Run a consumer of ``queue`` in a child process and SIGKILL it mid-message."""
    code = textwrap.dedent(CHILD.format(queue=queue, url=url, prefetch=prefetch, options=options or {}))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line.startswith("got"), f"the child consumer failed: {proc.stderr.read()}"
    finally:
        proc.kill()  # SIGKILL: no clean-up code runs in the child
        proc.wait(10)


# -- killed consumers and the visibility timeout ---------------------------------------


def test_message_of_a_killed_consumer_comes_back_redelivered(
    redis_url: str, unique_name: str, client: redis.Redis, own_unacked: dict[str, str]
) -> None:
    publish(redis_url, unique_name, [{"n": 1}])
    kill_consumer_holding(redis_url, unique_name, options=own_unacked)
    assert client.llen(unique_name) == 0
    assert len(held_tags(client, unique_name, own_unacked["unacked_key"])) == 1
    options = {"visibility_timeout": 1, "unacked_restore_interval": 0.2, **own_unacked}
    with Connection(redis_url, transport_options=options) as conn:
        [message] = collect(conn, unique_name, 1, timeout=15)
    assert message.payload == {"n": 1}
    assert message.redelivered
    assert held_tags(client, unique_name, own_unacked["unacked_key"]) == []


def test_restore_sweep_runs_on_the_configured_interval(
    redis_url: str, unique_name: str, client: redis.Redis, own_unacked: dict[str, str]
) -> None:
    own = own_unacked
    publish(redis_url, unique_name, [{"n": 1}])
    kill_consumer_holding(redis_url, unique_name, options=own)
    # the message turns overdue 5 s after the child took it; this consumer sweeps once at
    # start, while it is not overdue yet (5 s leaves room for a slow start on a loaded
    # machine), and then only every 60 s, so it must not see the message within 7 s
    slow = {"visibility_timeout": 5, "unacked_restore_interval": 60, **own}
    with Connection(redis_url, transport_options=slow) as conn:
        assert collect(conn, unique_name, 1, timeout=7.0) == []
    assert len(held_tags(client, unique_name, own["unacked_key"])) == 1
    fast = {"visibility_timeout": 5, "unacked_restore_interval": 0.2, **own}
    with Connection(redis_url, transport_options=fast) as conn:
        [message] = collect(conn, unique_name, 1, timeout=15)
    assert message.redelivered


def test_concurrent_sweeps_restore_each_message_once(
    redis_url: str, unique_name: str, client: redis.Redis, own_unacked: dict[str, str]
) -> None:
    total = 30
    publish(redis_url, unique_name, [{"n": n} for n in range(total)])
    kill_consumer_holding(redis_url, unique_name, prefetch=total, options=own_unacked)
    assert client.llen(unique_name) == 0
    assert len(held_tags(client, unique_name, own_unacked["unacked_key"])) == total
    received: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()
    start = threading.Barrier(4)
    options = {"visibility_timeout": 0.5, "unacked_restore_interval": 0.05, **own_unacked}

    def consumer() -> None:
        with Connection(redis_url, transport_options=options) as conn:

            def on_message(message: Message) -> None:
                with lock:
                    received.append(message.payload["n"])
                message.ack()

            with Consumer(conn, [Queue(unique_name, routing_key=unique_name)], on_message=on_message):
                start.wait(10)
                while not stop.is_set():
                    with contextlib.suppress(socket.timeout):
                        conn.drain_events(timeout=0.2)

    threads = [threading.Thread(target=consumer) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len(received) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # several more sweeps by every consumer: nothing may come twice
    stop.set()
    for thread in threads:
        thread.join(10)
    counts = Counter(received)
    assert sorted(counts) == list(range(total))
    assert [n for n, seen in counts.items() if seen > 1] == []
    assert held_tags(client, unique_name, own_unacked["unacked_key"]) == []


def test_restore_on_channel_close_is_immediate(redis_url: str, unique_name: str, client: redis.Redis) -> None:
    publish(redis_url, unique_name, [{"n": 1}, {"n": 2}])
    with Connection(redis_url) as conn:
        channel = conn.channel()
        got: list[Message] = []
        consumer = Consumer(channel, [Queue(unique_name, routing_key=unique_name)], on_message=got.append)
        consumer.consume()
        while len(got) < 2:
            conn.drain_events(timeout=5)
        assert client.llen(unique_name) == 0
        assert len(held_tags(client, unique_name)) == 2
        channel.close()
        # no waiting: the close itself put them back, first delivered first again
        assert held_tags(client, unique_name) == []
        back = [json.loads(raw) for raw in reversed(client.lrange(unique_name, 0, -1))]
        assert [m["properties"]["delivery_info"]["redelivered"] for m in back] == [True, True]
        again = collect(conn, unique_name, 2)
    assert [m.payload["n"] for m in again] == [1, 2]
    assert all(m.redelivered for m in again)


def test_late_ack_of_a_restored_message_does_not_unrecord_its_redelivery(
    redis_url: str, unique_name: str, client: redis.Redis, own_unacked: dict[str, str]
) -> None:
    # consumer A holds a message past the visibility timeout; B gets it redelivered; A's
    # late ack must not erase B's record, or B dying would lose the message
    publish(redis_url, unique_name, [{"n": 1}], **own_unacked)
    options = {"visibility_timeout": 0.5, "unacked_restore_interval": 0.1, **own_unacked}
    with (
        Connection(redis_url, transport_options=options) as slow,
        Connection(redis_url, transport_options=options) as fast,
    ):
        [first] = collect(slow, unique_name, 1, ack=False)
        [second] = collect(fast, unique_name, 1, ack=False, timeout=10)
        assert second.redelivered
        first.ack()
        slow.drain_events  # noqa: B018 - the ack is on its way; the next command reads its reply
        with contextlib.suppress(socket.timeout):
            collect(slow, unique_name, 1, timeout=0.3)
        assert len(held_tags(client, unique_name, own_unacked["unacked_key"])) == 1
        second.ack()
    assert held_tags(client, unique_name, own_unacked["unacked_key"]) == []


def test_without_ack_emulation_nothing_is_recorded(redis_url: str, unique_name: str, client: redis.Redis) -> None:
    publish(redis_url, unique_name, [{"n": 1}])
    with Connection(redis_url, transport_options={"ack_emulation": False}) as conn:
        [message] = collect(conn, unique_name, 1, ack=False)
        assert message.payload == {"n": 1}
        assert held_tags(client, unique_name) == []
        message.requeue()  # still possible: it goes back on the queue
        assert client.llen(unique_name) == 1


def test_expiring_queue_keeps_kombus_expiry_bookkeeping(redis_url: str, unique_name: str, client: redis.Redis) -> None:
    exchange = Exchange(unique_name, type="direct")
    queue = Queue(unique_name, exchange, routing_key="k", expires=30)
    with Connection(redis_url) as conn:
        conn.Producer().publish({"n": 1}, exchange=exchange, routing_key="k", declare=[queue], priority=5)
        # the message's list expires when unused, as Kombu's x-expires does
        assert 0 < client.pttl(f"{unique_name}\x06\x163") <= 30_000
        # the binding table of an expiring queue has a deadline Kombu's sweep honours, and
        # is not listed as permanent
        assert client.zscore("_kombu.binding_deadlines", unique_name) is not None
        assert not client.exists(f"_kombu.binding_permanent.{unique_name}")
        [message] = collect(conn, unique_name, 1)
        assert message.payload == {"n": 1}
    client.zrem("_kombu.binding_deadlines", unique_name)


# -- connections that drop or go silent -------------------------------------------------


def test_consumer_resumes_after_its_connections_are_cut(redis_url: str, unique_name: str, client: redis.Redis) -> None:
    total = 40
    with FaultProxy("127.0.0.1", 6379) as proxy:
        conn = Connection(proxy.url_for(redis_url), transport_options={"socket_timeout": 5})
        received: list[int] = []

        def on_message(message: Message) -> None:
            received.append(message.payload["n"])
            message.ack()

        queue = Queue(unique_name, routing_key=unique_name)
        consumer = Consumer(conn, [queue], on_message=on_message, prefetch_count=5)

        def drain() -> None:
            conn.drain_events(timeout=0.5)

        ensured = conn.ensure(consumer, drain, max_retries=20, interval_start=0, interval_step=0.05, interval_max=0.2)
        try:
            consumer.consume()
            for batch in range(4):
                # cut while the consumer is idle in its blocking pop, then publish
                with contextlib.suppress(socket.timeout):
                    ensured()
                proxy.cut()
                publish(redis_url, unique_name, [{"n": n} for n in range(batch * 10, batch * 10 + 10)])
                deadline = time.monotonic() + 15
                while len(received) < (batch + 1) * 10 and time.monotonic() < deadline:
                    with contextlib.suppress(socket.timeout):
                        ensured()
        finally:
            conn.release()
    assert proxy.cuts == 4
    assert sorted(received) == list(range(total)), "lost or duplicated messages"
    assert held_tags(client, unique_name) == []


def test_cuts_while_consuming_leave_nothing_stranded(redis_url: str, unique_name: str, client: redis.Redis) -> None:
    # cuts land between a take and its reply, and between acks and theirs: every message
    # must still arrive, none acked may come again, and nothing may stay in the unacked
    # store (which would hold it back for the whole visibility timeout)
    cuts, batch = 40, 1000
    queue = Queue(unique_name, routing_key=unique_name)
    acked: set[int] = set()
    again: list[int] = []
    sent = 0
    with Connection(redis_url) as direct, FaultProxy("127.0.0.1", 6379) as proxy:
        producer = direct.Producer()
        producer.maybe_declare(queue)
        conn = Connection(proxy.url_for(redis_url), transport_options={"socket_timeout": 5})

        def on_message(message: Message) -> None:
            n = message.payload["n"]
            if n in acked:
                again.append(n)
            message.ack()
            acked.add(n)

        stop = threading.Event()

        def cutter() -> None:
            # at arbitrary moments: mid-take, mid-ack, mid-recovery from the previous cut
            while proxy.cuts < cuts and not stop.wait(0.015):
                if acked:
                    proxy.cut()

        consumer = Consumer(conn, [queue], on_message=on_message, prefetch_count=50)

        def drain() -> None:
            conn.drain_events(timeout=0.5)

        ensured = conn.ensure(consumer, drain, max_retries=50, interval_start=0, interval_step=0.05, interval_max=0.2)
        thread = threading.Thread(target=cutter)
        try:
            consumer.consume()
            thread.start()
            deadline = time.monotonic() + 60
            # the cutter keeps its own pace, and messages come in rounds until it has made
            # every cut: how far one round gets between two cuts is up to the scheduler (on
            # a busy machine the consumer may take a whole round before the cutter runs)
            while proxy.cuts < cuts and time.monotonic() < deadline:
                with producer.batch():
                    for n in range(sent, sent + batch):
                        producer.publish({"n": n}, routing_key=unique_name)
                sent += batch
                while len(acked) < sent and time.monotonic() < deadline:
                    with contextlib.suppress(socket.timeout, OperationalError):
                        ensured()
        finally:
            stop.set()
            thread.join(10)
            conn.release()
    assert len(acked) == sent, f"{sent - len(acked)} messages never arrived ({proxy.cuts} cuts)"
    assert proxy.cuts == cuts
    # an ack lost with its connection may let its message come once more, never more
    assert len(again) <= proxy.cuts, again
    assert held_tags(client, unique_name) == []
    assert client.llen(unique_name) == 0


def test_acks_written_before_a_cut_reach_redis(redis_url: str, unique_name: str, client: redis.Redis) -> None:
    publish(redis_url, unique_name, [{"n": n} for n in range(20)])
    with FaultProxy("127.0.0.1", 6379) as proxy:
        conn = Connection(proxy.url_for(redis_url), transport_options={"socket_timeout": 5})
        try:
            received = collect(conn, unique_name, 20)
            assert len(received) == 20
            proxy.cut()  # acks may be unconfirmed or lost on the way
        finally:
            conn.release()  # resends what it could not confirm
    assert held_tags(client, unique_name) == []
    assert client.llen(unique_name) == 0


def test_silent_connection_during_a_blocking_wait_is_detected(redis_url: str, unique_name: str) -> None:
    options = {"health_check_interval": 1, "unacked_restore_interval": 1, "socket_timeout": 2}
    with FaultProxy("127.0.0.1", 6379) as proxy:
        with Connection(proxy.url_for(redis_url), transport_options=options) as conn:
            queue = Queue(unique_name, routing_key=unique_name)
            with Consumer(conn, [queue], callbacks=[lambda body, message: None]):
                with contextlib.suppress(socket.timeout):
                    conn.drain_events(timeout=0.2)
                proxy.stall(True)  # Redis seems alive but never answers again
                started = time.monotonic()
                with pytest.raises(KLConnectionError) as info:
                    conn.drain_events(timeout=30)
                # the BRPOP reply was overdue by health_check_interval, not by the 30 s wait
                assert time.monotonic() - started < 15
                assert "redis://" in str(info.value)
            proxy.stall(False)


def test_socket_timeout_bounds_a_publish_to_a_silent_server(redis_url: str, unique_name: str) -> None:
    with FaultProxy("127.0.0.1", 6379) as proxy:
        with Connection(proxy.url_for(redis_url), transport_options={"socket_timeout": 0.5}) as conn:
            producer = conn.Producer()
            producer.publish({"n": 0}, routing_key=unique_name, declare=[Queue(unique_name, routing_key=unique_name)])
            proxy.stall(True)
            with pytest.raises(KLConnectionError):
                producer.publish({"n": 1}, routing_key=unique_name)
            proxy.stall(False)
            with Connection(redis_url) as direct:
                Queue(unique_name)(direct.default_channel).delete()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "redis+streams://127.0.0.1:6379/0"])
def test_missing_driver_names_the_extra_to_install(url: str) -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from kombu_like import Connection\n"
        "try:\n"
        f"    Connection({url!r}).connect()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert 'pip install "kombu_like[redis]"' in result.stdout, result.stdout + result.stderr


def test_unreachable_server_error_names_it_without_password(unique_name: str) -> None:
    from t.conftest import free_port

    port = free_port()
    conn = Connection(f"redis://user:s3cret@127.0.0.1:{port}/0", connect_timeout=1)
    with pytest.raises(OperationalError) as info:
        conn.ensure_connection(max_retries=0)
    text = str(info.value)
    assert "s3cret" not in text and "s3cret" not in repr(conn)
    assert str(port) in text
    conn.release()


# -- input written by other programs ------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"\x00\x9fnot json at all", b'{"hello": "world"}', b"[1, 2, 3]"],
    ids=["binary", "json-without-properties", "json-array"],
)
def test_foreign_entry_in_a_queue_is_kept_aside_and_reported(
    raw: bytes, redis_url: str, unique_name: str, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    publish(redis_url, unique_name, [{"n": 1}])
    client.lpush(unique_name, raw)  # behind the good message
    publish(redis_url, unique_name, [{"n": 2}])
    with caplog.at_level(logging.ERROR, logger="kombu_like.transport.redis"):
        with Connection(redis_url) as conn:
            received = collect(conn, unique_name, 2)
            assert [m.payload["n"] for m in received] == [1, 2]
            # the consumer goes on: a message published afterwards arrives too
            publish(redis_url, unique_name, [{"n": 3}])
            assert [m.payload["n"] for m in collect(conn, unique_name, 1)] == [3]
    assert client.lrange(f"_kombu_like.deadletter.{unique_name}", 0, -1) == [raw]
    [record] = [r for r in caplog.records if unique_name in r.getMessage()]
    assert f"_kombu_like.deadletter.{unique_name}" in record.getMessage()
    assert repr(raw[:10])[2:-1] in record.getMessage()
    assert held_tags(client, unique_name) == []


def test_envelope_the_decoder_rejects_is_kept_aside(
    redis_url: str, unique_name: str, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    envelope = {
        "body": "",
        "headers": {"when": {"__type__": "no-such-type", "__value__": 1}},
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "properties": {"delivery_tag": f"{unique_name}-tag", "body_encoding": "base64", "delivery_info": {}},
    }
    raw = json.dumps(envelope).encode()
    client.lpush(unique_name, raw)
    publish(redis_url, unique_name, [{"n": 1}])
    with caplog.at_level(logging.ERROR, logger="kombu_like.transport.redis"):
        with Connection(redis_url) as conn:
            assert [m.payload["n"] for m in collect(conn, unique_name, 1)] == [1]
    assert client.lrange(f"_kombu_like.deadletter.{unique_name}", 0, -1) == [raw]
    assert not client.hexists("unacked", f"{unique_name}-tag")
    assert any("no-such-type" in r.getMessage() and unique_name in r.getMessage() for r in caplog.records)


def test_basic_get_skips_a_foreign_entry(redis_url: str, unique_name: str, client: redis.Redis) -> None:
    client.lpush(unique_name, b"garbage")
    publish(redis_url, unique_name, [{"n": 1}])
    with Connection(redis_url) as conn:
        message = Queue(unique_name, routing_key=unique_name)(conn.default_channel).get()
        assert message is not None and message.payload == {"n": 1}
        message.ack()
    assert client.lrange(f"_kombu_like.deadletter.{unique_name}", 0, -1) == [b"garbage"]


def test_undecodable_fanout_message_is_kept_aside(
    redis_url: str, unique_name: str, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    exchange = Exchange(unique_name, type="fanout")
    queue = Queue(f"{unique_name}.q", exchange, routing_key="")
    received: list[Any] = []
    with caplog.at_level(logging.ERROR, logger="kombu_like.transport.redis"):
        with Connection(redis_url) as conn:
            with Consumer(conn, [queue], callbacks=[lambda body, message: (received.append(body), message.ack())]):
                client.publish(f"/0.{unique_name}", b"not json")
                conn.Producer().publish({"ok": True}, exchange=exchange, routing_key="")
                deadline = time.monotonic() + 5
                while not received and time.monotonic() < deadline:
                    with contextlib.suppress(socket.timeout):
                        conn.drain_events(timeout=1)
    assert received == [{"ok": True}]
    assert client.lrange(f"_kombu_like.deadletter.{unique_name}.q", 0, -1) == [b"not json"]
    assert any(unique_name in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("spin", ["0", "0.0005"])
def test_publish_and_consume_with_reply_polling_on_and_off(redis_url: str, unique_name: str, spin: str) -> None:
    # the option also arrives as a string from a URL query
    with Connection(f"{redis_url}?reply_spin={spin}") as conn:
        queue = Queue(unique_name, routing_key=unique_name)
        producer = conn.Producer()
        for n in range(50):
            producer.publish({"n": n}, routing_key=unique_name, declare=[queue])
        got: list[int] = []
        with conn.Consumer(queue, callbacks=[lambda body, message: (got.append(body["n"]), message.ack())]):
            while len(got) < 50:
                conn.drain_events(timeout=10)
        assert got == list(range(50))
        queue(conn.default_channel).delete()


def test_negative_reply_spin_is_refused_by_name(redis_url: str) -> None:
    conn = Connection(redis_url, transport_options={"reply_spin": -1})
    with pytest.raises(ValueError, match="reply_spin"):
        conn.connect()
    conn.release()


def test_reply_polling_stops_when_the_server_is_slow(tmp_path: Path, unique_name: str) -> None:
    # every publish waits ~40 ms for Redis (writes paused); polling up to 20 ms for each
    # reply would burn 20 ms of CPU per publish, but after a few misses it stops.  A
    # server of the test's own: CLIENT PAUSE holds the writes of every client of a server
    publishes, spin = 20, 0.02
    with (
        redis_server(tmp_path / "paused") as port,
        redis.Redis(port=port) as client,
        Connection(f"redis://127.0.0.1:{port}/0", transport_options={"reply_spin": spin}) as conn,
    ):
        producer = conn.Producer()
        queue = Queue(unique_name, routing_key=unique_name)
        producer.publish({"n": -1}, routing_key=unique_name, declare=[queue])
        cpu = 0.0
        for n in range(publishes):
            client.execute_command("CLIENT", "PAUSE", 40, "WRITE")
            started = time.thread_time()
            producer.publish({"n": n}, routing_key=unique_name)
            cpu += time.thread_time() - started
        assert client.llen(unique_name) == publishes + 1
    # polling every reply would have cost publishes * spin = 0.4 s
    assert cpu < publishes * spin / 2, f"{cpu:.3f} s of CPU for {publishes} publishes"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity")
def test_no_reply_polling_on_a_single_cpu() -> None:
    # polling would hold the one CPU Redis needs to answer
    code = (
        "import os\n"
        "from kombu_like.transport.redis.options import RedisOptions\n"
        "print(RedisOptions.from_transport_options({}).reply_spin)\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "print(RedisOptions.from_transport_options({}).reply_spin)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    many, one = result.stdout.split()
    assert float(one) == 0.0
    assert float(many) == (0.0001 if len(os.sched_getaffinity(0)) > 1 else 0.0)


# -- waiting on an empty queue ------------------------------------------------------------


def test_waiting_consumer_takes_nothing_and_wakes_on_a_kombu_publish(
    redis_url: str, unique_name: str, client: redis.Redis
) -> None:
    import kombu

    options = {"client_name": unique_name, "unacked_restore_interval": 60}
    received: list[tuple[Any, float]] = []
    with Connection(redis_url, transport_options=options) as conn:
        queue = Queue(unique_name, routing_key=unique_name)

        def on_message(message: Message) -> None:
            received.append((message.payload, time.monotonic()))
            message.ack()

        with Consumer(conn, [queue], on_message=on_message):
            waiter = threading.Thread(target=lambda: conn.drain_events(timeout=10))
            waiter.start()
            # waiting once its take connection (tracking on) has run the take script, which
            # found the list empty and watches it: wait for that, however late the thread runs
            deadline = time.monotonic() + 10
            while True:
                ours = [c for c in client.client_list() if c.get("name") == unique_name]
                if any("t" in c["flags"] and c.get("cmd") == "evalsha" for c in ours):
                    break
                assert time.monotonic() < deadline, ours
                time.sleep(0.01)
            # no client blocked in a pop
            assert not any("b" in c["flags"] for c in ours), [(c["id"], c["flags"], c.get("cmd")) for c in ours]
            assert client.llen(unique_name) == 0
            with kombu.Connection(redis_url) as other:
                sent = time.monotonic()
                other.Producer().publish({"from": "kombu"}, routing_key=unique_name, serializer="json")
            waiter.join(15)
    # woken by Redis's invalidation, not by the next maintenance round a minute later
    [(body, at)] = received
    assert body == {"from": "kombu"}
    assert at - sent < 2.0
    assert held_tags(client, unique_name) == []
