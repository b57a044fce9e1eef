"""AMQP channel semantics emulated over a :class:`~.store.QueueStore`."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
import uuid
from binascii import b2a_base64
from collections.abc import Callable, Mapping, Sequence
from itertools import count
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from ...exceptions import ChannelError, DecodeError, MessageReturned, NotFound, PreconditionFailed
from ...message import Message as BaseMessage
from ...message import received
from ...plan import Plan, call, run
from ..base import Channel, queue_declare_ok_t
from .routing import Binding, ExchangeInfo, route
from .store import Delivery, GuardedStore, PlainShape, QueueStore

if TYPE_CHECKING:
    from .transport import VirtualConnection

__all__ = ["PlainShape", "QoS", "VirtualChannel", "plain_envelope"]

logger = logging.getLogger(__name__)

#: arguments that only make sense with one value per queue; redeclaring with another
#: value is a precondition failure, as on RabbitMQ
_STRICT_QUEUE_ARGS = ("x-max-priority",)


#: an argument not given: the value is read where it is needed
_UNREAD: Any = object()
#: the headers of a plain message (never changed)
_NO_HEADERS: Mapping[str, Any] = MappingProxyType({})
#: what a subclass leaves as it is for plain publishes to keep their shortcut
_PUBLISHING = ("basic_publish", "prepare_message", "_finish_envelope", "lookup", "publish_plain")


def plain_envelope(body: Any, delivery_tag: str, shape: PlainShape, body_encoding: str | None) -> dict[str, Any]:
    """The envelope :meth:`VirtualChannel.basic_publish` stores for a plain message of
    ``shape`` (``body`` already encoded in ``body_encoding``): what a store's
    :meth:`~.store.QueueStore.put_plain` writes."""
    content_type, content_encoding, delivery_mode, exchange, routing_key = shape
    return {
        "body": body,
        "content-encoding": content_encoding,
        "content-type": content_type,
        "headers": {},
        "properties": {
            "delivery_mode": delivery_mode,
            "priority": 0,
            "body_encoding": body_encoding or "binary",
            "delivery_info": {"exchange": exchange, "routing_key": routing_key},
            "delivery_tag": delivery_tag,
        },
    }


def encode_body(body: bytes | str, encoding: str | None) -> Any:
    if encoding == "base64":
        if isinstance(body, str):
            body = body.encode("utf-8")
        return base64.b64encode(body).decode("ascii")
    return body


def decode_body(body: Any, encoding: str | None) -> Any:
    if encoding == "base64":
        return base64.b64decode(body)
    return body


class NotEquivalentError(PreconditionFailed):
    """An exchange declared again with different settings (Kombu's name for it)."""


class QoS:
    """Prefetch window and the deliveries a channel has not acknowledged yet."""

    def __init__(self, channel: VirtualChannel, prefetch_count: int = 0) -> None:
        self.channel = channel
        self.prefetch_count = prefetch_count
        self.delivered: dict[int, Delivery] = {}
        self._lock = threading.Lock()

    def capacity(self) -> int:
        """How many more messages may be delivered (a large number when unlimited).

        Messages taken for the channel and not handed out yet count as delivered."""
        if not self.prefetch_count:
            return 1 << 30
        buffered = getattr(self.channel.connection, "buffered", None)
        held = len(self.delivered) + (buffered(self.channel) if buffered is not None else 0)
        return max(self.prefetch_count - held, 0)

    def can_consume(self) -> bool:
        return self.capacity() > 0

    def append(self, tag: int, delivery: Delivery) -> None:
        self.delivered[tag] = delivery

    def take(self, tag: int, multiple: bool = False) -> list[Delivery]:
        """Remove and return the delivery ``tag`` (and all before it with ``multiple``)."""
        if not multiple:
            # a single dict.pop is atomic; only the multi-tag scan needs the lock
            delivery = self.delivered.pop(tag, None)
            return [delivery] if delivery is not None else []
        with self._lock:
            tags = [t for t in self.delivered if t <= tag]
            return [self.delivered.pop(t) for t in tags]

    def take_all(self) -> list[Delivery]:
        with self._lock:
            items = list(self.delivered.values())
            self.delivered.clear()
            return items


class VirtualChannel(Channel):
    """An AMQP-like channel whose broker work is done by a queue store."""

    #: the class of delivered messages (a transport may substitute a subclass)
    Message = BaseMessage
    #: what :meth:`basic_publish` returns (the asyncio API's channels: an awaitable)
    published: Any = None
    #: :class:`~kombu_like.Producer` hands plain publishes to :meth:`publish_plain`; False
    #: for a subclass that changes how a message is built, routed or published
    publishes_plain: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.publishes_plain = all(getattr(cls, name) is getattr(VirtualChannel, name) for name in _PUBLISHING)

    def __init__(self, connection: VirtualConnection, channel_id: int) -> None:
        self.connection = connection
        self.channel_id = channel_id
        #: the store itself (for transport-specific calls)
        self.store: QueueStore = connection.store
        #: the store as the channel calls it: every call through the error-mapping seam
        self.seam: GuardedStore = connection.seam
        self.body_encoding = self.seam.body_encoding
        self.qos = QoS(self)
        self.is_open = True
        self.events: dict[str, set[Callable[..., Any]]] = {"basic_return": set()}
        #: consumer tag -> queue name
        self.consumers: dict[str, str] = {}
        #: consumer tag -> callback
        self.callbacks: dict[str, Callable[[Any], Any]] = {}
        self.no_ack_consumers: set[str] = set()
        self._tags = count(1)
        # envelope ids: unique across processes (random prefix) without a uuid4 per message;
        # built from os.urandom so opening a channel leaves uuid.uuid4 alone (test suites
        # written for Kombu replace uuid4 and count its calls)
        self._tag_prefix = f"{uuid.UUID(bytes=os.urandom(16), version=4)}-"
        self._publish_seq = count(1)
        self._route_cache: dict[tuple[str, str], list[str]] = {}
        self._route_cache_version: Any = None
        # the exchange and the bindings' version in one call, where the bindings offer it
        self._exchange_versioned: Callable[[str], tuple[ExchangeInfo | None, Any]] | None = getattr(
            self.seam.bindings, "exchange_versioned", None
        )
        # a store that appends plain messages without an envelope built first
        self._put_plain = (
            self.seam.put_plain
            if getattr(type(self.store), "put_plain", QueueStore.put_plain) is not QueueStore.put_plain
            else None
        )
        self._exclusive: set[str] = set()
        self._auto_delete: set[str] = set()

    def _perform(self, plan: Plan[Any]) -> Any:
        """Run ``plan``, a round trip's store calls: at once; a channel whose store calls
        are awaited (the asyncio API's) returns an awaitable of its result instead."""
        return run(None, plan)

    # -- properties ------------------------------------------------------------------
    @property
    def client(self) -> Any:
        return self.connection.client

    @property
    def transport(self) -> Any:
        return self.connection.transport

    @property
    def closed(self) -> bool:
        """True once closed (Kombu's virtual channels name it so; Celery checks it)."""
        return not self.is_open

    def _check_open(self) -> None:
        if not self.is_open:
            raise ChannelError("channel is closed; open a new one with connection.channel()")

    # -- exchanges ----------------------------------------------------------------------
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
        """Declare an exchange (passive: only check that it exists)."""
        return self._perform(self._exchange_declare(exchange, type, durable, auto_delete, arguments, passive))

    def _exchange_declare(
        self,
        exchange: str,
        type: str,
        durable: bool,
        auto_delete: bool,
        arguments: Mapping[str, Any] | None,
        passive: bool,
    ) -> Plan[None]:
        self._check_open()
        supported = self.seam.capabilities.exchange_types
        if type not in supported:
            raise ChannelError(
                f"exchange type {type!r} is not supported by the {self.transport.driver_type} "
                f"transport (supported: {', '.join(sorted(supported))})"
            )
        existing = yield from call(self.seam.bindings, "exchange", exchange)
        if passive:
            if existing is None:
                raise NotFound(f"NOT_FOUND - no exchange {exchange!r}")
            return
        if existing is not None and existing.type != type:
            raise NotEquivalentError(
                f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange {exchange!r}: "
                f"received {type!r} but current is {existing.type!r}"
            )
        info = ExchangeInfo(exchange, type, durable, auto_delete, dict(arguments or {}))
        yield from call(self.seam.bindings, "declare_exchange", info)

    def exchange_delete(self, exchange: str, if_unused: bool = False, nowait: bool = False) -> None:
        return self._perform(self._exchange_delete(exchange, if_unused))

    def _exchange_delete(self, exchange: str, if_unused: bool) -> Plan[None]:
        self._check_open()
        if if_unused and (yield from call(self.seam.bindings, "get_bindings", exchange)):
            raise PreconditionFailed(f"PRECONDITION_FAILED - exchange {exchange!r} in use")
        yield from call(self.seam.bindings, "delete_exchange", exchange)

    def exchange_bind(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            f"exchange-to-exchange bindings are not supported by the {self.transport.driver_type} transport"
        )

    exchange_unbind = exchange_bind

    # -- queues ---------------------------------------------------------------------
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
    ) -> queue_declare_ok_t:
        """Declare a queue and return its name, ready message count and consumer count."""
        return self._perform(self._queue_declare(queue, passive, exclusive, auto_delete, arguments))

    def _queue_declare(
        self, queue: str, passive: bool, exclusive: bool, auto_delete: bool, arguments: Mapping[str, Any] | None
    ) -> Plan[queue_declare_ok_t]:
        self._check_open()
        queue = queue or f"amq.gen-{uuid.uuid4()}"
        if passive:
            if not (yield from call(self.seam, "queue_exists", queue)):
                raise NotFound(f"NOT_FOUND - no queue {queue!r} in vhost {self._vhost()!r}")
        else:
            yield from call(self.seam, "declare_queue", queue, dict(arguments or {}))
            if exclusive:
                self._exclusive.add(queue)
            if auto_delete:
                self._auto_delete.add(queue)
        size = yield from self._size(queue)
        return queue_declare_ok_t(queue, size, self.seam.consumer_count(queue))

    def _size(self, queue: str) -> Plan[int]:
        """How many messages ``queue`` holds for delivery (Kombu's virtual-channel name):
        those ready in the store and those this connection took and has not handed out."""
        ready = yield from call(self.seam, "size", queue)
        return int(ready) + self.connection.taken_from(queue)

    def _vhost(self) -> str:
        return str(getattr(self.client, "virtual_host", "") or "/")

    def queue_bind(
        self,
        queue: str,
        exchange: str = "",
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
        nowait: bool = False,
        **kwargs: Any,
    ) -> None:
        return self._perform(self._queue_bind("bind", queue, exchange, routing_key, arguments))

    def _queue_bind(
        self, method: str, queue: str, exchange: str, routing_key: str, arguments: Mapping[str, Any] | None
    ) -> Plan[None]:
        self._check_open()
        if method == "bind" and not exchange:
            return  # every queue is bound to the default exchange by its name
        yield from call(self.seam.bindings, method, exchange, Binding(queue, routing_key or "", _freeze(arguments)))

    def queue_unbind(
        self,
        queue: str,
        exchange: str = "",
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
        nowait: bool = False,
        **kwargs: Any,
    ) -> None:
        return self._perform(self._queue_bind("unbind", queue, exchange, routing_key, arguments))

    def queue_purge(self, queue: str, nowait: bool = False, **kwargs: Any) -> int:
        """Remove the messages of ``queue`` not delivered yet; return how many.

        Those the connection took and has not handed out are removed too (they are still
        in the queue as Kombu counts it), for good: they are never delivered or restored.
        """
        return self._perform(self._queue_purge(queue))

    def _queue_purge(self, queue: str) -> Plan[int]:
        self._check_open()
        purged = yield from call(self.seam, "purge", queue)
        return int(purged) + self.connection.discard(queue)

    def queue_delete(
        self,
        queue: str,
        if_unused: bool = False,
        if_empty: bool = False,
        nowait: bool = False,
        **kwargs: Any,
    ) -> int:
        """Delete ``queue`` and its messages not delivered yet; return how many there were."""
        return self._perform(self._queue_delete(queue, if_unused, if_empty))

    def _queue_delete(self, queue: str, if_unused: bool, if_empty: bool) -> Plan[int]:
        self._check_open()
        if if_empty and (yield from self._size(queue)):
            raise PreconditionFailed(f"PRECONDITION_FAILED - queue {queue!r} not empty")
        if if_unused and queue in self.connection.consumed_queues():
            raise PreconditionFailed(f"PRECONDITION_FAILED - queue {queue!r} in use")
        consumers = self._queue_consumers(queue)
        size = int((yield from call(self.seam, "size", queue)))
        yield from self._drop_queue(queue)
        # taken and not handed out yet: counted and deleted with the rest (once the queue
        # is gone, so a delete that fails leaves them to come back)
        size += self.connection.discard(queue)
        for channel, tag in consumers:
            yield from channel._basic_cancel(tag)
        return size

    def _drop_queue(self, queue: str) -> Plan[None]:
        # bindings first: a publish racing with the delete must not route into (and so
        # re-create) the queue after it was deleted
        yield from call(self.seam.bindings, "unbind_queue", queue)
        yield from call(self.seam, "delete_queue", queue)

    def _queue_consumers(self, queue: str) -> list[tuple[VirtualChannel, str]]:
        """This connection's consumers of ``queue``: (channel, consumer tag)."""
        channels = list(self.connection.channels)
        return [(ch, tag) for ch in channels for tag, name in list(ch.consumers.items()) if name == queue]

    # -- publishing ---------------------------------------------------------------------
    def prepare_message(
        self,
        body: Any,
        priority: int | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
        headers: dict[str, Any] | None = None,
        properties: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Build the envelope (Kombu's virtual-transport format)."""
        properties = properties if properties is not None else {}
        properties["priority"] = priority or 0
        return {
            "body": body,
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": headers if headers is not None else {},
            "properties": properties,
        }

    def publish_plain(
        self,
        body: bytes | str,
        content_type: str | None,
        content_encoding: str | None,
        delivery_mode: int,
        exchange: str = "",
        routing_key: str = "",
        mandatory: bool = False,
    ) -> Any:
        """:meth:`basic_publish` of a plain message -- no headers, priority 0, no property
        but ``delivery_mode`` -- what :class:`~kombu_like.Producer` publishes most.

        Where the store takes plain messages (:meth:`~.store.QueueStore.put_plain`) and
        the message goes to one queue, no envelope is built: the store writes the one
        :func:`plain_envelope` describes.  Everything else goes through
        :meth:`basic_publish` with that envelope.
        """
        put_plain = self._put_plain
        # (a basic_publish or prepare_message replaced on the instance -- a test's patch --
        # sees every publish, as it would on Kombu)
        own = self.__dict__
        if put_plain is not None and self.is_open and "basic_publish" not in own and "prepare_message" not in own:
            exchange_name = exchange or ""
            key = routing_key or ""
            info, version = self._exchange_info(exchange_name)
            if info is None or info.type != "fanout":
                queues = self.lookup(exchange_name, key, _NO_HEADERS, info, version)
                body_encoding = self.body_encoding
                encoded: str | None = None
                if len(queues) == 1 and body_encoding == "base64":
                    raw = body.encode() if isinstance(body, str) else body
                    encoded = b2a_base64(raw, newline=False).decode("ascii")
                elif len(queues) == 1 and body_encoding is None and isinstance(body, str):
                    encoded = body
                if encoded is not None:  # one queue, and a body the envelope's JSON can hold
                    tag = f"{self._tag_prefix}{next(self._publish_seq):x}"
                    shape = (content_type, content_encoding, delivery_mode, exchange_name, key)
                    if put_plain(queues[0], encoded, tag, shape):
                        return self.published
        message = self.prepare_message(body, 0, content_type, content_encoding, {}, {"delivery_mode": delivery_mode})
        return self.basic_publish(message, exchange, routing_key, mandatory, False)

    def _exchange_info(self, exchange: str) -> tuple[ExchangeInfo | None, Any]:
        """The declaration of the exchange a publish goes to (None: the default exchange,
        or one not declared) and the bindings' version read with it, where the bindings
        give both in one call (else ``_UNREAD``: :meth:`lookup` reads it)."""
        if not exchange:
            return None, _UNREAD
        if self._exchange_versioned is not None:
            return self._exchange_versioned(exchange)
        return self.seam.bindings.exchange(exchange), _UNREAD

    def _finish_envelope(self, message: dict[str, Any], exchange: str, routing_key: str) -> None:
        props = message["properties"]
        body_encoding = self.body_encoding
        if body_encoding is not None:
            message["body"] = encode_body(message["body"], body_encoding)
        props["body_encoding"] = body_encoding or "binary"
        props["delivery_info"] = {"exchange": exchange, "routing_key": routing_key}
        props["delivery_tag"] = f"{self._tag_prefix}{next(self._publish_seq):x}"

    def lookup(
        self,
        exchange: str,
        routing_key: str,
        headers: Mapping[str, Any] | None = None,
        info: ExchangeInfo | None = None,
        version: Any = _UNREAD,
    ) -> list[str]:
        """Queues a message published to ``exchange`` with ``routing_key`` goes to
        (``info`` and ``version``: the exchange and the bindings' version, when read)."""
        if not exchange:
            return [routing_key] if routing_key else []
        bindings = self.seam.bindings
        if info is None:
            info = bindings.exchange(exchange)
            version = _UNREAD
        ex_type = info.type if info is not None else "direct"
        if ex_type == "headers":
            return route(ex_type, bindings.get_bindings(exchange), routing_key, headers)
        if version is _UNREAD:
            version = bindings.version
        if version != self._route_cache_version:
            self._route_cache.clear()
            self._route_cache_version = version
        key = (exchange, routing_key)
        queues = self._route_cache.get(key)
        if queues is None:
            queues = self._route_cache[key] = route(ex_type, bindings.get_bindings(exchange), routing_key)
        return queues

    def _copies(self, message: dict[str, Any], queues: list[str]) -> list[tuple[str, dict[str, Any], int]]:
        """A copy of ``message`` for each of ``queues``, as ``put_many`` takes them."""
        priority = message["properties"].get("priority") or 0
        out = []
        for queue in queues:
            copy = dict(message)
            copy["properties"] = dict(message["properties"])
            copy["headers"] = dict(message["headers"] or {})
            out.append((queue, copy, priority))
        return out

    def basic_publish(
        self,
        message: dict[str, Any],
        exchange: str = "",
        routing_key: str = "",
        mandatory: bool = False,
        immediate: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Route ``message`` and put a copy into each destination queue; returns
        :attr:`published` (``None``; an awaitable on the asyncio API's channels)."""
        if not self.is_open:
            self._check_open()
        seam = self.seam
        info, version = self._exchange_info(exchange)
        if info is not None and info.type == "fanout" and self._broadcast(message, exchange, routing_key):
            return self.published
        # the envelope is finished, routed and put; one queue (nearly every publish) without a list
        exchange_name = exchange or ""
        key = routing_key or ""
        self._finish_envelope(message, exchange_name, key)
        queues = self.lookup(exchange_name, key, message.get("headers"), info, version)
        if len(queues) == 1:
            seam.put(queues[0], message, message["properties"].get("priority") or 0)
        elif queues:
            seam.put_many(self._copies(message, queues))
        else:
            self._unroutable(message, exchange, routing_key, mandatory)
        return self.published

    def publish_batch(self, batch: Sequence[tuple[dict[str, Any], str, str, bool]]) -> None:
        """Publish ``(message, exchange, routing_key, mandatory)`` items in one store call."""
        self._check_open()
        items: list[tuple[str, dict[str, Any], int]] = []
        # one exchange lookup per exchange, not per message: a batch is routed as one send,
        # and so is each exchange and routing key (headers exchanges route by each
        # message's headers)
        infos: dict[str, ExchangeInfo | None] = {}
        routes: dict[tuple[str, str], list[str]] = {}
        for message, exchange, routing_key, mandatory in batch:
            if exchange in infos:
                info = infos[exchange]
            else:
                info = infos[exchange] = self.seam.bindings.exchange(exchange) if exchange else None
            if info is not None and info.type == "fanout" and self._broadcast(message, exchange, routing_key):
                continue
            exchange_name = exchange or ""
            key = routing_key or ""
            self._finish_envelope(message, exchange_name, key)
            if info is not None and info.type == "headers":
                queues = self.lookup(exchange_name, key, message.get("headers"), info)
            else:
                cached = routes.get((exchange_name, key))
                if cached is None:
                    cached = routes[exchange_name, key] = self.lookup(exchange_name, key, None, info)
                queues = cached
            if len(queues) == 1:
                items.append((queues[0], message, message["properties"].get("priority") or 0))
            elif queues:
                items.extend(self._copies(message, queues))
            else:
                self._unroutable(message, exchange, routing_key, mandatory)
        if items:
            self.seam.put_many(items)

    def _broadcast(self, message: dict[str, Any], exchange: str, routing_key: str) -> bool:
        """Offer a fanout message to the store's native broadcast (``put_fanout``).

        The store gets a finished envelope (encoded body, delivery info and tag), the same a
        queue would get; ``message`` itself stays unfinished for routing if it declines.
        """
        finished = {**message, "properties": dict(message["properties"])}
        self._finish_envelope(finished, exchange, routing_key or "")
        return self.seam.put_fanout(exchange, finished, routing_key or "")

    def _unroutable(self, message: dict[str, Any], exchange: str, routing_key: str, mandatory: bool) -> None:
        if not mandatory:
            logger.debug("message to exchange %r key %r matched no queue", exchange, routing_key)
            return
        exc = MessageReturned(
            f"NO_ROUTE - message published to exchange {exchange!r} with routing key "
            f"{routing_key!r} could not be routed to any queue"
        )
        handlers = self.events["basic_return"]
        if not handlers:
            raise exc
        returned = self.message_to_python(self._to_message(Delivery("", message), None))
        for handler in list(handlers):
            handler(exc, exchange, routing_key, returned)

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        # Kombu's virtual-channel hook, called directly by some Kombu-era test suites
        self.seam.declare_queue(queue, kwargs or None)

    # -- consuming --------------------------------------------------------------------
    def basic_consume(
        self,
        queue: str,
        no_ack: bool = False,
        callback: Callable[[Any], Any] | None = None,
        consumer_tag: str | None = None,
        nowait: bool = False,
        **kwargs: Any,
    ) -> str:
        """Start delivering messages of ``queue`` to ``callback`` during ``drain_events``."""
        self._check_open()
        tag = consumer_tag or f"ctag-{self.channel_id}.{next(self._tags)}"
        if tag in self.consumers:
            # Kombu's virtual channels let a consumer be re-registered under its tag (code
            # that re-consumes after a recovered error relies on it): the new one replaces it
            logger.debug("channel %s: consumer %r re-registered, now on queue %r", self.channel_id, tag, queue)
            self.no_ack_consumers.discard(tag)
            # what was taken for the one it replaces goes back to its queue
            self.connection.give_back(self, tag)
        self.consumers[tag] = queue
        self.callbacks[tag] = callback or (lambda message: None)
        if no_ack:
            self.no_ack_consumers.add(tag)
        self.connection.consumers_changed()
        return tag

    def basic_cancel(self, consumer_tag: str, nowait: bool = False, **kwargs: Any) -> None:
        return self._perform(self._basic_cancel(consumer_tag))

    def _basic_cancel(self, consumer_tag: str) -> Plan[None]:
        queue = self.consumers.pop(consumer_tag, None)
        self.callbacks.pop(consumer_tag, None)
        self.no_ack_consumers.discard(consumer_tag)
        if queue is not None:
            # taken for it and not handed out yet: back to the queue, in order
            self.connection.give_back(self, consumer_tag)
            self.connection.consumers_changed()
            if (
                queue in self._auto_delete
                and queue not in self.consumers.values()
                and self.connection.store.deletes_auto_delete_queues()
            ):
                yield from self._drop_queue(queue)
                self._auto_delete.discard(queue)

    def _to_message(self, delivery: Delivery, tag: int | None, consumer_tag: str | None = None) -> BaseMessage:
        payload = delivery.payload
        # an envelope written by another program may hold anything: what is not a mapping
        # goes to the Message as it is, which records it as a decode error
        props = payload.get("properties")
        fields = props if isinstance(props, dict) else {}
        raw_info = fields.get("delivery_info")
        info = dict(raw_info) if isinstance(raw_info, dict) else {}
        if consumer_tag is not None:
            info["consumer_tag"] = consumer_tag
        body = payload.get("body")
        undecodable: BaseException | None = None
        if body and fields.get("body_encoding") == "base64":
            try:
                body = decode_body(body, "base64")
            except (binascii.Error, ValueError, TypeError) as exc:
                # left as it is: the consumer's decode-error handling rejects it instead of
                # drain_events failing (and the message coming back) again and again
                undecodable = exc
        message = received(
            self.Message,
            body,
            tag,
            payload.get("content-type"),
            payload.get("content-encoding"),
            info,
            props,
            payload.get("headers"),
            "utf-8",
            self,
            payload,
        )
        if undecodable is not None:
            error = DecodeError(
                f"Cannot decode the base64 body of a message from queue {delivery.queue!r}: {undecodable}"
            )
            error.__cause__ = undecodable
            message.errors.insert(0, (DecodeError, error, None))
        return message

    def message_to_python(self, raw: Any) -> BaseMessage:
        """A :class:`~kombu_like.message.Message` for ``raw`` (Kombu's channel API).

        Consumers receive messages already converted, which are returned as they are; an
        envelope (a dict as the store keeps it) is converted, with no delivery tag.
        """
        if isinstance(raw, BaseMessage):
            return raw
        return self._to_message(Delivery("", raw), None)

    def deliver(self, delivery: Delivery, consumer_tag: str) -> None:
        """Hand one delivery to the consumer ``consumer_tag`` (called by drain_events)."""
        tag = next(self._tags)
        if consumer_tag in self.no_ack_consumers:
            # the store forgets it as it is handed out
            self.seam.ack([delivery])
        else:
            self.qos.delivered[tag] = delivery  # QoS.append, inline: once per message
        self.callbacks[consumer_tag](self._to_message(delivery, tag, consumer_tag))

    def basic_get(self, queue: str, no_ack: bool = False, accept: Any = None, **kwargs: Any) -> BaseMessage | None:
        """Take one message from ``queue`` without waiting; ``None`` when it is empty."""
        return self._perform(self._basic_get(queue, no_ack))

    def _basic_get(self, queue: str, no_ack: bool) -> Plan[BaseMessage | None]:
        self._check_open()
        # taken by this connection for a consumer and not handed out yet: the queue's head
        delivery = self.connection.take_buffered(queue) if self.connection.buffer else None
        if delivery is None:
            delivery = yield from call(self.seam, "get_one", queue)
            if delivery is None:
                return None
        tag = next(self._tags)
        if no_ack:
            self.seam.ack([delivery])
        else:
            self.qos.append(tag, delivery)
        return self._to_message(delivery, tag)

    def basic_ack(self, delivery_tag: int, multiple: bool = False, **kwargs: Any) -> None:
        deliveries = self.qos.take(delivery_tag, multiple)
        if deliveries:
            self.connection.ack(deliveries)
            self.connection.capacity_changed()

    def basic_reject(self, delivery_tag: int, requeue: bool = False, **kwargs: Any) -> None:
        deliveries = self.qos.take(delivery_tag)
        if not deliveries:
            return
        if requeue:
            self.seam.requeue(deliveries, redelivered=True)
        else:
            self.seam.reject(deliveries)
        self.connection.capacity_changed()

    def basic_nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None:
        deliveries = self.qos.take(delivery_tag, multiple)
        if not deliveries:
            return
        if requeue:
            self.seam.requeue(deliveries, redelivered=True)
        else:
            self.seam.reject(deliveries)
        self.connection.capacity_changed()

    def basic_recover(self, requeue: bool = True) -> None:
        """Put every unacknowledged message of this channel back on its queue (and those
        taken for it and not handed out yet)."""
        # given back first: requeued at the head, the unacknowledged ones go before them
        self.connection.give_back(self)
        deliveries = self.qos.take_all()
        if deliveries:
            self.seam.requeue(deliveries, redelivered=True)
            self.connection.capacity_changed()

    def basic_qos(self, prefetch_size: int = 0, prefetch_count: int = 0, apply_global: bool = False) -> None:
        self.qos.prefetch_count = prefetch_count or 0
        if self.qos.prefetch_count and len(self.qos.delivered) + self.connection.buffered(self) > prefetch_count:
            # taken for a larger window than this one: taken again as room frees
            self.connection.give_back(self)
        self.connection.capacity_changed()

    def flow(self, active: bool = True) -> None:
        """Flow control is not emulated; accepted for API compatibility."""

    def after_reply_message_received(self, queue: str) -> None:
        self.queue_delete(queue)

    # -- lifecycle ------------------------------------------------------------------
    def close(self) -> None:
        """Close the channel, returning its unacknowledged messages to their queues."""
        return self._perform(self._close())

    def _close(self) -> Plan[None]:
        if not self.is_open:
            return
        self.is_open = False
        for tag in list(self.consumers):
            yield from self._basic_cancel(tag)
        try:
            deliveries = self.qos.take_all()
            if deliveries:
                yield from call(self.seam, "requeue", deliveries, redelivered=True)
            if self.connection.store.deletes_auto_delete_queues():
                for queue in self._exclusive:
                    yield from self._drop_queue(queue)
        finally:
            self.connection.channel_closed(self)

    def __enter__(self) -> VirtualChannel:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.channel_id} of {self.transport!r}>"


def _freeze(arguments: Mapping[str, Any] | None) -> Any:
    """Bindings are compared for equality; keep arguments as an immutable, ordered tuple."""
    if not arguments:
        return None
    return _FrozenArgs(arguments)


class _FrozenArgs(dict):  # type: ignore[type-arg]
    """A dict usable in bindings: hashable by content."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted((k, repr(v)) for k, v in self.items())))
