"""The decompressed-size limit: streamed decompression that stops at the limit, the
consumer's setting (argument, transport option, default), and the accept check first."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import kombu.compression
import pytest

from kombu_like import Connection, Consumer, Message, Producer, Queue, compression
from kombu_like.compression import DEFAULT_MAX_DECOMPRESSED_SIZE, compress, decompress
from kombu_like.exceptions import ContentDisallowed, DecodeError

METHODS = ["zlib", "bzip2", "lzma", "zstd", "brotli"]
DATA = os.urandom(2000) + b"a" * 3_000_000


@pytest.mark.parametrize("method", METHODS)
def test_limit_is_inclusive_and_named(method: str) -> None:
    packed, _ = compress(DATA, method)
    assert decompress(packed, method, max_size=len(DATA)) == DATA
    with pytest.raises(DecodeError, match=f"limit of {len(DATA) - 1} bytes"):
        decompress(packed, method, max_size=len(DATA) - 1)


@pytest.mark.parametrize("method", METHODS)
def test_truncated_data_is_refused_with_and_without_limit(method: str) -> None:
    packed, _ = compress(DATA, method)
    for limit in (None, 10 * len(DATA)):
        with pytest.raises(DecodeError):
            decompress(packed[:-9], method, max_size=limit)


@pytest.mark.parametrize("method", ["bzip2", "lzma", "zstd"])
def test_concatenated_streams_are_read_as_kombu_reads_them(method: str) -> None:
    packed, content_type = compress(b"first", method)
    again, _ = compress(b"second", method)
    expected = kombu.compression.decompress(packed + again, content_type)
    assert decompress(packed + again, method, max_size=100) == expected == b"firstsecond"


@pytest.mark.parametrize("method", METHODS)
def test_without_a_limit_results_match_kombu(method: str) -> None:
    packed, content_type = compress(DATA, method)
    assert decompress(packed, method) == kombu.compression.decompress(packed, content_type) == DATA


def test_registered_decoder_is_checked_after_the_fact() -> None:
    compression.register(lambda d: bytes(d), lambda d: bytes(d) * 10, "application/x-tenfold")
    try:
        assert decompress(b"ab", "application/x-tenfold", max_size=20) == b"ab" * 10
        with pytest.raises(DecodeError, match="limit of 19 bytes"):
            decompress(b"ab", "application/x-tenfold", max_size=19)
    finally:
        for table in (compression._encoders, compression._decoders, compression._names):
            table.pop("application/x-tenfold", None)


# -- consumers ----------------------------------------------------------------------------
@pytest.fixture
def conn() -> Iterator[Connection]:
    from kombu_like.transport.memory import Broker

    with Connection("memory://", transport_options={"broker": Broker()}) as connection:
        yield connection


def consume_one(conn: Connection, queue: Queue, **options: Any) -> tuple[list[Any], list[BaseException]]:
    bodies: list[Any] = []
    errors: list[BaseException] = []

    def on_error(message: Message, exc: BaseException) -> None:
        errors.append(exc)
        message.reject()

    def on_body(body: Any, message: Message) -> None:
        bodies.append(body)
        message.ack()

    deadline = time.monotonic() + 5
    with Consumer(conn, [queue], callbacks=[on_body], on_decode_error=on_error, **options):
        while not (bodies or errors) and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.2)
            except socket.timeout:
                pass
    return bodies, errors


def publish_big(conn: Connection, queue: Queue, size: int, **kwargs: Any) -> None:
    kwargs.setdefault("compression", "zlib")
    Producer(conn).publish({"pad": "x" * size}, routing_key=queue.name, declare=[queue], **kwargs)


def test_default_limit_is_64_mib(conn: Connection) -> None:
    assert DEFAULT_MAX_DECOMPRESSED_SIZE == 64 * 1024 * 1024
    queue = Queue("limit_default")
    publish_big(conn, queue, 1000)
    consumer = Consumer(conn, [queue])
    assert consumer.max_decompressed_size == DEFAULT_MAX_DECOMPRESSED_SIZE


def test_consumer_argument_sets_the_limit(conn: Connection) -> None:
    queue = Queue("limit_arg")
    publish_big(conn, queue, 10_000)
    bodies, [error] = consume_one(conn, queue, max_decompressed_size=5000)
    assert not bodies
    assert isinstance(error, DecodeError)
    assert "limit of 5000 bytes" in str(error)


def test_transport_option_sets_the_limit(conn: Connection) -> None:
    conn.transport_options["max_decompressed_size"] = "4000"  # as a URL query gives it
    queue = Queue("limit_option")
    publish_big(conn, queue, 10_000)
    _, [error] = consume_one(conn, queue)
    assert "limit of 4000 bytes" in str(error)
    publish_big(conn, queue, 100)
    bodies, errors = consume_one(conn, queue)
    assert bodies == [{"pad": "x" * 100}] and not errors


def test_none_means_no_limit(conn: Connection) -> None:
    queue = Queue("limit_none")
    publish_big(conn, queue, 10_000)
    bodies, errors = consume_one(conn, queue, max_decompressed_size=None)
    assert bodies == [{"pad": "x" * 10_000}] and not errors


def test_negative_limit_is_refused(conn: Connection) -> None:
    with pytest.raises(ValueError, match="max_decompressed_size"):
        Consumer(conn, [Queue("limit_negative")], max_decompressed_size=-1)


@pytest.fixture
def counted() -> Iterator[list[int]]:
    """A compression method, application/x-counted, that records each decompression."""
    calls: list[int] = []

    def counting_decoder(data: Any) -> bytes:
        calls.append(len(data))
        return bytes(data)

    compression.register(lambda d: bytes(d), counting_decoder, "application/x-counted")
    try:
        yield calls
    finally:
        for table in (compression._encoders, compression._decoders, compression._names, compression._aliases):
            table.pop("application/x-counted", None)


def publish_refused_yaml(conn: Connection, queue: Queue) -> None:
    Producer(conn).publish(
        b"a: 1",
        routing_key=queue.name,
        declare=[queue],
        content_type="application/x-yaml",
        content_encoding="utf-8",
        compression="application/x-counted",
    )


def test_accept_check_comes_before_decompression(conn: Connection, counted: list[int]) -> None:
    queue = Queue("accept_first")
    publish_refused_yaml(conn, queue)
    bodies, [error] = consume_one(conn, queue, accept=["json"])
    assert isinstance(error, ContentDisallowed)
    assert counted == []
    # accepted content is decompressed, once
    Producer(conn).publish(
        b'{"a": 1}',
        routing_key=queue.name,
        content_type="application/json",
        content_encoding="utf-8",
        compression="application/x-counted",
    )
    bodies, errors = consume_one(conn, queue, accept=["json"])
    assert bodies == [{"a": 1}] and not errors
    assert len(counted) == 1


def test_on_message_consumers_get_the_body_decompressed(conn: Connection) -> None:
    queue = Queue("on_message_body")
    publish_big(conn, queue, 100)
    got: list[Message] = []
    with Consumer(conn, [queue], on_message=lambda m: (got.append(m), m.ack())):
        conn.drain_events(timeout=5)
    assert got[0].body == b'{"pad": "' + b"x" * 100 + b'"}'


def test_zstd_with_only_the_zstandard_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without compression.zstd / backports.zstd, zstandard's decompressor is fed in slices."""
    import sys

    monkeypatch.setitem(sys.modules, "compression.zstd", None)
    monkeypatch.setitem(sys.modules, "backports.zstd", None)
    compression._zstd_limited_decoder.cache_clear()
    try:
        packed, _ = compress(DATA, "zstd")
        assert decompress(packed + packed, "zstd", max_size=2 * len(DATA)) == DATA + DATA
        with pytest.raises(DecodeError, match=f"limit of {len(DATA)} bytes"):
            decompress(packed + packed, "zstd", max_size=len(DATA))
        with pytest.raises(DecodeError, match="ended before the end"):
            decompress(packed[:-5], "zstd", max_size=10 * len(DATA))
        bomb, _ = compress(bytes(20_000_000), "zstd")
        with pytest.raises(DecodeError, match="limit of 1000000 bytes"):
            decompress(bomb, "zstd", max_size=1_000_000)
    finally:
        compression._zstd_limited_decoder.cache_clear()


