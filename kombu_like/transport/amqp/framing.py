"""AMQP 0-9-1 on the wire: frames in, frames out.

The socket classes read whatever the socket holds into a buffer and cut frames out of
it, so a burst of deliveries costs one system call where the driver makes three per frame;
nothing leaves the buffer before a whole frame is there, so a read that times out half-way
loses nothing.  The encoders build a whole ``basic.publish`` (method, content header and
body frames) as one ``bytes`` for one socket write.
"""

from __future__ import annotations

import errno
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Mapping
from time import monotonic
from typing import Any

from amqp import exceptions as amqp_errors
from amqp import spec

from ...exceptions import EncodeError
from .compat import DriverSSLTransport, DriverTCPTransport, dumps_table, raw_write
from .fieldtable import decode_basic_properties as _decode_properties

__all__ = [
    "ACK_METHOD",
    "DRIVER_ERRORS",
    "BufferedFrames",
    "Content",
    "TCPSocket",
    "TLSSocket",
    "encode_properties",
    "parse_deliver",
    "publish_frames",
    "split_frame",
]

#: bytes asked of the socket per read; a burst of small deliveries fits in one read
READ_CHUNK = 256 * 1024
#: a batch of publishes goes to the socket in writes of about this many bytes
WRITE_CHUNK = 4 * 1024 * 1024
#: seconds a close waits for a write in progress before it drops the socket anyway
CLOSE_LOCK_WAIT = 1.0
#: the largest frame accepted before ``frame_max`` is negotiated (RabbitMQ's own limit)
MAX_FRAME_SIZE = 128 * 1024 * 1024

FRAME_END_OCTET = 0xCE
FRAME_END = b"\xce"
FRAME_HEADER = struct.Struct(">BHI")
METHOD_SIG = struct.Struct(">HH")
CONTENT_HEADER = struct.Struct(">HHQ")
#: delivery tag and the bits octet of basic.ack / reject / nack (and of basic.deliver)
ACK_ARGS = struct.Struct(">QB")
ACK_METHOD = METHOD_SIG.pack(*spec.Basic.Ack)
REJECT_METHOD = METHOD_SIG.pack(*spec.Basic.Reject)
NACK_METHOD = METHOD_SIG.pack(*spec.Basic.Nack)
PUBLISH_METHOD = METHOD_SIG.pack(*spec.Basic.Publish)
DELIVER_METHOD = METHOD_SIG.pack(*spec.Basic.Deliver)
_SHORT = struct.Struct(">H")
_OCTET = struct.Struct(">B")
_LONGLONG = struct.Struct(">Q")
_EMPTY_TABLE = b"\x00\x00\x00\x00"

#: AMQP basic properties in wire order: (flag bit, name, kind); kinds as in the spec:
#: s = shortstr, o = octet, L = long long, F = field table
_BASIC_PROPERTIES = (
    (0x8000, "content_type", "s"),
    (0x4000, "content_encoding", "s"),
    (0x2000, "application_headers", "F"),
    (0x1000, "delivery_mode", "o"),
    (0x0800, "priority", "o"),
    (0x0400, "correlation_id", "s"),
    (0x0200, "reply_to", "s"),
    (0x0100, "expiration", "s"),
    (0x0080, "message_id", "s"),
    (0x0040, "timestamp", "L"),
    (0x0020, "type", "s"),
    (0x0010, "user_id", "s"),
    (0x0008, "app_id", "s"),
    (0x0004, "cluster_id", "s"),
)

#: driver errors translated at the seam (``socket.timeout`` is an OSError)
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    amqp_errors.AMQPError,
    amqp_errors.MessageNacked,
    OSError,
)
#: what encoding a message can raise: nothing was written when it does
ENCODING_ERRORS = (amqp_errors.FrameSyntaxError, ValueError, TypeError, struct.error, UnicodeError)


def _shortstr(name: str, value: Any) -> bytes:
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)
    if len(data) > 255:
        raise EncodeError(f"the {name} property is {len(data)} bytes; AMQP allows 255: {data[:40]!r}...")
    return bytes((len(data),)) + data


#: most publishes of a process carry the same properties (content type and encoding,
#: delivery mode, priority, no headers): their encoded list, by those four values
_COMMON_PROPERTIES: dict[tuple[str, str, int, int], bytes] = {}


