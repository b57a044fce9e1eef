"""The AMQP frame layer without a broker: frames read from a real socket pair, split at
every byte, cut off by a timeout half-way, garbage and frames larger than agreed."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from time import monotonic
from typing import Any

import amqp
import pytest
from amqp import exceptions as amqp_errors
from amqp import spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kombu_like.exceptions import EncodeError
from kombu_like.transport.amqp import compat
from kombu_like.transport.amqp.framing import (
    FRAME_END,
    FRAME_HEADER,
    TCPSocket,
    decode_properties,
    encode_properties,
    method_frame,
    parse_deliver,
    publish_frames,
)

ACK = struct.pack(">HH", *spec.Basic.Ack)


class Wire:
    """A frame reader on one end of a socket pair; the test writes to the other end."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.reader: Any = TCPSocket.__new__(TCPSocket)
        self.reader.sock = self.ours
        self.reader.connected = True
        self.reader._reset_buffers()

    def send(self, data: bytes) -> None:
        self.theirs.sendall(data)

    def read(self, wait: float = 0.0) -> tuple[int, int, bytes]:
        return self.reader.read_frame(deadline=monotonic() + wait)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.ours.close()
        self.theirs.close()


@pytest.fixture
def wire() -> Iterator[Wire]:
    w = Wire()
    yield w
    w.close()


def frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return FRAME_HEADER.pack(frame_type, channel, len(payload)) + payload + FRAME_END


def sample_stream() -> tuple[bytes, list[tuple[int, int, bytes]]]:
    frames = [
        (1, 1, ACK + struct.pack(">QB", 7, 1)),
        (1, 2, ACK + struct.pack(">QB", 8, 0)),
        (2, 1, struct.pack(">HHQ", 60, 0, 5) + encode_properties({"content_type": "application/json"})),
        (3, 1, b"hello"),
        (8, 0, b""),  # heartbeat
    ]
    return b"".join(frame(*f) for f in frames), frames


def test_frames_split_at_every_byte_come_out_whole() -> None:
    stream, frames = sample_stream()
    for split in range(len(stream) + 1):
        w = Wire()
        try:
            got: list[tuple[int, int, bytes]] = []
            w.send(stream[:split])
            while True:
                try:
                    got.append(w.read())
                except socket.timeout:
                    break
            # only frames that arrived whole were returned; the rest waits in the buffer
            assert got == frames[: len(got)]
            assert sum(len(frame(*f)) for f in got) <= split
            w.send(stream[split:])
            while len(got) < len(frames):
                got.append(w.read(wait=2))
            assert got == frames, f"split at byte {split}"
        finally:
            w.close()


def test_buffered_frames_come_out_whole_and_only_whole() -> None:
    stream, frames = sample_stream()
    ends = [sum(len(frame(*f)) for f in frames[: i + 1]) for i in range(len(frames))]
    for split in range(1, len(stream)):
        w = Wire()
        try:
            w.reader._append(stream[:split])  # buffered as if read from the socket
            got: list[tuple[int, int, bytes]] = []
            while (item := w.reader.buffered_frame()) is not None:
                got.append(item)
            assert got == frames[: sum(1 for end in ends if end <= split)], f"split at byte {split}"
            w.reader._append(stream[split:])
            while (item := w.reader.buffered_frame()) is not None:
                got.append(item)
            assert got == frames
        finally:
            w.close()
    w = Wire()
    try:
        w.reader._append(FRAME_HEADER.pack(1, 1, 3) + b"abc" + b"\x00")
        with pytest.raises(amqp_errors.UnexpectedFrame, match="frame_end"):
            w.reader.buffered_frame()
        assert not w.reader.connected
    finally:
        w.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_frames_arriving_in_arbitrary_pieces_come_out_whole(cuts: list[int]) -> None:
    stream, frames = sample_stream()
    w = Wire()
    try:
        got: list[tuple[int, int, bytes]] = []
        position = 0
        for size in cuts:
            w.send(stream[position : position + size])
            position += size
            while True:
                try:
                    got.append(w.read())
                except socket.timeout:
                    break
        w.send(stream[position:])
        while len(got) < len(frames):
            got.append(w.read(wait=2))
        assert got == frames
    finally:
        w.close()


