"""AMQP 0-9-1 for the asyncio API: one :class:`asyncio.Protocol` per connection, no thread.

The wire is the blocking transport's: frames are cut by :func:`.framing.split_frame`,
messages assembled by :class:`.framing.Content`, publishes encoded by
:func:`.framing.publish_frames`, method arguments encoded and decoded by the driver's code
(:mod:`.compat`), options and errors taken and translated by the blocking
:class:`~kombu_like.transport.amqp.Transport`.  Only the waiting is asyncio's.

Every write is one call of whole frames to the asyncio transport, which buffers it whole:
a cancelled task never leaves half a frame behind.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import deque
from typing import TYPE_CHECKING, Any, NoReturn

from amqp import exceptions as amqp_errors
from amqp import spec

from ...aio.hub import bounded
from ...exceptions import ConnectionError, KombuError
from . import compat
from .aio_channel import AsyncChannel
from .framing import FRAME_HEADER, MAX_FRAME_SIZE, METHOD_SIG, method_frame, split_frame

if TYPE_CHECKING:
    from ...aio.connection import Connection
    from ...connection import Connection as SyncConnection
    from . import Transport

__all__ = ["AMQPDriver", "AMQPProtocol"]

logger = logging.getLogger(__name__)

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
#: seconds a close waits for the broker's close-ok
CLOSE_TIMEOUT = 3.0
HEARTBEAT_FRAME = FRAME_HEADER.pack(8, 0, 0) + b"\xce"
#: bytes of frames that are sent at once rather than with the rest of the loop's round
WRITE_BATCH = 256 * 1024


class AMQPProtocol(asyncio.Protocol):
    """The byte stream of one AMQP connection: frames in, frames out."""

    def __init__(self, driver: AMQPDriver) -> None:
        self.driver = driver
        self.transport: Transport = driver.transport
        #: the blocking Connection (``client``): options, declaration cache
        self.client = driver.sync
        self.loop = asyncio.get_running_loop()
        self.stream: asyncio.Transport | None = None
        self._buffer = b""
        self.frame_max = 131072
        self.max_frame_size = MAX_FRAME_SIZE
        self.channel_max = 2047
        self.heartbeat = 0.0
        self.channels: dict[int, AsyncChannel] = {}
        self.deleted_queues: set[str] = set()
        self.server_properties: dict[str, Any] = {}
        #: connection-level answers awaited (handshake, close), in order
        self._replies: deque[tuple[frozenset[tuple[int, int]], asyncio.Future[Any]]] = deque()
        self._writable = asyncio.Event()
        self._writable.set()
        self._lost: BaseException | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        self._received = 0
        self._checked = -1
        self._silent_ticks = 0
        #: frames written this round of the loop, sent together by :meth:`flush`
        self._out: list[bytes] = []
        self._out_size = 0
        self._flush_scheduled = False
        self.blocked_reason: str | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.stream = transport  # type: ignore[assignment]
        # expected before the header goes: the broker's answer may come in the next read
        self._started = self._expect(spec.Connection.Start)
        transport.write(PROTOCOL_HEADER)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self._received += 1
        buffer = self._buffer + data if self._buffer else data
        pos = 0
        try:
            while True:
                frame = split_frame(buffer, pos, self.max_frame_size)
                if frame is None:
                    break
                frame_type, channel_id, payload, pos = frame
                if channel_id:
                    channel = self.channels.get(channel_id)
                    if channel is not None:
                        channel.on_frame(frame_type, payload)
                elif frame_type == 1:
                    self._on_connection_method(payload)
        except Exception as exc:  # out of step, or a broken frame: nothing after it is reliable
            self._buffer = b""
            self._fail(exc)
            if self.stream is not None:
                self.stream.abort()
            return
        self._buffer = buffer[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or amqp_errors.RecoverableConnectionError("the broker closed the connection"))

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- writing ------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._lost is None and self.stream is not None and not self.stream.is_closing()

    def write(self, data: bytes) -> None:
        """Whole frames, in one call.  They go to the asyncio transport (which keeps them
        whole) with the others of this round of the loop, in one system call, or at once
        when :data:`WRITE_BATCH` bytes wait."""
        if not self.is_open:
            self._raise_closed()
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= WRITE_BATCH:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def send(self, data: bytes) -> None:
        """Whole frames, handed to the asyncio transport now (behind what this round wrote
        before them), with no flush left for the round: for a writer that waits for the
        broker's answer to them."""
        if self._out:
            self.write(data)
            self.flush()
        elif self.is_open:
            self.stream.write(data)  # type: ignore[union-attr]
        else:
            self._raise_closed()

    def _raise_closed(self) -> NoReturn:
        cause = self._lost or amqp_errors.RecoverableConnectionError("connection is closed")
        raise self.transport.translate_error(cause) from cause

    def flush(self) -> None:
        """Hand what was written to the asyncio transport."""
        self._flush_scheduled = False
        if not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        if self.stream is not None and not self.stream.is_closing():
            self.stream.write(data)

    def backlog(self) -> Any:
        """``None`` while the write buffer has room; else the awaitable of :meth:`drain`."""
        if self._writable.is_set() and self._lost is None:
            return None
        return self.drain()

    async def drain(self) -> None:
        """Wait while the write buffer is above its limit (the broker reads slower than we write)."""
        if not self._writable.is_set():
            await self._writable.wait()
        if self._lost is not None:
            raise self.transport.translate_error(self._lost) from self._lost

    def _write_method(self, method_sig: tuple[int, int], argsig: str, values: Any) -> None:
        args = compat.dumps(argsig, values) if argsig else b""
        self.write(method_frame(0, METHOD_SIG.pack(*method_sig), args))

    def _expect(self, *method_sigs: tuple[int, int]) -> asyncio.Future[Any]:
        future = self.loop.create_future()
        self._replies.append((frozenset(method_sigs), future))
        return future

    # -- the connection's own methods --------------------------------------------------------
    async def handshake(self, options: dict[str, Any]) -> None:
        """Start, tune and open the connection (within the caller's timeout)."""
        start = await self._started
        self.server_properties = start[2]
        offered = start[2].get("capabilities") or {}
        properties = dict(options["client_properties"])
        properties["capabilities"] = {
            name: wanted for name, wanted in compat.negotiate_capabilities().items() if offered.get(name)
        }
        mechanism, response = compat.login_response(options["login_method"], options["userid"], options["password"])
        tune = self._expect(spec.Connection.Tune)
        self._write_method(spec.Connection.StartOk, "FsSs", (properties, mechanism, response, "en_US"))
        channel_max, frame_max, server_heartbeat = await tune
        wanted_frame_max = int(options.get("frame_max") or 131072)
        self.frame_max = min(frame_max, wanted_frame_max) if frame_max else wanted_frame_max
        self.channel_max = channel_max or 65535
        heartbeat = int(options.get("heartbeat") or 0)
        self.heartbeat = float(min(heartbeat, server_heartbeat) if server_heartbeat and heartbeat else heartbeat)
        self._write_method(spec.Connection.TuneOk, "BlB", (self.channel_max, self.frame_max, int(self.heartbeat)))
        opened = self._expect(spec.Connection.OpenOk)
        self._write_method(spec.Connection.Open, "ssb", (options["virtual_host"], "", False))
        await opened
        self.max_frame_size = self.frame_max
        if self.heartbeat:
            self._heartbeat = self.loop.call_later(self.heartbeat / 2, self._heartbeat_tick)

    def _on_connection_method(self, payload: bytes) -> None:
        method_sig = METHOD_SIG.unpack_from(payload, 0)
        argsig = compat.inbound_args(method_sig)
        args = compat.loads(argsig, payload, 4) if argsig else []
        if method_sig == spec.Connection.Close:
            reply_code, reply_text, class_id, method_id = args
            self._write_method(spec.Connection.CloseOk, "", ())
            self.flush()
            error = amqp_errors.error_for_code(
                reply_code, reply_text, (class_id, method_id), amqp_errors.ConnectionError
            )
            self._fail(error)
            if self.stream is not None:
                self.stream.close()
        elif method_sig == spec.Connection.Blocked:
            self.blocked_reason = str(args[0]) if args else "no reason given"
            logger.warning("broker blocked the connection: %s", self.blocked_reason)
        elif method_sig == spec.Connection.Unblocked:
            self.blocked_reason = None
        elif self._replies and method_sig in self._replies[0][0]:
            _, future = self._replies.popleft()
            if not future.done():
                future.set_result(args)

    def _heartbeat_tick(self) -> None:
        """Every half interval: send a heartbeat; after two intervals without a byte from
        the broker, give the connection up."""
        if not self.is_open:
            return
        if self._received == self._checked:
            self._silent_ticks += 1
            if self._silent_ticks >= 4:
                self._fail(amqp_errors.ConnectionForced("Too many heartbeats missed"))
                if self.stream is not None:
                    self.stream.abort()
                return
        else:
            self._checked = self._received
            self._silent_ticks = 0
        self.write(HEARTBEAT_FRAME)
        self._heartbeat = self.loop.call_later(self.heartbeat / 2, self._heartbeat_tick)

    # -- channels ------------------------------------------------------------------------
    async def open_channel(self) -> AsyncChannel:
        for channel_id in range(1, self.channel_max + 1):
            if channel_id not in self.channels:
                break
        else:
            raise ConnectionError(f"all {self.channel_max} channels of the connection are open")
        channel = AsyncChannel(self, channel_id)
        self.channels[channel_id] = channel
        try:
            return await channel.open()
        except BaseException:
            self.channels.pop(channel_id, None)
            raise

    def channel_error(self, channel: AsyncChannel, error: BaseException) -> None:
        """The broker closed ``channel`` for an error; the default channel is reopened."""
        logger.debug("channel %s closed by the broker: %s", channel.channel_id, error)
        client = self.driver.client
        if client._default_channel is channel and self.is_open:
            # code that binds to conn.default_channel keeps working, as on the blocking API
            replacement = AsyncChannel(self, channel.channel_id)
            self.channels[channel.channel_id] = replacement
            client._default_channel = replacement
            replacement.start().add_done_callback(_retrieve)

    def unsettled(self) -> bool:
        """True while a publish of this connection waits for its confirm."""
        return any(channel.unsettled() for channel in self.channels.values())

    async def settle(self) -> None:
        """Wait (at most ``confirm_timeout``) until earlier publishes are confirmed."""
        for channel in list(self.channels.values()):
            if channel.unsettled():
                await channel.settle()

    # -- closing -------------------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        if self._lost is not None:
            return
        self._lost = exc
        self._writable.set()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        error = self.transport.translate_error(exc)
        if error is not exc and error.__cause__ is None:
            error.__cause__ = exc
        replies, self._replies = self._replies, deque()
        for _, future in replies:
            if not future.done():
                future.set_exception(error)
        for channel in list(self.channels.values()):
            channel._forget(error)
        self.channels.clear()
        if not self.driver.closing:
            self.driver.client._on_driver_error(error)

    async def close(self) -> None:
        """Say goodbye (after earlier publishes' confirms, each wait bounded); the socket
        is closed whatever happens, a cancellation of the closing task included."""
        try:
            if self.is_open:
                for channel in list(self.channels.values()):
                    await channel._settle_before_close()
            if self.is_open:
                closed = self._expect(spec.Connection.CloseOk)
                self._write_method(spec.Connection.Close, "BsBB", (200, "", 0, 0))
                self.flush()
                await bounded(closed, CLOSE_TIMEOUT, lambda: socket.timeout("no close-ok from the broker"))
        except (KombuError, OSError, amqp_errors.AMQPError) as exc:
            logger.debug("closing the connection: %r", exc)
        finally:
            self.flush()
            self._fail(amqp_errors.RecoverableConnectionError("connection is closed"))
            if self.stream is not None:
                self.stream.close()