def encode_properties(properties: Mapping[str, Any]) -> bytes:
    """The property flags and list of an AMQP ``basic`` content header."""
    if len(properties) == 5:
        get = properties.get
        headers = get("application_headers")
        content_type = get("content_type")
        content_encoding = get("content_encoding")
        delivery_mode = get("delivery_mode")
        priority = get("priority")
        if (
            type(headers) is dict
            and not headers
            and type(content_type) is str
            and type(content_encoding) is str
            and type(delivery_mode) is int
            and type(priority) is int
        ):
            key = (content_type, content_encoding, delivery_mode, priority)
            encoded = _COMMON_PROPERTIES.get(key)
            if encoded is None:
                encoded = _encode_properties(properties)
                if len(_COMMON_PROPERTIES) >= 64:
                    _COMMON_PROPERTIES.clear()
                _COMMON_PROPERTIES[key] = encoded
            return encoded
    return _encode_properties(properties)


def _encode_properties(properties: Mapping[str, Any]) -> bytes:
    flags = 0
    parts = [b""]
    for bit, name, kind in _BASIC_PROPERTIES:
        value = properties.get(name)
        if value is None:
            continue
        flags |= bit
        if kind == "s":
            parts.append(_shortstr(name, value))
        elif kind == "o":
            parts.append(_OCTET.pack(value))
        elif kind == "L":
            parts.append(_LONGLONG.pack(value))
        else:
            parts.append(dumps_table(value) if value else _EMPTY_TABLE)
    parts[0] = _SHORT.pack(flags)
    return b"".join(parts)


_BASIC_CLASS_ID = spec.Basic.CLASS_ID
#: whole ``basic.publish`` method frames, by (channel, encoded arguments): a publisher
#: sends to a few exchanges and routing keys over and over
_PUBLISH_METHOD_FRAMES: dict[tuple[int, bytes], bytes] = {}


def _method_frame(channel_id: int, args: bytes) -> bytes:
    key = (channel_id, args)
    frame = _PUBLISH_METHOD_FRAMES.get(key)
    if frame is None:
        method = PUBLISH_METHOD + args
        frame = FRAME_HEADER.pack(1, channel_id, len(method)) + method + FRAME_END
        if len(_PUBLISH_METHOD_FRAMES) >= 1024:
            _PUBLISH_METHOD_FRAMES.clear()
        _PUBLISH_METHOD_FRAMES[key] = frame
    return frame


def publish_frames(channel_id: int, args: bytes, message: Any, frame_max: int) -> bytes:
    """The ``basic.publish`` method, content header and body frames of ``message``."""
    body = message.body
    if isinstance(body, str):
        # like the driver: text goes out in its declared encoding (utf-8 unless told)
        body = body.encode(message.properties.setdefault("content_encoding", "utf-8"))
    size = len(body)
    header = CONTENT_HEADER.pack(_BASIC_CLASS_ID, 0, size) + encode_properties(message.properties)
    method = _method_frame(channel_id, args)
    header_frame = FRAME_HEADER.pack(2, channel_id, len(header))
    chunk = frame_max - 8
    if size <= chunk:
        if not size:
            return b"".join((method, header_frame, header, FRAME_END))
        # one join for the whole message: this runs for every publish
        return b"".join(
            (method, header_frame, header, FRAME_END, FRAME_HEADER.pack(3, channel_id, size), body, FRAME_END)
        )
    parts: list[Any] = [method, header_frame, header, FRAME_END]
    view = memoryview(body)
    for start in range(0, size, chunk):
        piece = view[start : start + chunk]
        parts += (FRAME_HEADER.pack(3, channel_id, len(piece)), piece, FRAME_END)
    return b"".join(parts)


#: property lists received before, decoded, by their bytes: the messages of a producer
#: mostly carry the same content type, encoding, delivery mode and priority
_DECODED_PROPERTIES: dict[bytes, dict[str, Any]] = {}
#: correlation_id, message_id and timestamp: lists that carry one differ message by message
_PER_MESSAGE_PROPERTIES = 0x0400 | 0x0080 | 0x0040


