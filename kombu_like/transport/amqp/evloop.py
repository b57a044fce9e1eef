"""An AMQP connection driven by an event loop (Kombu's :class:`~kombu_like.asynchronous.Hub`).

:class:`LoopReader` is what ``Transport.register_with_event_loop`` hooks into a hub: the
socket as a reader, and a timer entry that keeps heartbeats going.  When the socket is
readable the reader handles every frame that arrived, without waiting for more, and hands
deliveries to consumer callbacks in the loop's thread.

It takes part in the connection's sharing of reads (see :mod:`.connection`): when another
thread holds the reader role (a publisher waiting for its confirm, say), the hub does not
wait for it; that thread reads the frames and queues the deliveries, and then asks the hub
(:meth:`LoopReader.schedule`, safe from any thread) to hand them over.  Frames that a
synchronous call read past its reply stay buffered where no poller sees them; the reader
schedules itself again until nothing is buffered, as Kombu's reader does.
"""

from __future__ import annotations

import socket
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from amqp import exceptions as amqp_errors

from .acks import AckCoalescer
from .framing import DRIVER_ERRORS

if TYPE_CHECKING:
    from . import Transport
    from .connection import AMQPConnection

__all__ = ["LoopReader"]


class LoopReader:
    """Reads one AMQP connection for one event loop; :meth:`close` leaves nothing behind."""

    def __init__(self, transport: Transport, connection: AMQPConnection, loop: Any) -> None:
        self.transport = transport
        self.connection = connection
        self.loop = loop
        # the number, not the socket: a closed socket has no number any more, and the hub
        # must still be told to forget it
        self.fd: int = connection.buffered_transport.sock.fileno()
        self._scheduled = False
        self._reading = False
        self._heartbeat_entry: Any = None
        #: a heartbeat failure, raised from the loop by the next read
        self._error: BaseException | None = None
        self._closed = False
        self._flush_pending = False
        #: merges a round's acks of a channel into one frame where that is safe
        self.acks = AckCoalescer(connection.channels)
        #: the socket transport whose held frames :attr:`acks` rewrites, once started
        self._frames: Any = None

    def start(self) -> None:
        """Watch the socket; keep heartbeats going from the loop's timer when negotiated."""
        self.loop.add_reader(self.fd, self.on_readable)
        self._frames = self.connection.buffered_transport
        self._frames.coalesce = self.acks
        # a hub that is reset (Celery does after a connection error) or closed has forgotten
        # the socket: the reader goes with it, rather than read a dead connection later
        self.loop.on_close.add(self._on_loop_close)
        heartbeat = float(self.connection.heartbeat or 0)
        if heartbeat:
            # four ticks per interval, as the blocking drain does: the broker hears from us
            # well within its interval, and a broker silent for two is noticed promptly
            self._heartbeat_entry = self.loop.call_repeatedly(max(heartbeat / 4.0, 0.05), self._heartbeat)
        # frames read before the loop was there (a publish looks at what came in)
        self.schedule()

    # -- reading ---------------------------------------------------------------------------
    def on_readable(self) -> None:
        """Handle everything that arrived, without waiting; called by the loop.

        Raises a recoverable :class:`~kombu_like.exceptions.ConnectionError` once the
        connection is lost (closed by the broker, cut, or silent past its heartbeats).
        """
        self._scheduled = False
        if self._closed:
            return
        connection = self.connection
        if self._error is not None or not connection.is_open:
            self._lost(self._error or amqp_errors.RecoverableConnectionError("socket was disconnected"))
        self._reading = True
        try:
            self.transport.drain_events(connection, timeout=0)
            # drain_events hands out one delivery; the loop hands out all it read in one
            # round (its other readers and timers run between rounds)
            while connection.has_ready():
                self.transport.drain_events(connection, timeout=0)
        except socket.timeout:
            pass
        except BaseException:
            self._reading = False
            if not connection.is_open:
                self.close()
            elif connection.has_buffered_input():
                # a consumer callback raised: the deliveries read with its message are
                # handed out in the next round, if the loop goes on
                self.schedule()
            raise
        finally:
            self._reading = False
        # checked after ``_reading`` is cleared: a thread that queued deliveries while the
        # flag was set left them to this check (see :meth:`schedule`)
        if connection.has_buffered_input():
            self.schedule()

    def schedule(self) -> None:
        """Have the loop read again soon (from any thread): frames or deliveries are
        waiting where the poller cannot see them."""
        if self._scheduled or self._reading or self._closed:
            return
        self._scheduled = True
        self.loop.call_soon(self.on_readable)

    # -- writing ---------------------------------------------------------------------------
    def defer(self, frame: bytes) -> bool:
        """Hold ``frame`` (an ack, reject or nack) to go out with the others made until
        the loop is about to wait, in one write, when the loop's thread is in one of its
        rounds (``False`` otherwise: the caller writes it now).

        Celery acks from callbacks it queues on the loop, one ack per callback: batched,
        a busy worker's acks cost a system call every few rounds.  Any other write on the
        connection (a publish, a close) sends held frames first, so their order is kept.
        """
        # sent when the loop is about to wait (or after a few busy rounds), where the hub
        # offers it -- RabbitMQ needs them only to send more, and is told as the consumer
        # runs dry -- else at the end of this round
        defer = getattr(self.loop, "defer_until_wait", None) or getattr(self.loop, "defer_to_round_end", None)
        if self._closed or defer is None:
            return False
        if not self._flush_pending:
            if not defer(self.flush):
                return False
            self._flush_pending = True
        self.connection.buffered_transport.hold(frame)
        return True

    def flush(self) -> None:
        """Send held frames now (closing sent them already: nothing then)."""
        if self._closed:
            return
        self._flush_pending = False
        try:
            self.connection.buffered_transport.flush()
        except DRIVER_ERRORS as exc:
            self._lost(exc)

    def _heartbeat(self) -> None:
        try:
            self.connection.heartbeat_tick(rate=2)
        except DRIVER_ERRORS as exc:
            # a timer's error would only be logged: the next read raises it from the loop
            self._error = exc
            self.schedule()

    def _lost(self, cause: BaseException) -> None:
        self.close()
        error = self.transport.translate_error(cause)
        if error is cause:
            raise error
        raise error from cause

    # -- leaving ---------------------------------------------------------------------------
    def _on_loop_close(self, loop: Any) -> None:
        self.close()

    def close(self) -> None:
        """Forget the socket and cancel the heartbeat entry (the loop keeps running)."""
        if self._closed:
            return
        self._closed = True
        entry, self._heartbeat_entry = self._heartbeat_entry, None
        if entry is not None:
            entry.cancel()
        if self._flush_pending:  # a round's acks still held: send them (if it can)
            self._flush_pending = False
            with suppress(*DRIVER_ERRORS, OSError):
                self.connection.buffered_transport.flush()
        if self._frames is not None and self._frames.coalesce is self.acks:
            self._frames.coalesce = None
        self.loop.on_close.discard(self._on_loop_close)
        registered = self.loop.readers.get(self.fd)
        # the number may belong to another connection's socket by now
        if registered is not None and registered[0] == self.on_readable:
            self.loop.remove_reader(self.fd)
        if self.connection.loop_reader is self:
            self.connection.loop_reader = None

    def __repr__(self) -> str:
        return f"<LoopReader fd={self.fd} {'closed' if self._closed else 'open'}>"