def test_timeout_in_the_middle_of_a_frame_loses_nothing(wire: Wire) -> None:
    body = bytes(range(256)) * 40
    data = frame(3, 1, body)
    wire.send(data[: len(data) // 2])
    started = monotonic()
    with pytest.raises(socket.timeout):
        wire.read(wait=0.1)
    assert 0.05 <= monotonic() - started < 2, "the read ignored its deadline"
    assert not wire.reader.frame_ready()
    assert wire.reader.connected, "a timeout is not a broken connection"
    wire.send(data[len(data) // 2 :])
    assert wire.read(wait=2) == (3, 1, body)


def test_timeout_inside_the_frame_header(wire: Wire) -> None:
    data = frame(1, 3, ACK + struct.pack(">QB", 1, 0))
    wire.send(data[:3])
    with pytest.raises(socket.timeout):
        wire.read(wait=0.05)
    wire.send(data[3:])
    assert wire.read(wait=2) == (1, 3, ACK + struct.pack(">QB", 1, 0))


@settings(max_examples=100, deadline=None)
@given(garbage=st.binary(min_size=8, max_size=300))
def test_garbage_never_passes_as_a_frame(garbage: bytes) -> None:
    w = Wire()
    w.reader.max_frame_size = 4096
    try:
        w.send(garbage)
        while True:
            try:
                frame_type, channel, payload = w.read()
            except socket.timeout:
                break  # waiting for the rest of what the header announced
            except (amqp_errors.UnexpectedFrame, amqp_errors.FrameError):
                assert not w.reader.connected, "the stream is out of step: the connection must be given up"
                break
            # a frame was accepted only because the garbage was a well-formed frame
            assert frame(frame_type, channel, payload) == garbage[: len(payload) + 8]
            garbage = garbage[len(payload) + 8 :]
    finally:
        w.close()


def test_wrong_frame_end_breaks_the_connection(wire: Wire) -> None:
    wire.send(FRAME_HEADER.pack(1, 1, 3) + b"abc" + b"\x00")
    with pytest.raises(amqp_errors.UnexpectedFrame, match="frame_end"):
        wire.read()
    assert not wire.reader.connected


def test_oversized_frame_is_refused_before_its_body_arrives(wire: Wire) -> None:
    wire.reader.max_frame_size = 131072
    wire.send(FRAME_HEADER.pack(3, 1, 50 * 1024 * 1024))  # a 50 MB frame announced, no body
    started = monotonic()
    with pytest.raises(amqp_errors.FrameError, match="frame_max"):
        wire.read(wait=5)
    assert monotonic() - started < 1, "the reader waited for the body of a frame it must refuse"
    assert not wire.reader.connected


def test_closed_socket_is_a_connection_error(wire: Wire) -> None:
    wire.send(frame(1, 1, ACK + struct.pack(">QB", 1, 0))[:5])
    wire.theirs.close()
    with pytest.raises(ConnectionResetError):
        wire.read(wait=2)
    assert not wire.reader.connected


# -- encoding ------------------------------------------------------------------------------
property_values = st.fixed_dictionaries(
    {},
    optional={
        "content_type": st.text(max_size=40),
        "content_encoding": st.sampled_from(["utf-8", "binary", "gzip"]),
        "application_headers": st.dictionaries(
            st.text(min_size=1, max_size=10),
            st.one_of(st.integers(-(2**31), 2**31 - 1), st.text(max_size=20)),
            max_size=4,
        ),
        "delivery_mode": st.sampled_from([1, 2]),
        "priority": st.integers(0, 255),
        "correlation_id": st.text(max_size=40),
        "reply_to": st.text(max_size=40),
        "expiration": st.integers(0, 10**6).map(str),
        "message_id": st.text(max_size=40),
        "timestamp": st.integers(0, 2**40),
        "type": st.text(max_size=20),
        "app_id": st.text(max_size=20),
    },
)


@settings(max_examples=150, deadline=None)
@given(props=property_values)
def test_properties_decode_as_encoded(props: dict[str, Any]) -> None:
    encoded = encode_properties(props)
    assert compat.decode_properties(b"\x00" * 12 + encoded, 12) == props


@settings(max_examples=60, deadline=None)
@given(
    content_type=st.text(max_size=30),
    content_encoding=st.text(max_size=10),
    delivery_mode=st.sampled_from([1, 2]),
    priority=st.integers(0, 255),
)
def test_repeated_common_properties_decode_as_encoded(
    content_type: str, content_encoding: str, delivery_mode: int, priority: int
) -> None:
    props = {
        "content_type": content_type,
        "content_encoding": content_encoding,
        "application_headers": {},
        "delivery_mode": delivery_mode,
        "priority": priority,
    }
    # the second time they come from the encodings kept for repeated properties
    first, again = encode_properties(props), encode_properties(props)
    assert first == again
    assert compat.decode_properties(b"\x00" * 12 + again, 12) == props
    # a value equal to a kept one but of another type is encoded (and refused) afresh
    with pytest.raises(struct.error):
        encode_properties({**props, "delivery_mode": float(delivery_mode)})
    with_header = encode_properties({**props, "application_headers": {"a": 1}})
    assert compat.decode_properties(b"\x00" * 12 + with_header, 12)["application_headers"] == {"a": 1}


@settings(max_examples=100, deadline=None)
@given(props=property_values)
def test_received_properties_decode_the_same_every_time_into_a_dict_of_their_own(props: dict[str, Any]) -> None:
    payload = b"\x00" * 12 + encode_properties(props)
    first = decode_properties(payload, 12)
    assert first == props
    # a consumer that changes one message's properties does not change the next one's
    first["content_type"] = "changed"
    first.setdefault("application_headers", {})["added"] = 1
    assert decode_properties(payload, 12) == props


def test_oversized_short_string_property_is_an_encode_error() -> None:
    with pytest.raises(EncodeError, match="correlation_id"):
        encode_properties({"correlation_id": "x" * 256})


@settings(max_examples=40, deadline=None)
@given(size=st.integers(0, 20_000), frame_max=st.sampled_from([4096, 8192, 131072]))
def test_publish_is_cut_into_frames_no_larger_than_frame_max(size: int, frame_max: int) -> None:
    body = bytes(i % 251 for i in range(size))
    message = amqp.Message(body, content_type="application/octet-stream")
    data = publish_frames(5, b"\x00\x00\x00\x00\x00", message, frame_max)
    w = Wire()
    try:
        w.send(data)
        method = w.read(wait=2)
        header = w.read(wait=2)
        assert method[:2] == (1, 5) and header[:2] == (2, 5)
        announced = struct.unpack_from(">HHQ", header[2])[2]
        assert announced == size
        received = b""
        while len(received) < size:
            frame_type, channel, payload = w.read(wait=2)
            assert (frame_type, channel) == (3, 5)
            assert len(payload) + 8 <= frame_max
            received += payload
        assert received == body
        with pytest.raises(socket.timeout):
            w.read()  # nothing after the last body frame (an empty body has none)
    finally:
        w.close()


def test_deliver_arguments_parse() -> None:
    args = b"".join((b"\x03ctg", struct.pack(">QB", 42, 1), b"\x02ex", b"\x03key"))
    payload = struct.pack(">HH", *spec.Basic.Deliver) + args
    assert parse_deliver(payload) == ("ctg", 42, True, "ex", "key")


def test_method_frame_layout() -> None:
    data = method_frame(9, ACK, struct.pack(">QB", 3, 0))
    assert data[:7] == FRAME_HEADER.pack(1, 9, 4 + 9)
    assert data[-1:] == FRAME_END


def test_driver_version_outside_the_supported_range_is_refused() -> None:
    compat.check_version(amqp.__version__)  # the installed one is supported
    for version in ("5.1.0", "6.0.0", "4.9"):
        with pytest.raises(ImportError, match=r"amqp>=5\.1\.1,<6\.0"):
            compat.check_version(version)


def test_pyproject_bounds_match_the_compat_module() -> None:
    from pathlib import Path

    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    low, high = compat.SUPPORTED_VERSIONS
    wanted = f"amqp>={'.'.join(map(str, low))},<{'.'.join(map(str, high[:2]))}"
    assert wanted in pyproject["project"]["dependencies"]
