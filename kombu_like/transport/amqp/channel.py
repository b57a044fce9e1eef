"""The AMQP channel: the seam's channel interface mapped onto RabbitMQ methods."""

from __future__ import annotations

import functools
import logging
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from time import monotonic
from typing import TYPE_CHECKING, Any

import amqp
from amqp import exceptions as amqp_errors
from amqp import spec

from ...exceptions import (
    ChannelError,
    ConnectionTimeout,
    ConsumerCancelled,
    EncodeError,
    KombuError,
    MessageNacked,
    MessageReturned,
)
from ...message import Message, received
from .. import base
from ..base import queue_declare_ok_t, time_left
from . import compat
from .confirms import Confirms
from .framing import (
    ACK_ARGS,
    ACK_METHOD,
    DRIVER_ERRORS,
    ENCODING_ERRORS,
    NACK_METHOD,
    REJECT_METHOD,
    WRITE_CHUNK,
    method_frame,
    publish_frames,
)

if TYPE_CHECKING:
    from . import Transport
    from .connection import AMQPConnection

__all__ = ["Channel"]

logger = logging.getLogger(__name__)

#: prefix of the names RabbitMQ gives queues declared with an empty name
SERVER_NAMED_PREFIX = "amq.gen-"
#: seconds ``close()`` waits for the confirms of earlier publishes
CLOSE_SETTLE_TIMEOUT = 3.0
#: errors that closing a channel swallows: the goal is reached either way
_CLOSE_ERRORS: tuple[type[BaseException], ...] = (*DRIVER_ERRORS, KombuError)

#: driver errors of channel methods are translated at the seam (base.driver_seam)
_seam = base.driver_seam(DRIVER_ERRORS)


