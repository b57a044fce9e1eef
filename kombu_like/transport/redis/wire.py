"""One Redis connection driven directly in RESP2.

redis-py opens the connection (TCP or TLS, AUTH, SELECT, CLIENT SETNAME, Sentinel master
discovery).  From then on commands are written here as RESP and replies parsed here, which
lets several commands go out in one write, a reply be read later (acknowledgements), and
the socket be polled next to others (a blocking pop next to a pub/sub subscription)
without redis-py's per-command bookkeeping on the hot path.

Commands are encoded and replies parsed by :mod:`.resp` (hiredis when installed).

Errors are raised as redis-py's exception classes so that the transport translates all of
them in one place; after any socket error the connection is dropped (its stream position
is unknown) and the next command reconnects.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from redis import exceptions as rexc

from .compat import handshake_bounded, socket_of
from .resp import (
    GARBLED,
    HIREDIS,
    PUSH_TYPES,
    HiredisParser,
    Push,
    PythonParser,
    array_header,
    command_head,
    is_push,
    pack_args,
    pack_commands,
    with_bulk,
)

# the encoding helpers and Push are offered here too, where they were first
__all__ = [
    "HIREDIS",
    "Push",
    "Wire",
    "array_header",
    "command_head",
    "is_push",
    "pack_args",
    "pack_commands",
    "with_bulk",
]

logger = logging.getLogger(__name__)

_READ_SIZE = 65536

#: a connection idle this long (seconds) is looked at before a command goes out: a server
#: restarted meanwhile has closed it, and a command not yet sent can go to a new one
IDLE_CHECK = 0.1

#: how long past a caller's deadline a reply may still come: a reply a busy server sends
#: a little late must not cost the connection (whose stream position is then unknown)
DEADLINE_GRACE = 0.5
#: replies in a row that outlast the poll before polling pauses, and for how many replies
_SPIN_MISSES = 4
_SPIN_PAUSE = 1000
#: what reading a reply raises that leaves the stream position unknown, besides redis-py's
#: own errors: a socket error or bytes that are not RESP
_UNREADABLE: tuple[type[Exception], ...] = (OSError, *GARBLED)


def _timeval(seconds: float) -> bytes:
    """``struct timeval`` for SO_RCVTIMEO/SO_SNDTIMEO (0 would mean no timeout at all)."""
    seconds = max(seconds, 0.001)
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


class Wire:
    """A Redis connection whose commands and replies are handled here.

    ``factory`` returns a new, unconnected redis-py connection object; ``on_connect``
    runs (with this wire) after every (re)connection, before any queued command.
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        name: str,
        socket_timeout: float | None,
        health_check_interval: float = 0,
        on_connect: Callable[[Wire], None] | None = None,
        reply_spin: float = 0.0,
        parser: str = "auto",
    ) -> None:
        self._factory = factory
        self.name = name
        self.socket_timeout = socket_timeout
        self.health_check_interval = health_check_interval
        self.on_connect = on_connect
        self.conn: Any = None
        self.sock: Any = None
        #: push messages read while a reply was awaited (RESP3 connections only)
        self.pushes: list[Push] = []
        #: bumped on every (re)connection, so users of the wire notice a new server session
        self.generation = 0
        self.client_id: int | None = None
        #: ``time.monotonic()`` by which a reply read without an explicit timeout must come
        #: (plus :data:`DEADLINE_GRACE`), for a caller that has a deadline of its own; None:
        #: the socket timeout alone
        self.deadline: float | None = None
        #: while connecting: when the handshake must be over (the connect timeout)
        self._handshake_until: float | None = None
        self._last_io = 0.0
        # replies that were sent for but will be read later: (count, on_lost)
        self._deferred: deque[tuple[int, Callable[[], None]]] = deque()
        self._deferred_replies = 0
        self._kernel_timeouts = False
        #: seconds to poll for a command's reply before sleeping on the socket
        self.reply_spin = reply_spin
        self._can_spin = False  # set on connect: plain sockets only
        self._spin_now = False
        self._spin_misses = 0
        self._spin_skip = 0
        if parser not in ("auto", "hiredis", "python"):
            raise ValueError(f"parser must be 'auto', 'hiredis' or 'python', not {parser!r}")
        self.hiredis = parser == "hiredis" or (HIREDIS and parser == "auto")
        self._parser = (HiredisParser if self.hiredis else PythonParser)(self._receive, name)
        # bound once: these are called for every reply
        self._reply = self._parser.reply
        self._read_integers = self._parser.integers

    # -- connection ------------------------------------------------------------------
    @property
    def server(self) -> str:
        """``host:port`` (or the socket's path) of the server, for messages."""
        conn = self.conn
        host = getattr(conn, "host", None)
        if host:
            return f"{host}:{getattr(conn, 'port', '')}"
        return str(getattr(conn, "path", None) or "the server")

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def connect(self) -> None:
        """Connect (if not connected) and run the ``on_connect`` hook."""
        if self.sock is not None:
            return
        if self.conn is None:
            self.conn = self._factory()
        started = time.monotonic()
        try:
            with handshake_bounded(self.conn) as limit:
                self.conn.connect()
        except socket.timeout as exc:
            raise rexc.TimeoutError(f"timed out connecting the Redis {self.name} connection") from exc
        except OSError as exc:
            raise rexc.ConnectionError(f"error connecting the Redis {self.name} connection: {exc}") from exc
        self.sock = socket_of(self.conn)
        self._kernel_timeouts = self._use_kernel_timeouts(self.sock)
        self._can_spin = bool(self.reply_spin) and self._kernel_timeouts
        self._parser.reset()
        self.generation += 1
        self.client_id = None
        self._last_io = time.monotonic()
        if self.on_connect is not None:
            # the transport's own handshake is part of connecting, bounded the same way
            self._handshake_until = None if limit is None else started + limit
            try:
                self.on_connect(self)
            except BaseException:
                self.disconnect()
                raise
            finally:
                self._handshake_until = None

    def _use_kernel_timeouts(self, sock: Any) -> bool:
        # Python's timeout sockets poll() before every send and recv; a blocking socket
        # with SO_RCVTIMEO/SO_SNDTIMEO keeps the same bounds at one system call each.
        # Plain TCP and Unix sockets only: TLS keeps Python's own timeouts.
        if type(sock) is not socket.socket or not self.socket_timeout:
            return False
        try:
            value = _timeval(self.socket_timeout)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
            sock.settimeout(None)
        except (OSError, struct.error):
            sock.settimeout(self.socket_timeout)
            return False
        return True

    def _set_read_timeout(self, timeout: float | None) -> None:
        if self._kernel_timeouts:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout or 0))
        else:
            self.sock.settimeout(timeout)

    def bounded(self, timeout: float | None | bool) -> float | None | bool:
        """The timeout for one read: ``timeout`` (False: the socket's) cut to the deadline.

        Reads without an explicit timeout are cut by themselves; a caller passing one
        (a blocking pop, whose reply must not be given up early) decides for itself.
        """
        until = self._handshake_until
        if self.deadline is not None:
            late = self.deadline + DEADLINE_GRACE
            until = late if until is None else min(until, late)
        if until is None:
            return timeout
        left = max(until - time.monotonic(), 0.001)
        current = self.socket_timeout if timeout is False else timeout
        if current is not None and current is not True and current <= left:
            return timeout
        return left

    def disconnect(self) -> None:
        """Drop the connection; replies still expected are reported lost."""
        self.sock = None
        self._parser.reset()
        self.pushes.clear()
        lost, self._deferred = self._deferred, deque()
        self._deferred_replies = 0
        if self.conn is not None:
            try:
                self.conn.disconnect()
            except Exception:  # the socket is being thrown away; nothing to report
                logger.debug("error closing the Redis %s connection", self.name, exc_info=True)
        for _, on_lost in lost:
            on_lost()

    @property
    def last_io(self) -> float:
        """When bytes last arrived on the connection (``time.monotonic()``)."""
        return self._last_io

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def readable(self) -> bool:
        """True when a reply can be read without waiting (buffered or on the socket)."""
        if self.sock is None:
            return False
        if self.has_buffered():
            return True
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))

    def _closed_by_peer(self) -> bool:
        """True when the server has closed (or reset) the connection, found without
        waiting and without consuming anything a later read needs."""
        sock = self.sock
        if type(sock) is not socket.socket or self.has_buffered():
            return False  # TLS cannot peek; buffered bytes are a reply still to read
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
        if not poller.poll(0):
            return False
        try:
            return not sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True

    def has_buffered(self) -> bool:
        """True when reply bytes already read from the socket are waiting to be parsed."""
        if self._parser.has_data():
            return True
        pending = getattr(self.sock, "pending", None)
        return bool(pending and pending())

    # -- writing -------------------------------------------------------------------------
    def send(self, commands: Sequence[Sequence[Any]]) -> None:
        """Write ``commands`` in one go (connecting first if needed)."""
        self.send_packed(pack_commands(commands))

    def send_packed(self, data: bytes) -> None:
        """Write already RESP-encoded commands."""
        self.connect()
        if not self._deferred and time.monotonic() - self._last_io >= IDLE_CHECK and self._closed_by_peer():
            # nothing of this command was sent, so it is safe to send on a new connection
            logger.debug("Redis closed the idle %s connection (restart?); reconnecting", self.name)
            self.disconnect()
            self.connect()
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise self._failed(exc, "writing to") from exc

    def _failed(self, exc: OSError, doing: str) -> rexc.RedisError:
        """Drop the connection after a socket error; the redis-py error that says so."""
        self.disconnect()
        if isinstance(exc, socket.timeout | BlockingIOError):
            return rexc.TimeoutError(f"timed out {doing} the Redis {self.name} connection")
        return rexc.ConnectionError(f"error {doing} the Redis {self.name} connection: {exc}")

    def _unreadable(self, exc: Exception) -> rexc.RedisError:
        """Drop the connection after a socket error or a reply that is not RESP, met
        while reading (the stream position is lost); the redis-py error that says so."""
        if isinstance(exc, OSError):
            return self._failed(exc, "reading from")
        self.disconnect()
        return rexc.InvalidResponse(f"unreadable reply from Redis on the {self.name} connection: {exc}")

    def send_deferred(self, commands: Sequence[Sequence[Any]], on_lost: Callable[[], None]) -> None:
        """Write ``commands`` now and read their replies later.

        ``on_lost`` is called if the connection drops before those replies were read, in
        which case the commands may or may not have run.
        """
        self.send_deferred_packed(pack_commands(commands), len(commands), on_lost)

    def send_deferred_packed(self, data: bytes, count: int, on_lost: Callable[[], None]) -> None:
        """:meth:`send_deferred` for ``count`` commands already encoded in ``data``."""
        self.send_packed(data)
        self._deferred.append((count, on_lost))
        self._deferred_replies += count

    @property
    def deferred_replies(self) -> int:
        return self._deferred_replies

    def read_deferred(self) -> None:
        """Read the replies of deferred commands (error replies are logged)."""
        while self._deferred:
            count, on_lost = self._deferred[0]
            try:
                replies = [self.read() for _ in range(count)]
            except BaseException:
                # the connection is gone and disconnect() reported the rest
                self.disconnect()
                raise
            self._deferred.popleft()
            self._deferred_replies -= count
            self.deferred_read(replies, on_lost)

    def deferred_read(self, replies: list[Any], on_lost: Callable[[], None]) -> None:
        """The replies of one deferred write have been read: error replies are logged."""
        for reply in replies:
            if isinstance(reply, Exception):
                logger.error("Redis rejected a deferred command on the %s connection: %s", self.name, reply)

    # -- commands ------------------------------------------------------------------------
    def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one write and return their replies.

        Error replies are returned as exception instances, in their place.
        """
        return self.execute_packed(pack_commands(commands), len(commands))

    def execute_packed(self, data: bytes, count: int) -> list[Any]:
        """Like :meth:`execute` for ``count`` commands already encoded in ``data``."""
        if self.health_check_interval:
            self._maybe_check_health()
        self.send_packed(data)
        if self._deferred:
            self.read_deferred()
        read = self.read
        self._spin_now = self._can_spin
        try:
            if count == 1:  # one command: the usual case
                return [read()]
            return [read() for _ in range(count)]
        finally:
            self._spin_now = False

    def call(self, *args: Any) -> Any:
        """Run one command and return its reply, raising an error reply."""
        [reply] = self.execute([args])
        if isinstance(reply, Exception):
            raise reply
        return reply

    def execute_counts(self, data: bytes, count: int) -> list[Any] | None:
        """Run ``count`` encoded commands that answer with integers (``LPUSH``, ...).

        Returns None when every reply was an integer -- the common case, checked without
        building ``count`` Python objects -- else the replies, as :meth:`execute_packed`.
        """
        if self.health_check_interval:
            self._maybe_check_health()
        self.send_packed(data)
        if self._deferred:
            self.read_deferred()
        self._spin_now = self._can_spin
        try:
            return self._read_integers(count)
        except rexc.RedisError:
            self.disconnect()
            raise
        except _UNREADABLE as exc:
            raise self._unreadable(exc) from exc
        finally:
            self._spin_now = False

    def _maybe_check_health(self) -> None:
        interval = self.health_check_interval
        if not interval or self.sock is None or self._deferred:
            return
        if time.monotonic() - self._last_io < interval:
            return
        # an idle connection may have died silently: find out before trusting it with a
        # command whose fate we could not tell afterwards
        try:
            self.send([("PING",)])
            self.read()
        except (rexc.ConnectionError, rexc.TimeoutError):
            logger.debug("Redis %s connection failed its health check; reconnecting", self.name)
            self.disconnect()

    # -- reading ---------------------------------------------------------------------
    def read(self, timeout: float | None | bool = False, pushes_too: bool = False) -> Any:
        """Read one reply; ``timeout`` (seconds) overrides the socket timeout for this read.

        Push messages (RESP3) met before it are kept in :attr:`pushes`; with
        ``pushes_too`` the first message, a push or a reply, is returned instead.
        """
        if self.sock is None:
            raise rexc.ConnectionError(f"the Redis {self.name} connection is closed")
        if timeout is False and (self.deadline is not None or self._handshake_until is not None):
            timeout = self.bounded(timeout)
        if timeout is not False:
            self._set_read_timeout(timeout)
        try:
            reply = self._reply()
            while type(reply) in PUSH_TYPES and not pushes_too:
                # a push (RESP3) is no command's reply: keep it for whoever waits for one
                self.pushes.append(reply)
                reply = self._reply()
            return reply
        except rexc.RedisError:
            self.disconnect()
            raise
        except _UNREADABLE as exc:
            raise self._unreadable(exc) from exc
        finally:
            if timeout is not False and self.sock is not None:
                self._set_read_timeout(self.socket_timeout)

    def read_message(self, timeout: float | None | bool = False) -> Any:
        """Read one message, a push or a reply, whichever comes first."""
        return self.read(timeout, pushes_too=True)

    def _receive(self) -> bytes:
        """The next bytes of the reply stream (the parser asks when a reply is incomplete)."""
        chunk = self._recv_soon() if self._spin_now else self.sock.recv(_READ_SIZE)
        if not chunk:
            raise rexc.ConnectionError(f"Redis closed the {self.name} connection")
        self._last_io = time.monotonic()
        return chunk

    def _recv_soon(self) -> bytes:
        """Receive a reply that is due any moment: poll for up to ``reply_spin`` seconds
        before sleeping on the socket.

        Waking a thread that sleeps on a socket costs tens of microseconds on many
        (virtual) machines, as much as Redis takes to answer a command over loopback.  A
        short poll saves that wake-up; when replies keep taking longer than the poll (a
        distant server), polling stops for a while, so it costs nothing there.
        """
        sock = self.sock
        if self._spin_skip:
            self._spin_skip -= 1
            return bytes(sock.recv(_READ_SIZE))
        deadline = time.perf_counter() + self.reply_spin
        while True:
            try:
                chunk = sock.recv(_READ_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                if time.perf_counter() < deadline:
                    continue
                break
            self._spin_misses = 0
            return bytes(chunk)
        self._spin_misses += 1
        if self._spin_misses >= _SPIN_MISSES:
            self._spin_misses = 0
            self._spin_skip = _SPIN_PAUSE
        return bytes(sock.recv(_READ_SIZE))
