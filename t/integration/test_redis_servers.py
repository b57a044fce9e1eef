"""Redis servers started by the tests: Sentinel (with a failover), TLS and passwords.

Each test starts its own ``redis-server`` processes on free ports in a temporary
directory, so nothing here touches the shared Redis on 6379.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from kombu_like import Connection, Consumer, Exchange, Message, Queue
from kombu_like.exceptions import AccessRefused
from t.conftest import free_port, port_open

pytestmark = pytest.mark.redis


def _server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail("redis-server is not installed; run extra/start-brokers.sh")
    return found


@contextlib.contextmanager
def redis_server(workdir: Path, *args: str, port: int | None = None, sentinel: bool = False) -> Iterator[int]:
    """Run ``redis-server`` (or a Sentinel) until the block ends; yields its port."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    if sentinel:
        config = workdir / f"sentinel-{port}.conf"
        config.write_text(f"port {port}\nbind 127.0.0.1\ndir {workdir}\n" + "\n".join(args) + "\n")
        command = [_server_binary(), str(config), "--sentinel"]
    else:
        command = [
            _server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--shutdown-timeout",
            "0",
            "--dir",
            str(workdir),
            *args,
        ]
    log = open(workdir / f"server-{port}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        probe_port = port
        while not port_open("127.0.0.1", probe_port, 0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start: {(workdir / f'server-{port}.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def roundtrip(conn: Connection, queue: Queue, bodies: list[Any], timeout: float = 10.0) -> list[Any]:
    producer = conn.Producer()
    for body in bodies:
        producer.publish(body, routing_key=queue.name, declare=[queue], retry=True)
    received: list[Any] = []

    def on_message(message: Message) -> None:
        received.append(message.payload)
        message.ack()

    with Consumer(conn, [queue], on_message=on_message):
        deadline = time.monotonic() + timeout
        while len(received) < len(bodies) and time.monotonic() < deadline:
            with contextlib.suppress(socket.timeout):
                conn.drain_events(timeout=0.5)
    return received


# -- Sentinel ---------------------------------------------------------------------------

#: how long the Sentinel waits for a PONG before it judges a server down.  It must be well
#: over a second: when a failover ends the Sentinel starts that clock for the promoted
#: master at once, but opens its new link to it only a second after its last attempt to
#: reach the dead master (it tries once a second), so with 1000 the promoted master is
#: judged down now and then (a busy machine), and failed over again
SENTINEL_DOWN_AFTER_MS = 2000


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[dict[str, int]]:
    """A master, a replica and a Sentinel watching them as ``mymaster``."""
    with (
        redis_server(tmp_path / "master", "--repl-diskless-sync-delay", "0") as master,
        redis_server(
            tmp_path / "replica", "--replicaof", "127.0.0.1", str(master), "--repl-diskless-sync-delay", "0"
        ) as replica,
    ):
        replica_client = redis.Redis(port=replica)
        deadline = time.monotonic() + 10
        while replica_client.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica did not sync"
            time.sleep(0.05)
        with redis_server(
            tmp_path / "sentinel",
            f"sentinel monitor mymaster 127.0.0.1 {master} 1",
            f"sentinel known-replica mymaster 127.0.0.1 {replica}",
            f"sentinel down-after-milliseconds mymaster {SENTINEL_DOWN_AFTER_MS}",
            "sentinel failover-timeout mymaster 5000",
            sentinel=True,
        ) as sentinel:
            probe = redis.Redis(port=sentinel)
            deadline = time.monotonic() + 10
            while not probe.sentinel_slaves("mymaster"):
                assert time.monotonic() < deadline, "the Sentinel did not find the replica"
                time.sleep(0.1)
            yield {"master": master, "replica": replica, "sentinel": sentinel}
            probe.close()
        replica_client.close()


def test_sentinel_url_finds_the_master(sentinel_setup: dict[str, int], unique_name: str) -> None:
    dead = free_port()  # the first Sentinel listed is down: the next one answers
    url = f"sentinel://127.0.0.1:{dead};sentinel://127.0.0.1:{sentinel_setup['sentinel']}"
    with Connection(url, transport_options={"master_name": "mymaster"}) as conn:
        queue = Queue(unique_name, routing_key=unique_name)
        assert roundtrip(conn, queue, [{"n": 1}, {"n": 2}]) == [{"n": 1}, {"n": 2}]
    direct = redis.Redis(port=sentinel_setup["master"])
    assert direct.exists(unique_name) == 0
    assert direct.hexists("_kombu_like.queues", unique_name)
    direct.close()


def test_sentinel_without_master_name_says_what_is_missing(sentinel_setup: dict[str, int]) -> None:
    conn = Connection(f"sentinel://127.0.0.1:{sentinel_setup['sentinel']}")
    with pytest.raises(ValueError, match="master_name"):
        conn.connect()
    conn.release()


def test_sentinel_failover_keeps_publishing_and_consuming(sentinel_setup: dict[str, int], unique_name: str) -> None:
    url = f"sentinel://127.0.0.1:{sentinel_setup['sentinel']}"
    options = {
        "master_name": "mymaster",
        "socket_timeout": 2,
        "max_retries": 20,
        "interval_start": 0.2,
        "interval_step": 0.2,
        "interval_max": 0.5,
    }
    queue = Queue(unique_name, routing_key=unique_name)
    with Connection(url, transport_options=options) as conn:
        producer = conn.Producer()
        for n in range(5):
            producer.publish({"n": n}, routing_key=unique_name, declare=[queue])
        master = redis.Redis(port=sentinel_setup["master"])
        assert master.wait(1, 5000) == 1  # replicated before the failover
        master.close()
        probe = redis.Redis(port=sentinel_setup["sentinel"])
        deadline = time.monotonic() + 20
        while True:
            # the Sentinel refuses (NOGOODSLAVE) until it has fresh INFO from the replica
            try:
                probe.execute_command("SENTINEL", "FAILOVER", "mymaster")
                break
            except redis.ResponseError:
                assert time.monotonic() < deadline, "the Sentinel never accepted the failover"
                time.sleep(0.2)
        while probe.sentinel_get_master_addr_by_name("mymaster")[1] != sentinel_setup["replica"]:
            assert time.monotonic() < deadline, "the failover did not happen"
            time.sleep(0.1)
        probe.close()
        # Redis replication does not fence the old master: until it is turned into a
        # replica, connections still open to it read and write there.  The Sentinel does
        # that on its next INFO round (up to 10 s); do it now, as it would.  From here on
        # the old master answers READONLY while the Sentinel may still list it as the
        # master (SENTINEL MASTERS changes only when the failover ends, under load seconds
        # later): the transport must reconnect to the promoted replica all the same.
        old = redis.Redis(port=sentinel_setup["master"])
        old.replicaof("127.0.0.1", sentinel_setup["replica"])
        old.close()
        policy = {"max_retries": 30, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5}
        for n in range(5, 10):
            producer.publish({"n": n}, routing_key=unique_name, retry=True, retry_policy=policy)
        received: list[int] = []

        def on_message(message: Message) -> None:
            received.append(message.payload["n"])
            message.ack()

        consumer = Consumer(conn, [queue], on_message=on_message)

        def drain() -> None:
            conn.drain_events(timeout=0.5)

        ensured = conn.ensure(consumer, drain, max_retries=30, interval_start=0.1, interval_step=0.2, interval_max=0.5)
        consumer.consume()
        new_master = redis.Redis(port=sentinel_setup["replica"])
        deadline = time.monotonic() + 20
        while (set(received) != set(range(10)) or new_master.llen(unique_name)) and time.monotonic() < deadline:
            with contextlib.suppress(socket.timeout):
                ensured()
        consumer.cancel()
    # at least once: every message arrives; one taken from the old master while the
    # failover was under way may arrive twice
    assert set(received) == set(range(10))
    assert new_master.llen(unique_name) == 0
    new_master.close()


# -- TLS and passwords ------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make test certificates")
    ca_key, ca_crt = tmp_path / "ca.key", tmp_path / "ca.crt"
    key, csr, crt = tmp_path / "server.key", tmp_path / "server.csr", tmp_path / "server.crt"
    ext = tmp_path / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=kombu_like test CA",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_crt),
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_crt),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        str(ext),
        "-out",
        str(crt),
    )
    return {"ca": ca_crt, "cert": crt, "key": key}


def test_rediss_url_over_tls(tmp_path: Path, tls_files: dict[str, Path], unique_name: str) -> None:
    tls_port = free_port()
    with redis_server(
        tmp_path / "tls",
        "--tls-port",
        str(tls_port),
        "--tls-cert-file",
        str(tls_files["cert"]),
        "--tls-key-file",
        str(tls_files["key"]),
        "--tls-ca-cert-file",
        str(tls_files["ca"]),
        "--tls-auth-clients",
        "no",
    ):
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_cert_reqs=required&ssl_ca_certs={tls_files['ca']}"
        with Connection(url) as conn:
            queue = Queue(unique_name, routing_key=unique_name)
            assert roundtrip(conn, queue, [{"tls": True}]) == [{"tls": True}]
        # the certificate is checked: a client that does not trust the CA is refused
        untrusted = Connection(f"rediss://127.0.0.1:{tls_port}/0?ssl_cert_reqs=required", connect_timeout=2)
        with pytest.raises(Exception) as info:
            untrusted.connect()
        assert "certificate" in str(info.value).lower()
        untrusted.release()


def test_user_without_client_command_still_gets_everything(
    tmp_path: Path, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # no CLIENT TRACKING (bindings read on every publish, consumers wait in BRPOP) and no
    # CLIENT UNBLOCK (a fanout message waits for the blocking pop to time out): slower,
    # and warned about, but every message arrives
    caplog.set_level(logging.INFO, logger="kombu_like.transport.redis")
    with redis_server(tmp_path / "acl") as port:
        admin = redis.Redis(port=port)
        admin.execute_command("ACL", "SETUSER", "limited", "on", ">pw", "~*", "&*", "+@all", "-client")
        url = f"redis://limited:pw@127.0.0.1:{port}/0"
        exchange = Exchange(unique_name, type="direct")
        with Connection(url) as publisher, Connection(url) as consumer:
            producer = publisher.Producer(exchange=exchange)
            first = Queue(f"{unique_name}.a", exchange, routing_key="k")
            producer.publish({"n": 1}, routing_key="k", declare=[first])
            # a binding made after the publisher routed once must still be seen
            second = Queue(f"{unique_name}.b", exchange, routing_key="k")
            second(consumer.default_channel).declare()
            producer.publish({"n": 2}, routing_key="k")
            assert admin.llen(f"{unique_name}.a") == 2
            assert admin.llen(f"{unique_name}.b") == 1
            fanout = Exchange(f"{unique_name}.fan", type="fanout")
            listening = Queue(f"{unique_name}.fan", fanout, routing_key="")
            got: list[Any] = []
            with Consumer(consumer, [listening], callbacks=[lambda body, message: (got.append(body), message.ack())]):
                publisher.Producer().publish({"fan": 1}, exchange=fanout, routing_key="")
                deadline = time.monotonic() + 10
                while not got and time.monotonic() < deadline:
                    with contextlib.suppress(socket.timeout):
                        consumer.drain_events(timeout=1)
            assert got == [{"fan": 1}]
        admin.close()
    assert any("refused client-side caching" in r.getMessage() for r in caplog.records)
    # the take connection cannot watch the lists either: the consumer waited in BRPOP,
    # and says that a cut connection could lose the message that pop takes
    assert any(
        "refused client tracking on the take connection" in r.getMessage() and r.levelno == logging.WARNING
        for r in caplog.records
    )


def test_password_is_used_and_never_shown(tmp_path: Path, unique_name: str) -> None:
    with redis_server(tmp_path / "auth", "--requirepass", "s3cret-pw") as port:
        with Connection(f"redis://:s3cret-pw@127.0.0.1:{port}/2") as conn:
            queue = Queue(unique_name, routing_key=unique_name)
            assert roundtrip(conn, queue, [{"auth": 1}]) == [{"auth": 1}]
            assert "s3cret-pw" not in repr(conn) and "s3cret-pw" not in conn.as_uri()
        wrong = Connection(f"redis://:wrong-pw@127.0.0.1:{port}/0", connect_timeout=2)
        with pytest.raises(AccessRefused) as info:
            wrong.connect()
        assert "wrong-pw" not in str(info.value)
        assert f"127.0.0.1:{port}" in str(info.value)
        wrong.release()
