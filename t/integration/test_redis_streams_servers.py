"""The Redis Streams transport on Redis servers of its own: found through Sentinel (and
failing over), over TLS, and with a password that never shows."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from kombu_like import Connection, Queue
from kombu_like.exceptions import AccessRefused
from kombu_like.transport.redis_streams import StreamKeys
from t.conftest import free_port
from t.integration.failover_load import FailoverLoad, wait_online
from t.integration.test_redis_servers import redis_server, roundtrip, sentinel_setup, tls_files

pytestmark = pytest.mark.redis

__all__ = ["sentinel_setup", "tls_files"]  # fixtures used here


def test_sentinel_streams_url_finds_the_master(sentinel_setup: dict[str, int], unique_name: str) -> None:
    dead = free_port()  # the first Sentinel listed is down: the next one answers
    url = f"sentinel+streams://127.0.0.1:{dead};sentinel+streams://127.0.0.1:{sentinel_setup['sentinel']}"
    with Connection(url, transport_options={"master_name": "mymaster"}) as conn:
        queue = Queue(unique_name, routing_key=unique_name)
        assert roundtrip(conn, queue, [{"n": 1}, {"n": 2}]) == [{"n": 1}, {"n": 2}]
    direct = redis.Redis(port=sentinel_setup["master"])
    assert direct.type(StreamKeys().stream(unique_name)) == b"stream"
    direct.close()


def test_sentinel_streams_without_master_name_says_what_is_missing(sentinel_setup: dict[str, int]) -> None:
    conn = Connection(f"sentinel+streams://127.0.0.1:{sentinel_setup['sentinel']}")
    with pytest.raises(ValueError, match="master_name"):
        conn.connect()
    conn.release()


def test_sentinel_streams_failover_loses_no_confirmed_message(
    sentinel_setup: dict[str, int], tmp_path: Path, unique_name: str
) -> None:
    # the master is SIGKILLed while a publisher (wait_replicas=1) and a consumer run; the
    # Sentinel promotes the replica, both reconnect through their retry policy, and every
    # publish that returned is consumed (its replica had it); acks settled before the kill
    # are not undone by it
    master, replica = sentinel_setup["master"], sentinel_setup["replica"]
    url = f"sentinel+streams://127.0.0.1:{sentinel_setup['sentinel']}"
    options = {
        "master_name": "mymaster",
        "wait_replicas": 1,
        "wait_timeout": 1.0,
        "lease": 1.0,
        "socket_timeout": 2.0,
        "socket_connect_timeout": 1.0,
    }
    policy = {"max_retries": 300, "interval_start": 0.1, "interval_step": 0.1, "interval_max": 0.3}
    probe = redis.Redis(port=sentinel_setup["sentinel"])
    with FailoverLoad(url, options, [unique_name], policy) as load:
        load.flowing(30)
        acked = load.quiesce()
        wait_online(redis.Redis(port=master))  # the acks are on the replica too
        load.resume()
        load.flowing(10)
        with redis.Redis(port=master) as doomed:
            os.kill(int(doomed.info("server")["process_id"]), signal.SIGKILL)
        deadline = time.monotonic() + 30
        # the Sentinel sees the master down after down-after-milliseconds, then promotes
        while probe.sentinel_get_master_addr_by_name("mymaster")[1] != replica:
            assert time.monotonic() < deadline, "the Sentinel did not promote the replica"
            time.sleep(0.1)
        # the promoted replica has no replica of its own (no confirmed publish) until the
        # killed server is back, as its replica
        with redis_server(tmp_path / "restarted", "--replicaof", "127.0.0.1", str(replica), port=master):
            wait_online(redis.Redis(port=replica), timeout=20)
            load.restarted()
    probe.close()
    load.check(acked)


def test_rediss_streams_url_over_tls(tmp_path: Path, tls_files: dict[str, Path], unique_name: str) -> None:
    tls_port = free_port()
    args: list[str] = ["--tls-port", str(tls_port), "--tls-cert-file", str(tls_files["cert"])]
    args += ["--tls-key-file", str(tls_files["key"]), "--tls-ca-cert-file", str(tls_files["ca"])]
    with redis_server(tmp_path / "tls", *args, "--tls-auth-clients", "no"):
        url = f"rediss+streams://127.0.0.1:{tls_port}/0?ssl_cert_reqs=required&ssl_ca_certs={tls_files['ca']}"
        with Connection(url) as conn:
            queue = Queue(unique_name, routing_key=unique_name)
            assert roundtrip(conn, queue, [{"tls": True}]) == [{"tls": True}]


def test_password_is_used_and_never_shown(tmp_path: Path, unique_name: str) -> None:
    with redis_server(tmp_path / "auth", "--requirepass", "s3cret-pw") as port:
        with Connection(f"redis+streams://:s3cret-pw@127.0.0.1:{port}/2") as conn:
            queue = Queue(unique_name, routing_key=unique_name)
            assert roundtrip(conn, queue, [{"auth": 1}]) == [{"auth": 1}]
            assert "s3cret-pw" not in repr(conn) and "s3cret-pw" not in conn.as_uri()
        wrong = Connection(f"redis+streams://:wrong-pw@127.0.0.1:{port}/0", connect_timeout=2)
        with pytest.raises(AccessRefused) as info:
            wrong.connect()
        message: Any = str(info.value)
        assert "wrong-pw" not in message and f"127.0.0.1:{port}" in message
        wrong.release()
