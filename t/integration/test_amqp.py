"""The AMQP transport against a real RabbitMQ (127.0.0.1:5672).

Everything goes through the public API.  Where the broker has to be observed from outside
(TLS, connection.blocked) a relay in this module sits between the client and RabbitMQ:
it terminates TLS, or injects the frames RabbitMQ sends when a resource alarm blocks a
connection (raising a real alarm would block every other user of the shared broker).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from kombu_like import Connection, Consumer, Exchange, Message, Producer, Queue
from kombu_like.exceptions import (
    AccessRefused,
    ChannelError,
    ConnectionError,
    ConnectionTimeout,
    ConsumerCancelled,
    DecodeError,
    IrrecoverableConnectionError,
    MessageNacked,
    MessageReturned,
    NotFound,
    OperationalError,
    PreconditionFailed,
    ResourceLocked,
)
from t.faultproxy import FaultProxy

pytestmark = pytest.mark.amqp

HERE = Path(__file__).parent


# -- helpers -------------------------------------------------------------------------------


def drain_until(conn: Connection, done: Callable[[], bool], timeout: float = 10.0) -> None:
    """Call ``drain_events`` until ``done()``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"condition not met within {timeout}s")
        try:
            conn.drain_events(timeout=min(remaining, 1.0))
        except socket.timeout:
            continue


def drain_quietly(conn: Connection, seconds: float = 0.3) -> None:
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            conn.drain_events(timeout=remaining)
        except socket.timeout:
            return


def collect(conn: Connection, queue: Queue, count: int, ack: bool = True, **options: Any) -> list[Message]:
    received: list[Message] = []

    def on_message(message: Message) -> None:
        received.append(message)
        if ack:
            message.ack()

    with Consumer(conn, [queue], on_message=on_message, **options):
        drain_until(conn, lambda: len(received) >= count)
    return received


def ready_count(conn: Connection, name: str) -> int:
    channel = conn.channel()
    try:
        return int(Queue(name, channel=channel).queue_declare(passive=True)[1])
    finally:
        channel.close()


