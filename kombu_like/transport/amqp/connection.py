"""The driver connection: py-amqp's, with buffered reads, deadline-bounded draining, fast
paths for the two frames that come once per message, and the broker's blocked reason.

Threads share a connection this way.  Writes take the socket transport's write lock, one
whole method or publish at a time.  Reading is a role one thread holds at a time
(:meth:`AMQPConnection._take_reader`, first come first served): the reader handles every
frame for everyone, and a thread that waits for a confirm or a reply while another reads
sleeps on a condition until the reader gives the role up, then looks again.  Deliveries
are queued and handed to consumer callbacks only by :meth:`AMQPConnection.drain`, after
it gave up the role, so a callback never runs inside another call and never holds up a
thread that waits for the socket.  A reply that a reader dispatched before its caller
began waiting (the driver registers its wait after the write) is kept for that caller.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

import amqp
from amqp import exceptions as amqp_errors
from amqp import spec

from . import compat
from .framing import (
    ACK_ARGS,
    ACK_METHOD,
    DELIVER_METHOD,
    BufferedFrames,
    Content,
    TCPSocket,
    TLSSocket,
    parse_deliver,
)

if TYPE_CHECKING:
    import ssl

    from .channel import Channel
    from .evloop import LoopReader

__all__ = ["AMQPConnection"]

logger = logging.getLogger(__name__)

#: seconds a reply read by another thread is kept for the caller that has yet to wait for it
UNCLAIMED_REPLY_TTL = 10.0
#: a publish looks for incoming frames (confirms, connection.blocked, channel errors) once
#: per this many publishes; the first publish always looks
INBOUND_CHECK_EVERY = 8
#: ... and so does a publish that comes this many seconds after the one before: a close the
#: broker sent while the connection sat idle (a pooled connection, a worker's replies) is
#: found before a message is written into it, not up to seven publishes later
INBOUND_CHECK_IDLE = 0.001


_TOOK, _NESTED, _NOT_TAKEN = 1, 2, 0


class _ThreadState(threading.local):
    timeout: float | None = None


class _ReplyTimeout:
    """Sets the reply timeout of the driver's waits in this thread for a ``with`` block."""

    __slots__ = ("_state", "_timeout", "_previous")

    def __init__(self, state: _ThreadState, timeout: float) -> None:
        self._state = state
        self._timeout = timeout
        self._previous: float | None = None

    def __enter__(self) -> None:
        self._previous = self._state.timeout
        self._state.timeout = self._timeout

    def __exit__(self, *exc_info: Any) -> None:
        self._state.timeout = self._previous


def _locked_frame_writer(connection: Any, transport: Any) -> Callable[..., Any]:
    """The driver's frame writer, taking the transport's write lock around each method so
    its frames never interleave with a publish written by another thread."""
    write_frame = compat.frame_writer(connection, transport)
    lock = transport.write_lock

    def locked(*args: Any) -> Any:
        with lock:
            return write_frame(*args)

    return locked


