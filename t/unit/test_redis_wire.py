"""The Redis transport's RESP layer without a broker: replies split at every byte, error
replies, RESP3 pushes, timeouts in the middle of a reply, and garbage."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import exceptions as rexc

from kombu_like.transport.redis.resp import INCOMPLETE, HiredisParser, PythonParser
from kombu_like.transport.redis.wire import Push, Wire, command_head, is_push, pack_commands, with_bulk


class FakeSocket:
    """Hands out the given chunks, one per ``recv``; then end of stream (or a timeout)."""

    def __init__(self, chunks: Iterable[bytes], then: str = "eof") -> None:
        self.chunks = list(chunks)
        self.then = then
        self.sent = b""

    def recv(self, size: int, flags: int = 0) -> bytes:
        if not self.chunks:
            if self.then == "timeout":
                raise TimeoutError("timed out")
            return b""
        chunk = self.chunks.pop(0)
        if len(chunk) > size:
            self.chunks.insert(0, chunk[size:])
            chunk = chunk[:size]
        return chunk

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def settimeout(self, timeout: float | None) -> None:
        pass

    def fileno(self) -> int:
        return -1


class FakeConnection:
    def __init__(self, sock: FakeSocket) -> None:
        self.sock = sock
        self._sock: FakeSocket | None = None

    def connect(self) -> None:
        self._sock = self.sock

    def disconnect(self) -> None:
        self._sock = None


PARSERS = ["python", "hiredis"]


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest) -> str:
    """Every test runs with both reply parsers (hiredis is a test dependency)."""
    return str(request.param)


def wire_reading(chunks: Iterable[bytes], then: str = "eof", parser: str = "python") -> Wire:
    sock = FakeSocket(chunks, then)
    wire = Wire(lambda: FakeConnection(sock), "test", socket_timeout=1.0, parser=parser)
    wire.connect()
    return wire


def encode(value: Any) -> bytes:
    """RESP (2, or 3 for pushes, None as RESP2's null bulk) of a reply value."""
    if isinstance(value, Push):
        return b">%d\r\n" % len(value) + b"".join(encode(v) for v in value)
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(encode(v) for v in value)
    if isinstance(value, bool):
        raise TypeError("no booleans in RESP2")
    if isinstance(value, int):
        return b":%d\r\n" % value
    if value is None:
        return b"$-1\r\n"
    return b"$%d\r\n%b\r\n" % (len(value), value)


#: raw replies and what the wire makes of them (errors compared by class and text)
CASES: list[tuple[bytes, Any]] = [
    (b"+OK\r\n", b"OK"),
    (b":-42\r\n", -42),
    (b"$5\r\nhe\r\no\r\n", b"he\r\no"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"*0\r\n", []),
    (b"*3\r\n:1\r\n*1\r\n$1\r\nx\r\n-ERR inside\r\n", [1, [b"x"], rexc.ResponseError("ERR inside")]),
    (b"-NOSCRIPT No matching script\r\n", rexc.NoScriptError("NOSCRIPT No matching script")),
    (
        b"-READONLY You can't write against a read only replica.\r\n",
        rexc.ReadOnlyError("READONLY You can't write against a read only replica."),
    ),
    (b"-WRONGTYPE Operation against a key\r\n", rexc.ResponseError("WRONGTYPE Operation against a key")),
    # RESP3, on the take connection
    (b"_\r\n", None),
    (b"#t\r\n", True),
    (b"#f\r\n", False),
    (b",1.5\r\n", 1.5),
    (b"%1\r\n+server\r\n$5\r\nredis\r\n", {b"server": b"redis"}),
    (b"~2\r\n:1\r\n:2\r\n", [1, 2]),
    (b"=7\r\ntxt:abc\r\n", b"abc"),
    (b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n", Push([b"invalidate", [b"k"]])),
]
#: RESP3 types Redis does not send the transport, which hiredis reads otherwise or not at all
PYTHON_ONLY: list[tuple[bytes, Any]] = [
    (b"(12345678901234567890\r\n", 12345678901234567890),
    (b"!9\r\nERR blob!\r\n", rexc.ResponseError("ERR blob!")),
    (b"|1\r\n+key-popularity\r\n:1\r\n:7\r\n", 7),
]


def same(got: Any, expected: Any) -> bool:
    if isinstance(expected, Exception):
        return type(got) is type(expected) and str(got) == str(expected)
    if isinstance(expected, Push):
        return is_push(got) and same(list(got), list(expected))
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and not is_push(got)
            and len(got) == len(expected)
            and all(same(g, e) for g, e in zip(got, expected, strict=True))
        )
    return type(got) is type(expected) and got == expected


def stream_for(parser: str) -> tuple[bytes, list[Any]]:
    cases = CASES + (PYTHON_ONLY if parser == "python" else [])
    return b"".join(raw for raw, _ in cases), [value for _, value in cases]


def test_replies_split_at_every_byte(parser: str) -> None:
    stream, expected = stream_for(parser)
    for split in range(1, len(stream)):
        wire = wire_reading([stream[:split], stream[split:]], parser=parser)
        got = [wire.read_message() for _ in expected]
        assert all(same(g, e) for g, e in zip(got, expected, strict=True)), (split, got)


def test_replies_arriving_one_byte_at_a_time(parser: str) -> None:
    stream, expected = stream_for(parser)
    wire = wire_reading((stream[i : i + 1] for i in range(len(stream))), parser=parser)
    got = [wire.read_message() for _ in expected]
    assert all(same(g, e) for g, e in zip(got, expected, strict=True)), got


def test_read_keeps_pushes_aside_for_whoever_waits_for_them(parser: str) -> None:
    push = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nq\r\n"
    wire = wire_reading([push + b":1\r\n" + push], parser=parser)
    assert wire.read() == 1
    assert wire.pushes == [[b"invalidate", [b"q"]]]
    assert is_push(wire.read_message())
    assert not wire.has_buffered()


@pytest.mark.parametrize(
    "garbage", [b"?what\r\n", b":12x\r\n", b"$abc\r\nxyz\r\n", b"*two\r\n", b"%x\r\n", b">-\r\n", b"\r\n"]
)
def test_garbage_is_an_invalid_response_and_drops_the_connection(garbage: bytes, parser: str) -> None:
    wire = wire_reading([garbage], parser=parser)
    with pytest.raises(rexc.InvalidResponse):
        wire.read()
    assert not wire.connected


def test_end_of_stream_in_the_middle_of_a_reply_is_a_connection_error(parser: str) -> None:
    wire = wire_reading([b"*2\r\n$5\r\nhel"], parser=parser)
    with pytest.raises(rexc.ConnectionError, match="closed"):
        wire.read()
    assert not wire.connected


def test_timeout_in_the_middle_of_a_reply_is_a_timeout_error(parser: str) -> None:
    wire = wire_reading([b"*2\r\n:1\r\n"], then="timeout", parser=parser)
    with pytest.raises(rexc.TimeoutError):
        wire.read()
    assert not wire.connected


def test_integer_replies_fast_path_split_anywhere(parser: str) -> None:
    replies = b":1\r\n:22\r\n:333\r\n-ERR no\r\n:5\r\n:6\r\n"
    for split in range(1, len(replies)):
        wire = wire_reading([replies[:split], replies[split:]], parser=parser)
        got = wire.execute_counts(b"", 6)
        assert got is not None
        assert got[4:] == [5, 6] and isinstance(got[3], rexc.ResponseError)
        ints = b":1\r\n:2\r\n:3\r\n"
        wire = wire_reading([ints[:split], ints[split:]], parser=parser)
        assert wire.execute_counts(b"", 3) is None
        assert not wire.has_buffered()


def test_commands_are_encoded_as_resp() -> None:
    assert pack_commands([("SET", "k", b"v\r\n", 3, 1.5)]) == (
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$1\r\n3\r\n$3\r\n1.5\r\n"
    )
    assert with_bulk(command_head(3, ("LPUSH", "q")), b"{}") == pack_commands([("LPUSH", "q", b"{}")])
    with pytest.raises(TypeError, match="dict"):
        pack_commands([("SET", {})])


reply_values = st.recursive(
    st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)


@pytest.mark.parametrize("parser_name", PARSERS)
@settings(max_examples=200, deadline=None)
@given(values=st.lists(reply_values, min_size=1, max_size=5), cuts=st.lists(st.integers(min_value=0), max_size=6))
def test_generated_replies_survive_any_chunking(parser_name: str, values: list[Any], cuts: list[int]) -> None:
    stream = b"".join(encode(v) for v in values)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]
    wire = wire_reading(chunks, parser=parser_name)
    assert [wire.read() for _ in values] == values


