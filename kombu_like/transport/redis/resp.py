"""RESP, the Redis protocol: commands encoded, and replies parsed from a byte stream.

Replies are parsed by ``hiredis.Reader`` when hiredis is installed (``pip install
"kombu_like[hiredis]"``), else by :class:`PythonParser`; both give the same values for
every reply the transport reads.  A parser asks its ``receive`` function for more bytes
whenever a reply is incomplete; the socket, its timeouts and its errors stay with
:class:`~.wire.Wire`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from redis import exceptions as rexc

_hiredis: Any
try:
    import hiredis as _hiredis
except ImportError:  # the pure-Python parser below does the work
    _hiredis = None

__all__ = [
    "GARBLED",
    "HIREDIS",
    "INCOMPLETE",
    "HiredisParser",
    "PUSH_TYPES",
    "Push",
    "PythonParser",
    "array_header",
    "command_head",
    "is_push",
    "pack_args",
    "pack_commands",
    "reply_error",
    "with_bulk",
]

#: parsed bytes at the head of the buffer beyond which it is compacted
_COMPACT_AT = 65536

#: error prefixes redis-py gives their own exception class
_ERRORS: dict[str, type[rexc.RedisError]] = {
    "NOSCRIPT": rexc.NoScriptError,
    "READONLY": rexc.ReadOnlyError,
    "NOPERM": rexc.NoPermissionError,
    "WRONGPASS": rexc.AuthenticationError,
    "NOAUTH": rexc.AuthenticationError,
    "EXECABORT": rexc.ExecAbortError,
    "LOADING": rexc.BusyLoadingError,
}


class Push(list):  # type: ignore[type-arg]
    """A RESP3 push message (an invalidation, say): data the server sends unasked."""


#: whether replies are parsed by hiredis (when a wire does not say otherwise)
HIREDIS = _hiredis is not None

#: the types of RESP3 push messages, whichever parser read them
PUSH_TYPES = frozenset({Push, _hiredis.PushNotification} if _hiredis is not None else {Push})
#: what a reader raises for bytes that are not RESP
GARBLED: tuple[type[Exception], ...] = (ValueError, _hiredis.ProtocolError) if _hiredis is not None else (ValueError,)
#: what hiredis returns while a reply is incomplete, and what a fed parser's
#: ``gets`` returns then
INCOMPLETE: Any = object()
_INCOMPLETE = INCOMPLETE


class _NeedMore(Exception):
    """A fed parser ran out of bytes in the middle of a reply."""


def _need_more() -> bytes:
    raise _NeedMore


def is_push(reply: Any) -> bool:
    """True for a RESP3 push message, whichever parser read it."""
    return type(reply) in PUSH_TYPES


def reply_error(text: str) -> rexc.RedisError:
    """The redis-py exception instance for an error reply."""
    return _ERRORS.get(text.split(" ", 1)[0], rexc.ResponseError)(text)


def _encode(arg: Any) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode("utf-8")
    if isinstance(arg, bool):
        return b"1" if arg else b"0"
    if isinstance(arg, int | float):
        return repr(arg).encode("ascii")
    raise TypeError(f"cannot send a {type(arg).__name__} to Redis: {arg!r}")


def pack_args(args: Sequence[Any]) -> bytes:
    """RESP bulk strings for ``args``, without the array header (for building commands)."""
    out: list[bytes] = []
    for arg in args:
        data = arg if isinstance(arg, bytes) else _encode(arg)
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def array_header(count: int) -> bytes:
    """The RESP header of a command of ``count`` arguments (its bulk strings follow)."""
    return b"*%d\r\n" % count


def command_head(count: int, args: Sequence[Any]) -> bytes:
    """The first ``args`` of a ``count``-argument command, to be completed later."""
    return array_header(count) + pack_args(args)


def with_bulk(head: bytes, data: bytes) -> bytes:
    """``head`` (from :func:`command_head`) completed by one more argument, ``data``."""
    return b"%b$%d\r\n%b\r\n" % (head, len(data), data)


def pack_commands(commands: Sequence[Sequence[Any]]) -> bytes:
    """RESP encoding of ``commands`` (each a sequence of arguments), ready to write."""
    out: list[bytes] = []
    append = out.append
    for args in commands:
        append(b"*%d\r\n" % len(args))
        for arg in args:
            data = arg if isinstance(arg, bytes) else _encode(arg)
            append(b"$%d\r\n" % len(data))
            append(data)
            append(b"\r\n")
    return b"".join(out)


class PythonParser:
    """Replies parsed in Python from the bytes ``receive`` returns (RESP2, and RESP3 for
    a connection that sent ``HELLO 3``); ``name`` names the connection in errors.

    Without ``receive`` the parser is fed instead (:meth:`feed`, :meth:`gets`)."""

    def __init__(self, receive: Callable[[], bytes] | None, name: str) -> None:
        self._receive = receive or _need_more
        self.name = name
        self._buf = bytearray()
        self._pos = 0

    def reset(self) -> None:
        """Forget buffered bytes (a new connection's stream starts afresh)."""
        self._buf.clear()
        self._pos = 0

    def has_data(self) -> bool:
        """True when bytes received are waiting to be parsed."""
        return self._pos < len(self._buf)

    def feed(self, data: bytes) -> None:
        """Add received bytes (a parser made with ``receive=None`` is fed: an event loop
        reads the socket)."""
        buf = self._buf
        if self._pos and self._pos >= len(buf):
            buf.clear()
            self._pos = 0
        elif self._pos > _COMPACT_AT:
            del buf[: self._pos]
            self._pos = 0
        buf += data

    def gets(self) -> Any:
        """The next reply of a fed parser, or :data:`INCOMPLETE` while its bytes have not
        all been fed."""
        start = self._pos
        try:
            return self.reply()
        except _NeedMore:
            self._pos = start
            return INCOMPLETE

    def _fill(self) -> None:
        buf = self._buf
        if self._receive is _need_more:
            raise _NeedMore  # fed: the bytes come with the next feed, the position stays
        if self._pos:
            if self._pos >= len(buf):
                buf.clear()
                self._pos = 0
            elif self._pos > _COMPACT_AT:
                del buf[: self._pos]
                self._pos = 0
        buf += self._receive()

    def integers(self, count: int) -> list[Any] | None:
        """Read the replies of ``count`` commands that answer with integers: None when all
        were integers, else the replies (those before the first other one may be None)."""
        buf = self._buf
        if count == 1:  # one publish: the usual case
            end = buf.find(b"\r\n", self._pos)
            while end < 0:
                self._fill()
                end = buf.find(b"\r\n", self._pos)
            if buf[self._pos] == 0x3A:  # ':'
                self._pos = end + 2
                return None
            return [self.reply()]
        done = 0
        while done < count:
            pos = self._pos
            end = buf.rfind(b"\r\n", pos)
            if end < 0:
                self._fill()
                continue
            # the complete replies read so far: if none holds the type mark of an error,
            # string or array (nor a minus sign), they are all integers -- count them at C
            # speed instead of parsing each
            run = bytes(buf[pos : end + 2])
            lines = run.count(b"\r\n")
            if done + lines <= count and not (b"-" in run or b"$" in run or b"*" in run or b"+" in run):
                done += lines
                self._pos = end + 2
                continue
            while done < count and self._pos <= end:
                if buf[self._pos] != 0x3A:  # not ':' -- parse the rest fully
                    return [None] * done + [self.reply() for _ in range(count - done)]
                self._pos = buf.find(b"\r\n", self._pos) + 2
                done += 1
        return None

    def _line(self) -> bytes:
        buf = self._buf
        while True:
            end = buf.find(b"\r\n", self._pos)
            if end >= 0:
                line = bytes(buf[self._pos : end])
                self._pos = end + 2
                return line
            self._fill()

    def reply(self) -> Any:
        """The next reply (an error reply as an exception instance, not raised)."""
        line = self._line()
        kind = line[:1]
        if kind == b"$":
            return self._bulk(int(line[1:]))
        if kind == b":":
            return int(line[1:])
        if kind == b"*":
            size = int(line[1:])
            if size < 0:
                return None
            return [self.reply() for _ in range(size)]
        if kind == b"+":
            return line[1:]
        if kind == b"-":
            return reply_error(line[1:].decode("utf-8", "replace"))
        return self._resp3(kind, line)

    def _bulk(self, size: int) -> bytes | None:
        if size < 0:
            return None
        end = self._pos + size
        while len(self._buf) < end + 2:
            self._fill()
            end = self._pos + size
        data = bytes(self._buf[self._pos : end])
        self._pos = end + 2
        return data

    def _resp3(self, kind: bytes, line: bytes) -> Any:
        """The RESP3 types (a connection that sent ``HELLO 3``): maps as dicts, sets as
        lists, pushes as :class:`Push`."""
        try:
            if kind == b">":
                return Push(self.reply() for _ in range(int(line[1:])))
            if kind == b"_":
                return None
            if kind == b"%":
                items = [self.reply() for _ in range(2 * int(line[1:]))]
                try:
                    return dict(zip(items[::2], items[1::2], strict=True))
                except TypeError:  # a key that cannot be a dict key: keep the pairs
                    return items
            if kind == b"~":
                return [self.reply() for _ in range(int(line[1:]))]
            if kind == b"#":
                return line[1:] == b"t"
            if kind == b",":
                return float(line[1:])
            if kind == b"(":
                return int(line[1:])
            if kind == b"=":
                data = self._bulk(int(line[1:]))
                return data[4:] if data is not None else None  # drops the "txt:" format
            if kind == b"!":
                data = self._bulk(int(line[1:])) or b""
                return reply_error(data.decode("utf-8", "replace"))
            if kind == b"|":
                # attributes describe the reply that follows: skip them
                for _ in range(2 * int(line[1:])):
                    self.reply()
                return self.reply()
        except ValueError:
            pass
        raise rexc.InvalidResponse(f"unexpected reply from Redis on the {self.name} connection: {line[:40]!r}")


class HiredisParser:
    """Replies parsed by ``hiredis.Reader`` from the bytes ``receive`` returns (without
    ``receive``: fed, as :class:`PythonParser`)."""

    def __init__(self, receive: Callable[[], bytes] | None, name: str) -> None:
        if _hiredis is None:
            raise ImportError('parsing replies with hiredis needs it installed: pip install "kombu_like[hiredis]"')
        self._receive = receive or _need_more
        self.name = name
        self.reset()

    def reset(self) -> None:
        """A fresh reader (a new connection's stream starts afresh)."""
        self._reader = _hiredis.Reader(replyError=reply_error, notEnoughData=_INCOMPLETE)

    def has_data(self) -> bool:
        """True when bytes received are waiting to be parsed."""
        return bool(self._reader.has_data())

    def feed(self, data: bytes) -> None:
        """As :meth:`PythonParser.feed`."""
        self._reader.feed(data)

    def gets(self) -> Any:
        """As :meth:`PythonParser.gets`."""
        return self._reader.gets()

    def reply(self) -> Any:
        """The next reply (an error reply as an exception instance, not raised)."""
        reader = self._reader
        reply = reader.gets()
        while reply is _INCOMPLETE:
            reader.feed(self._receive())
            reply = reader.gets()
        return reply

    def integers(self, count: int) -> list[Any] | None:
        """As :meth:`PythonParser.integers`."""
        # replies already buffered come straight from the reader; reply() reads more
        gets = self._reader.gets
        if count == 1:  # one publish: the usual case
            value = gets()
            if value is _INCOMPLETE:
                value = self.reply()
            return None if type(value) is int else [value]
        replies = []
        for _ in range(count):
            value = gets()
            replies.append(self.reply() if value is _INCOMPLETE else value)
        for value in replies:
            if type(value) is not int:
                return replies
        return None
