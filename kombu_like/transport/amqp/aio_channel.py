"""An AMQP channel for the asyncio API, on :mod:`.aio`'s connection.

Its methods have the seam's names and arguments.  Those the broker answers return an
awaitable of the answer; those it does not (publish, ack, reject) write their frames at
once -- a publish's method, header and body frames in one write -- and return: nothing
can be cut half-way by a cancellation.  With publisher confirms a publish returns a future
of the broker's confirm.  The frames are the blocking transport's (:mod:`.framing`), the
method arguments are encoded and decoded by the driver's own code (:mod:`.compat`), and
messages are prepared and converted by the blocking channel's methods.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import socket
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import amqp
from amqp import exceptions as amqp_errors
from amqp import spec

from ...aio.hub import bounded
from ...exceptions import ChannelError, ConsumerCancelled, KombuError
from ...plan import SENT, Plan, Ready, arun
from .. import base
from . import compat
from .aio_confirms import AsyncConfirms
from .aio_methods import CALLS as _CALLS
from .aio_methods import WITH_CONTENT as _WITH_CONTENT
from .channel import SERVER_NAMED_PREFIX, returned
from .channel import Channel as SyncChannel
from .framing import (
    ACK_ARGS,
    ACK_METHOD,
    DELIVER_METHOD,
    DRIVER_ERRORS,
    METHOD_SIG,
    NACK_METHOD,
    REJECT_METHOD,
    Content,
    method_frame,
    parse_deliver,
    publish_frames,
)

if TYPE_CHECKING:
    from .aio import AMQPProtocol

__all__ = ["AsyncChannel"]

logger = logging.getLogger(__name__)

_tags = itertools.count(1)
#: seconds a close waits for the broker's close-ok, or for confirms of earlier publishes
CLOSE_TIMEOUT = 3.0
#: errors a close swallows: the channel is gone either way
_CLOSE_ERRORS: tuple[type[BaseException], ...] = (asyncio.TimeoutError, *DRIVER_ERRORS, KombuError)


class AsyncChannel(base.StdChannel):
    """An AMQP channel of the asyncio API (see the module documentation)."""

    from ...aio.message import Message

    # the blocking channel's message preparation and conversion, and its cache of
    # encoded publish arguments: pure functions of their arguments and these attributes
    prepare_message: Any = SyncChannel.prepare_message
    message_to_python: Any = SyncChannel.message_to_python
    _args_for: Any = SyncChannel._args_for

    def __init__(self, protocol: AMQPProtocol, channel_id: int) -> None:
        self.protocol = protocol
        #: what the blocking code reads: ``connection.client`` (declaration cache)
        self.connection = protocol
        self.transport = protocol.transport
        self.aio_client = protocol.driver.client
        self.channel_id = channel_id
        self.events: dict[str, set[Callable[..., Any]]] = {"basic_return": set()}
        #: consumer tag -> queue; tag -> callback; tags that consume without acks
        self.consumers: dict[str, str] = {}
        self._callbacks: dict[str, Callable[[Any], Any]] = {}
        self._on_cancel: dict[str, Callable[[str], Any] | None] = {}
        self.no_ack_consumers: set[str] = set()
        #: (methods that answer, future) in the order asked: AMQP answers in order
        self._replies: deque[tuple[frozenset[tuple[int, int]], asyncio.Future[Any]]] = deque()
        self._content: Content | None = None
        #: publisher confirms, once confirm mode is selected
        self._confirms: AsyncConfirms | None = None
        self._publish_args: dict[Any, bytes] = {}
        self.is_open = False

    # -- calls ------------------------------------------------------------------------
    def _write_method(self, name: str, values: Sequence[Any]) -> tuple[int, int]:
        method_sig, argsig, _ = _CALLS[name]
        args = compat.dumps(argsig, values)
        self.protocol.write(method_frame(self.channel_id, METHOD_SIG.pack(*method_sig), args))
        return method_sig

    def _ask(self, name: str, values: Sequence[Any]) -> asyncio.Future[Any]:
        """Write the method and return the future of its answer (cancelling the future
        only drops the answer when it comes)."""
        if not self.is_open and name != "channel_open":
            self._raise_closed()
        self._write_method(name, values)
        future = self.protocol.loop.create_future()
        self._replies.append((_CALLS[name][2], future))
        return future

    async def _call(self, name: str, values: Sequence[Any]) -> Any:
        future = self._ask(name, values)
        self.protocol.flush()  # the caller waits for the answer: no reason to wait for the round
        timeout = base.time_left(self.transport.rpc_timeout)
        return await bounded(
            future, timeout, lambda: self.transport.translate_error(socket.timeout(f"no answer to {name}"))
        )

    def _maybe_wait(
        self, name: str, values: Sequence[Any], nowait: bool, result: Callable[[Any], Any], settle: bool = False
    ) -> Any:
        if settle and self.protocol.unsettled():
            # a count, get or purge sees this connection's earlier publishes (RabbitMQ
            # routes publishes asynchronously; their confirms say they are routed)
            return self._after_settling(name, values, nowait, result)
        if nowait:
            if not self.is_open:
                self._raise_closed()
            self._write_method(name, values)
            return Ready(None)
        return self._result(self._call(name, values), result)

    async def _after_settling(
        self, name: str, values: Sequence[Any], nowait: bool, result: Callable[[Any], Any]
    ) -> Any:
        await self.protocol.settle()
        return await _settle(self._maybe_wait(name, values, nowait, result))

    @staticmethod
    async def _result(call: Any, result: Callable[[Any], Any]) -> Any:
        return result(await call)

    def _raise_closed(self) -> None:
        if not self.protocol.is_open:
            raise self.transport.translate_error(amqp_errors.RecoverableConnectionError("connection is closed"))
        raise ChannelError("channel is closed; open a new one with connection.channel()")

    def run_plan(self, plan: Plan[Any]) -> Any:
        return arun(plan)

    def backlog(self) -> Any:
        """What to await before writing more (the write buffer is full), else ``None``."""
        return self.protocol.backlog()

    # -- opening and closing ------------------------------------------------------------
    def start(self) -> asyncio.Future[Any]:
        """Write ``channel.open`` (and ``confirm.select``) and count the channel open at
        once: the broker handles what follows on the channel after them, in order.
        Returns the future of the last answer."""
        answer = self._ask("channel_open", ("",))
        self.is_open = True
        transport = self.transport
        if transport.confirm_publish or transport.track_confirms:
            answer = self._ask("confirm_select", (False,))
            self._confirms = AsyncConfirms(
                self.protocol.loop,
                bool(transport.confirm_publish),
                transport.confirm_timeout,
                transport.translate_error,
                self.channel_id,
            )
        return answer

    async def open(self) -> AsyncChannel:
        timeout = self.transport.rpc_timeout
        await bounded(self.start(), timeout, lambda: self.transport.translate_error(socket.timeout("channel.open")))
        return self

    async def close(self) -> None:  # type: ignore[override]
        """Close the channel; the broker requeues its unacknowledged messages."""
        if not self.is_open:
            return
        await self._settle_before_close()
        self.is_open = False
        try:
            if self.protocol.is_open:
                self._replies.append((_CALLS["channel_close"][2], future := self.protocol.loop.create_future()))
                self._write_method("channel_close", (200, "", 0, 0))
                await bounded(future, CLOSE_TIMEOUT, lambda: ChannelError("no close-ok from the broker"))
        except _CLOSE_ERRORS as exc:
            logger.debug("closing channel %s: %r", self.channel_id, exc)
        finally:
            self._forget(ChannelError("the channel was closed"))
            self.protocol.channels.pop(self.channel_id, None)

    def unsettled(self) -> bool:
        """True while a publish on this channel waits for its confirm."""
        return self._confirms is not None and self._confirms.unsettled

    async def settle(self) -> None:
        """Wait (at most ``confirm_timeout``) until the broker confirmed earlier publishes."""
        if self._confirms is not None:
            await self._confirms.settle()

    async def _settle_before_close(self) -> None:
        # confirms and returns of earlier publishes arrive before the channel goes
        confirms = self._confirms
        if confirms is not None and confirms.unsettled and self.protocol.is_open:
            await asyncio.wait([confirms.settled()], timeout=min(self.transport.confirm_timeout, CLOSE_TIMEOUT))

    def _forget(self, error: BaseException) -> None:
        """The channel is gone: fail what waits on it, forget its consumers."""
        self.is_open = False
        replies, self._replies = self._replies, deque()
        for _, future in replies:
            if not future.done():
                future.set_exception(error)
        if self._confirms is not None:
            self._confirms.fail(error)
        self._content = None
        self.consumers.clear()
        self._callbacks.clear()
        self._on_cancel.clear()
        self.no_ack_consumers.clear()

    # -- exchanges and queues -----------------------------------------------------------------
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
    ) -> Any:
        values = (0, exchange, type, passive, durable, auto_delete, False, nowait, dict(arguments or {}))
        return self._maybe_wait("exchange_declare", values, nowait, _none)

    def exchange_delete(self, exchange: str, if_unused: bool = False, nowait: bool = False, **kwargs: Any) -> Any:
        return self._maybe_wait("exchange_delete", (0, exchange, if_unused, nowait), nowait, _none)

    def exchange_bind(
        self,
        destination: str,
        source: str = "",
        routing_key: str = "",
        nowait: bool = False,
        arguments: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        values = (0, destination, source, routing_key or "", nowait, dict(arguments or {}))
        return self._maybe_wait("exchange_bind", values, nowait, _none)

    def exchange_unbind(
        self,
        destination: str,
        source: str = "",
        routing_key: str = "",
        nowait: bool = False,
        arguments: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        values = (0, destination, source, routing_key or "", nowait, dict(arguments or {}))
        return self._maybe_wait("exchange_unbind", values, nowait, _none)

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
    ) -> Any:
        if queue.startswith(SERVER_NAMED_PREFIX):
            passive = True  # RabbitMQ refuses amq.* names: a server-named queue is only checked
        if not passive:
            self.protocol.deleted_queues.discard(queue)
        values = (0, queue, passive, durable, exclusive, auto_delete, nowait, dict(arguments or {}))
        return self._maybe_wait("queue_declare", values, nowait, _declare_ok, settle=True)

    def queue_bind(
        self,
        queue: str,
        exchange: str = "",
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
        nowait: bool = False,
        **kwargs: Any,
    ) -> Any:
        values = (0, queue, exchange, routing_key or "", nowait, dict(arguments or {}))
        return self._maybe_wait("queue_bind", values, nowait, _none)

    def queue_unbind(
        self,
        queue: str,
        exchange: str = "",
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
        nowait: bool = False,
        **kwargs: Any,
    ) -> Any:
        values = (0, queue, exchange, routing_key or "", dict(arguments or {}))
        return self._maybe_wait("queue_unbind", values, False, _none)

    def queue_purge(self, queue: str, nowait: bool = False, **kwargs: Any) -> Any:
        return self._maybe_wait("queue_purge", (0, queue, nowait), nowait, _count, settle=True)

    def queue_delete(
        self, queue: str, if_unused: bool = False, if_empty: bool = False, nowait: bool = False, **kwargs: Any
    ) -> Any:
        self.protocol.deleted_queues.add(queue)
        return self._maybe_wait("queue_delete", (0, queue, if_unused, if_empty, nowait), nowait, _count, settle=True)

    # -- consuming ---------------------------------------------------------------------
    def basic_qos(self, prefetch_size: int = 0, prefetch_count: int = 0, apply_global: bool = False) -> Any:
        return self._maybe_wait("basic_qos", (prefetch_size, prefetch_count, apply_global), False, _none)

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
    ) -> Any:
        """Start a consumer; ``callback`` receives each raw message as it arrives."""
        # the tag is ours, so deliveries right behind consume-ok find their callback
        tag = consumer_tag or f"ctag-aio-{self.channel_id}.{next(_tags)}"
        self.consumers[tag] = queue
        self._callbacks[tag] = callback or _ignore
        self._on_cancel[tag] = on_cancel
        if no_ack:
            self.no_ack_consumers.add(tag)
        self.protocol.deleted_queues.discard(queue)
        values = (0, queue, tag, no_local, no_ack, exclusive, nowait, dict(arguments or {}))
        return self._maybe_wait("basic_consume", values, nowait, lambda _: tag)

    def basic_cancel(self, consumer_tag: str, nowait: bool = False, **kwargs: Any) -> Any:
        """Stop the consumer (deliveries already on their way still reach its callback)."""
        self.consumers.pop(consumer_tag, None)
        if not self.is_open:
            return Ready(None)  # the consumer went with its channel
        return self._maybe_wait("basic_cancel", (consumer_tag, nowait), nowait, _none)

    def basic_get(self, queue: str = "", no_ack: bool = False, **kwargs: Any) -> Any:
        return self._maybe_wait("basic_get", (0, queue, no_ack), False, _got, settle=True)

    def basic_ack(self, delivery_tag: int, multiple: bool = False, **kwargs: Any) -> None:
        self._send(ACK_METHOD, ACK_ARGS.pack(delivery_tag, 1 if multiple else 0))

    def basic_reject(self, delivery_tag: int, requeue: bool = False, **kwargs: Any) -> None:
        self._send(REJECT_METHOD, ACK_ARGS.pack(delivery_tag, 1 if requeue else 0))

    def basic_nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True, **kwargs: Any) -> None:
        self._send(NACK_METHOD, ACK_ARGS.pack(delivery_tag, (1 if multiple else 0) | (2 if requeue else 0)))

    def basic_recover(self, requeue: bool = True, **kwargs: Any) -> Any:
        return self._maybe_wait("basic_recover", (requeue,), False, _none)

    def flow(self, active: bool = True) -> Any:
        return self._maybe_wait("flow", (active,), False, _none)

    def _send(self, method: bytes, args: bytes) -> None:
        if not self.is_open:
            self._raise_closed()
        self.protocol.write(method_frame(self.channel_id, method, args))

    # -- publishing --------------------------------------------------------------------
    def basic_publish(
        self,
        message: Any,
        exchange: str = "",
        routing_key: str = "",
        mandatory: bool = False,
        immediate: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Write the message's frames in one piece; with ``confirm_publish``, return the
        awaitable of the broker's confirm (``confirm_timeout`` bounds it)."""
        if not self.is_open:
            self._raise_closed()
        args = self._args_for(exchange, routing_key, mandatory, immediate)
        data = publish_frames(self.channel_id, args, message, self.protocol.frame_max)
        return self._publish(data, 1, exchange, routing_key, kwargs)

    def publish_batch(self, items: Sequence[tuple[Any, str, str, bool]], **kwargs: Any) -> Any:
        """Publish ``(message, exchange, routing_key, mandatory)`` items with one write."""
        if not items:
            return SENT
        if not self.is_open:
            self._raise_closed()
        frame_max = self.protocol.frame_max
        channel_id = self.channel_id
        data = b"".join(
            publish_frames(channel_id, self._args_for(exchange, routing_key, mandatory, False), message, frame_max)
            for message, exchange, routing_key, mandatory in items
        )
        return self._publish(data, len(items), items[-1][1], items[-1][2], kwargs)

    def _publish(self, data: bytes, count: int, exchange: str, routing_key: str, options: Mapping[str, Any]) -> Any:
        """Write the frames of ``count`` messages; the awaitable of their confirm."""
        confirms = self._confirms
        if confirms is None:
            self.protocol.write(data)
            return SENT
        if confirms.wait_each and not confirms.unsettled:
            # the publisher waits for this confirm alone: send now, not at the end of the
            # loop's round (publishes made together, whose confirms overlap, go in one write)
            self.protocol.send(data)
        else:
            self.protocol.write(data)
        return confirms.sent(count, exchange, routing_key, options)

    def _on_confirm(self, delivery_tag: int, multiple: bool, ok: bool) -> None:
        if self._confirms is not None:
            self._confirms.resolve(delivery_tag, multiple, ok)

    # -- what the broker sends ------------------------------------------------------------
    def on_frame(self, frame_type: int, payload: bytes) -> None:
        """One frame for this channel, from the connection's reader."""
        if frame_type == 1:
            if payload.startswith(DELIVER_METHOD):
                self._content = Content(None, parse_deliver(payload))
            elif payload.startswith(ACK_METHOD):
                delivery_tag, bits = ACK_ARGS.unpack_from(payload, 4)
                self._on_confirm(delivery_tag, bool(bits & 1), True)
            else:
                method_sig = METHOD_SIG.unpack_from(payload, 0)
                argsig = compat.inbound_args(method_sig)
                args = compat.loads(argsig, payload, 4) if argsig else []
                if method_sig in _WITH_CONTENT:
                    self._content = Content(method_sig, args)
                else:
                    self._on_method(method_sig, args)
            return
        content = self._content
        if content is None:
            raise amqp_errors.UnexpectedFrame(f"content frame without a method on channel {self.channel_id}")
        if not content.add(frame_type, payload, self.channel_id):
            return
        self._content = None
        raw = amqp.Message(content.body())
        raw.properties = content.properties
        if content.channel is None:  # a delivery
            consumer_tag, delivery_tag, redelivered, exchange, routing_key = content.args
            raw.delivery_info = {
                "consumer_tag": consumer_tag,
                "delivery_tag": delivery_tag,
                "redelivered": redelivered,
                "exchange": exchange,
                "routing_key": routing_key,
            }
            callback = self._callbacks.get(consumer_tag)
            if callback is not None:
                try:
                    callback(raw)
                except Exception as exc:
                    # the connection's reader must go on: the next wait raises it, and the
                    # message stays unacknowledged
                    self.aio_client._on_driver_error(exc)
            # else: a consumer of a closed channel; the broker requeues the message
        elif content.channel == spec.Basic.GetOk:
            delivery_tag, redelivered, exchange, routing_key, message_count = content.args
            raw.delivery_info = {
                "delivery_tag": delivery_tag,
                "redelivered": redelivered,
                "exchange": exchange,
                "routing_key": routing_key,
                "message_count": message_count,
            }
            self._answer(spec.Basic.GetOk, raw)
        else:
            self._on_return(content.args, raw)

    def _answer(self, method_sig: tuple[int, int], result: Any) -> None:
        while self._replies:
            expected, future = self._replies[0]
            if method_sig not in expected:
                break
            self._replies.popleft()
            if not future.done():  # a cancelled call's answer is dropped
                future.set_result(result)
            return
        logger.debug("channel %s: unexpected %r", self.channel_id, method_sig)

    def _on_method(self, method_sig: tuple[int, int], args: list[Any]) -> None:
        if method_sig == spec.Basic.Nack:
            self._on_confirm(args[0], bool(args[1]), False)
        elif method_sig == spec.Basic.Cancel:
            self._on_broker_cancel(args[0])
        elif method_sig == spec.Basic.CancelOk:
            tag = args[0]
            self._callbacks.pop(tag, None)
            self._on_cancel.pop(tag, None)
            self.no_ack_consumers.discard(tag)
            self._answer(method_sig, tag)
        elif method_sig == spec.Channel.Close:
            self._on_broker_close(*args)
        elif method_sig == spec.Channel.Flow:
            flow_ok = METHOD_SIG.pack(*spec.Channel.FlowOk)
            self.protocol.write(method_frame(self.channel_id, flow_ok, compat.dumps("b", (args[0],))))
        else:
            self._answer(method_sig, args)

    def _on_broker_close(self, reply_code: int, reply_text: str, class_id: int, method_id: int) -> None:
        error = amqp_errors.error_for_code(reply_code, reply_text, (class_id, method_id), amqp_errors.ChannelError)
        translated = self.transport.translate_error(error)
        self.protocol.write(method_frame(self.channel_id, METHOD_SIG.pack(*spec.Channel.CloseOk), b""))
        self._forget(translated)
        self.protocol.channels.pop(self.channel_id, None)
        self.protocol.channel_error(self, translated)

    def _on_broker_cancel(self, consumer_tag: str) -> None:
        queue = self.consumers.pop(consumer_tag, None)
        self._callbacks.pop(consumer_tag, None)
        self.no_ack_consumers.discard(consumer_tag)
        on_cancel = self._on_cancel.pop(consumer_tag, None)
        if on_cancel is not None:
            on_cancel(consumer_tag)
        elif queue not in self.protocol.deleted_queues:
            self.aio_client._on_driver_error(
                ConsumerCancelled(
                    f"the broker cancelled consumer {consumer_tag!r} of queue {queue!r} (the queue was deleted "
                    f"or became unavailable)"
                )
            )

    def _on_return(self, args: list[Any], raw: Any) -> None:
        reply_code, reply_text, exchange, routing_key = args
        message, exc = returned(self, raw, reply_code, reply_text, exchange, routing_key)
        handlers = self.events["basic_return"]
        if handlers:
            for handler in list(handlers):
                handler(exc, exchange, routing_key, message)
        elif self._confirms is not None and self._confirms.wait_each:
            self._confirms.returned = exc  # raised by the publish's confirm, which follows
        else:
            logger.warning("%s", exc)

    def __repr__(self) -> str:
        return f"<AsyncChannel {self.channel_id} of {self.transport!r}>"


async def _settle(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


def _same(result: Any) -> Any:
    return result


def _got(result: Any) -> amqp.Message | None:
    """basic.get's answer: the message of a ``get-ok``, ``None`` for a ``get-empty`` (whose
    answer is its arguments)."""
    return result if isinstance(result, amqp.Message) else None


def _none(args: Any) -> None:
    return None


def _count(args: Any) -> int:
    return int(args[0]) if args else 0


def _declare_ok(args: Any) -> base.queue_declare_ok_t:
    return base.queue_declare_ok_t(*args)


def _ignore(message: Any) -> None:
    return None