# -- Queue.get and SimpleQueue.get ----------------------------------------------------------
def test_queue_get_checks_accept_before_decompressing(conn: Connection, counted: list[int]) -> None:
    queue = Queue("get_accept_first")
    publish_refused_yaml(conn, queue)
    message = queue(conn.default_channel).get(accept=["json"])
    assert message is not None
    with pytest.raises(ContentDisallowed):
        message.decode()
    assert counted == []
    with conn.SimpleQueue(queue, accept=["json"]) as simple:
        Producer(conn).publish(
            b'{"a": 1}',
            routing_key=queue.name,
            content_type="application/json",
            content_encoding="utf-8",
            compression="application/x-counted",
        )
        assert simple.get(timeout=2).payload == {"a": 1}
    assert len(counted) == 1


def test_queue_get_honours_the_transport_option_limit(conn: Connection) -> None:
    conn.transport_options["max_decompressed_size"] = 4000
    queue = Queue("get_limit")
    publish_big(conn, queue, 10_000)
    with pytest.raises(DecodeError, match="limit of 4000 bytes"):
        queue(conn.default_channel).get(accept=["json"])
    publish_big(conn, queue, 100)
    message = queue(conn.default_channel).get(accept=["json"])
    assert message is not None and message.payload == {"pad": "x" * 100}
