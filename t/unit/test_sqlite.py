"""The sqlite:// transport: conformance, several processes on one file, leases, crashes."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kombu_like import Connection, Consumer, Exchange, Producer, Queue
from kombu_like.asynchronous import Hub
from kombu_like.exceptions import (
    ConnectionTimeout,
    EncodeError,
    OperationalError,
    PreconditionFailed,
)
from kombu_like.testing.conformance import AsyncAPITests, TransportConformance
from kombu_like.testing.hostile import HostileInputTests
from kombu_like.transport.sqlite import DEFAULT_PATH, SqliteStore, Transport, database_path

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"subprocess failed ({proc.returncode}):\n{err}"
    return out


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "queues.db")


def _url(path: str, **options: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"sqlite:///{path}" + (f"?{query}" if query else "")


def _drain_all(conn: Connection, queue: Queue, timeout: float = 0.3, ack: bool = True) -> list[Any]:
    got: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        got.append((body, message.redelivered))
        if ack:
            message.ack()

    with Consumer(conn, [queue], callbacks=[on_message], accept=["json"]):
        while True:
            try:
                conn.drain_events(timeout=timeout)
            except socket.timeout:
                return got


# -- the shared suite -----------------------------------------------------------------------
class TestSqliteConformance(TransportConformance, AsyncAPITests):
    """Every transport's behaviour, on a fresh database file per test, on both APIs."""

    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path / 'conformance.db'}"

    transport_options = {"polling_interval": 0.01}


class TestSqliteHostileInput(HostileInputTests):
    """Hostile messages, some of them rows written into the database by another program."""

    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path / 'hostile.db'}"

    transport_options = {"polling_interval": 0.01}


# -- URLs -------------------------------------------------------------------------------
def test_url_names_the_database_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert database_path(None) == str(tmp_path / DEFAULT_PATH)
    assert Connection("sqlite://").transport.path == str(tmp_path / DEFAULT_PATH)  # type: ignore[attr-defined]
    assert Connection("sqlite:///rel/q.db").transport.path == str(tmp_path / "rel" / "q.db")  # type: ignore[attr-defined]
    assert Connection("sqlite:////abs/q.db").transport.path == "/abs/q.db"  # type: ignore[attr-defined]
    with Connection("sqlite://") as conn:
        conn.connect()
        assert (tmp_path / DEFAULT_PATH).exists()


def test_a_host_in_the_url_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"sqlite:///q\.db"):
        Connection("sqlite://q.db").connect()


def test_missing_directory_fails_at_once_naming_the_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/no/such/dir/q.db"
    start = time.monotonic()
    with Connection(url) as conn, pytest.raises(OperationalError, match="no/such/dir/q.db") as info:
        conn.default_channel.queue_declare("q")
    # not retried like a broker that is down: the directory will not appear by waiting
    assert time.monotonic() - start < 5
    assert isinstance(info.value.__cause__, sqlite3.Error) or info.value.__cause__ is None


def test_not_a_database_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with Connection(f"sqlite:///{path}") as conn, pytest.raises(OperationalError, match="junk.db"):
        conn.connect()


def test_newer_schema_is_refused(db: str) -> None:
    with Connection(_url(db)) as conn:
        conn.connect()
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE kl_meta SET value = 99 WHERE key = 'schema'")
    with Connection(_url(db)) as conn, pytest.raises(OperationalError, match="newer kombu_like"):
        conn.connect()


# -- durability and at-least-once ----------------------------------------------------------------
def test_messages_survive_closing_and_reopening(db: str, unique_name: str) -> None:
    queue = Queue(unique_name)
    with Connection(_url(db)) as conn:
        Producer(conn).publish({"n": 1}, routing_key=unique_name, declare=[queue])
    with Connection(_url(db)) as conn:
        assert _drain_all(conn, queue) == [({"n": 1}, False)]
    with Connection(_url(db)) as conn:
        assert _drain_all(conn, queue) == []


def test_unacked_message_comes_back_redelivered_when_connection_closes(db: str, unique_name: str) -> None:
    queue = Queue(unique_name)
    with Connection(_url(db)) as conn:
        Producer(conn).publish({"n": 1}, routing_key=unique_name, declare=[queue])
        assert _drain_all(conn, queue, ack=False) == [({"n": 1}, False)]
    with Connection(_url(db)) as conn:
        assert _drain_all(conn, queue) == [({"n": 1}, True)]