def _server_hostname(options: dict[str, Any], host: str) -> str | None:
    """The name the broker's certificate is checked against: given, else the URL's host."""
    ssl_option = options["ssl"]
    if isinstance(ssl_option, dict) and "server_hostname" in ssl_option:
        return ssl_option["server_hostname"]  # type: ignore[no-any-return]
    return options["server_hostname"] or host


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.debug("reopening a channel: %r", future.exception())


class AMQPDriver:
    """Connects an asyncio :class:`~kombu_like.aio.Connection` to an AMQP broker."""

    def __init__(self, client: Connection, sync: SyncConnection) -> None:
        self.client = client
        self.sync = sync
        self.transport: Transport = sync.transport  # type: ignore[assignment]
        self.protocol: AMQPProtocol | None = None
        self.closing = False

    @property
    def is_open(self) -> bool:
        return self.protocol is not None and self.protocol.is_open

    async def connect(self) -> None:
        transport = self.transport
        options = transport._connection_options()
        host, _, port = options["host"].rpartition(":")
        host = host.strip("[]")
        ssl_option = options["ssl"]
        context: ssl.SSLContext | None = options["ssl_context"]
        if ssl_option and context is None:
            context = ssl.create_default_context()
            if isinstance(ssl_option, dict):
                if ssl_option.get("ca_certs"):
                    context.load_verify_locations(ssl_option["ca_certs"])
                if ssl_option.get("certfile"):
                    context.load_cert_chain(ssl_option["certfile"], ssl_option.get("keyfile"))
                if ssl_option.get("cert_reqs") == ssl.CERT_NONE:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
        loop = asyncio.get_running_loop()
        timeout = float(options["connect_timeout"] or 5)
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: AMQPProtocol(self),
                    host,
                    int(port),
                    ssl=context,
                    server_hostname=_server_hostname(options, host) if context else None,
                ),
                timeout,
            )
            self.protocol = protocol
            await asyncio.wait_for(protocol.handshake(options), timeout)
        except asyncio.TimeoutError:
            await self._abort()
            raise transport.translate_error(socket.timeout("timed out connecting")) from None
        except (OSError, amqp_errors.AMQPError) as exc:
            await self._abort()
            raise transport.translate_error(exc) from exc
        except BaseException:
            await self._abort()
            raise

    async def _abort(self) -> None:
        protocol, self.protocol = self.protocol, None
        if protocol is not None and protocol.stream is not None:
            self.closing = True
            protocol.stream.abort()

    async def channel(self) -> AsyncChannel:
        protocol = self.protocol
        if protocol is None or not protocol.is_open:
            raise ConnectionError("connection is closed")
        return await protocol.open_channel()

    async def close(self) -> None:
        self.closing = True
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            await protocol.close()
