"""The driver connection: py-amqp's, with buffered reads, deadline-bounded draining, fast
paths for the two frames that come once per message, and the broker's blocked reason."""

from __future__ import annotations

import logging
import socket
from time import monotonic
from typing import TYPE_CHECKING, Any

import amqp
from amqp import exceptions as amqp_errors
from amqp import spec
from amqp.serialization import decode_properties_basic

from .framing import (
    ACK_ARGS,
    ACK_METHOD,
    CONTENT_HEADER,
    DELIVER_METHOD,
    BufferedFrames,
    TCPSocket,
    TLSSocket,
    parse_deliver,
)

if TYPE_CHECKING:
    import ssl

    from .channel import Channel

__all__ = ["AMQPConnection"]

logger = logging.getLogger(__name__)

#: a publish looks for incoming frames (confirms, connection.blocked, channel errors) once
#: per this many publishes; the first publish always looks
INBOUND_CHECK_EVERY = 8


class _Delivery:
    """A ``basic.deliver`` whose content frames are still arriving."""

    __slots__ = ("channel", "args", "properties", "size", "chunks", "received")

    def __init__(self, channel: Any, args: tuple[str, int, bool, str, str]) -> None:
        self.channel = channel
        self.args = args
        self.properties: dict[str, Any] = {}
        self.size = 0
        self.chunks: list[bytes] = []
        self.received = 0