def test_lapsed_lease_is_redelivered_and_a_late_ack_does_not_remove_it(db: str, unique_name: str) -> None:
    queue = Queue(unique_name)
    url = _url(db, visibility_timeout=0.3, polling_interval=0.01)
    with Connection(url) as first, Connection(url) as second:
        Producer(first).publish({"n": 1}, routing_key=unique_name, declare=[queue])
        message = queue(first.channel()).get()
        assert message is not None and not message.redelivered
        # while the lease runs nobody else sees it
        assert queue(second.channel()).get() is None
        again: list[Any] = []

        def on_message(body: Any, msg: Any) -> None:
            again.append(msg)

        with Consumer(second, [queue], callbacks=[on_message], accept=["json"]):
            second.drain_events(timeout=5)
        assert again[0].payload == {"n": 1} and again[0].redelivered
        message.ack()  # too late: the lease moved on to the second consumer
        assert queue(first.channel()).queue_declare(passive=True).message_count == 0
        again[0].requeue()
        redelivered = queue(first.channel()).get()
        assert redelivered is not None and redelivered.redelivered
        redelivered.ack()
        assert queue(first.channel()).get() is None


def test_requeue_goes_back_to_the_head(db: str, unique_name: str) -> None:
    queue = Queue(unique_name)
    with Connection(_url(db)) as conn:
        producer = Producer(conn)
        for n in range(3):
            producer.publish({"n": n}, routing_key=unique_name, declare=[queue])
        channel = conn.channel()
        first = queue(channel).get()
        assert first is not None and first.payload == {"n": 0}
        first.requeue()
        assert [body for body, _ in _drain_all(conn, queue)] == [{"n": 0}, {"n": 1}, {"n": 2}]


# -- capabilities --------------------------------------------------------------------------
def test_priority_ordering(db: str, unique_name: str) -> None:
    queue = Queue(unique_name, max_priority=9)
    with Connection(_url(db)) as conn:
        producer = Producer(conn)
        for n, priority in enumerate([0, 5, 9, 5, 1]):
            producer.publish({"n": n}, routing_key=unique_name, declare=[queue], priority=priority)
        assert [body["n"] for body, _ in _drain_all(conn, queue)] == [2, 1, 3, 4, 0]


def test_priority_is_ignored_on_a_plain_queue(db: str, unique_name: str) -> None:
    queue = Queue(unique_name)
    with Connection(_url(db)) as conn:
        producer = Producer(conn)
        for n, priority in enumerate([0, 9, 5]):
            producer.publish({"n": n}, routing_key=unique_name, declare=[queue], priority=priority)
        assert [body["n"] for body, _ in _drain_all(conn, queue)] == [0, 1, 2]


def test_redeclaring_with_another_max_priority_fails(db: str, unique_name: str) -> None:
    with Connection(_url(db)) as conn:
        Queue(unique_name, max_priority=5)(conn.default_channel).declare()
        with pytest.raises(PreconditionFailed, match="x-max-priority"):
            Queue(unique_name, max_priority=7)(conn.channel()).declare()


def test_expiration_and_message_ttl(db: str, unique_name: str) -> None:
    plain = Queue(unique_name)
    ttl = Queue(unique_name + "-ttl", message_ttl=0.2)
    with Connection(_url(db)) as conn:
        producer = Producer(conn)
        producer.publish({"n": "short"}, routing_key=plain.name, declare=[plain], expiration=0.2)
        producer.publish({"n": "long"}, routing_key=plain.name, declare=[plain], expiration=60)
        producer.publish({"n": "ttl"}, routing_key=ttl.name, declare=[ttl])
        time.sleep(0.4)
        assert [body for body, _ in _drain_all(conn, plain)] == [{"n": "long"}]
        assert _drain_all(conn, ttl) == []


def test_max_length_drops_the_oldest(db: str, unique_name: str) -> None:
    queue = Queue(unique_name, max_length=2)
    with Connection(_url(db)) as conn:
        producer = Producer(conn)
        for n in range(4):
            producer.publish({"n": n}, routing_key=unique_name, declare=[queue])
        assert [body["n"] for body, _ in _drain_all(conn, queue)] == [2, 3]