class Channel(base.Channel):
    """An AMQP channel: the seam's channel interface mapped onto RabbitMQ methods.

    Synchronous methods wait at most ``rpc_timeout`` seconds for their reply.  When the
    broker closes the channel for an error (404, 406, 403, ...) the error is raised as the
    library's exception and the channel is reopened, so it (and the connection) stay
    usable; consumers it had are gone.
    """

    Message = Message

    def __init__(self, connection: AMQPConnection, transport: Transport) -> None:
        self.connection = connection
        self.transport = transport
        self.events: dict[str, set[Callable[..., Any]]] = {"basic_return": set()}
        #: consumer tag -> queue name
        self.consumers: dict[str, str] = {}
        self._rpc_timeout = transport.rpc_timeout
        self._confirm_timeout = transport.confirm_timeout
        self._wait_each = transport.confirm_publish
        confirms_supported = bool((connection.server_capabilities or {}).get("publisher_confirms"))
        if self._wait_each and not confirms_supported:
            raise ChannelError("confirm_publish=True, but the broker does not support publisher confirms")
        self._confirms: Confirms | None = (
            Confirms() if self._wait_each or (transport.track_confirms and confirms_supported) else None
        )
        self._publish_args: dict[tuple[str, str, bool, bool], bytes] = {}
        self._closed = False
        self._rpc_lock = threading.RLock()
        #: mandatory publishes waiting for their confirm, by (exchange, routing key), and
        #: the returns that came for them while no on_return handler was set
        self._returns_lock = threading.Lock()
        self._return_waiters: dict[tuple[str, str], int] = {}
        self._returns: list[tuple[tuple[str, str], MessageReturned]] = []
        raw = amqp.Channel(connection, None, auto_decode=False)
        self._raw = raw
        compat.set_method_handler(raw, spec.Basic.Return, self._on_return)
        raw.events["basic_ack"].add(self._on_confirm_ack)
        raw.events["basic_nack"].add(self._on_confirm_nack)

        def before_revive() -> None:
            # the broker closed the channel for an error, and its consumers with it; the
            # driver reopens the channel
            self.consumers.clear()
            raw.callbacks.clear()
            raw.cancel_callbacks.clear()
            raw.no_ack_consumers.clear()
            if self._confirms is not None:
                self._confirms = Confirms()
            self.connection.unsettled.discard(self)

        compat.wrap_revive(raw, before_revive)
        try:
            self._rpc(raw.open)
            if self._confirms is not None:
                self._select_confirms()
        except BaseException:
            if raw.channel_id is not None:
                raw.collect()
            raise

    # -- state ------------------------------------------------------------------------
    @property
    def channel_id(self) -> int | None:
        return self._raw.channel_id  # type: ignore[no-any-return]

    # read-only here: the broker and the connection decide it, not the channel's owner
    @property
    def is_open(self) -> bool:  # type: ignore[override]
        """True until closed by :meth:`close` or with its connection."""
        return not self._closed and bool(self._raw.is_open) and self.connection.is_open

    @property
    def no_ack_consumers(self) -> set[str]:
        return self._raw.no_ack_consumers  # type: ignore[no-any-return]

    @property
    def client(self) -> Any:
        return self.connection.client

    def _live(self) -> Any:
        raw = self._raw
        if self._closed or raw.connection is None:
            if not self.connection.is_open:
                raise amqp_errors.RecoverableConnectionError("connection is closed")
            raise ChannelError("channel is closed; open a new one with connection.channel()")
        return raw

    def _rpc(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a synchronous driver method, bounding the wait for its reply.

        One synchronous method at a time per channel: AMQP answers them in order, and the
        driver keeps one pending reply per method.
        """
        connection = self.connection
        connection.buffered_transport  # noqa: B018 - raises when the connection is closed
        with self._rpc_lock, connection.reply_timeout(time_left(self._rpc_timeout)):
            channel_id = self._raw.channel_id
            threads = connection.rpc_threads
            threads[channel_id] = threading.get_ident()
            try:
                return method(*args, **kwargs)
            finally:
                threads.pop(channel_id, None)

    def _unsupported_by_rabbitmq(self, what: str) -> None:
        # RabbitMQ answers these with 540 NOT_IMPLEMENTED, closing the whole connection
        if (self.connection.server_properties or {}).get("product") == "RabbitMQ":
            raise NotImplementedError(f"RabbitMQ does not implement {what}")

    def _send(self, method: bytes, args: bytes) -> None:
        """Write a method frame that expects no reply (ack, reject, nack)."""
        raw = self._live()
        connection = self.connection
        frame = method_frame(raw.channel_id, method, args)
        reader = connection.loop_reader
        if reader is None:
            connection.buffered_transport.write(frame)
        elif not reader.defer(frame):
            connection.buffered_transport.write(frame)
            reader.acks.written(frame)
        connection.bytes_sent += 1

    # -- exchanges ----------------------------------------------------------------------
    @_seam
    def exchange_declare(
        self,
        exchange: str = "",
        type: str = "direct",
        durable: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
        nowait: bool = False,
        passive: bool = False,
        **kwargs: Any,
    ) -> None:
        """Declare an exchange (``passive``: only check that it exists)."""
        raw = self._live()
        self._rpc(
            raw.exchange_declare,
            exchange,
            type,
            passive=passive,
            durable=durable,
            auto_delete=auto_delete,
            nowait=nowait,
            arguments=dict(arguments or {}),
        )

    @_seam
    def exchange_delete(self, exchange: str, if_unused: bool = False, nowait: bool = False, **kwargs: Any) -> None:
        raw = self._live()
        self._rpc(raw.exchange_delete, exchange, if_unused=if_unused, nowait=nowait)

    @_seam
    def exchange_bind(
        self,
        destination: str,
        source: str = "",
        routing_key: str = "",
        nowait: bool = False,
        arguments: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Route messages arriving at ``source`` to the exchange ``destination`` as well."""
        raw = self._live()
        self._rpc(
            raw.exchange_bind, destination, source, routing_key or "", nowait=nowait, arguments=dict(arguments or {})
        )

    @_seam
    def exchange_unbind(
        self,
        destination: str,
        source: str = "",
        routing_key: str = "",
        nowait: bool = False,
        arguments: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        raw = self._live()
        self._rpc(
            raw.exchange_unbind, destination, source, routing_key or "", nowait=nowait, arguments=dict(arguments or {})
        )

    # -- queues ---------------------------------------------------------------------
    @_seam
    def queue_declare(
        self,
        queue: str = "",
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
        nowait: bool = False,
        **kwargs: Any,
    ) -> queue_declare_ok_t | None:
        """Declare a queue; return its name, ready message count and consumer count.

        A server-named queue (``amq.gen-...``) can only be checked, not declared again by
        name: RabbitMQ refuses ``amq.*`` names, so redeclaring one declares it passively.
        """
        raw = self._live()
        if queue.startswith(SERVER_NAMED_PREFIX):
            passive = True
        if self.connection.unsettled:
            self.connection.settle()
        if not passive:
            self.connection.deleted_queues.discard(queue)
        ok = self._rpc(
            raw.queue_declare,
            queue,
            passive=passive,
            durable=durable,
            exclusive=exclusive,
            auto_delete=auto_delete,
            nowait=nowait,
            arguments=dict(arguments or {}),
        )
        if ok is None:  # nowait
            return None
        return queue_declare_ok_t(ok.queue, ok.message_count, ok.consumer_count)

    @_seam
    def queue_bind(
        self,
        queue: str,
        exchange: str = "",
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
        nowait: bool = False,
        **kwargs: Any,
    ) -> None:
        raw = self._live()
        self._rpc(raw.queue_bind, queue, exchange, routing_key or "", nowait=nowait, arguments=dict(arguments or {}))

    @_seam
    def queue_unbind(
        self,
        queue: str,
        exchange: str = "",
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
        nowait: bool = False,
        **kwargs: Any,
    ) -> None:
        raw = self._live()
        self._rpc(raw.queue_unbind, queue, exchange, routing_key or "", nowait=nowait, arguments=dict(arguments or {}))

    @_seam
    def queue_purge(self, queue: str, nowait: bool = False, **kwargs: Any) -> int:
        """Remove the ready messages of ``queue``; return how many."""
        raw = self._live()
        if self.connection.unsettled:
            self.connection.settle()
        return int(self._rpc(raw.queue_purge, queue, nowait=nowait) or 0)

    @_seam
    def queue_delete(
        self, queue: str, if_unused: bool = False, if_empty: bool = False, nowait: bool = False, **kwargs: Any
    ) -> int:
        """Delete ``queue``; return how many messages it held.  Consumers of it on this
        connection are cancelled quietly (those of other connections get ``ConsumerCancelled``)."""
        raw = self._live()
        if self.connection.unsettled:
            self.connection.settle()
        deleted = self.connection.deleted_queues
        if len(deleted) > 1024:
            deleted.clear()
        deleted.add(queue)
        return int(self._rpc(raw.queue_delete, queue, if_unused=if_unused, if_empty=if_empty, nowait=nowait) or 0)

    # -- publishing --------------------------------------------------------------------
    def prepare_message(
        self,
        body: Any,
        priority: int | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
        headers: dict[str, Any] | None = None,
        properties: dict[str, Any] | None = None,
    ) -> Any:
        """Build the driver's message: body plus AMQP basic properties."""
        values = dict(properties) if properties else {}
        if priority is not None or "priority" not in values:
            values["priority"] = priority
        timestamp = values.get("timestamp")
        if timestamp is not None and not isinstance(timestamp, int):
            # AMQP carries whole seconds; accept what Python code naturally passes
            values["timestamp"] = int(timestamp.timestamp() if isinstance(timestamp, datetime) else timestamp)
        return amqp.Message(
            body, content_type=content_type, content_encoding=content_encoding, application_headers=headers, **values
        )

    def _args_for(self, exchange: str | None, routing_key: str | None, mandatory: bool, immediate: bool) -> bytes:
        try:
            # the arguments as given are a key too: a publisher repeats the same ones
            return self._publish_args[exchange, routing_key, mandatory, immediate]  # type: ignore[index]
        except (KeyError, TypeError):
            pass
        key = (exchange or "", routing_key or "", bool(mandatory), bool(immediate))
        args = self._publish_args.get(key)
        if args is None:
            exchange_b, key_b = key[0].encode(), key[1].encode()
            for what, value in (("exchange name", exchange_b), ("routing key", key_b)):
                if len(value) > 255:
                    raise EncodeError(
                        f"AMQP allows at most 255 bytes for the {what}; got {len(value)}: {value[:40]!r}..."
                    )
            args = b"".join(
                (
                    b"\x00\x00",
                    bytes((len(exchange_b),)),
                    exchange_b,
                    bytes((len(key_b),)),
                    key_b,
                    bytes((key[2] | key[3] << 1,)),
                )
            )
            if len(self._publish_args) > 1024:
                self._publish_args.clear()
            self._publish_args[key] = args
        try:
            self._publish_args[exchange, routing_key, mandatory, immediate] = args  # type: ignore[index]
        except TypeError:  # an unhashable flag: looked up by the normalised key only
            pass
        return args

    def _frames(self, raw: Any, message: Any, args: bytes) -> bytes:
        try:
            return publish_frames(raw.channel_id, args, message, self.connection.frame_max)
        except ENCODING_ERRORS as exc:
            raise EncodeError(f"cannot encode the message for AMQP (headers or properties): {exc}") from exc

    def _write_counted(self, data: bytes, count: int, confirms: Confirms | None) -> tuple[int, int]:
        """Write publishes; number them for confirms in the same step, so the numbers
        follow the order in which the broker receives them, whichever thread wrote them."""
        connection = self.connection
        transport = connection.buffered_transport
        with transport.write_lock:
            if confirms is None:
                transport.write_held(data)
                connection.bytes_sent += 1
                return 0, 0
            # numbered before the write: the reading thread may see the ack before write returns
            if count == 1:
                first = last = confirms.sent_one()
            else:
                first, last = confirms.sent(count)
            try:
                transport.write_held(data)
            except BaseException:
                confirms.abandon(first, last)
                raise
            connection.bytes_sent += 1
            return first, last

    @_seam
    def basic_publish(
        self,
        message: Any,
        exchange: str = "",
        routing_key: str = "",
        mandatory: bool = False,
        immediate: bool = False,
        timeout: float | None = None,
        confirm_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        """Publish ``message``.  With publisher confirms on, wait for the broker's ack
        (raising :class:`MessageNacked` on a nack, :class:`ConnectionTimeout` when none comes)."""
        connection = self.connection
        if immediate:
            self._unsupported_by_rabbitmq("immediate=True (publish with mandatory=True instead)")
        # learn of confirms, blocks and channel errors promptly, even when only publishing
        connection.check_inbound()
        raw = self._live()
        confirms = self._confirms
        if confirms is not None and not compat.is_confirm_selected(raw):
            confirms = self._select_confirms()
        args = self._args_for(exchange, routing_key, mandatory, immediate)
        try:
            data = publish_frames(raw.channel_id, args, message, connection.frame_max)
        except ENCODING_ERRORS as exc:
            raise EncodeError(f"cannot encode the message for AMQP (headers or properties): {exc}") from exc
        if confirms is None or not (mandatory or self._wait_each):
            if timeout is None:
                self._write_counted(data, 1, confirms)
            else:
                self._write_publish(data, confirms, timeout)
            if confirms is not None:
                connection.unsettled.add(self)
            return
        # a mandatory message waits for its confirm too: RabbitMQ returns an unroutable
        # message before it confirms it, so the return is known when publish returns
        key = (exchange or "", routing_key or "")
        if mandatory:
            self._expect_return(key, 1)
        try:
            first, last = self._write_publish(data, confirms, timeout)
            self._wait_confirms(confirms, first, last, confirm_timeout, exchange, routing_key)
            if mandatory:
                self._raise_return(key)
        finally:
            if mandatory:
                self._expect_return(key, -1)

    def _write_publish(self, data: bytes, confirms: Confirms | None, timeout: float | None) -> tuple[int, int]:
        if timeout is None:
            return self._write_counted(data, 1, confirms)
        transport = self.connection.buffered_transport
        with transport.write_lock, transport.having_timeout(timeout):
            return self._write_counted(data, 1, confirms)

    def _expect_return(self, key: tuple[str, str], change: int) -> None:
        with self._returns_lock:
            count = self._return_waiters.get(key, 0) + change
            if count > 0:
                self._return_waiters[key] = count
            else:
                self._return_waiters.pop(key, None)
                self._returns = [item for item in self._returns if item[0] != key]

    def _raise_return(self, key: tuple[str, str]) -> None:
        with self._returns_lock:
            for index, (returned_key, exc) in enumerate(self._returns):
                if returned_key == key:
                    del self._returns[index]
                    raise exc

    @_seam
    def publish_batch(self, items: Sequence[tuple[Any, str, str, bool]]) -> None:
        """Publish ``(message, exchange, routing_key, mandatory)`` items with one socket
        write, and (with confirms) one wait for all of their acks."""
        if not items:
            return
        raw = self._live()
        confirms = self._confirms
        if confirms is not None and not compat.is_confirm_selected(raw):
            confirms = self._select_confirms()
        # encode everything first: a message that cannot be encoded fails the batch unsent
        chunks: list[tuple[bytes, int]] = []
        parts: list[bytes] = []
        size = 0
        for message, exchange, routing_key, mandatory in items:
            frames = self._frames(raw, message, self._args_for(exchange, routing_key, mandatory, False))
            parts.append(frames)
            size += len(frames)
            if size >= WRITE_CHUNK:
                chunks.append((b"".join(parts), len(parts)))
                parts, size = [], 0
        if parts:
            chunks.append((b"".join(parts), len(parts)))
        transport = self.connection.buffered_transport
        first = last = 0
        with transport.write_lock:  # the batch is not interleaved with other threads' publishes
            for data, count in chunks:
                start, last = self._write_counted(data, count, confirms)
                first = first or start
        if confirms is not None:
            if self._wait_each:
                _, exchange, routing_key, _ = items[-1]
                self._wait_confirms(confirms, first, last, None, exchange, routing_key)
            else:
                self.connection.unsettled.add(self)

    def _select_confirms(self) -> Confirms:
        raw = self._live()
        self._rpc(raw.confirm_select)
        compat.mark_confirm_selected(raw)
        self._confirms = Confirms()
        return self._confirms

    def _wait_confirms(
        self,
        confirms: Confirms,
        first: int,
        last: int,
        timeout: float | None,
        exchange: str,
        routing_key: str,
    ) -> None:
        limit = self._confirm_timeout if timeout is None else timeout
        what = f"to exchange {exchange or ''!r} with routing key {routing_key or ''!r}"
        count = last - first + 1
        plural = "s" if count != 1 else ""
        if not self._settle_until(confirms, last, limit, first):
            confirms.abandon(first, last)
            raise ConnectionTimeout(
                f"the broker did not confirm {count} message{plural} published {what} within {limit:g} s "
                f"(confirm_timeout); they may or may not have been stored"
            )
        nacked = confirms.take_nacked(first, last)
        if nacked:
            raise MessageNacked(
                f"the broker refused {len(nacked)} of {count} message{plural} published {what} "
                f"(basic.nack; it could not store them)"
            )

    def _settle_until(self, confirms: Confirms, last: int, limit: float, first: int = 1) -> bool:
        """Handle incoming frames until every publish up to ``last`` is confirmed; False
        when ``limit`` seconds passed first."""
        deadline = monotonic() + limit
        connection = self.connection

        def done() -> bool:
            return confirms.settled(last, first) or self._confirms is not confirms

        try:
            connection.wait_inbound(deadline, done)
        except socket.timeout:
            return False
        if self._confirms is not confirms:
            raise ChannelError("the channel was closed while waiting for publisher confirms")
        return True

    @_seam
    def settle(self) -> None:
        """Wait until the broker confirmed every earlier publish of this channel."""
        confirms = self._confirms
        if confirms is not None and not self._closed and not confirms.settled(confirms.next_seq - 1):
            if not self._settle_until(confirms, confirms.next_seq - 1, self._confirm_timeout):
                raise ConnectionTimeout(
                    f"the broker did not confirm earlier publishes of channel {self.channel_id} within "
                    f"{self._confirm_timeout:g} s (confirm_timeout)"
                )
        self.connection.unsettled.discard(self)

    def _on_confirm_ack(self, delivery_tag: int, multiple: bool) -> None:
        confirms = self._confirms
        if confirms is not None:
            confirms.resolve(delivery_tag, multiple, True)
            if not confirms.pending:
                self.connection.unsettled.discard(self)

    def _on_confirm_nack(self, delivery_tag: int, multiple: bool) -> None:
        confirms = self._confirms
        if confirms is None:
            return
        confirms.resolve(delivery_tag, multiple, False)
        if not confirms.pending:
            self.connection.unsettled.discard(self)
        refused = 0 if self._wait_each else confirms.take_all_nacked()
        if refused:
            # nobody waits for these acks: the log is the only place the loss can show
            logger.error(
                "the broker refused %d message(s) published on channel %s (basic.nack): they were not "
                "stored; transport_options={'confirm_publish': True} raises MessageNacked at publish time",
                refused,
                self.channel_id,
            )

    def _on_return(self, reply_code: int, reply_text: str, exchange: str, routing_key: str, raw_message: Any) -> None:
        raw_message.channel = self._raw
        message, exc = returned(self, raw_message, reply_code, reply_text, exchange, routing_key)
        handlers = self.events["basic_return"]
        if not handlers:
            key = (exchange or "", routing_key or "")
            with self._returns_lock:
                if key in self._return_waiters:
                    # the publishing thread raises it from publish (maybe not this thread)
                    self._returns.append((key, exc))
                    return
            raise exc
        for handler in list(handlers):
            handler(exc, exchange, routing_key, message)

    # -- consuming -------------------------------------------------------------------
    @_seam
    def basic_consume(
        self,
        queue: str = "",
        no_ack: bool = False,
        callback: Callable[[Any], Any] | None = None,
        consumer_tag: str | None = None,
        nowait: bool = False,
        arguments: Mapping[str, Any] | None = None,
        on_cancel: Callable[[str], Any] | None = None,
        exclusive: bool = False,
        no_local: bool = False,
        **kwargs: Any,
    ) -> str:
        """Start a consumer; ``callback`` receives each raw message during ``drain_events``.

        When the broker cancels the consumer (its queue was deleted, its node went down)
        ``on_cancel(tag)`` is called, or without one :class:`ConsumerCancelled` is raised
        from ``drain_events`` naming the queue.
        """
        raw = self._live()
        self.connection.deleted_queues.discard(queue)
        tag = self._rpc(
            raw.basic_consume,
            queue,
            consumer_tag or "",
            no_local=no_local,
            no_ack=no_ack,
            exclusive=exclusive,
            nowait=nowait,
            callback=callback,
            arguments=dict(arguments or {}),
            on_cancel=functools.partial(self._on_broker_cancel, queue, on_cancel),
        )
        self.consumers[tag] = queue
        return str(tag)

    def _on_broker_cancel(self, queue: str, on_cancel: Callable[[str], Any] | None, consumer_tag: str) -> Any:
        self.consumers.pop(consumer_tag, None)
        if on_cancel is not None:
            return on_cancel(consumer_tag)
        if queue in self.connection.deleted_queues:
            logger.debug("consumer %r ended: this connection deleted its queue %r", consumer_tag, queue)
            return None
        raise ConsumerCancelled(
            f"the broker cancelled consumer {consumer_tag!r} of queue {queue!r} (the queue was deleted or "
            f"became unavailable); declare the queue and consume again, or let Connection.ensure reconnect"
        )

    @_seam
    def basic_cancel(self, consumer_tag: str, nowait: bool = False, **kwargs: Any) -> None:
        """Stop the consumer ``consumer_tag`` (its delivered, unacked messages stay unacked)."""
        self.consumers.pop(consumer_tag, None)
        raw = self._raw
        if self._closed or raw.connection is None or not self.connection.is_open:
            return  # the consumer went with its channel
        no_ack = consumer_tag in raw.no_ack_consumers
        self._rpc(raw.basic_cancel, consumer_tag, nowait=nowait)
        # read for it and not handed out yet (drain_events hands out one a call): it gets
        # none of them any more; they go back to the queue, in order
        left = self.connection.take_ready(raw, consumer_tag)
        if not left:
            return
        if no_ack:
            logger.warning(
                "consumer %r cancelled with %d no-ack message(s) received but not handed out yet; "
                "the broker forgot them on delivery",
                consumer_tag,
                len(left),
            )
            return
        for _, args, _ in left:
            self.basic_reject(args[1], requeue=True)

    @_seam
    def basic_get(self, queue: str = "", no_ack: bool = False, **kwargs: Any) -> Any:
        """Fetch one message without consuming; ``None`` when the queue is empty."""
        raw = self._live()
        if self.connection.unsettled:
            self.connection.settle()
        return self._rpc(raw.basic_get, queue, no_ack=no_ack)

    @_seam
    def basic_ack(self, delivery_tag: int, multiple: bool = False, **kwargs: Any) -> None:
        self._send(ACK_METHOD, ACK_ARGS.pack(delivery_tag, 1 if multiple else 0))

    @_seam
    def basic_reject(self, delivery_tag: int, requeue: bool = False, **kwargs: Any) -> None:
        self._send(REJECT_METHOD, ACK_ARGS.pack(delivery_tag, 1 if requeue else 0))

    @_seam
    def basic_nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True, **kwargs: Any) -> None:
        """Reject one message (or all up to ``delivery_tag`` with ``multiple``)."""
        self._send(NACK_METHOD, ACK_ARGS.pack(delivery_tag, (1 if multiple else 0) | (2 if requeue else 0)))

    @_seam
    def basic_recover(self, requeue: bool = True, **kwargs: Any) -> None:
        """Ask the broker to redeliver every unacknowledged message of this channel."""
        if not requeue:
            self._unsupported_by_rabbitmq("basic.recover with requeue=False: call recover(requeue=True)")
        raw = self._live()
        # read and not handed out yet: the broker redelivers them under new delivery tags
        # (dropped first: redeliveries may arrive before the reply)
        self.connection.take_ready(raw)
        raw.basic_recover(requeue=requeue)

    @_seam
    def basic_qos(
        self, prefetch_size: int = 0, prefetch_count: int = 0, apply_global: bool = False, **kwargs: Any
    ) -> None:
        """Limit unacknowledged deliveries (RabbitMQ: per consumer unless ``apply_global``)."""
        if prefetch_size:
            self._unsupported_by_rabbitmq("a prefetch_size limit: pass prefetch_size=0")
        raw = self._live()
        self._rpc(raw.basic_qos, prefetch_size, prefetch_count, apply_global)

    @_seam
    def flow(self, active: bool = True) -> None:
        """Ask the broker to pause (``False``) or resume deliveries on this channel."""
        if not active:
            self._unsupported_by_rabbitmq("channel.flow(active=False): cancel the consumers instead")
        raw = self._live()
        self._rpc(raw.flow, active)

    def message_to_python(self, raw: Any) -> base.Message:
        """The library's :class:`~kombu_like.message.Message` for a driver message."""
        props = raw.properties
        body = raw.body
        if isinstance(body, str):  # the driver's placeholder for an empty body
            body = body.encode(props.get("content_encoding") or "utf-8")
        info = raw.delivery_info
        return received(
            self.Message,
            body,
            info.get("delivery_tag"),
            props.get("content_type"),
            props.get("content_encoding"),
            info,
            props,
            props.get("application_headers") or {},
            None,
            self,
            raw,
        )

    # -- lifecycle ------------------------------------------------------------------
    def close(self) -> None:
        """Close the channel; the broker requeues its unacknowledged messages."""
        if self._closed:
            return
        self._settle_before_close()
        self._closed = True
        self.consumers.clear()
        self.connection.unsettled.discard(self)
        raw = self._raw
        driver_connection = raw.connection
        try:
            if raw.is_open and self.connection.is_open:
                self._rpc(raw.close)
        except _CLOSE_ERRORS as exc:
            logger.debug("closing channel %s: %r", raw.channel_id, exc)
        finally:
            if raw.channel_id is not None:  # no close-ok came: release the channel id ourselves
                raw.connection = driver_connection
                raw.collect()

    def _settle_before_close(self) -> None:
        # confirms and returns of earlier publishes arrive before the channel goes: returns
        # reach on_return instead of being dropped by a closing channel
        confirms = self._confirms
        if confirms is None or not self._raw.is_open or not self.connection.is_open:
            return
        last = confirms.next_seq - 1
        if confirms.settled(last):
            return
        try:
            self._settle_until(confirms, last, min(self._confirm_timeout, CLOSE_SETTLE_TIMEOUT))
        except MessageReturned as exc:
            logger.warning("closing channel %s: %s", self.channel_id, exc)
        except _CLOSE_ERRORS as exc:
            logger.debug("closing channel %s: confirms not settled: %r", self.channel_id, exc)

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.Channel {self._raw.channel_id} of {self.transport!r}>"


def returned(
    channel: Any, raw_message: Any, reply_code: int, reply_text: str, exchange: str, routing_key: str
) -> tuple[Any, MessageReturned]:
    """The message of a ``basic.return`` (``delivery_info`` says why it came back) and the
    error that reports it; both drivers' channels hand them to ``on_return`` handlers."""
    raw_message.delivery_info = {
        "exchange": exchange,
        "routing_key": routing_key,
        "reply_code": reply_code,
        "reply_text": reply_text,
    }
    exc = MessageReturned(
        f"{reply_text}: the broker returned a mandatory message published to exchange {exchange!r} "
        f"with routing key {routing_key!r} (reply code {reply_code}); pass on_return to the Producer "
        f"to handle returned messages",
        reply_code=reply_code,
    )
    return channel.message_to_python(raw_message), exc
