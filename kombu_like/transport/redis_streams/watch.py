"""Waiting for messages without taking any: ``XREAD BLOCK`` on a connection of its own.

The watch connection sends ``XREAD COUNT <n> BLOCK <ms> STREAMS <streams...> <ids...>``
with each id the consumer group's last-delivered-id, so Redis answers as soon as an entry
no consumer of the group was given exists, and nothing is delivered by the wait itself (no
message can be lost in a wait cut short).  The same wait names the queues' schedule
streams, from the last entry heard of in each (:mod:`.due`): every reply goes to
:attr:`Watcher.on_reply`, which reads what they say.  The blocking API waits on the reply
with a timeout; under an event loop the connection's socket is the store's event descriptor:
the wait is sent (:meth:`Watcher.arm`) and its reply read when the socket turns readable
(:meth:`Watcher.on_readable`).  A wait for other streams replaces one in progress with
``CLIENT UNBLOCK``.

Reading the connection's socket goes through :mod:`kombu_like.transport.redis.compat`,
the one module that reaches into redis-py's internals.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..redis.compat import socket_of
from .delayed import SCHEDULE_KEPT
from .keys import GROUP

__all__ = ["CANCEL_GRACE", "Watcher", "last_delivered_ids"]

#: seconds a cancelled wait's reply may take to arrive before its connection is closed
CANCEL_GRACE = 0.05

logger = logging.getLogger("kombu_like.transport.redis_streams")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def last_delivered_ids(client: Any, streams: Sequence[str]) -> list[str]:
    """Each stream's last-delivered-id in the consumer group (one pipeline): a wait from
    there returns as soon as an entry no consumer was given exists.  ``0-0`` for a stream
    or group that does not exist yet (any entry is news)."""
    pipe = client.pipeline(transaction=False)
    for stream in streams:
        pipe.execute_command("XINFO", "GROUPS", stream)
    ids = []
    for reply in pipe.execute(raise_on_error=False):
        last = "0-0"
        if not isinstance(reply, Exception):
            for group in reply or ():
                info = group if isinstance(group, dict) else dict(zip(group[::2], group[1::2], strict=False))
                info = {_text(k): v for k, v in info.items()}
                if _text(info.get("name", b"")) == GROUP:
                    last = _text(info["last-delivered-id"])
        ids.append(last)
    return ids


class Watcher:
    """One watch connection (made by ``make_connection``, a redis-py ``Connection``), and
    ``unblock``, a function running ``CLIENT UNBLOCK <id>`` on another connection."""

    def __init__(self, make_connection: Callable[[], Any], unblock: Callable[[int], Any], block_ms: int) -> None:
        self.make_connection = make_connection
        self.unblock = unblock
        self.block_ms = max(int(block_ms), 1)
        self._lock = threading.RLock()
        self._conn: Any = None
        self._client_id: int | None = None
        #: the streams and ids of the wait sent and not answered yet (under an event loop)
        self.armed: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        #: the connection was lost, and no wait made a new one yet
        self.lost = False
        #: called with every reply of a wait (the entries that ended it)
        self.on_reply: Callable[[Any], None] | None = None
        #: called once a new connection is made (the server may have changed meanwhile)
        self.on_connect: Callable[[], None] | None = None

    # -- the connection ------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._conn is None:
            conn = self.make_connection()
            try:
                conn.connect()
                conn.send_command("CLIENT", "ID")
                self._client_id = int(conn.read_response())
            except BaseException:
                conn.disconnect()
                raise
            self._conn = conn
            self.lost = False
            if self.on_connect is not None:
                self.on_connect()
        return self._conn

    def _drop(self, lost: bool = True) -> None:
        conn, self._conn = self._conn, None
        self.lost = lost
        self._client_id = None
        self.armed = None
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:  # closing a broken connection
                logger.debug("error closing the watch connection", exc_info=True)

    def _send(self, streams: Sequence[str], ids: Sequence[str], block_ms: int) -> Any:
        conn = self._connection()
        conn.send_command("XREAD", "COUNT", SCHEDULE_KEPT, "BLOCK", max(int(block_ms), 1), "STREAMS", *streams, *ids)
        return conn

    def _read(self, conn: Any) -> Any:
        """The reply of the wait sent on ``conn``, handed to :attr:`on_reply` (``None``:
        the wait timed out or was ended)."""
        reply = conn.read_response()
        if reply is not None and self.on_reply is not None:
            self.on_reply(reply)
        return reply

    @property
    def waiting(self) -> bool:
        """A wait was sent under an event loop and not answered yet."""
        return self.armed is not None

    # -- the blocking API ------------------------------------------------------------------
    def wait(self, streams: Sequence[str], ids: Sequence[str], timeout: float) -> bool:
        """Wait up to ``timeout`` seconds (at most one block interval) for an entry not
        delivered yet in ``streams``; True when one came."""
        with self._lock:
            self.cancel()
            try:
                conn = self._send(streams, ids, min(int(timeout * 1000), self.block_ms))
                return self._read(conn) is not None
            except BaseException:
                self._drop()  # a reply half read, or none: the next wait starts afresh
                raise

    # -- under an event loop ---------------------------------------------------------------
    def socket(self) -> Any:
        """The watch connection's socket, connecting first; ``None`` after a connection
        was lost, until the next :meth:`arm` connects again (the lost one's socket leaves
        the loop with the error)."""
        with self._lock:
            if self._conn is None and self.lost:
                return None
            return socket_of(self._connection())

    def sockets(self) -> list[Any]:
        """The store's event descriptors: the one watch socket (none while lost)."""
        sock = self.socket()
        return [sock] if sock is not None else []

    def arm(self, streams: Sequence[str], ids: Sequence[str]) -> None:
        """Send the wait for ``streams``; its reply makes the socket readable."""
        key = (tuple(streams), tuple(ids))
        with self._lock:
            if self.armed == key:
                return  # the wait in progress already covers them
            self.cancel()
            try:
                self._send(streams, ids, self.block_ms)
            except BaseException:
                self._drop()
                raise
            self.armed = key

    def on_readable(self, fd: Any = None) -> bool:
        """Read the wait's reply; True (a take may find something now)."""
        with self._lock:
            if self.armed is None:
                conn = self._conn
                if conn is not None and conn.can_read(timeout=0):
                    try:
                        conn.read_response()  # closed by the server: raises
                    except BaseException:
                        self._drop()
                        raise
                return True
            try:
                self._read(self._conn)
            except BaseException:
                self._drop()
                raise
            self.armed = None
            return True

    def cancel(self) -> None:
        """End the wait in progress, if any, and read its reply.

        ``CLIENT UNBLOCK`` ends a wait Redis is blocked in.  It answers 0 when there is
        none: the wait was answered already (its reply is on its way), or Redis has not
        read it yet -- then it would block for a whole block interval once read.  Unless
        a reply comes at once, the connection is closed instead (the next wait makes a
        new one): a cancel never waits out a block interval.
        """
        with self._lock:
            if self.armed is None:
                return
            conn = self._conn
            try:
                ended = self.unblock(int(self._client_id or 0))
                if ended or conn.can_read(timeout=CANCEL_GRACE):
                    self._read(conn)
                    self.armed = None
                    return
            except Exception:
                logger.debug("could not end the watch connection's wait", exc_info=True)
            self._drop(lost=False)

    def close(self) -> None:
        with self._lock:
            self._drop(lost=False)