def test_batch_publish_in_one_transaction(db: str, unique_name: str) -> None:
    queue = Queue(unique_name)
    with Connection(_url(db)) as conn:
        producer = Producer(conn, routing_key=unique_name)
        queue(conn.default_channel).declare()
        with producer.batch():
            for n in range(50):
                producer.publish({"n": n})
            assert queue(conn.channel()).queue_declare(passive=True).message_count == 0
        assert [body["n"] for body, _ in _drain_all(conn, queue)] == list(range(50))


def test_headers_that_are_not_json_are_an_encode_error(db: str, unique_name: str) -> None:
    queue = Queue(unique_name)
    with Connection(_url(db)) as conn, pytest.raises(EncodeError, match=unique_name):
        Producer(conn).publish({"n": 1}, routing_key=unique_name, declare=[queue], headers={"when": object()})


# -- bad rows, locks ------------------------------------------------------------------------
def test_unreadable_row_reaches_the_consumer_with_a_clear_error(db: str, unique_name: str) -> None:
    queue = Queue(unique_name)
    with Connection(_url(db)) as conn:
        Producer(conn).publish({"n": 0}, routing_key=unique_name, declare=[queue])
    with sqlite3.connect(db) as raw:
        raw.execute("INSERT INTO kl_messages (queue, priority, payload) VALUES (?, 0, ?)", (unique_name, "{not json"))
    with sqlite3.connect(db) as raw:
        raw.execute("INSERT INTO kl_messages (queue, priority, payload) VALUES (?, 0, ?)", (unique_name, "null"))
    with Connection(_url(db)) as conn:
        Producer(conn).publish({"n": 3}, routing_key=unique_name)
        good: list[Any] = []
        errors: list[tuple[Any, BaseException]] = []

        def on_error(message: Any, exc: BaseException) -> None:
            errors.append((message, exc))
            message.reject()

        def on_message(body: Any, message: Any) -> None:
            good.append(body)
            message.ack()

        with Consumer(conn, [queue], callbacks=[on_message], on_decode_error=on_error, accept=["json"]):
            while len(good) + len(errors) < 4:
                conn.drain_events(timeout=5)
        assert good == [{"n": 0}, {"n": 3}]
        assert len(errors) == 2
        problem = errors[0][0].headers["x-kombu-like-error"]
        assert unique_name in problem and "{not json" in problem and "queues.db" in problem


def test_locked_database_is_a_recoverable_timeout(db: str, unique_name: str) -> None:
    queue = Queue(unique_name)
    with Connection(_url(db, busy_timeout=0.2)) as conn:
        queue(conn.default_channel).declare()
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(ConnectionTimeout, match="locked") as info:
                Producer(conn).publish({"n": 1}, routing_key=unique_name)
            assert isinstance(info.value.__cause__, sqlite3.OperationalError)
            assert isinstance(info.value, conn.recoverable_connection_errors)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        Producer(conn).publish({"n": 2}, routing_key=unique_name)
        assert [body for body, _ in _drain_all(conn, queue)] == [{"n": 2}]


def test_closed_store_raises_a_connection_error(db: str) -> None:
    store = SqliteStore(db)
    store.close()
    with pytest.raises(Exception) as info:
        store.size("q")
    assert "closed" in str(info.value)


# -- several processes on one file ------------------------------------------------------------
PUBLISHER = """
import sys
from kombu_like import Connection, Exchange, Producer, Queue
url, name, tag, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
exchange = Exchange(name, type="topic")
with Connection(url) as conn:
    producer = Producer(conn, exchange=exchange)
    for n in range(count):
        producer.publish({"from": tag, "n": n}, routing_key="jobs." + tag)
"""

CONSUMER = """
import json, sys, time
from kombu_like import Connection, Consumer, Queue
url, name = sys.argv[1], sys.argv[2]
seen = []
def on_message(body, message):
    if seen and seen[-1].get("stop"):
        return  # one stop each: a second one goes back to the queue when we close
    seen.append(body)
    message.ack()
deadline = time.monotonic() + 60
with Connection(url) as conn:
    with Consumer(conn, [Queue(name)], callbacks=[on_message], accept=["json"], prefetch_count=10):
        while not (seen and seen[-1].get("stop")) and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=1)
            except TimeoutError:
                pass
print(json.dumps(seen))
"""


