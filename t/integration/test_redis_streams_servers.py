"""The Redis Streams transport on Redis servers of its own: found through Sentinel, over
TLS, and with a password that never shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from kombu_like import Connection, Queue
from kombu_like.exceptions import AccessRefused
from kombu_like.transport.redis_streams import StreamKeys
from t.conftest import free_port
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
