"""One Redis connection on the asyncio loop: the :class:`~.wire.Wire` of the asyncio API.

The same RESP as the blocking wire -- commands encoded by :mod:`.resp`, replies parsed by
the same parsers, fed the bytes the loop received -- and the same conversations
(:mod:`.conversation`), awaited instead of waited for.  No thread: the loop reads the
socket, and a round's future completes when its last reply has been parsed.

Rounds are answered in the order they were written, so a caller that stops waiting
(cancelled, timed out) never leaves the stream out of step: its replies are still read,
and dropped.  Pushes (RESP3 invalidations, pub/sub messages) go to ``on_push``.  After a
socket error, a reply that is not RESP, or ``socket_timeout`` seconds without a byte
while replies are due, the connection is dropped: every round waiting fails with
redis-py's ``ConnectionError``/``TimeoutError`` (as the blocking wire's do, so the
transport translates both in one place) and deferred writes are reported lost.

Connecting is a plain TCP connection made by the loop and the handshake redis-py makes
for the blocking wire (``AUTH``, ``SELECT``, ``CLIENT SETNAME``) as a conversation;
TLS and Sentinel are the blocking wire's (:func:`endpoint_of` says which connections
this wire can make).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis import exceptions as rexc

from .conversation import Conversation, adrive, exchange
from .resp import GARBLED, HIREDIS, INCOMPLETE, PUSH_TYPES, HiredisParser, PythonParser

__all__ = ["AsyncWire", "Endpoint", "endpoint_of", "handshake_conversation"]

logger = logging.getLogger(__name__)

#: the kinds of message a subscribed connection receives unasked
_PUBLISHED = (b"message", b"pmessage")
#: what parsing a reply raises that leaves the stream out of step
_UNREADABLE: tuple[type[Exception], ...] = (rexc.RedisError, *GARBLED)


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom an :class:`AsyncWire` connects (no credentials in its repr)."""

    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = None
    client_name: str | None = None
    connect_timeout: float | None = None
    socket_timeout: float | None = None

    def __repr__(self) -> str:
        return f"<Endpoint {self.host}:{self.port}/{self.db}>"


def endpoint_of(kwargs: dict[str, Any]) -> Endpoint | None:
    """The :class:`Endpoint` of the blocking transport's redis-py connection arguments;
    None for what only redis-py connects (TLS, Unix sockets, extra connection options)."""
    import redis

    if kwargs.get("connection_class") is not redis.Connection:
        return None
    known = {
        "host", "port", "db", "username", "password", "socket_timeout", "socket_connect_timeout",
        "client_name", "retry", "protocol", "connection_class",
    }  # fmt: skip
    if set(kwargs) - known:
        return None  # keepalive options, a custom parser ...: redis-py's own connection
    return Endpoint(
        host=str(kwargs["host"]),
        port=int(kwargs["port"]),
        db=int(kwargs.get("db") or 0),
        username=kwargs.get("username"),
        password=kwargs.get("password"),
        client_name=kwargs.get("client_name"),
        connect_timeout=kwargs.get("socket_connect_timeout"),
        socket_timeout=kwargs.get("socket_timeout"),
    )


def handshake_conversation(endpoint: Endpoint) -> Conversation[None]:
    """What redis-py sends on a new connection before anything else."""
    commands: list[tuple[Any, ...]] = []
    if endpoint.password:
        user = (endpoint.username,) if endpoint.username else ()
        commands.append(("AUTH", *user, endpoint.password))
    if endpoint.db:
        commands.append(("SELECT", endpoint.db))
    if endpoint.client_name:
        commands.append(("CLIENT", "SETNAME", endpoint.client_name))
    if not commands:
        return
    for reply in (yield from exchange(commands)):
        if isinstance(reply, Exception):
            raise reply


class _Round:
    """Replies due for one write: a future awaiting them, or an ``on_lost`` (deferred)."""

    __slots__ = ("due", "future", "on_lost", "replies")

    def __init__(self, due: int, future: asyncio.Future[list[Any]] | None, on_lost: Callable[[], None] | None) -> None:
        self.due = due
        self.replies: list[Any] = []
        self.future = future
        self.on_lost = on_lost