def test_several_processes_publish_and_consume_through_one_file(db: str, unique_name: str) -> None:
    url = _url(db, polling_interval=0.01)
    exchange = Exchange(unique_name, type="topic")
    queue = Queue(unique_name, exchange, routing_key="jobs.#")
    with Connection(url) as conn:
        queue(conn.default_channel).declare()  # the binding lives in the file
    per_publisher = 300
    consumers = [_spawn(CONSUMER, url, unique_name) for _ in range(2)]
    publishers = [_spawn(PUBLISHER, url, unique_name, tag, str(per_publisher)) for tag in "abc"]
    for proc in publishers:
        _finish(proc)
    with Connection(url) as conn:
        producer = Producer(conn, exchange=exchange, routing_key="jobs.stop")
        for _ in consumers:
            producer.publish({"stop": True})
    outputs = [json.loads(_finish(proc)) for proc in consumers]
    keys = [(item["from"], item["n"]) for seen in outputs for item in seen if "from" in item]
    # every message once: nothing lost, nothing delivered twice
    assert sorted(keys) == sorted((tag, n) for tag in "abc" for n in range(per_publisher))
    for seen in outputs:
        assert seen[-1] == {"stop": True}
        for tag in "abc":
            numbers = [item["n"] for item in seen if item.get("from") == tag]
            assert numbers == sorted(numbers), "a consumer saw one publisher's messages out of order"
    with Connection(url) as conn:
        assert queue(conn.default_channel).queue_declare(passive=True).message_count == 0


def test_consumer_is_woken_by_a_publish_from_another_process(db: str, unique_name: str) -> None:
    url = _url(db, polling_interval=0.01)
    queue = Queue(unique_name, Exchange(unique_name, type="topic"), routing_key="jobs.*")
    got: list[Any] = []
    with Connection(url) as conn:

        def on_message(body: Any, message: Any) -> None:
            got.append(body)
            message.ack()

        with Consumer(conn, [queue], callbacks=[on_message], accept=["json"]):
            publisher = _spawn(PUBLISHER, url, unique_name, "x", "1")
            try:
                conn.drain_events(timeout=30)
            finally:
                _finish(publisher)
    assert got == [{"from": "x", "n": 0}]


def test_threads_sharing_a_connection_file(db: str, unique_name: str) -> None:
    url = _url(db, polling_interval=0.01)
    queue = Queue(unique_name)
    with Connection(url) as conn:
        queue(conn.default_channel).declare()

    def publish(tag: int) -> None:
        with Connection(url) as own:
            producer = Producer(own, routing_key=unique_name)
            for n in range(100):
                producer.publish({"t": tag, "n": n})

    threads = [threading.Thread(target=publish, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with Connection(url) as conn:
        bodies = [body for body, _ in _drain_all(conn, queue)]
    assert sorted((b["t"], b["n"]) for b in bodies) == [(t, n) for t in range(4) for n in range(100)]


HOLDER = """
import sys
from kombu_like import Connection, Consumer, Queue
url, name = sys.argv[1], sys.argv[2]
held = []
with Connection(url) as conn:
    with Consumer(conn, [Queue(name)], callbacks=[lambda body, message: held.append(body)],
                  accept=["json"], prefetch_count=5):
        while len(held) < 5:
            conn.drain_events(timeout=30)
        print("holding", len(held), flush=True)
        sys.stdin.readline()  # wait here, unacked, until killed
"""


@pytest.fixture
def holder(db: str, unique_name: str) -> Iterator[subprocess.Popen[str]]:
    # a long visibility timeout: what brings the messages back must be the crash itself
    url = _url(db, visibility_timeout=3600, polling_interval=0.01)
    queue = Queue(unique_name)
    with Connection(url) as conn:
        producer = Producer(conn, routing_key=unique_name)
        queue(conn.default_channel).declare()
        for n in range(8):
            producer.publish({"n": n})
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), url, unique_name],
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_kill_9_of_a_consumer_gives_its_messages_back(db: str, unique_name: str, holder: Any) -> None:
    assert holder.stdout is not None
    line = holder.stdout.readline()
    assert line.strip() == "holding 5", holder.stderr.read() if not line else line
    url = _url(db, visibility_timeout=3600, polling_interval=0.01)
    queue = Queue(unique_name)
    with Connection(url) as conn:
        # while it lives, its five messages are leased to it
        assert queue(conn.default_channel).queue_declare(passive=True).message_count == 3
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(10)
    with Connection(url) as conn:
        got = _drain_all(conn, queue)
    assert sorted(body["n"] for body, _ in got) == list(range(8))
    assert sorted(body["n"] for body, redelivered in got if redelivered) == list(range(5))


