"""Redis transport under faults: credentials in driver errors, hung servers, restarts."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import subprocess
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kombu_like import Connection, Consumer, Producer, Queue
from kombu_like.exceptions import ConnectionError, OperationalError
from t.conftest import free_port, port_open
from t.faultproxy import FaultProxy

from .test_redis_servers import _server_binary

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("password", ["S3cretPW", "p%40ss:w/rd", "x", "pa@ss0rd"])
def test_credentials_echoed_by_the_driver_never_reach_errors_or_logs(
    password: str, caplog: pytest.LogCaptureFixture
) -> None:
    # a mis-written URL: redis-py reads "sentinel://:PASSWORD@127.0.0.1" as the host name
    # and echoes it back in its error message
    conn = Connection(f"redis+sentinel://:{password}@127.0.0.1:1", connect_timeout=1)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Exception) as info:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
    shown = "".join(traceback.format_exception(info.value)) + caplog.text + repr(conn)
    assert "connecting" in caplog.text
    secrets = [password if len(password) > 1 else ":x@", *(part for part in password.split("@") if len(part) > 2)]
    for secret in secrets:
        assert secret not in shown


@contextlib.contextmanager
def own_redis(workdir: Path, port: int | None = None) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A redis-server of this test's own, which it may stop, resume and restart."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port, 0.2):
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            proc.wait(10)


def test_drain_events_on_a_hung_server_returns_by_its_timeout_and_consumes_after(tmp_path: Path) -> None:
    received: list[Any] = []
    with own_redis(tmp_path) as (port, proc):
        conn = Connection(f"redis://127.0.0.1:{port}/0")
        queue = Queue(f"hung-{uuid.uuid4().hex}")
        try:
            with Consumer(conn, [queue], callbacks=[lambda body, message: (received.append(body), message.ack())]):
                with pytest.raises(socket.timeout):
                    conn.drain_events(timeout=0.1)
                proc.send_signal(signal.SIGSTOP)
                try:
                    started = time.monotonic()
                    with pytest.raises((socket.timeout, ConnectionError)):
                        conn.drain_events(timeout=1)
                    assert time.monotonic() - started < 2.5
                finally:
                    proc.send_signal(signal.SIGCONT)
                Producer(conn).publish({"n": 1}, routing_key=queue.name, retry=True)
                deadline = time.monotonic() + 10
                while not received and time.monotonic() < deadline:
                    with contextlib.suppress(socket.timeout, ConnectionError):
                        conn.drain_events(timeout=1)
            assert received == [{"n": 1}]
        finally:
            conn.release()


@pytest.mark.parametrize("auth", ["", ":secret@"])
def test_connecting_to_a_server_that_never_answers_takes_connect_timeout(auth: str) -> None:
    with FaultProxy("127.0.0.1", 6379) as proxy:
        proxy.stall()
        conn = Connection(f"redis://{auth}127.0.0.1:{proxy.port}/1", connect_timeout=1)
        started = time.monotonic()
        with pytest.raises(OperationalError):
            conn.connect()
        assert time.monotonic() - started < 2.5


def test_the_first_commands_after_a_server_restart_go_to_the_new_server(tmp_path: Path) -> None:
    queue = Queue(f"restart-{uuid.uuid4().hex}")
    with own_redis(tmp_path / "before") as (port, _):
        conn = Connection(f"redis://127.0.0.1:{port}/0")
        Producer(conn).publish("before", routing_key=queue.name, declare=[queue])
    try:
        with own_redis(tmp_path / "after", port=port):
            # no retry=True: the connection found closed before anything was sent is replaced
            Producer(conn).publish("after", routing_key=queue.name, declare=[queue])
            assert queue(conn.default_channel).queue_declare(passive=True).message_count == 1
            simple = conn.SimpleQueue(queue.name)
            message = simple.get(timeout=5)
            assert message.payload == "after"
            message.ack()
    finally:
        conn.release()


def test_global_keyprefix_none_is_no_prefix_as_in_kombu(redis_url: str) -> None:
    import kombu

    queue = Queue(f"noprefix-{uuid.uuid4().hex}")
    with Connection(redis_url, transport_options={"global_keyprefix": None}) as conn:
        Producer(conn).publish("plain keys", routing_key=queue.name, declare=[queue])
    with kombu.Connection(redis_url, transport_options={"global_keyprefix": None}) as theirs:
        simple = theirs.SimpleQueue(queue.name)
        message = simple.get(timeout=5)
        assert message.payload == "plain keys"
        message.ack()
        simple.queue.delete()


@pytest.mark.parametrize("value", [["ssl_cert_reqs", "none"], "ssl_cert_reqs=none", 3])
def test_connection_kwargs_that_is_not_a_mapping_is_refused_by_name(value: Any, redis_url: str) -> None:
    with pytest.raises(ValueError, match="connection_kwargs.*mapping"):
        Connection(redis_url, transport_options={"connection_kwargs": value}).connect()