class AMQPConnection(amqp.Connection):  # type: ignore[misc]
    """py-amqp's connection with buffered reads, deadline-bounded draining and the reason a
    broker gives when it blocks the connection.

    This is ``Connection.connection`` for AMQP URLs; ``client`` is the
    :class:`kombu_like.Connection` it belongs to.
    """

    # the driver drops the reason text of connection.blocked; parse it
    _METHODS = {**amqp.Connection._METHODS, spec.Connection.Blocked: spec.method(spec.Connection.Blocked, "s")}

    def __init__(self, *args: Any, client: Any = None, ssl_context: ssl.SSLContext | None = None,
                 server_hostname: str | None = None, **kwargs: Any) -> None:
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
        self._deliveries: dict[int, _Delivery] = {}
        self._publishes_unchecked = INBOUND_CHECK_EVERY
        super().__init__(*args, **kwargs)

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
        options = dict(connect_timeout=connect_timeout, read_timeout=read_timeout,
                       write_timeout=write_timeout, socket_settings=socket_settings)
        if not ssl and self._ssl_context is None:
            return TCPSocket(host, **options)
        transport = TLSSocket(host, ssl=ssl if isinstance(ssl, dict) else {}, **options)
        transport.ssl_context = self._ssl_context
        transport.server_hostname = self._server_hostname
        return transport

    @property
    def buffered_transport(self) -> BufferedFrames:
        """The socket transport; raises the driver's connection error once closed.

        (The driver's own ``transport`` property would silently reconnect.)
        """
        transport = self._transport
        if transport is None or not transport.connected:
            raise amqp_errors.RecoverableConnectionError("connection is closed")
        return transport  # type: ignore[no-any-return]

    @property
    def is_open(self) -> bool:
        transport = self._transport
        return transport is not None and bool(transport.connected)

    def _on_blocked(self, reason: str = "") -> Any:
        self.blocked_reason = reason or "no reason given"
        logger.warning("broker blocked the connection: %s; publishing stalls until it is unblocked",
                       self.blocked_reason)
        if self.on_blocked:
            return self.on_blocked(self.blocked_reason)
        return None

    def _on_unblocked(self) -> Any:
        self.blocked_reason = None
        logger.info("broker unblocked the connection")
        if self.on_unblocked:
            return self.on_unblocked()
        return None

    def drain(self, timeout: float | None) -> None:
        """Dispatch every buffered frame, waiting up to ``timeout`` seconds for at least one
        complete method; raise :class:`socket.timeout` when none came."""
        transport = self.buffered_transport
        deadline = None if timeout is None else monotonic() + timeout
        on_frame = self._on_frame
        dispatched = False
        while True:
            if transport.frame_ready():
                self._dispatch_depth += 1
                try:
                    while transport.frame_ready():
                        if on_frame(transport.read_frame()):
                            dispatched = True
                finally:
                    self._dispatch_depth -= 1
            if dispatched:
                return
            wait_until = deadline
            if self.heartbeat:
                wait_until = self._heartbeat_slice(deadline)
            try:
                transport._fill(wait_until)
            except socket.timeout:
                if deadline is not None and monotonic() >= deadline:
                    raise
            transport = self.buffered_transport

    def blocking_read(self, timeout: float | None = None) -> Any:
        """Read and dispatch one frame (the driver's waits for replies come through here,
        so a delivery started by :meth:`drain` is finished by the same decoder)."""
        transport = self.buffered_transport
        with transport.having_timeout(timeout):
            frame = transport.read_frame()
        return self._on_frame(frame)

    def _on_frame(self, frame: tuple[int, int, bytes]) -> Any:
        """Dispatch one frame; True when it completed a method.

        Publisher confirms and deliveries, one per message each way, are decoded here
        directly; everything else goes through the driver's generic dispatch.
        """
        frame_type, channel_id, payload = frame
        if frame_type == 1:
            if payload.startswith(ACK_METHOD) and channel_id:
                channel = self.channels.get(channel_id) if self.channels else None
                if channel is not None and not channel.is_closing:
                    self.bytes_recv += 1
                    delivery_tag, bits = ACK_ARGS.unpack_from(payload, 4)
                    for callback in channel.events["basic_ack"]:
                        callback(delivery_tag, bool(bits & 1))
                    return True
            elif payload.startswith(DELIVER_METHOD) and channel_id:
                channel = self.channels.get(channel_id) if self.channels else None
                if channel is not None and not channel.is_closing:
                    self.bytes_recv += 1
                    self._deliveries[channel_id] = _Delivery(channel, parse_deliver(payload))
                    return False
        elif self._deliveries and channel_id in self._deliveries:
            delivery = self._deliveries[channel_id]
            if self.channels.get(channel_id) is not delivery.channel:
                # the channel closed half-way and its number was reused: forget the fragment
                del self._deliveries[channel_id]
                return self.on_inbound_frame(frame)
            self.bytes_recv += 1
            if frame_type == 2:
                delivery.size = CONTENT_HEADER.unpack_from(payload, 0)[2]
                delivery.properties = decode_properties_basic(payload, 12)[0]
            elif frame_type == 3:
                delivery.chunks.append(payload)
                delivery.received += len(payload)
            else:
                raise amqp_errors.UnexpectedFrame(f"frame type {frame_type} inside a delivery on channel {channel_id}")
            if delivery.received < delivery.size:
                return False
            del self._deliveries[channel_id]
            chunks = delivery.chunks
            message = amqp.Message(chunks[0] if len(chunks) == 1 else b"".join(chunks))  # b"" when empty
            message.properties = delivery.properties
            delivery.channel._on_basic_deliver(*delivery.args, message)
            return True
        return self.on_inbound_frame(frame)

    def check_inbound(self) -> None:
        """Called by every publish: now and then handle what the broker sent meanwhile."""
        self._publishes_unchecked += 1
        if self._publishes_unchecked >= INBOUND_CHECK_EVERY:
            self._publishes_unchecked = 0
            self.drain_nowait()

    def drain_nowait(self) -> None:
        """Handle what the broker sent already (confirms, blocks, channel closes, returns)
        without waiting.  Deliveries are left for ``drain_events``, so no consumer callback
        runs inside a publish; skipped while frames are being dispatched further up."""
        transport = self._transport
        if self._dispatch_depth or transport is None or not transport.connected:
            return
        if not transport.frame_ready():
            if not transport.socket_readable(0):
                return
            try:
                transport._fill(monotonic() + 0.001)
            except socket.timeout:
                return
        self._dispatch_depth += 1
        try:
            on_frame = self._on_frame
            while transport.frame_ready() and not transport.delivery_next():
                on_frame(transport.read_frame())
        finally:
            self._dispatch_depth -= 1

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