class AMQPConnection(amqp.Connection):  # type: ignore[misc]
    """py-amqp's connection with buffered reads, deadline-bounded draining and the reason a
    broker gives when it blocks the connection.

    This is ``Connection.connection`` for AMQP URLs; ``client`` is the
    :class:`kombu_like.Connection` it belongs to.
    """

    # the driver drops the reason text of connection.blocked; parse it
    _METHODS = compat.connection_methods({spec.Connection.Blocked: spec.method(spec.Connection.Blocked, "s")})

    def __init__(
        self,
        *args: Any,
        client: Any = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.client = client
        self._ssl_context = ssl_context
        self._server_hostname = server_hostname
        #: the reason given by the broker while the connection is blocked, else None
        self.blocked_reason: str | None = None
        self._dispatch_depth = 0
        self._next_heartbeat_tick = 0.0
        #: channels with publishes the broker has not confirmed yet
        self.unsettled: set[Channel] = set()
        #: queues this connection deleted: the broker's cancel of their consumers is expected
        self.deleted_queues: set[str] = set()
        #: channel id -> delivery being assembled by :meth:`_on_frame`
        self._deliveries: dict[int, Content] = {}
        self._publishes_unchecked = INBOUND_CHECK_EVERY
        self._last_publish = 0.0
        #: guards the reader role; notified whenever a reader gives it up
        self._io = threading.Condition(threading.Lock())
        #: ident of the thread reading the socket, None when nobody does
        self._reader: int | None = None
        #: threads waiting to read, in turn
        self._queue: deque[object] = deque()
        #: how many times a reader dispatched something (waiters watch it change)
        self._dispatched = 0
        #: complete deliveries waiting for ``drain_events``: (driver channel, args, message)
        self._ready: deque[tuple[Any, tuple[Any, ...], Any]] = deque()
        #: per-thread reply timeout of the driver's waits
        self._local = _ThreadState()
        #: replies that came before their caller waited for them (another thread read them)
        self._unclaimed: deque[tuple[float, Any, tuple[int, int], bytes, Any]] = deque(maxlen=64)
        #: channel id -> thread waiting for a reply on it
        self.rpc_threads: dict[int, int] = {}
        #: thread -> channel error the broker raised over that thread's call
        self._errors_for: dict[int, BaseException] = {}
        #: opening channels (picking a free channel id) one at a time
        self.channel_lock = threading.Lock()
        #: set while an event loop reads this connection (:mod:`.evloop`)
        self.loop_reader: LoopReader | None = None
        super().__init__(*args, frame_writer=_locked_frame_writer, **kwargs)
        compat.set_method_handler(self, spec.Connection.Blocked, self._broker_blocked)
        compat.set_method_handler(self, spec.Connection.Unblocked, self._broker_unblocked)

    def Transport(  # noqa: N802 - the driver's hook name
        self,
        host: str,
        connect_timeout: float | None,
        ssl: Any = False,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
        socket_settings: Any = None,
        **kwargs: Any,
    ) -> BufferedFrames:
        options = dict(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            socket_settings=socket_settings,
        )
        if not ssl and self._ssl_context is None:
            return TCPSocket(host, **options)
        transport = TLSSocket(host, ssl=ssl if isinstance(ssl, dict) else {}, **options)
        transport.ssl_context = self._ssl_context
        transport.server_hostname = self._server_hostname
        return transport

    def connect(self, callback: Any = None) -> Any:
        result = super().connect(callback)
        transport = compat.driver_transport(self)
        if transport is not None and self.frame_max:
            # from now on a frame larger than agreed means the byte stream is out of step
            transport.max_frame_size = int(self.frame_max)
        return result

    @property
    def buffered_transport(self) -> BufferedFrames:
        """The socket transport; raises the driver's connection error once closed.

        (The driver's own ``transport`` property would silently reconnect.)
        """
        transport = compat.driver_transport(self)
        if transport is None or not transport.connected:
            raise amqp_errors.RecoverableConnectionError("connection is closed")
        return transport  # type: ignore[no-any-return]

    @property
    def is_open(self) -> bool:
        transport = compat.driver_transport(self)
        return transport is not None and bool(transport.connected)

    def _broker_blocked(self, reason: str = "") -> Any:
        self.blocked_reason = reason or "no reason given"
        logger.warning(
            "broker blocked the connection: %s; publishing stalls until it is unblocked", self.blocked_reason
        )
        if self.on_blocked:
            return self.on_blocked(self.blocked_reason)
        return None

    def _broker_unblocked(self) -> Any:
        self.blocked_reason = None
        logger.info("broker unblocked the connection")
        if self.on_unblocked:
            return self.on_unblocked()
        return None

    # -- reading: one thread at a time ----------------------------------------------------
    def _take_reader(self, deadline: float | None, done: Callable[[], bool] | None = None) -> int:
        """Become the thread that reads the socket.

        Returns :data:`_TOOK` (release with :meth:`_release_reader`), :data:`_NESTED` (this
        thread reads already, further up the stack) or :data:`_NOT_TAKEN`: another thread
        was reading until ``done()`` became true or ``deadline`` passed.  Whoever reads
        handles every frame, so waiting for it is as good as reading.
        """
        me = threading.get_ident()
        io = self._io
        with io:
            if self._reader == me:
                return _NESTED
            if self._reader is None and not self._queue:
                self._reader = me
                return _TOOK
            # first come, first served: a drain that loops must not starve the others
            ticket = object()
            self._queue.append(ticket)
            try:
                while self._reader is not None or self._queue[0] is not ticket:
                    if done is not None and done():
                        return _NOT_TAKEN
                    if deadline is None:
                        io.wait()
                    else:
                        remaining = deadline - monotonic()
                        if remaining <= 0:
                            return _NOT_TAKEN
                        io.wait(remaining)
                self._reader = me
                return _TOOK
            finally:
                self._queue.remove(ticket)
                io.notify_all()  # the head of the queue may have changed

    def _release_reader(self) -> None:
        with self._io:
            self._reader = None
            self._io.notify_all()
        if self.loop_reader is not None and self.has_buffered_input():
            # deliveries (or frames read past a reply) taken off the socket by a publish or
            # a synchronous call: the event loop hands them over, as the socket they came
            # from may not be readable any more
            self.loop_reader.schedule()

    def has_buffered_input(self) -> bool:
        """True when deliveries or frames wait where polling the socket cannot see them."""
        if self._ready:
            return True
        transport = compat.driver_transport(self)
        return transport is not None and transport.connected and transport.has_buffered()

    def _read_some(self, deadline: float | None) -> bool:
        """As the reader: dispatch buffered frames, reading (and keeping heartbeats going)
        until at least one method completed; True when one did.  Deliveries are queued for
        :meth:`drain`, never dispatched here.  Raises :class:`socket.timeout` at ``deadline``."""
        transport = self.buffered_transport
        on_frame = self._on_frame
        dispatched = False
        while True:
            frame = transport.buffered_frame()
            if frame is not None:
                self._dispatch_depth += 1
                try:
                    while frame is not None:
                        if on_frame(frame):
                            dispatched = True
                        frame = transport.buffered_frame()
                finally:
                    self._dispatch_depth -= 1
            if dispatched:
                self._dispatched += 1
                return True
            wait_until = deadline
            if self.heartbeat:
                wait_until = self._heartbeat_slice(deadline)
            try:
                transport.fill(wait_until)
            except socket.timeout:
                if deadline is not None and monotonic() >= deadline:
                    raise
            transport = self.buffered_transport

    def drain(self, timeout: float | None) -> None:
        """Hand one delivery to its consumer, or dispatch what arrived, waiting up to
        ``timeout`` seconds for at least one complete method; raise :class:`socket.timeout`
        when none came.

        One delivery a call, as the driver's ``drain_events`` (one method a call): the
        others read with it wait for the next calls.  Consumer callbacks run here, in the
        calling thread, after the reader role is given up: a callback that takes its time
        never holds up other threads' publishes, confirms or synchronous calls.
        """
        ready = self._ready
        if ready and self.deliver_ready():
            return
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            if ready:
                self.deliver_ready()
                return
            took = self._take_reader(deadline, lambda: bool(ready))
            if took == _NOT_TAKEN:
                if ready:
                    continue
                raise socket.timeout("timed out")
            try:
                # another reader may have finished the work between the check and the take
                dispatched = False if ready else self._read_some(deadline)
            finally:
                if took == _TOOK:
                    self._release_reader()
            if ready:
                self.deliver_ready()
                return
            if dispatched:
                return

    def deliver_ready(self) -> bool:
        """Hand the first delivery read and not handed out yet to its consumer; False when
        there was none (those of closed channels are dropped: the broker requeued them)."""
        ready = self._ready
        while ready:
            try:
                channel, args, message = ready.popleft()
            except IndexError:  # another thread took the last one
                return False
            if channel.connection is None or not channel.is_open or channel.is_closing:
                continue  # the channel closed: the broker requeued the message
            compat.deliver(channel, args, message)
            return True
        return False

    def has_ready(self) -> bool:
        """True when deliveries were read and not handed out yet."""
        return bool(self._ready)

    def take_ready(self, channel: Any, consumer_tag: str | None = None) -> list[tuple[Any, tuple[Any, ...], Any]]:
        """Remove and return, in order, the deliveries of ``channel`` (a driver channel;
        of its consumer ``consumer_tag`` only, when given) read and not handed out yet."""
        ready = self._ready
        keep, taken = [], []
        while ready:
            try:
                entry = ready.popleft()
            except IndexError:  # another thread took the last one
                break
            if entry[0] is channel and (consumer_tag is None or entry[1][0] == consumer_tag):
                taken.append(entry)
            else:
                keep.append(entry)
        ready.extendleft(reversed(keep))
        return taken

    def wait_inbound(self, deadline: float | None, done: Callable[[], bool]) -> None:
        """Make progress on incoming frames until ``done()`` or ``deadline`` (then
        :class:`socket.timeout`): read them, or let the thread that reads already do it."""
        while not done():
            took = self._take_reader(deadline, done)
            if took == _NOT_TAKEN:
                if done():
                    return
                raise socket.timeout("timed out")
            try:
                if not done():  # checked again: the last reader may have done it meanwhile
                    self._read_some(deadline)
            finally:
                if took == _TOOK:
                    self._release_reader()

    def blocking_read(self, timeout: float | None = None) -> Any:
        """The driver's wait for a reply: read and dispatch one frame, or return True once
        the thread that reads already has dispatched something (the caller checks its reply)."""
        if self._errors_for:
            error = self._errors_for.pop(threading.get_ident(), None)
            if error is not None:
                raise error
        mark = self._dispatched  # read first: a reply stashed after the claim below counts
        # the driver's drain_events calls this until it returns something true
        if self._unclaimed and self._claim_replies():
            return True
        if timeout is None:
            timeout = self._local.timeout
        if timeout is None:
            transport = compat.driver_transport(self)
            sock = None if transport is None else transport.sock
            if sock is not None:
                timeout = sock.gettimeout()
        deadline = None if timeout is None else monotonic() + timeout

        def progressed() -> bool:
            return self._dispatched != mark

        took = self._take_reader(deadline, progressed)
        if took == _NOT_TAKEN:
            if progressed():
                return True
            raise socket.timeout("timed out")
        try:
            if progressed():  # the last reader dispatched something meanwhile
                return True
            transport = self.buffered_transport
            result = self._on_frame(transport.read_frame(deadline=deadline))
            if result:
                self._dispatched += 1
            return result
        finally:
            if took == _TOOK:
                self._release_reader()

    def _on_frame(self, frame: tuple[int, int, bytes]) -> Any:
        """Dispatch one frame; True when it completed a method.

        Publisher confirms and deliveries, one per message each way, are decoded here
        directly; everything else goes through the driver's generic dispatch.
        """
        frame_type, channel_id, payload = frame
        if frame_type == 1:
            if payload.startswith(ACK_METHOD) and channel_id:
                # confirms are handled even while the channel closes: the publishes happened
                channel = self.channels.get(channel_id) if self.channels else None
                if channel is not None:
                    self.bytes_recv += 1
                    delivery_tag, bits = ACK_ARGS.unpack_from(payload, 4)
                    for callback in channel.events["basic_ack"]:
                        callback(delivery_tag, bool(bits & 1))
                    return True
            elif payload.startswith(DELIVER_METHOD) and channel_id:
                channel = self.channels.get(channel_id) if self.channels else None
                if channel is not None and not channel.is_closing:
                    self.bytes_recv += 1
                    self._deliveries[channel_id] = Content(channel, parse_deliver(payload))
                    return False
        elif self._deliveries and channel_id in self._deliveries:
            delivery = self._deliveries[channel_id]
            if self.channels.get(channel_id) is not delivery.channel:
                # the channel closed half-way and its number was reused: forget the fragment
                del self._deliveries[channel_id]
                return self.on_inbound_frame(frame)
            self.bytes_recv += 1
            if not delivery.add(frame_type, payload, channel_id):
                return False
            del self._deliveries[channel_id]
            message = amqp.Message(delivery.body())
            message.properties = delivery.properties
            self._ready.append((delivery.channel, delivery.args, message))
            return True
        return self.on_inbound_frame(frame)

    def on_inbound_method(self, channel_id: int, method_sig: tuple[int, int], payload: bytes, content: Any) -> Any:
        channels = self.channels
        if channels is None:
            raise amqp_errors.RecoverableConnectionError("connection already closed")
        channel = channels.get(channel_id)
        if channel is None:
            # a late confirm or return for a channel closed meanwhile: nothing waits for it
            logger.debug("dropped %r for channel %s, which is closed", method_sig, channel_id)
            return None
        if channel_id and channel.is_closing and compat.dispatch_while_closing(channel, method_sig, payload, content):
            return None
        if method_sig == spec.Channel.Close and channel_id:
            waiter = self.rpc_threads.get(channel_id)
            if waiter is not None and waiter != threading.get_ident():
                # the broker closed the channel over another thread's call: the error is
                # that thread's to raise (the driver would raise it here, in the reader)
                try:
                    return channel.dispatch_method(method_sig, payload, content)
                except amqp_errors.ChannelError as exc:
                    self._errors_for[waiter] = exc
                    return None
        if channel_id in self.rpc_threads and not compat.waits_for(channel, method_sig):
            # a reply read by another thread after its caller wrote the request but before
            # it started waiting (the driver registers the wait after the write)
            self._unclaimed.append((monotonic(), channel, method_sig, payload, content))
            return None
        return channel.dispatch_method(method_sig, payload, content)

    def _claim_replies(self) -> bool:
        """Dispatch the unclaimed replies that a caller now waits for; True if any."""
        claimed = False
        now = monotonic()
        with self._io:
            entries = list(self._unclaimed)
            self._unclaimed.clear()
            for entry in entries:
                arrived, channel, method_sig, _, _ = entry
                if now - arrived > UNCLAIMED_REPLY_TTL or channel.connection is None:
                    continue
                if compat.waits_for(channel, method_sig):
                    claimed = True
                    ready = entry
                    break
                self._unclaimed.append(entry)
            else:
                return False
            for entry in entries[entries.index(ready) + 1 :]:
                self._unclaimed.append(entry)
        _, channel, method_sig, payload, content = ready
        channel.dispatch_method(method_sig, payload, content)
        return claimed

    def reply_timeout(self, timeout: float) -> Any:
        """Context: the driver's waits for replies in this thread give up after ``timeout`` s."""
        return _ReplyTimeout(self._local, timeout)

    def check_inbound(self) -> None:
        """Called by every publish: handle what the broker sent meanwhile, on the first
        publish after a pause and on every :data:`INBOUND_CHECK_EVERY` th of a burst."""
        now = monotonic()
        self._publishes_unchecked += 1
        if self._publishes_unchecked >= INBOUND_CHECK_EVERY or now - self._last_publish >= INBOUND_CHECK_IDLE:
            self._publishes_unchecked = 0
            self.drain_nowait()
        self._last_publish = now

    def drain_nowait(self) -> None:
        """Handle what the broker sent already (confirms, blocks, channel closes, returns)
        without waiting, unless another thread is reading (it handles them).  Deliveries
        are queued for ``drain_events``, so no consumer callback runs inside a publish."""
        transport = compat.driver_transport(self)
        if self._reader is not None or transport is None or not transport.connected:
            return
        with self._io:
            if self._reader is not None or self._queue:
                return
            self._reader = threading.get_ident()
        try:
            if not transport.frame_ready():
                if not transport.socket_readable(0):
                    return
                try:
                    transport.fill(monotonic() + 0.001)
                except socket.timeout:
                    return
            self._dispatch_depth += 1
            try:
                on_frame = self._on_frame
                frame = transport.buffered_frame()
                while frame is not None:
                    on_frame(frame)
                    frame = transport.buffered_frame()
            finally:
                self._dispatch_depth -= 1
                self._dispatched += 1
        finally:
            self._release_reader()

    def settle(self) -> None:
        """Wait until the broker confirmed every earlier publish of this connection, so a
        count or a get that follows sees them (RabbitMQ routes publishes asynchronously)."""
        for channel in list(self.unsettled):
            channel.settle()

    def _heartbeat_slice(self, deadline: float | None) -> float:
        # tick (send ours, check theirs) often enough that a long wait never starves either side
        now = monotonic()
        interval = max(self.heartbeat / 4.0, 0.05)
        if now >= self._next_heartbeat_tick:
            self.heartbeat_tick(rate=2)
            self._next_heartbeat_tick = now + interval
        slice_end = now + interval
        return slice_end if deadline is None else min(deadline, slice_end)