def test_a_socket_error_while_writing_drops_the_connection(parser: str) -> None:
    class Broken(FakeSocket):
        def sendall(self, data: bytes) -> None:
            raise ConnectionResetError("reset")

    sock = Broken([])
    wire = Wire(lambda: FakeConnection(sock), "test", socket_timeout=1.0, parser=parser)
    with pytest.raises(rexc.ConnectionError, match="reset"):
        wire.send([("PING",)])
    assert not wire.connected
    assert isinstance(socket.timeout(), OSError)


@pytest.mark.parametrize(
    ("version", "supported"), [("4.5.2", True), ("8.2.0", True), ("4.5.1", False), ("9.0.0b1", False)]
)
def test_redis_py_versions_outside_the_checked_range_are_refused(version: str, supported: bool) -> None:
    from kombu_like.exceptions import VersionMismatch
    from kombu_like.transport.redis.compat import check_version

    if supported:
        check_version(version)
    else:
        with pytest.raises(VersionMismatch, match=version):
            check_version(version)


def fed_replies(parser: str, chunks: Iterable[bytes]) -> list[Any]:
    """Every reply a fed parser (the asyncio wire's) makes of ``chunks``, as they arrive."""
    reader = (HiredisParser if parser == "hiredis" else PythonParser)(None, "test")
    got: list[Any] = []
    for chunk in chunks:
        reader.feed(chunk)
        while (reply := reader.gets()) is not INCOMPLETE:
            got.append(reply)
    return got


def test_a_fed_parser_gives_the_same_replies_split_at_every_byte(parser: str) -> None:
    stream, expected = stream_for(parser)
    for split in range(1, len(stream)):
        got = fed_replies(parser, [stream[:split], stream[split:]])
        assert len(got) == len(expected) and all(same(g, e) for g, e in zip(got, expected, strict=True)), split
    got = fed_replies(parser, (stream[i : i + 1] for i in range(len(stream))))
    assert all(same(g, e) for g, e in zip(got, expected, strict=True)), got