def test_transport_declares_what_it_does() -> None:
    caps = Transport.capabilities
    assert caps.priority and caps.ttl and caps.batch_publish and not caps.native_acks
    assert caps.exchange_types == frozenset({"direct", "topic", "fanout", "headers"})


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the file's write lock
    return other


def test_drain_events_timeout_holds_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    with Connection(f"sqlite:///{path}?busy_timeout=30") as conn:
        queue = Queue("locked")
        got: list[Any] = []
        with Consumer(conn, [queue], callbacks=[lambda body, message: (got.append(body), message.ack())]):
            other = _hold_write_lock(path)
            try:
                started = time.monotonic()
                with pytest.raises(socket.timeout):
                    conn.drain_events(timeout=0.3)
                # not the 30 s of busy_timeout
                assert time.monotonic() - started < 15
            finally:
                other.execute("ROLLBACK")
                other.close()
            # the consumer carries on once the lock is gone
            Producer(conn).publish({"after": 1}, routing_key="locked")
            conn.drain_events(timeout=5)
            assert got == [{"after": 1}]


def test_a_write_lock_held_past_busy_timeout_still_fails_a_consumer_that_drains_briefly(tmp_path: Path) -> None:
    path = tmp_path / "stuck.db"
    with Connection(f"sqlite:///{path}?busy_timeout=1") as conn:
        queue = Queue("stuck")
        with Consumer(conn, [queue], callbacks=[lambda body, message: message.ack()]):
            other = _hold_write_lock(path)
            try:
                deadline = time.monotonic() + 20
                with pytest.raises(ConnectionTimeout, match="busy_timeout"):
                    while time.monotonic() < deadline:
                        try:
                            conn.drain_events(timeout=0.2)
                        except socket.timeout:
                            pass
            finally:
                other.execute("ROLLBACK")
                other.close()


# -- driven by an event loop ------------------------------------------------------------------
def _rounds(hub: Hub, seconds: float, done: Any = None) -> int:
    """Run ``hub`` for ``seconds`` (or until ``done()``); the number of rounds it ran."""
    rounds = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (done is not None and done()):
        hub.run_once()
        rounds += 1
    return rounds


def test_under_the_loop_another_process_is_polled_for_and_idle_costs_no_spin(db: str, unique_name: str) -> None:
    interval = 0.1
    url = _url(db, polling_interval=interval)
    queue = Queue(unique_name, Exchange(unique_name, type="topic"), routing_key="jobs.*")
    got: list[Any] = []
    hub = Hub()
    try:
        with Connection(url) as conn:
            conn.register_with_event_loop(hub)
            assert conn.transport.implements.asynchronous
            with Consumer(conn, [queue], callbacks=[lambda body, message: (got.append(body), message.ack())]):
                # nobody in this process publishes: only the loop's poll of the file finds it
                _finish(_spawn(PUBLISHER, url, unique_name, "x", "1"))
                _rounds(hub, 30, lambda: got)
                assert got == [{"from": "x", "n": 0}]
                # idle: one round per poll (and the owner check), not a spin
                assert _rounds(hub, 5 * interval) <= 12
                # another process holds the write lock: still no spin, and no error
                other = _hold_write_lock(Path(db))
                try:
                    assert _rounds(hub, 5 * interval) <= 12
                finally:
                    other.execute("ROLLBACK")
                    other.close()
                _finish(_spawn(PUBLISHER, url, unique_name, "y", "1"))
                _rounds(hub, 30, lambda: len(got) == 2)
        assert got == [{"from": "x", "n": 0}, {"from": "y", "n": 0}]
        assert not hub.readers, "a closed connection's wake-up descriptor stays in the loop"
    finally:
        hub.close()