def rabbitmqctl(*args: str) -> str:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        pytest.fail("rabbitmqctl is not installed next to the RabbitMQ under test")
    done = subprocess.run([exe, "-q", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def connection_pids(name: str) -> list[str]:
    """RabbitMQ's pids of the client connections whose properties mention ``name``."""
    return [
        line.split("\t")[0]
        for line in rabbitmqctl("list_connections", "pid", "client_properties").splitlines()
        if name in line
    ]


def close_from_the_broker(connection_name: str, reason: str) -> None:
    """Close the one connection named ``connection_name`` from the server side (320
    CONNECTION_FORCED with ``reason``), as an operator's ``rabbitmqctl close_connection`` does."""
    pids = connection_pids(connection_name)
    assert len(pids) == 1, pids
    rabbitmqctl("close_connection", pids[0], reason)


class Entities:
    """Unique names for a test, and the queues/exchanges to delete after it."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.queues: list[str] = []
        self.exchanges: list[str] = []

    def name(self, suffix: str = "") -> str:
        return f"{self.prefix}{suffix}-{uuid.uuid4().hex[:6]}"

    def queue(
        self, suffix: str = "q", exchange: Exchange | None = None, routing_key: str | None = None, **kwargs: Any
    ) -> Queue:
        name = self.name(suffix)
        self.queues.append(name)
        kwargs.setdefault("durable", False)
        return Queue(name, exchange, routing_key if routing_key is not None else name, **kwargs)

    def exchange(self, suffix: str = "x", type: str = "direct", **kwargs: Any) -> Exchange:
        name = self.name(suffix)
        self.exchanges.append(name)
        kwargs.setdefault("durable", False)
        return Exchange(name, type=type, **kwargs)

    def delete_all(self) -> None:
        with Connection(self.url) as conn:
            for name in self.queues:
                channel = conn.channel()
                try:
                    channel.queue_delete(name)
                except (ChannelError, ConnectionError):
                    pass
                finally:
                    channel.close()
            for name in self.exchanges:
                channel = conn.channel()
                try:
                    channel.exchange_delete(name)
                except (ChannelError, ConnectionError):
                    pass
                finally:
                    channel.close()


@pytest.fixture
def ents(amqp_url: str, unique_name: str) -> Iterator[Entities]:
    entities = Entities(amqp_url, unique_name[:50])
    yield entities
    entities.delete_all()


@pytest.fixture
def conn(amqp_url: str) -> Iterator[Connection]:
    connection = Connection(amqp_url)
    yield connection
    connection.release()


def broker_port(url: str) -> int:
    return int(url.split("@")[-1].split("/")[0].rsplit(":", 1)[1])


# -- a relay that terminates TLS or injects frames -------------------------------------------

FRAME_END = b"\xce"


def method_frame(channel: int, class_id: int, method_id: int, args: bytes = b"") -> bytes:
    payload = struct.pack(">HH", class_id, method_id) + args
    return struct.pack(">BHI", 1, channel, len(payload)) + payload + FRAME_END


class Relay:
    """Forward 127.0.0.1:<port> to RabbitMQ, optionally terminating TLS on the client side.

    ``inject(data)`` sends ``data`` to every client at the next frame boundary of the
    broker's byte stream, as if the broker had sent it.
    """

    def __init__(self, upstream_port: int, tls: ssl.SSLContext | None = None) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.listener.settimeout(0.2)
        self._stop = threading.Event()
        self._injections: list[list[bytes]] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._socket_locks: dict[socket.socket, threading.Lock] = {}
        self.tls_errors: list[BaseException] = []
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(5)
            if self.tls is not None:
                try:
                    client = self.tls.wrap_socket(client, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    self.tls_errors.append(exc)
                    client.close()
                    continue
            upstream = socket.create_connection(self.upstream, timeout=5)
            for sock in (client, upstream):
                # reads wait for readability with select() (a short poll of the stop flag);
                # writes may block for a while: a timed-out sendall would leave an unknown
                # part of a frame sent, so the relay would have to cut the connection
                sock.settimeout(5)
                # as RabbitMQ and the client do: with Nagle's algorithm each confirm round
                # trip through the relay waited ~40 ms for a delayed ACK
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._sockets.append(sock)
                # one thread reads and another writes each socket; an SSL socket must not
                # be used by two threads at once (OpenSSL's state is shared)
                self._socket_locks[sock] = threading.Lock()
            queue: list[bytes] = []
            with self._lock:
                self._injections.append(queue)
            self._spawn(self._pump_raw, client, upstream)
            self._spawn(self._pump_frames, upstream, client, queue)

    def _recv(self, sock: socket.socket) -> bytes | None:
        try:
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
            if not pending and not select.select([sock], [], [], 0.05)[0]:
                return None
            with self._socket_locks[sock]:
                return sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return None
        except (OSError, ValueError):  # ValueError: select() on a socket closed meanwhile
            return b""

    def _send(self, sock: socket.socket, data: bytes) -> None:
        with self._socket_locks[sock]:
            sock.sendall(data)

    def _pump_raw(self, source: socket.socket, dest: socket.socket) -> None:
        while not self._stop.is_set():
            data = self._recv(source)
            if data is None:
                continue
            if not data:
                break
            try:
                self._send(dest, data)
            except OSError:
                break
        self._close(source, dest)

    def _pump_frames(self, source: socket.socket, dest: socket.socket, injections: list[bytes]) -> None:
        buf = b""
        while not self._stop.is_set():
            data = self._recv(source)
            if data == b"":
                break
            buf += data or b""
            out = b""
            # pass whole frames on (after the 8-byte protocol header there are only frames)
            while len(buf) >= 7:
                size = struct.unpack_from(">I", buf, 3)[0]
                if len(buf) < size + 8:
                    break
                out += buf[: size + 8]
                buf = buf[size + 8 :]
            with self._lock:
                extra, injections[:] = list(injections), []
            try:
                if out:
                    self._send(dest, out)
                for frame in extra:
                    self._send(dest, frame)
            except OSError:
                break
        self._close(source, dest)

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            try:
                sock.close()
            except OSError:
                pass

    def inject(self, data: bytes) -> None:
        with self._lock:
            for queue in self._injections:
                queue.append(data)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        for thread in self._threads:
            thread.join(5)
        self._close(*self._sockets)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for ``localhost`` (cert, key)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make the test certificate")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def tls_relay(amqp_url: str, tls_files: tuple[str, str]) -> Iterator[Relay]:
    cert, key = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    relay = Relay(broker_port(amqp_url), tls=context)
    yield relay
    relay.close()


# -- connecting --------------------------------------------------------------------------


def test_url_forms_and_keyword_arguments(amqp_url: str) -> None:
    port = broker_port(amqp_url)
    for conn in (
        Connection(f"amqp://guest:guest@127.0.0.1:{port}/%2F"),
        Connection(f"pyamqp://guest:guest@localhost:{port}//"),
        Connection(f"amqp://127.0.0.1:{port}"),  # guest/guest and "/" by default
        Connection(
            hostname="127.0.0.1", port=port, userid="guest", password="guest", virtual_host="/", transport="amqp"
        ),
    ):
        with conn:
            conn.connect()
            assert conn.connected
            assert conn.virtual_host == "/"
            assert conn.transport.driver_type == "amqp"
            # a round trip proves the login and the virtual host were right
            assert conn.default_channel.queue_declare("", exclusive=True, auto_delete=True).queue
        assert not conn.connected


def test_password_never_shown(amqp_url: str) -> None:
    port = broker_port(amqp_url)
    conn = Connection(f"amqp://guest:guest@127.0.0.1:{port}//")
    with conn:
        channel = conn.channel()
        for text in (repr(conn), str(conn.as_uri()), repr(conn.transport), repr(channel)):
            assert ":guest@" not in text, text
        assert "guest:**@" in conn.as_uri()


def test_wrong_password_is_access_refused_at_once(amqp_url: str) -> None:
    port = broker_port(amqp_url)
    conn = Connection(f"amqp://guest:s3cret-wrong@127.0.0.1:{port}//", connect_timeout=5)
    started = time.monotonic()
    with pytest.raises(AccessRefused) as info:
        conn.ensure_connection(max_retries=5, interval_start=1, interval_step=1)
    # bad credentials are not retried: no five-second backoff happened
    assert time.monotonic() - started < 4
    assert info.value.reply_code == 403
    assert "ACCESS_REFUSED" in str(info.value)
    assert "s3cret-wrong" not in str(info.value)
    conn.release()


def test_unknown_virtual_host_is_refused_with_its_name(amqp_url: str, unique_name: str) -> None:
    port = broker_port(amqp_url)
    conn = Connection(f"amqp://guest:guest@127.0.0.1:{port}/{unique_name}")
    with pytest.raises(IrrecoverableConnectionError) as info:  # NotAllowed (530), as on Kombu
        conn.connect()
    assert unique_name in str(info.value)
    conn.release()


@pytest.fixture(scope="module")
def vhost(amqp_url: str) -> Iterator[str]:
    """A virtual host of our own with a '/' in its name (so the URL must be %2F-encoded)."""
    name = f"kl/vhost-{uuid.uuid4().hex[:6]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


def test_virtual_host_from_url_is_used(amqp_url: str, vhost: str, unique_name: str) -> None:
    port = broker_port(amqp_url)
    encoded = vhost.replace("/", "%2F")
    queue = Queue(unique_name, durable=False)
    with Connection(f"amqp://guest:guest@127.0.0.1:{port}/{encoded}") as inside:
        assert inside.virtual_host == vhost
        producer = inside.Producer()
        producer.publish({"in": vhost}, routing_key=queue.name, declare=[queue])
        [message] = collect(inside, queue, 1)
        assert message.payload == {"in": vhost}
    with Connection(amqp_url) as outside:
        with pytest.raises(NotFound):
            queue(outside.channel()).queue_declare(passive=True)


@pytest.mark.parametrize("login_method", ["PLAIN", "AMQPLAIN"])
def test_login_methods(amqp_url: str, login_method: str) -> None:
    with Connection(amqp_url, login_method=login_method) as conn:
        conn.connect()
        assert conn.default_channel.queue_declare("", exclusive=True, auto_delete=True).queue


def test_client_properties_reach_the_broker(amqp_url: str, unique_name: str) -> None:
    with Connection(amqp_url, transport_options={"client_properties": {"connection_name": unique_name}}) as conn:
        conn.connect()
        listing = rabbitmqctl("list_connections", "client_properties")
        assert unique_name in listing
        assert "kombu_like" in listing  # our product name is announced


def test_tls_with_ca_file(tls_relay: Relay, tls_files: tuple[str, str], ents: Entities) -> None:
    cert, _ = tls_files
    queue = ents.queue("tls")
    ssl_options = {"ca_certs": cert, "cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "localhost"}
    with Connection(f"amqps://guest:guest@localhost:{tls_relay.port}//", ssl=ssl_options) as conn:
        conn.Producer().publish({"over": "tls"}, routing_key=queue.name, declare=[queue])
        [message] = collect(conn, queue, 1)
        assert message.payload == {"over": "tls"}
        assert isinstance(conn.connection.sock, ssl.SSLSocket)


def test_tls_with_ssl_context_and_ssl_true(tls_relay: Relay, tls_files: tuple[str, str], ents: Entities) -> None:
    cert, _ = tls_files
    context = ssl.create_default_context(cafile=cert)
    queue = ents.queue("tlsctx")
    with Connection(f"amqp://guest:guest@localhost:{tls_relay.port}//", ssl=context) as conn:
        conn.Producer().publish("ctx", routing_key=queue.name, declare=[queue])
        [message] = collect(conn, queue, 1)
        assert message.payload == "ctx"
        assert conn.connection.sock.getpeercert()["subject"] == ((("commonName", "localhost"),),)


def test_tls_with_untrusted_certificate_fails_clearly(tls_relay: Relay) -> None:
    conn = Connection(
        f"amqps://guest:guest@localhost:{tls_relay.port}//",
        connect_timeout=5,
        ssl={"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "localhost"},
    )
    with pytest.raises(OperationalError) as info:
        conn.connect()
    # a certificate that does not verify never will: not retried
    assert isinstance(info.value, IrrecoverableConnectionError)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert "guest:guest" not in str(info.value)
    conn.release()


def test_heartbeats_keep_an_idle_connection_and_detect_a_dead_one(amqp_url: str, ents: Entities) -> None:
    queue = ents.queue("hb")
    with FaultProxy("127.0.0.1", broker_port(amqp_url)) as proxy:
        conn = Connection(proxy.url_for(amqp_url), heartbeat=1)
        try:
            conn.connect()
            assert conn.get_heartbeat_interval() == 1
            assert conn.supports_heartbeats
            consumer = Consumer(conn, [queue], callbacks=[lambda body, message: None])
            consumer.consume()
            # idle for three heartbeat intervals inside drain_events: still connected
            with pytest.raises(socket.timeout):
                conn.drain_events(timeout=3)
            conn.heartbeat_check()
            assert conn.connected
            # the broker goes silent: drain_events notices missed heartbeats, never hangs
            proxy.stall(True)
            started = time.monotonic()
            with pytest.raises(ConnectionError) as info:
                conn.drain_events(timeout=30)
            assert time.monotonic() - started < 10
            assert "heartbeat" in str(info.value).lower()
        finally:
            proxy.stall(False)
            conn.release()


# -- declarations -----------------------------------------------------------------------


def test_queue_arguments_max_length_and_message_ttl(conn: Connection, ents: Entities) -> None:
    capped = ents.queue("maxlen", max_length=2)
    short = ents.queue("ttl", message_ttl=0.2)
    producer = conn.Producer()
    for n in range(5):
        producer.publish(n, routing_key=capped.name, declare=[capped])
    producer.publish("gone soon", routing_key=short.name, declare=[short])
    assert ready_count(conn, capped.name) == 2
    assert [m.payload for m in collect(conn, capped, 2)] == [3, 4]  # the oldest were dropped
    deadline = time.monotonic() + 5
    while ready_count(conn, short.name) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ready_count(conn, short.name) == 0


def test_queue_expires_when_unused(conn: Connection, ents: Entities) -> None:
    queue = ents.queue("expires", expires=0.3)
    queue(conn.default_channel).declare()
    # no declare in between: a (passive) declare counts as use and renews the lease
    time.sleep(1.5)
    with pytest.raises(NotFound):
        queue(conn.channel()).queue_declare(passive=True)


def test_priority_queue(conn: Connection, ents: Entities) -> None:
    queue = ents.queue("prio", max_priority=10)
    producer = conn.Producer()
    for priority in (0, 7, 3, 9):
        producer.publish(priority, routing_key=queue.name, priority=priority, declare=[queue])
    received = collect(conn, queue, 4, prefetch_count=1)
    assert [m.payload for m in received] == [9, 7, 3, 0]
    assert received[0].properties["priority"] == 9


def test_dead_letter_exchange_and_routing_key(conn: Connection, ents: Entities) -> None:
    dlx = ents.exchange("dlx", "direct")
    dead = ents.queue("dead", dlx, routing_key="dead.key")
    work = ents.queue(
        "work", queue_arguments={"x-dead-letter-exchange": dlx.name, "x-dead-letter-routing-key": "dead.key"}
    )
    dead(conn.default_channel).declare()
    conn.Producer().publish({"job": 1}, routing_key=work.name, declare=[work])
    [message] = collect(conn, work, 1, ack=False)
    message.reject()  # not requeued: dead-lettered
    [again] = collect(conn, dead, 1)
    assert again.payload == {"job": 1}
    [death] = again.headers["x-death"]
    assert death["queue"] == work.name
    assert death["reason"] == "rejected"


def test_quorum_queue(conn: Connection, ents: Entities) -> None:
    queue = ents.queue("quorum", durable=True, queue_arguments={"x-queue-type": "quorum"})
    conn.Producer().publish("q1", routing_key=queue.name, declare=[queue])
    [first] = collect(conn, queue, 1, ack=False)
    first.requeue()
    [again] = collect(conn, queue, 1)
    assert again.payload == "q1"
    assert again.redelivered
    assert again.headers.get("x-delivery-count") == 1  # quorum queues count deliveries


def test_stream_queue(conn: Connection, ents: Entities) -> None:
    queue = ents.queue(
        "stream",
        durable=True,
        queue_arguments={"x-queue-type": "stream"},
        consumer_arguments={"x-stream-offset": "first"},
    )
    producer = conn.Producer()
    for n in range(3):
        producer.publish(n, routing_key=queue.name, declare=[queue])
    # streams keep messages: two consumers both read all of them from the start
    for _ in range(2):
        received = collect(conn, queue, 3, prefetch_count=10)
        assert [m.payload for m in received] == [0, 1, 2]


def test_redeclare_with_other_arguments_is_precondition_failed(conn: Connection, ents: Entities) -> None:
    queue = ents.queue("redeclare", max_length=5)
    queue(conn.default_channel).declare()
    other = Queue(queue.name, durable=False, max_length=6)
    with pytest.raises(PreconditionFailed) as info:
        other(conn.default_channel).declare()
    assert info.value.reply_code == 406
    assert queue.name in str(info.value)
    assert "x-max-length" in str(info.value)
    # the connection, the same default channel and a fresh channel all still work
    assert queue(conn.default_channel).queue_declare(passive=True).queue == queue.name
    assert queue(conn.channel()).queue_declare(passive=True).queue == queue.name


def test_reserved_name_is_access_refused(conn: Connection, unique_name: str) -> None:
    with pytest.raises(AccessRefused) as info:
        Queue(f"amq.{unique_name}", channel=conn.channel()).declare()
    assert info.value.reply_code == 403
    assert "ACCESS_REFUSED" in str(info.value)
    assert conn.channel().queue_declare("", exclusive=True).queue


def test_exclusive_queue_of_another_connection_is_locked(amqp_url: str, conn: Connection, ents: Entities) -> None:
    queue = ents.queue("excl", exclusive=True)
    with Connection(amqp_url) as owner:
        queue(owner.default_channel).declare()
        with pytest.raises(ResourceLocked) as info:
            Consumer(conn.channel(), [queue], callbacks=[lambda body, message: None]).consume()
        assert info.value.reply_code == 405


def test_exchange_to_exchange_binding_and_unbind(conn: Connection, ents: Entities) -> None:
    source = ents.exchange("src", "topic")
    destination = ents.exchange("dst", "fanout")
    queue = ents.queue("e2e", destination)
    channel = conn.default_channel
    source(channel).declare()
    queue(channel).declare()
    destination(channel).bind_to(source, routing_key="orders.*")
    producer = conn.Producer()
    producer.publish("matched", exchange=source, routing_key="orders.new")
    producer.publish("not matched", exchange=source, routing_key="users.new")
    [message] = collect(conn, queue, 1)
    assert message.payload == "matched"
    destination(channel).unbind_from(source, routing_key="orders.*")
    producer.publish("after unbind", exchange=source, routing_key="orders.new")
    assert ready_count(conn, queue.name) == 0


def test_delete_if_empty_and_if_unused(conn: Connection, ents: Entities) -> None:
    queue = ents.queue("ifempty")
    conn.Producer().publish("x", routing_key=queue.name, declare=[queue])
    with pytest.raises(PreconditionFailed):
        queue(conn.channel()).delete(if_empty=True)
    exchange = ents.exchange("ifunused")
    bound = ents.queue("bound", exchange)
    bound(conn.default_channel).declare()
    with pytest.raises(PreconditionFailed):
        exchange(conn.channel()).delete(if_unused=True)
    assert queue(conn.channel()).purge() == 1
    queue(conn.channel()).delete(if_empty=True)
    with pytest.raises(NotFound):
        queue(conn.channel()).queue_declare(passive=True)


# -- publishing -------------------------------------------------------------------------


def test_every_message_property_arrives(conn: Connection, ents: Entities) -> None:
    queue = ents.queue("props", max_priority=5)
    sent_at = datetime(2024, 5, 17, 12, 30, 15, tzinfo=timezone.utc)
    conn.Producer().publish(
        {"k": "v"},
        routing_key=queue.name,
        declare=[queue],
        delivery_mode=1,
        priority=4,
        expiration=60,
        headers={"h1": "v\u00e9", "n": 7, "nested": {"a": [1, 2]}},
        correlation_id="corr",
        reply_to="replies",
        message_id="mid-1",
        timestamp=sent_at,
        type="order.created",
        user_id="guest",
        app_id="tests",
    )
    [message] = collect(conn, queue, 1)
    props = message.properties
    assert message.payload == {"k": "v"}
    assert props["delivery_mode"] == 1
    assert props["priority"] == 4
    assert props["expiration"] == "60000"
    assert message.headers == {"h1": "v\u00e9", "n": 7, "nested": {"a": [1, 2]}}
    assert (props["correlation_id"], props["reply_to"], props["message_id"]) == ("corr", "replies", "mid-1")
    assert props["timestamp"] == int(sent_at.timestamp())
    assert (props["type"], props["user_id"], props["app_id"]) == ("order.created", "guest", "tests")


def test_wrong_user_id_is_refused_not_lost(amqp_url: str, ents: Entities) -> None:
    queue = ents.queue("userid")
    with Connection(amqp_url, transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer()
        with pytest.raises(PreconditionFailed) as info:
            producer.publish("x", routing_key=queue.name, declare=[queue], user_id="somebody-else")
        assert "user_id" in str(info.value)
        producer.publish("fine", routing_key=queue.name)  # the channel was reopened
        [message] = collect(conn, queue, 1)
        assert message.payload == "fine"


def test_mandatory_unroutable_goes_to_on_return(amqp_url: str, ents: Entities) -> None:
    exchange = ents.exchange("noroute")
    returned: list[tuple[BaseException, str, str, Message]] = []
    with Connection(amqp_url) as conn:
        producer = Producer(conn, exchange=exchange, on_return=lambda *args: returned.append(args))
        producer.publish({"lost?": "no"}, routing_key="nowhere", mandatory=True)
        drain_until(conn, lambda: bool(returned), timeout=5)
    [(exc, exchange_name, routing_key, message)] = returned
    assert isinstance(exc, MessageReturned)
    assert exc.reply_code == 312
    assert (exchange_name, routing_key) == (exchange.name, "nowhere")
    assert message.payload == {"lost?": "no"}


def test_mandatory_with_confirms_returns_before_publish_returns(amqp_url: str, ents: Entities) -> None:
    exchange = ents.exchange("noroute_c")
    returned: list[Any] = []
    with Connection(amqp_url, transport_options={"confirm_publish": True}) as conn:
        producer = Producer(conn, exchange=exchange, on_return=lambda *args: returned.append(args))
        producer.publish("r", routing_key="nowhere", mandatory=True)
        assert len(returned) == 1  # handled inside publish, before the broker's ack
    # without on_return (on_return handlers belong to the channel: use a new connection)
    with Connection(amqp_url, transport_options={"confirm_publish": True}) as conn:
        bare = Producer(conn, exchange=exchange)
        with pytest.raises(MessageReturned) as info:
            bare.publish("r", routing_key="nowhere", mandatory=True)
        assert "nowhere" in str(info.value)


def test_publish_to_missing_exchange_surfaces(amqp_url: str, unique_name: str, ents: Entities) -> None:
    missing = Exchange(f"missing-{unique_name}", no_declare=True)
    with Connection(amqp_url, transport_options={"confirm_publish": True}) as conn:
        with pytest.raises(NotFound) as info:
            conn.Producer().publish("x", exchange=missing, routing_key="k")
        assert missing.name in str(info.value)
    # without confirms the broker's channel close is raised by the next call on the connection
    queue = ents.queue("after_missing")
    with Connection(amqp_url) as conn:
        conn.Producer().publish("x", exchange=missing.name, routing_key="k")
        with pytest.raises(NotFound) as info:
            queue(conn.default_channel).declare()
        assert missing.name in str(info.value)
        queue(conn.default_channel).declare()


def test_confirm_nack_raises_message_nacked(amqp_url: str, ents: Entities) -> None:
    queue = ents.queue("nack", max_length=1, queue_arguments={"x-overflow": "reject-publish"})
    with Connection(amqp_url, transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer()
        producer.publish("first", routing_key=queue.name, declare=[queue])
        with pytest.raises(MessageNacked) as info:
            producer.publish("second", routing_key=queue.name)
        assert queue.name in str(info.value)
        # a nack is retried by ensure() on the same channel; the queue is still full
        assert MessageNacked in conn.recoverable_channel_errors
        assert ready_count(conn, queue.name) == 1


def test_nack_without_confirm_publish_is_logged(
    amqp_url: str, ents: Entities, caplog: pytest.LogCaptureFixture
) -> None:
    queue = ents.queue("nacklog", max_length=1, queue_arguments={"x-overflow": "reject-publish"})
    with Connection(amqp_url) as conn:
        producer = conn.Producer()
        producer.publish("first", routing_key=queue.name, declare=[queue])
        producer.publish("second", routing_key=queue.name)
        assert ready_count(conn, queue.name) == 1  # waits for the broker's answers
    assert any("refused 1 message" in record.getMessage() for record in caplog.records)


def test_confirm_timeout_raises_instead_of_hanging(amqp_url: str, ents: Entities) -> None:
    queue = ents.queue("ctimeout")
    with FaultProxy("127.0.0.1", broker_port(amqp_url)) as proxy:
        options = {"confirm_publish": True, "confirm_timeout": 1}
        with Connection(proxy.url_for(amqp_url), transport_options=options) as conn:
            producer = conn.Producer()
            producer.publish("ok", routing_key=queue.name, declare=[queue])
            proxy.stall(True)
            started = time.monotonic()
            with pytest.raises(ConnectionTimeout) as info:
                producer.publish("stuck", routing_key=queue.name)
            assert 0.9 < time.monotonic() - started < 5
            assert "confirm" in str(info.value)
            assert isinstance(info.value, conn.recoverable_connection_errors)
            proxy.stall(False)


class _CountingWrites:
    """Counts socket writes of a connection (to check that a batch is one write)."""

    def __init__(self, conn: Connection) -> None:
        self.transport = conn.connection._transport
        self.original = self.transport._write
        self.count = 0

    def __enter__(self) -> _CountingWrites:
        def write(data: Any) -> None:
            self.count += 1
            self.original(data)

        self.transport._write = write
        return self

    def __exit__(self, *exc: Any) -> None:
        self.transport._write = self.original


@pytest.mark.parametrize("confirm", [False, True], ids=["plain", "confirm_publish"])
def test_batch_is_one_write(amqp_url: str, ents: Entities, confirm: bool) -> None:
    queue = ents.queue("batch")
    with Connection(amqp_url, transport_options={"confirm_publish": confirm}) as conn:
        producer = conn.Producer()
        producer.maybe_declare(queue)
        with _CountingWrites(conn) as writes:
            with producer.batch():
                for n in range(300):
                    producer.publish({"n": n}, routing_key=queue.name)
        assert writes.count == 1
        received = collect(conn, queue, 300, prefetch_count=300)
        assert [m.payload["n"] for m in received] == list(range(300))


def test_batch_with_confirms_reports_nacks(amqp_url: str, ents: Entities) -> None:
    queue = ents.queue("batchnack", max_length=3, queue_arguments={"x-overflow": "reject-publish"})
    with Connection(amqp_url, transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer()
        producer.maybe_declare(queue)
        with pytest.raises(MessageNacked) as info:
            with producer.batch():
                for n in range(5):
                    producer.publish(n, routing_key=queue.name)
        assert "2 of 5" in str(info.value)


# -- consuming --------------------------------------------------------------------------


def test_several_queues_and_channels_one_drain(conn: Connection, ents: Entities) -> None:
    queues = [ents.queue(f"multi{i}") for i in range(4)]
    got: dict[str, list[Any]] = {q.name: [] for q in queues}

    def handler(name: str) -> Callable[[Any, Message], None]:
        def on_message(body: Any, message: Message) -> None:
            got[name].append(body)
            message.ack()

        return on_message

    # two queues on one channel, two more on a second channel of the same connection
    first, second = conn.channel(), conn.channel()
    consumers = [
        Consumer(first, queues[:2], callbacks=[lambda b, m: handler(m.delivery_info["routing_key"])(b, m)]),
        Consumer(second, queues[2:], callbacks=[lambda b, m: handler(m.delivery_info["routing_key"])(b, m)]),
    ]
    for consumer in consumers:
        consumer.consume()
    producer = conn.Producer()
    for queue in queues:
        producer.publish(queue.name, routing_key=queue.name)
    drain_until(conn, lambda: all(got.values()))
    assert got == {q.name: [q.name] for q in queues}


def test_multiple_ack_and_nack(amqp_url: str, conn: Connection, ents: Entities) -> None:
    queue = ents.queue("multiack")
    producer = conn.Producer()
    for n in range(6):
        producer.publish(n, routing_key=queue.name, declare=[queue])
    received = collect(conn, queue, 6, ack=False, prefetch_count=6)
    channel = received[0].channel
    assert channel is not None
    channel.basic_ack(received[2].delivery_tag, multiple=True)  # 0, 1, 2
    channel.basic_nack(received[5].delivery_tag, multiple=True, requeue=True)  # 3, 4, 5 back
    again = collect(conn, queue, 3)
    assert sorted(m.payload for m in again) == [3, 4, 5]
    assert all(m.redelivered for m in again)
    drain_quietly(conn)
    assert ready_count(conn, queue.name) == 0


def test_basic_get_counts_and_redelivered(conn: Connection, ents: Entities) -> None:
    queue = ents.queue("get")
    producer = conn.Producer()
    for n in range(2):
        producer.publish(n, routing_key=queue.name, declare=[queue])
    bound = queue(conn.default_channel)
    first = bound.get()
    assert first is not None and first.payload == 0
    assert first.delivery_info["message_count"] == 1
    first.requeue()
    again = bound.get()
    assert again is not None and again.payload == 0 and again.redelivered
    again.ack()


def test_broker_cancel_is_raised_naming_the_queue(amqp_url: str, conn: Connection, ents: Entities) -> None:
    queue = ents.queue("cancelled")
    consumer = Consumer(conn, [queue], callbacks=[lambda body, message: None])
    consumer.consume()
    with Connection(amqp_url) as other:
        queue(other.default_channel).delete()
    with pytest.raises(ConsumerCancelled) as info:
        drain_until(conn, lambda: False, timeout=5)
    assert queue.name in str(info.value)
    assert isinstance(info.value, conn.recoverable_connection_errors)


def test_broker_cancel_calls_on_cancel(amqp_url: str, conn: Connection, ents: Entities) -> None:
    queue = ents.queue("oncancel")
    bound = queue(conn.default_channel)
    bound.declare()
    cancelled: list[str] = []
    tag = bound.consume("my-tag", callback=lambda raw: None, on_cancel=cancelled.append)
    with Connection(amqp_url) as other:
        queue(other.default_channel).delete()
    drain_until(conn, lambda: bool(cancelled), timeout=5)
    assert cancelled == [tag] == ["my-tag"]


def test_ensure_retries_bare_socket_errors_as_kombus_transport_does(conn: Connection) -> None:
    # Kombu's py-amqp transport counts OSError among its recoverable connection errors;
    # code written for it (oslo.messaging's ensure) raises IOError and expects retries
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("connection reset")
        return "done"

    ensured = conn.ensure(conn, flaky, max_retries=4, interval_start=0, interval_step=0)
    assert ensured() == "done"
    assert len(calls) == 3
    assert conn.connected


def test_ensure_lets_timeouts_surface(conn: Connection) -> None:
    calls: list[int] = []

    def waits() -> None:
        calls.append(1)
        conn.drain_events(timeout=0.05)

    with pytest.raises(socket.timeout):
        conn.ensure(conn, waits, max_retries=3, interval_start=0, interval_step=0)()
    assert len(calls) == 1


def test_ensure_recovers_a_consumer_whose_queue_was_deleted(amqp_url: str, conn: Connection, ents: Entities) -> None:
    queue = ents.queue("revive")
    got: list[Any] = []

    def on_message(body: Any, message: Message) -> None:
        got.append(body)
        message.ack()

    consumer = Consumer(conn, [queue], callbacks=[on_message])
    consumer.consume()
    with Connection(amqp_url) as other:
        queue(other.default_channel).delete()

    def drain() -> None:
        conn.drain_events(timeout=0.5)

    ensured = conn.ensure(consumer, drain, max_retries=3, interval_start=0, interval_step=0.1)
    with pytest.raises(socket.timeout):
        ensured()  # reconnects, redeclares the queue and consumes again; then nothing arrives
    with Connection(amqp_url) as other:
        other.Producer().publish("after revive", routing_key=queue.name)
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        try:
            ensured()
        except socket.timeout:
            pass
    assert got == ["after revive"]


def test_direct_reply_to(amqp_url: str, conn: Connection, ents: Entities) -> None:
    requests = ents.queue("rpc")
    reply_queue = Queue("amq.rabbitmq.reply-to", no_ack=True)
    replies: list[Message] = []
    with Connection(amqp_url) as server:

        def serve(body: Any, message: Message) -> None:
            server.Producer().publish(
                {"answer": body["n"] * 2},
                routing_key=message.properties["reply_to"],
                correlation_id=message.properties["correlation_id"],
            )
            message.ack()

        with Consumer(server, [requests], callbacks=[serve]):
            with Consumer(conn, [reply_queue], on_message=replies.append, no_ack=True):
                conn.Producer().publish(
                    {"n": 21},
                    routing_key=requests.name,
                    declare=[requests],
                    reply_to=reply_queue.name,
                    correlation_id="c-1",
                )
                deadline = time.monotonic() + 10
                while not replies and time.monotonic() < deadline:
                    for side in (server, conn):
                        try:
                            side.drain_events(timeout=0.05)
                        except socket.timeout:
                            pass
    [reply] = replies
    assert reply.payload == {"answer": 42}
    assert reply.properties["correlation_id"] == "c-1"


def test_connection_blocked_and_unblocked_reach_callbacks(amqp_url: str, ents: Entities) -> None:
    relay = Relay(broker_port(amqp_url))
    events: list[Any] = []
    options = {
        "on_blocked": lambda reason: events.append(("blocked", reason)),
        "on_unblocked": lambda: events.append(("unblocked",)),
    }
    queue = ents.queue("blocked")
    try:
        with Connection(f"amqp://guest:guest@127.0.0.1:{relay.port}//", transport_options=options) as conn:
            consumer = Consumer(conn, [queue], callbacks=[lambda body, message: None])
            consumer.consume()
            reason = b"low on memory"
            relay.inject(method_frame(0, 10, 60, bytes([len(reason)]) + reason))
            drain_until(conn, lambda: bool(events), timeout=5)
            assert events == [("blocked", "low on memory")]
            assert conn.connection.blocked_reason == "low on memory"
            relay.inject(method_frame(0, 10, 61))
            drain_until(conn, lambda: len(events) == 2, timeout=5)
            assert events[1] == ("unblocked",)
            assert conn.connection.blocked_reason is None
    finally:
        relay.close()


# -- bad input and faults -----------------------------------------------------------------


def test_bad_messages_are_dead_lettered_by_on_decode_error(conn: Connection, ents: Entities) -> None:
    dlx = ents.exchange("bad_dlx", "fanout")
    parked = ents.queue("parked", dlx)
    work = ents.queue("bad_work", queue_arguments={"x-dead-letter-exchange": dlx.name})
    parked(conn.default_channel).declare()
    producer = conn.Producer()
    producer.publish(
        b"{broken", routing_key=work.name, declare=[work], content_type="application/json", content_encoding="utf-8"
    )
    producer.publish("a: 1", routing_key=work.name, content_type="application/x-yaml", content_encoding="utf-8")
    producer.publish({"good": True}, routing_key=work.name)
    errors: list[BaseException] = []
    good: list[Any] = []

    def on_decode_error(message: Message, exc: BaseException) -> None:
        errors.append(exc)
        message.reject()

    def on_message(body: Any, message: Message) -> None:
        good.append(body)
        message.ack()

    with Consumer(conn, [work], callbacks=[on_message], on_decode_error=on_decode_error, accept=["json"]):
        drain_until(conn, lambda: len(errors) == 2 and bool(good))
    assert good == [{"good": True}]
    assert isinstance(errors[0], DecodeError)
    parked_messages = collect(conn, parked, 2, accept=["json", "yaml"])
    assert sorted(m.body for m in parked_messages) == [b"a: 1", b"{broken"]
    assert ready_count(conn, work.name) == 0


def test_decode_error_without_handler_keeps_message_and_consumer(amqp_url: str, ents: Entities) -> None:
    queue = ents.queue("bad_raise")
    with Connection(amqp_url) as conn:
        producer = conn.Producer()
        producer.publish(
            b"\xff\xfe not json",
            routing_key=queue.name,
            declare=[queue],
            content_type="application/json",
            content_encoding="utf-8",
        )
        producer.publish({"good": 1}, routing_key=queue.name)
        good: list[Any] = []

        def on_message(body: Any, message: Message) -> None:
            good.append(body)
            message.ack()

        with Consumer(conn, [queue], callbacks=[on_message]):
            with pytest.raises(DecodeError) as info:
                drain_until(conn, lambda: False, timeout=5)
            assert queue.name in str(info.value)
            drain_until(conn, lambda: bool(good))
    # the bad message was not acked away: it is back in the queue
    with Connection(amqp_url) as conn:
        [message] = collect(conn, queue, 1, ack=False)
        assert message.body == b"\xff\xfe not json" and message.redelivered
        message.reject()


def test_killed_consumer_messages_are_redelivered(amqp_url: str, ents: Entities) -> None:
    queue = ents.queue("kill9")
    with Connection(amqp_url) as conn:
        producer = conn.Producer()
        for n in range(20):
            producer.publish({"n": n}, routing_key=queue.name, declare=[queue])
    script = HERE / "amqp_consumer_proc.py"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent.parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, str(script), amqp_url, queue.name, "5"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = ""
        deadline = time.monotonic() + 30
        while not line.startswith("holding") and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "the consumer process died early"
        assert line.startswith("holding"), line
        acked = {int(n) for n in line.split("acked=")[1].split()[0].split(",")}
        held = {int(n) for n in line.split("held=")[1].split(",")}
        assert len(acked) == 5 and len(held) == 15
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    with Connection(amqp_url) as conn:
        received = collect(conn, queue, 15, prefetch_count=20)
        drain_quietly(conn)
        assert {m.payload["n"] for m in received} == held
        assert all(m.redelivered for m in received)
        assert ready_count(conn, queue.name) == 0


def test_connection_errors_are_library_classes(amqp_url: str, ents: Entities) -> None:
    queue = ents.queue("cut")
    with FaultProxy("127.0.0.1", broker_port(amqp_url)) as proxy:
        with Connection(proxy.url_for(amqp_url)) as conn:
            producer = conn.Producer()
            producer.publish("before", routing_key=queue.name, declare=[queue])
            proxy.cut()
            with pytest.raises(OperationalError) as info:
                for _ in range(50):
                    producer.publish("after", routing_key=queue.name)
                    queue(conn.default_channel).queue_declare(passive=True)
            assert isinstance(info.value, conn.recoverable_connection_errors)
            assert info.value.__cause__ is not None
            assert "guest:guest" not in str(info.value)


def test_deleting_a_queue_this_connection_consumes_is_quiet(conn: Connection, ents: Entities) -> None:
    queue = ents.queue("selfdelete")
    got: list[Any] = []
    with Consumer(conn, [queue], callbacks=[lambda body, message: got.append(body)]):
        queue(conn.channel()).delete()
        drain_quietly(conn, 0.5)  # the broker's cancel of our own consumer raises nothing
        assert got == []
        with pytest.raises(NotFound):
            queue(conn.channel()).queue_declare(passive=True)


def test_what_rabbitmq_does_not_implement_fails_without_losing_the_connection(conn: Connection, ents: Entities) -> None:
    queue = ents.queue("unsupported")
    consumer = Consumer(conn, [queue], callbacks=[lambda body, message: None])
    with pytest.raises(NotImplementedError, match="requeue=True"):
        consumer.recover()  # Kombu's default requeue=False closes the connection on RabbitMQ
    with pytest.raises(NotImplementedError, match="prefetch_size"):
        consumer.qos(prefetch_size=1024, prefetch_count=10)
    with pytest.raises(NotImplementedError, match="mandatory"):
        conn.Producer().publish("x", routing_key=queue.name, immediate=True)
    consumer.recover(requeue=True)
    assert conn.connected
    assert queue(conn.default_channel).queue_declare(passive=True).queue == queue.name


def test_large_and_empty_bodies(conn: Connection, ents: Entities) -> None:
    queue = ents.queue("sizes")
    large = os.urandom(3 * 1024 * 1024 + 17)  # many frames of frame_max each
    producer = conn.Producer()
    for body in (large, b"", b"x"):
        producer.publish(
            body,
            routing_key=queue.name,
            declare=[queue],
            content_type="application/octet-stream",
            content_encoding="binary",
        )
    received = collect(conn, queue, 3)
    assert [m.body for m in received] == [large, b"", b"x"]


def test_broker_closing_the_connection_is_recoverable(amqp_url: str, unique_name: str, ents: Entities) -> None:
    queue = ents.queue("forced")
    options = {"client_properties": {"connection_name": unique_name}}
    with Connection(amqp_url, transport_options=options) as conn:
        producer = conn.Producer()
        producer.publish("before", routing_key=queue.name, declare=[queue])
        close_from_the_broker(unique_name, "maintenance")
        with pytest.raises(ConnectionError) as info:
            drain_until(conn, lambda: False, timeout=10)
        assert info.value.reply_code == 320
        assert "maintenance" in str(info.value)
        assert not conn.connected
        # retry=True reconnects and publishes on a new connection
        producer.publish("after", routing_key=queue.name, retry=True)
        assert sorted(m.payload for m in collect(conn, queue, 2)) == ["after", "before"]


def test_publish_on_an_idle_connection_the_broker_closed_goes_to_a_new_one(
    amqp_url: str, unique_name: str, ents: Entities
) -> None:
    # a pooled connection that only publishes now and then (a worker's remote-control replies,
    # its results): a publish after the broker closed it must not vanish into the dead socket
    queue = ents.queue("idle-forced")
    options = {"client_properties": {"connection_name": unique_name}}
    with Connection(amqp_url, transport_options=options) as conn:
        producer = conn.Producer()
        producer.publish("before", routing_key=queue.name, declare=[queue])
        close_from_the_broker(unique_name, "maintenance")
        # the broker's connection.close has reached the client before the next publish
        assert select.select([conn.connection.sock], [], [], 10)[0]
        for body in ("after-1", "after-2"):
            producer.publish(body, routing_key=queue.name, retry=True)
        assert sorted(m.payload for m in collect(conn, queue, 3)) == ["after-1", "after-2", "before"]


def test_delivery_interrupted_by_a_timeout_is_finished_by_the_next_call(amqp_url: str, ents: Entities) -> None:
    queue = ents.queue("partial")
    body = os.urandom(16 * 1024 * 1024)  # many frames
    with FaultProxy("127.0.0.1", broker_port(amqp_url)) as proxy, Connection(proxy.url_for(amqp_url)) as conn:
        conn.Producer().publish(
            body,
            routing_key=queue.name,
            declare=[queue],
            content_type="application/octet-stream",
            content_encoding="binary",
        )
        got: list[bytes] = []
        with Consumer(conn, [queue], on_message=lambda message: (got.append(message.body), message.ack())):
            proxy.stall(True)  # the delivery has started; most of it stays in the proxy
            deadline = time.monotonic() + 20
            while proxy.held_for_clients() < 4 * 1024 * 1024:
                assert time.monotonic() < deadline, "the broker did not start the delivery"
                time.sleep(0.01)
            # what got through, then pieces that end inside frames: each drain times out
            # half-way through the message
            with pytest.raises(socket.timeout):
                conn.drain_events(timeout=0.2)
            for _ in range(3):
                assert proxy.let_through(300_001) > 0
                with pytest.raises(socket.timeout):
                    conn.drain_events(timeout=0.2)
            assert got == []
            proxy.stall(False)
            # a synchronous call reads the rest of the delivery itself; the consumer gets it
            # from the next drain_events (no callback runs inside another call)
            queue(conn.default_channel).queue_declare(passive=True)
            assert got == []
            conn.drain_events(timeout=1)
            assert got == [body]


def test_kombu_connection_keys_in_transport_options_are_honoured(amqp_url: str, unique_name: str) -> None:
    # Kombu's py-amqp transport passes every transport option to the driver connection,
    # where these override the Connection arguments of the same name.
    import kombu

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # honoured: no "not supported" warning
        for connection_class in (kombu.Connection, Connection):
            with connection_class(amqp_url, heartbeat=0, transport_options={"heartbeat": 7}) as conn:
                conn.connect()
                assert conn.get_heartbeat_interval() == 7, connection_class

            conn = connection_class(amqp_url, transport_options={"login_method": "EXTERNAL"})
            with pytest.raises(Exception, match="EXTERNAL"):  # RabbitMQ offers PLAIN and AMQPLAIN only
                conn.connect()
            conn.release()

            conn = connection_class(amqp_url, ssl=False, transport_options={"ssl": True})
            with pytest.raises(Exception, match="WRONG_VERSION_NUMBER"):  # TLS to the plain port
                conn.connect()
            conn.release()

    with FaultProxy("127.0.0.1", broker_port(amqp_url)) as proxy:
        url = proxy.url_for(amqp_url)
        # read_timeout is the reply time limit, as rpc_timeout is
        with Connection(url, transport_options={"read_timeout": 1}) as conn:
            channel = conn.channel()
            proxy.stall()
            started = time.monotonic()
            with pytest.raises(ConnectionTimeout):
                Queue(unique_name, durable=False)(channel).declare()
            assert time.monotonic() - started < 5
            proxy.stall(False)
        # connect_timeout bounds the login on a broker that does not answer
        proxy.stall()
        conn = Connection(url, connect_timeout=30, transport_options={"connect_timeout": 1, "read_timeout": 30})
        started = time.monotonic()
        with pytest.raises(OperationalError):
            conn.connect()
        assert time.monotonic() - started < 5
        conn.release()
        proxy.stall(False)


def test_simple_queue_get_timeout_bounds_starting_to_consume(amqp_url: str, unique_name: str) -> None:
    # get(timeout=2) on a broker that stopped answering: the queue declare and
    # basic.consume made by the first get count against the 2 s, not rpc_timeout's 30
    with FaultProxy("127.0.0.1", broker_port(amqp_url)) as proxy:
        with Connection(proxy.url_for(amqp_url)) as conn:
            conn.connect()
            queue = conn.SimpleQueue(unique_name, queue_opts={"durable": False, "auto_delete": True})
            proxy.stall()
            started = time.monotonic()
            with pytest.raises((OperationalError, queue.Empty)):
                queue.get(timeout=1)
            assert time.monotonic() - started < 4
            proxy.stall(False)