class AsyncWire(asyncio.Protocol):
    """A Redis connection whose bytes the asyncio loop moves.

    ``on_connect`` (a coroutine function taking this wire, running its conversations with
    ``adrive(wire, ..., connect=False)``) runs after every
    (re)connection, before any round queued meanwhile.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        name: str,
        on_connect: Callable[[AsyncWire], Awaitable[None]] | None = None,
        on_push: Callable[[Any], None] | None = None,
        parser: str = "auto",
        pubsub: bool = False,
        on_lost: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.name = name
        self.socket_timeout = endpoint.socket_timeout
        self.on_connect = on_connect
        #: called with each push; without it pushes are kept in :attr:`pushes`
        self.on_push = on_push
        #: a subscribed connection: published messages are pushes too
        self.pubsub = pubsub
        #: called when the server or the network ends the connection (not :meth:`disconnect`)
        self.on_lost = on_lost
        self.pushes: list[Any] = []
        self.generation = 0
        self.client_id: int | None = None
        if parser not in ("auto", "hiredis", "python"):
            raise ValueError(f"parser must be 'auto', 'hiredis' or 'python', not {parser!r}")
        self._parser_class = HiredisParser if parser == "hiredis" or (HIREDIS and parser == "auto") else PythonParser
        self._parser: Any = self._parser_class(None, name)
        self.stream: asyncio.Transport | None = None
        self._rounds: deque[_Round] = deque()
        self._last_io = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()

    # -- connecting ---------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Connected, handshake done: commands may be written (none goes before the
        handshake's ``AUTH`` and ``SELECT``)."""
        return self.stream is not None and self._connecting is None

    async def connect(self) -> None:
        """Connect (if not connected) and run the handshake and ``on_connect``; callers
        arriving meanwhile wait for the same attempt."""
        if self.stream is not None and self._connecting is None:
            return
        if self._connecting is not None:
            return await asyncio.shield(self._connecting)
        loop = asyncio.get_running_loop()
        attempt = self._connecting = loop.create_future()
        try:
            await self._connect(loop)
        except BaseException as exc:
            self.disconnect()
            if not attempt.done():
                attempt.set_exception(exc if isinstance(exc, Exception) else rexc.ConnectionError(str(exc)))
                attempt.exception()  # retrieved: a connect nobody else awaited is no warning
            raise
        else:
            attempt.set_result(None)
        finally:
            self._connecting = None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        endpoint = self.endpoint
        try:
            await asyncio.wait_for(self._open(loop), endpoint.connect_timeout or endpoint.socket_timeout)
        except asyncio.TimeoutError as exc:
            raise rexc.TimeoutError(f"timed out connecting the Redis {self.name} connection") from exc
        except OSError as exc:
            raise rexc.ConnectionError(f"error connecting the Redis {self.name} connection: {exc}") from exc

    async def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        await loop.create_connection(lambda: self, self.endpoint.host, self.endpoint.port)
        await adrive(self, handshake_conversation(self.endpoint), connect=False)
        if self.on_connect is not None:
            await self.on_connect(self)

    def disconnect(self, error: BaseException | None = None) -> None:
        """Drop the connection: rounds waiting fail with ``error`` (a ConnectionError by
        default), deferred writes are reported lost."""
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.abort()
        self._fail(error or rexc.ConnectionError(f"the Redis {self.name} connection is closed"))

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.stream = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._parser = self._parser_class(None, self.name)
        self.pushes.clear()
        self.generation += 1
        self.client_id = None
        self._last_io = time.monotonic()

    def data_received(self, data: bytes) -> None:
        self._last_io = time.monotonic()
        parser = self._parser
        rounds = self._rounds
        try:
            parser.feed(data)
            while True:
                reply = parser.gets()
                if reply is INCOMPLETE:
                    break
                if type(reply) in PUSH_TYPES or (
                    self.pubsub and type(reply) is list and reply and reply[0] in _PUBLISHED
                ):
                    if self.on_push is not None:
                        self.on_push(reply)
                    else:
                        self.pushes.append(reply)
                    continue
                if not rounds:
                    raise rexc.InvalidResponse(f"a reply nobody asked for on the {self.name} connection: {reply!r}")
                current = rounds[0]
                current.replies.append(reply)
                if len(current.replies) == current.due:
                    rounds.popleft()
                    self._answered(current)
        except _UNREADABLE as exc:
            error = exc if isinstance(exc, rexc.RedisError) else rexc.InvalidResponse(str(exc))
            self.disconnect(error)

    def _answered(self, answered: _Round) -> None:
        future = answered.future
        if future is None:
            for reply in answered.replies:
                if isinstance(reply, Exception):
                    logger.error("Redis rejected a deferred command on the %s connection: %s", self.name, reply)
        elif not future.done():  # a caller that stopped waiting: its replies are dropped
            future.set_result(answered.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stream is not None:
            self.stream = None
            error = rexc.ConnectionError(
                f"Redis closed the {self.name} connection"
                if exc is None
                else f"error reading from the Redis {self.name} connection: {exc}"
            )
            self._fail(error)
            if self.on_lost is not None and self._connecting is None:
                self.on_lost(error)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def _fail(self, error: BaseException) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        rounds, self._rounds = self._rounds, deque()
        for pending in rounds:
            if pending.future is not None:
                if not pending.future.done():
                    pending.future.set_exception(error)
            elif pending.on_lost is not None:
                pending.on_lost()

    # -- writing ----------------------------------------------------------------------------
    def execute_packed(self, data: bytes, count: int) -> asyncio.Future[list[Any]]:
        """Write ``count`` encoded commands; a future of their replies (error replies in
        their place).  Raises ConnectionError when not connected."""
        future = asyncio.get_running_loop().create_future()
        self._write(data, _Round(count, future, None))
        return future

    def send_deferred_packed(self, data: bytes, count: int, on_lost: Callable[[], None]) -> None:
        """Write ``count`` encoded commands whose replies are only checked (logged)."""
        self._write(data, _Round(count, None, on_lost))

    def _write(self, data: bytes, pending: _Round) -> None:
        stream = self.stream
        if stream is None:
            raise rexc.ConnectionError(f"the Redis {self.name} connection is closed")
        if not self._rounds:
            self._last_io = time.monotonic()  # the reply's clock starts now
        stream.write(data)
        self._rounds.append(pending)
        if self._timer is None and self.socket_timeout:
            self._timer = asyncio.get_running_loop().call_later(self.socket_timeout, self._check_timeout)

    async def drained(self) -> None:
        """Wait until every round written so far was answered (deferred ones included)."""
        if self._rounds:
            await self.execute_packed(b"*1\r\n$4\r\nPING\r\n", 1)

    def writable(self) -> Awaitable[Any] | None:
        """What to await before writing more (the transport's buffer is full), or None."""
        return None if self._writable.is_set() else self._writable.wait()

    def _check_timeout(self) -> None:
        self._timer = None
        if not self._rounds or self.stream is None:
            return
        assert self.socket_timeout is not None
        silent = time.monotonic() - self._last_io
        if silent >= self.socket_timeout:
            self.disconnect(rexc.TimeoutError(f"timed out reading from the Redis {self.name} connection"))
        else:
            self._timer = asyncio.get_running_loop().call_later(self.socket_timeout - silent, self._check_timeout)