def decode_properties(payload: bytes, offset: int) -> dict[str, Any]:
    """The basic properties of a content header frame, decoded from ``offset`` (the flags).

    Every call returns a dict of its own: a consumer may change a message's properties.
    """
    try:
        per_message = (payload[offset] << 8 | payload[offset + 1]) & _PER_MESSAGE_PROPERTIES
    except IndexError:
        per_message = 1  # no flags: the decoder says what is wrong
    if per_message:
        return _decode_properties(payload, offset)
    key = payload[offset:]
    known = _DECODED_PROPERTIES.get(key)
    if known is None:
        properties = _decode_properties(payload, offset)
        if properties.get("application_headers"):
            return properties  # a table may hold mutable values: decoded afresh every time
        if len(_DECODED_PROPERTIES) >= 256:
            _DECODED_PROPERTIES.clear()
        _DECODED_PROPERTIES[key] = known = properties
    properties = dict(known)
    if "application_headers" in properties:
        properties["application_headers"] = {}
    return properties


def parse_deliver(payload: bytes) -> tuple[str, int, bool, str, str]:
    """``(consumer_tag, delivery_tag, redelivered, exchange, routing_key)`` of a deliver."""
    offset = 5 + payload[4]
    consumer_tag = payload[5:offset].decode("utf-8", "surrogatepass")
    delivery_tag, redelivered = ACK_ARGS.unpack_from(payload, offset)
    offset += 10
    end = offset + payload[offset - 1]
    exchange = payload[offset:end].decode("utf-8", "surrogatepass")
    routing_key = payload[end + 1 : end + 1 + payload[end]].decode("utf-8", "surrogatepass")
    return consumer_tag, delivery_tag, bool(redelivered & 1), exchange, routing_key


def split_frame(buf: bytes, pos: int, max_size: int) -> tuple[int, int, bytes, int] | None:
    """The frame starting at ``pos`` of ``buf``: ``(type, channel, payload, end)`` where
    ``end`` is where the next frame starts; ``None`` while it is not wholly there.

    Raises :class:`amqp.exceptions.FrameError` for a frame larger than ``max_size`` and
    :class:`amqp.exceptions.UnexpectedFrame` for a bad frame end: the byte stream is out
    of step, nothing after it can be trusted.
    """
    if len(buf) - pos < 8:
        return None
    frame_type, channel, size = FRAME_HEADER.unpack_from(buf, pos)
    if size > max_size:
        raise amqp_errors.FrameError(
            f"frame of {size} bytes on channel {channel} is larger than the negotiated frame_max "
            f"({max_size}); the byte stream is out of step"
        )
    end = pos + 7 + size
    if end >= len(buf):
        return None
    if buf[end] != FRAME_END_OCTET:
        raise amqp_errors.UnexpectedFrame(f"Received frame_end {buf[end]:#04x} while expecting 0xce")
    return frame_type, channel, buf[pos + 7 : end], end + 1


class Content:
    """A message whose content frames are arriving (after a ``basic.deliver``,
    ``basic.get-ok`` or ``basic.return``): ``args`` are its method's."""

    __slots__ = ("channel", "args", "properties", "size", "chunks", "received")

    def __init__(self, channel: Any, args: Any) -> None:
        self.channel = channel
        self.args = args
        self.properties: dict[str, Any] = {}
        self.size = 0
        self.chunks: list[bytes] = []
        self.received = 0

    def add(self, frame_type: int, payload: bytes, channel_id: int) -> bool:
        """Take the content header or a body frame; True once the content is complete."""
        if frame_type == 2:
            self.size = CONTENT_HEADER.unpack_from(payload, 0)[2]
            self.properties = decode_properties(payload, 12)
        elif frame_type == 3:
            self.chunks.append(payload)
            self.received += len(payload)
        else:
            raise amqp_errors.UnexpectedFrame(f"frame type {frame_type} inside a message on channel {channel_id}")
        return self.received >= self.size

    def body(self) -> bytes:
        chunks = self.chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # b"" when empty


def method_frame(channel_id: int, method: bytes, args: bytes) -> bytes:
    """A method frame (``method`` is the packed class and method id)."""
    return b"".join((FRAME_HEADER.pack(1, channel_id, len(method) + len(args)), method, args, FRAME_END))


# -- sockets with buffered frame reads ------------------------------------------------


class BufferedFrames:
    """Frame reading from a buffer filled with whatever the socket has (mixed into py-amqp's
    TCP and TLS transports), and whole-frame writes.

    Nothing leaves the read buffer before a whole frame is there, so a read that times out
    half-way loses nothing.  Reading is done by one thread at a time (the connection's
    reader role, see :class:`~kombu_like.transport.amqp.connection.AMQPConnection`);
    writes take :attr:`write_lock`, so the frames of one write never interleave with
    another thread's.
    """

    sock: Any
    connected: bool
    having_timeout: Callable[[float | None], Any]  # from the driver's transport
    _rbuf: bytes
    _rpos: int
    #: held while bytes go to the socket (reentrant: a heartbeat may be sent by a writer)
    write_lock: threading.RLock

    def _reset_buffers(self) -> None:
        self._rbuf = b""
        self._rpos = 0
        self._poller: Any = None
        if getattr(self, "write_lock", None) is None:
            self.write_lock = threading.RLock()
        #: frames held back to go out with the next write (see :meth:`hold`)
        self._held: list[bytes] = []
        #: rewrites held frames before they go (:class:`.acks.AckCoalescer`), if set
        self.coalesce: Callable[[list[bytes]], list[bytes]] | None = None

    def frame_ready(self) -> bool:
        """True when a whole frame is buffered (reading it will not touch the socket)."""
        available = len(self._rbuf) - self._rpos
        if available < 8:
            return False
        size = FRAME_HEADER.unpack_from(self._rbuf, self._rpos)[2]
        return available >= size + 8

    def buffered_frame(self) -> tuple[int, int, bytes] | None:
        """The next frame, as :meth:`read_frame` returns it, when it is wholly buffered;
        ``None`` (and nothing read from the socket) when it is not."""
        try:
            frame = split_frame(self._rbuf, self._rpos, self.max_frame_size)
        except (amqp_errors.FrameError, amqp_errors.UnexpectedFrame):
            self.connected = False  # the byte stream is out of step; nothing after this is reliable
            raise
        if frame is None:
            return None
        frame_type, channel, payload, self._rpos = frame
        return frame_type, channel, payload

    def has_buffered(self) -> bool:
        """True when bytes wait in a buffer, not in the socket (a poller misses them)."""
        return self.frame_ready()

    def read_frame(self, unpack: Any = None, deadline: float | None = None) -> tuple[int, int, bytes]:
        """Return the next ``(type, channel, payload)``, reading until ``deadline``
        (``None``: as long as the socket's own timeout allows)."""
        while len(self._rbuf) - self._rpos < 7:
            self.fill(deadline)
        frame_type, channel, size = FRAME_HEADER.unpack_from(self._rbuf, self._rpos)
        if size > self.max_frame_size:
            self.connected = False
            raise amqp_errors.FrameError(
                f"frame of {size} bytes on channel {channel} is larger than the negotiated frame_max "
                f"({self.max_frame_size}); the byte stream is out of step"
            )
        # a fill moves what is buffered to the front (_rpos back to 0): measure from _rpos
        while len(self._rbuf) - self._rpos <= 7 + size:
            self.fill(deadline)
        end = self._rpos + 7 + size
        buf = self._rbuf
        if buf[end] != FRAME_END_OCTET:
            self.connected = False  # the byte stream is out of step; nothing after this is reliable
            raise amqp_errors.UnexpectedFrame(f"Received frame_end {buf[end]:#04x} while expecting 0xce")
        payload = buf[self._rpos + 7 : end]
        self._rpos = end + 1
        return frame_type, channel, payload

    #: the largest frame payload accepted; set from the negotiated ``frame_max``
    max_frame_size: int = MAX_FRAME_SIZE

    def _append(self, data: bytes) -> None:
        if not data:
            self.connected = False
            raise ConnectionResetError(errno.ECONNRESET, "the broker closed the connection")
        rest = self._rbuf[self._rpos :] if self._rpos < len(self._rbuf) else b""
        self._rbuf = rest + data if rest else data
        self._rpos = 0

    def fill(self, deadline: float | None) -> None:
        raise NotImplementedError

    def live_socket(self) -> Any:
        """The socket, or the driver's (recoverable) connection error once the transport was
        closed, maybe by another thread while this one waited to read.

        Readers take the socket once through this and keep using that object: a socket
        closed meanwhile fails with an :class:`OSError`, never with an attribute error.
        """
        sock = self.sock
        if sock is None or not self.connected:
            raise amqp_errors.RecoverableConnectionError("connection is closed")
        return sock

    def close(self) -> None:
        # readers check ``connected`` before they touch the socket: clear it first.  The
        # write lock keeps the close from cutting a TLS record (or a frame) half-way;
        # bounded, since a writer may be stuck on a broker that stopped reading.
        self.connected = False
        locked = self.write_lock.acquire(timeout=CLOSE_LOCK_WAIT)
        try:
            super().close()  # type: ignore[misc]
        finally:
            if locked:
                self.write_lock.release()

    def socket_readable(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (``None``: no limit) for bytes to read."""
        poller = self._poller
        if poller is None:
            sock = self.live_socket()
            if not hasattr(select, "poll"):  # pragma: no cover - Windows
                wait = None if timeout is None else max(timeout, 0.0)
                return bool(select.select([sock], [], [], wait)[0])
            poller = self._poller = select.poll()
            poller.register(sock, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(None if timeout is None else max(timeout, 0.0) * 1000.0))

    # -- writes ------------------------------------------------------------------------
    def write(self, s: Any) -> None:
        """Send ``s`` (whole frames) in one piece."""
        with self.write_lock:
            self.write_held(s)

    def hold(self, frame: bytes) -> None:
        """Keep ``frame`` (whole) to go out in front of the next write or :meth:`flush`."""
        with self.write_lock:
            self._held.append(frame)

    def flush(self) -> None:
        """Send what :meth:`hold` kept, if anything."""
        if self._held:
            with self.write_lock:
                if self._held:
                    self.write_held(b"")

    def write_held(self, s: Any) -> None:
        """:meth:`write` for a caller that holds :attr:`write_lock` already."""
        try:
            if self.sock is None:  # closed by another thread (a close takes this lock)
                raise amqp_errors.RecoverableConnectionError("connection is closed")
            held = self._held
            if held:
                coalesce = self.coalesce
                if coalesce is not None:
                    held[:] = coalesce(held)
                # frames held back go first, in the order they were written
                held.append(s)
                s = b"".join(held)
                held.clear()
            raw_write(self, s)
        except OSError:
            # a partial frame may have gone out: the connection cannot be used any more
            self.connected = False
            raise


class TCPSocket(BufferedFrames, DriverTCPTransport):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reset_buffers()

    def after_setup(self) -> None:
        self._reset_buffers()

    def fill(self, deadline: float | None) -> None:
        sock = self.live_socket()
        if deadline is not None and not self.socket_readable(deadline - monotonic()):
            raise socket.timeout("timed out")
        try:
            data = sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            # SO_RCVTIMEO expired (or a signal arrived) before any byte: a timeout
            raise socket.timeout("timed out") from None
        except socket.timeout:
            raise
        except OSError:
            self.connected = False
            raise
        self._append(data)


class TLSSocket(BufferedFrames, DriverSSLTransport):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reset_buffers()

    def after_setup(self) -> None:
        # the driver leaves the handshake timeout on the socket; reads here take deadlines
        self.sock.settimeout(None)
        self._reset_buffers()

    def has_buffered(self) -> bool:
        # decrypted bytes the SSL object holds beyond what one read took
        sock = self.sock
        return self.frame_ready() or (sock is not None and self.connected and bool(sock.pending()))

    def socket_readable(self, timeout: float | None) -> bool:
        if self.live_socket().pending():
            return True
        return super().socket_readable(timeout)

    def fill(self, deadline: float | None) -> None:
        # An SSL object must not be read and written by two threads at once: wait for the
        # socket without any lock, then read what is there under the write lock, without
        # blocking.  A TLS record that arrived in part reads as nothing yet.
        sock = self.live_socket()
        while True:
            if deadline is None:
                timeout = sock.gettimeout()
                limit = None if timeout is None else monotonic() + timeout
            else:
                limit = deadline
            if not sock.pending():
                # a deadline already passed still looks once without waiting (an event
                # loop reads what is there with a zero timeout)
                remaining = None if limit is None else max(limit - monotonic(), 0.0)
                if not self.socket_readable(remaining):
                    raise socket.timeout("timed out")
            data = self._recv_now(sock)
            if data is not None:
                self._append(data)
                return

    def _recv_now(self, sock: Any) -> bytes | None:
        with self.write_lock:
            if sock is not self.sock or not self.connected:
                # closed (maybe replaced) while this thread waited for it
                raise amqp_errors.RecoverableConnectionError("connection is closed")
            previous = sock.gettimeout()
            sock.settimeout(0)
            try:
                return bytes(sock.recv(READ_CHUNK))
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
                return None
            except ssl.SSLError:
                self.connected = False
                raise
            except OSError:
                self.connected = False
                raise
            finally:
                sock.settimeout(previous)
