"""Exchange, Queue and binding declarations.

Entities are plain descriptions until bound to a channel (``queue(channel)`` or
``queue.maybe_bind(channel)``); then ``declare()``, ``purge()``, ``get()`` ... act on the
broker through that channel.

Operations of several broker calls (``Queue.declare``, ``queue_declare``, ``get``) are
plans (:mod:`kombu_like.plan`): bound to a channel of :mod:`kombu_like.aio` they return
an awaitable, as do the one-call operations, whose result is the channel's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .abstract import MaybeChannelBound
from .compression import DEFAULT_MAX_DECOMPRESSED_SIZE
from .exceptions import ContentDisallowed
from .plan import Plan, Ready, call, is_async, run
from .serialization import prepare_accept_content

if TYPE_CHECKING:
    from .message import Message

__all__ = ["Exchange", "Queue", "binding", "maybe_delivery_mode"]

TRANSIENT_DELIVERY_MODE = 1
PERSISTENT_DELIVERY_MODE = 2
DELIVERY_MODES = {"transient": TRANSIENT_DELIVERY_MODE, "persistent": PERSISTENT_DELIVERY_MODE}
INTERNAL_EXCHANGE_PREFIX = ("amq.",)

#: Queue.from_dict sets these itself, from Kombu's configuration keys
_FROM_DICT_EXPLICIT = frozenset({"name", "exchange", "routing_key", "durable", "auto_delete"})


def _first_set(*values: Any) -> Any:
    """The first value that is not None (None when all are)."""
    for value in values:
        if value is not None:
            return value
    return None


def maybe_delivery_mode(v: Any, modes: Mapping[str, int] | None = None, default: int = PERSISTENT_DELIVERY_MODE) -> int:
    """Turn ``'persistent'``/``'transient'`` (or a number) into an AMQP delivery mode."""
    modes = DELIVERY_MODES if modes is None else modes
    if v:
        return v if isinstance(v, int) else modes[v]
    return default


def _reprstr(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


class Exchange(MaybeChannelBound):
    """An exchange: where producers send messages and queues bind.

    Arguments:
        name: exchange name; ``""`` is the default exchange (routes by queue name).
        type: ``direct``, ``topic``, ``fanout`` or ``headers``.
        durable: survives a broker restart.
        auto_delete: deleted when the last queue unbinds.
        delivery_mode: default for messages created by :meth:`Message`
            (``'transient'``/1 or ``'persistent'``/2).
        arguments: extra declaration arguments.
        passive: only check that the exchange exists when declaring.
        no_declare: never declare it (it is managed elsewhere).
    """

    TRANSIENT_DELIVERY_MODE = TRANSIENT_DELIVERY_MODE
    PERSISTENT_DELIVERY_MODE = PERSISTENT_DELIVERY_MODE

    attrs = (
        ("name", None),
        ("type", None),
        ("arguments", None),
        ("durable", bool),
        ("passive", bool),
        ("auto_delete", bool),
        ("delivery_mode", lambda m: DELIVERY_MODES.get(m) or m),
        ("no_declare", bool),
    )

    def __init__(
        self,
        name: str = "",
        type: str = "",
        channel: Any = None,
        durable: bool = True,
        auto_delete: bool = False,
        delivery_mode: int | str | None = None,
        arguments: Mapping[str, Any] | None = None,
        passive: bool = False,
        no_declare: bool = False,
        internal: bool = False,
        **kwargs: Any,
    ) -> None:
        self.name = name or ""
        self.type = type or "direct"
        self.durable = durable
        self.auto_delete = auto_delete
        self.delivery_mode = (
            DELIVERY_MODES.get(delivery_mode, delivery_mode)  # type: ignore[arg-type]
            if delivery_mode is not None
            else None
        )
        self.arguments = dict(arguments) if arguments else None
        self.passive = passive
        self.no_declare = no_declare
        self.internal = internal
        if channel is not None:
            self.maybe_bind(channel)

    @property
    def can_cache_declaration(self) -> bool:  # type: ignore[override]
        return not self.auto_delete

    def _can_declare(self) -> bool:
        return not self.no_declare and bool(self.name) and not self.name.startswith(INTERNAL_EXCHANGE_PREFIX)

    def declare(self, nowait: bool = False, passive: bool | None = None, channel: Any = None) -> Any:
        """Declare the exchange on the broker (nothing for ``""``/``amq.*``/no_declare)."""
        if self._can_declare():
            return run(channel or self.channel, self._declare_plan(nowait, passive, channel))
        if is_async(channel or self._channel):
            return Ready(None)  # awaitable on an asyncio channel, like every other outcome
        return None

    def _declare_plan(self, nowait: bool = False, passive: bool | None = None, channel: Any = None) -> Plan[Any]:
        if not self._can_declare():
            return None
        passive = self.passive if passive is None else passive
        return (
            yield from call(
                channel or self.channel,
                "exchange_declare",
                exchange=self.name,
                type=self.type,
                durable=self.durable,
                auto_delete=self.auto_delete,
                arguments=self.arguments,
                nowait=nowait,
                passive=passive,
            )
        )

    def bind_to(
        self,
        exchange: Exchange | str = "",
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
        nowait: bool = False,
        channel: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Bind this exchange to another (exchange-to-exchange binding)."""
        if isinstance(exchange, Exchange):
            exchange = exchange.name
        return (channel or self.channel).exchange_bind(
            destination=self.name,
            source=exchange,
            routing_key=routing_key,
            nowait=nowait,
            arguments=arguments,
        )

    def unbind_from(
        self,
        source: Exchange | str = "",
        routing_key: str = "",
        nowait: bool = False,
        arguments: Mapping[str, Any] | None = None,
        channel: Any = None,
    ) -> Any:
        """Remove an exchange-to-exchange binding."""
        if isinstance(source, Exchange):
            source = source.name
        return (channel or self.channel).exchange_unbind(
            destination=self.name,
            source=source,
            routing_key=routing_key,
            nowait=nowait,
            arguments=arguments,
        )

    def Message(  # noqa: N802 - Kombu's public name
        self,
        body: Any,
        delivery_mode: int | str | None = None,
        properties: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Create a transport message to publish with :meth:`publish`."""
        properties = {} if properties is None else properties
        properties["delivery_mode"] = maybe_delivery_mode(delivery_mode or self.delivery_mode)
        if isinstance(body, str) and properties.get("content_encoding") is None and not kwargs.get("content_encoding"):
            kwargs["content_encoding"] = "utf-8"  # text goes out encoded, and says how (as in Kombu)
        return self.channel.prepare_message(body, properties=properties, **kwargs)

    def publish(
        self,
        message: Any,
        routing_key: str | None = None,
        mandatory: bool = False,
        immediate: bool = False,
        exchange: str | None = None,
    ) -> Any:
        """Publish a message created by :meth:`Message` to this exchange."""
        if isinstance(message, str):
            message = self.Message(message)
        exchange = exchange or self.name
        return self.channel.basic_publish(
            message, exchange=exchange, routing_key=routing_key, mandatory=mandatory, immediate=immediate
        )

    def delete(self, if_unused: bool = False, nowait: bool = False) -> Any:
        """Delete the exchange on the broker."""
        return self.channel.exchange_delete(exchange=self.name, if_unused=if_unused, nowait=nowait)

    def binding(
        self,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
        unbind_arguments: Mapping[str, Any] | None = None,
    ) -> binding:
        return binding(self, routing_key, arguments, unbind_arguments)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Exchange):
            return (
                self.name == other.name
                and self.type == other.type
                and self.arguments == other.arguments
                and self.durable == other.durable
                and self.auto_delete == other.auto_delete
                and self.delivery_mode == other.delivery_mode
            )
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash(f"E|{self.name}")

    def __repr__(self) -> str:
        return self._repr_entity(str(self))

    def __str__(self) -> str:
        return f"Exchange {_reprstr(self.name) or repr('')}({self.type})"


class binding:  # noqa: N801 - Kombu's public name
    """A binding of a queue (or exchange) to an exchange with a routing key/arguments."""

    def __init__(
        self,
        exchange: Exchange | None = None,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
        unbind_arguments: Mapping[str, Any] | None = None,
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.arguments = arguments
        self.unbind_arguments = unbind_arguments

    def declare(self, channel: Any, nowait: bool = False) -> Any:
        """Declare the binding's exchange."""
        if self.exchange and self.exchange.name:
            return self.exchange.declare(channel=channel, nowait=nowait)
        return None

    def bind(self, entity: Queue | Exchange, nowait: bool = False, channel: Any = None) -> Any:
        """Bind ``entity`` to this binding's exchange."""
        return entity.bind_to(
            exchange=self.exchange,  # type: ignore[arg-type]
            routing_key=self.routing_key,
            arguments=self.arguments,
            nowait=nowait,
            channel=channel,
        )

    def unbind(self, entity: Queue | Exchange, nowait: bool = False, channel: Any = None) -> Any:
        return entity.unbind_from(
            self.exchange,  # type: ignore[arg-type]
            routing_key=self.routing_key,
            arguments=self.unbind_arguments,
            nowait=nowait,
            channel=channel,
        )

    def as_dict(self, recurse: bool = False) -> dict[str, Any]:
        return {
            "exchange": self.exchange.as_dict(recurse) if recurse and self.exchange else self.exchange,
            "routing_key": self.routing_key,
            "arguments": self.arguments,
            "unbind_arguments": self.unbind_arguments,
        }

    def __eq__(self, other: object) -> bool:
        if isinstance(other, binding):
            return (
                self.exchange == other.exchange
                and self.routing_key == other.routing_key
                and self.arguments == other.arguments
            )
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.exchange.name if self.exchange else None, self.routing_key))

    def __repr__(self) -> str:
        return f"<binding: {self}>"

    def __str__(self) -> str:
        name = self.exchange.name if self.exchange else ""
        return f"{_reprstr(name)}->{_reprstr(self.routing_key)}"


class Queue(MaybeChannelBound):
    """A queue, optionally bound to an exchange with a routing key (or several bindings).

    Arguments:
        name: queue name; ``""`` lets the broker choose one on declare.
        exchange: the exchange to bind to (an :class:`Exchange` or its name).
        routing_key: binding key.
        bindings: several :class:`binding` objects instead of exchange/routing_key.
        durable, exclusive, auto_delete: AMQP queue flags.
        queue_arguments, binding_arguments, consumer_arguments: raw AMQP arguments.
        message_ttl, expires: seconds (``x-message-ttl``/``x-expires``).
        max_length, max_length_bytes, max_priority: ``x-max-*`` arguments.
        no_ack: default for consumers of this queue.
        on_declared: ``callback(name, message_count, consumer_count)`` after declaring.
    """

    ContentDisallowed = ContentDisallowed

    attrs = (
        ("name", None),
        ("exchange", None),
        ("routing_key", None),
        ("queue_arguments", None),
        ("binding_arguments", None),
        ("consumer_arguments", None),
        ("durable", bool),
        ("exclusive", bool),
        ("auto_delete", bool),
        ("no_ack", None),
        ("alias", None),
        ("bindings", list),
        ("no_declare", bool),
        ("expires", float),
        ("message_ttl", float),
        ("max_length", int),
        ("max_length_bytes", int),
        ("max_priority", int),
    )

    def __init__(
        self,
        name: str = "",
        exchange: Exchange | str | Iterable[binding] | None = None,
        routing_key: str = "",
        channel: Any = None,
        bindings: Iterable[binding] | None = None,
        on_declared: Callable[[str, int, int], Any] | None = None,
        durable: bool = True,
        exclusive: bool = False,
        auto_delete: bool = False,
        queue_arguments: Mapping[str, Any] | None = None,
        binding_arguments: Mapping[str, Any] | None = None,
        consumer_arguments: Mapping[str, Any] | None = None,
        no_ack: bool | None = None,
        alias: str | None = None,
        no_declare: bool | None = None,
        expires: float | None = None,
        message_ttl: float | None = None,
        max_length: int | None = None,
        max_length_bytes: int | None = None,
        max_priority: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.name = name or ""
        self._declared_name = self.name
        self.bindings: set[binding] = set(bindings or [])
        # Kombu's documented short form: Queue("name", [binding(...), binding(...)])
        if isinstance(exchange, list | tuple | set | frozenset):
            self.bindings |= set(exchange)
            exchange = None
        if isinstance(exchange, str):
            exchange = Exchange(exchange)
        if not isinstance(exchange, Exchange) or not exchange or self.bindings:
            # with explicit bindings the queue's own exchange is not used, as in Kombu
            exchange = Exchange("")
        self.exchange: Exchange = exchange
        self.routing_key = routing_key or ""
        self.on_declared = on_declared
        self.durable = durable
        self.exclusive = exclusive
        # an exclusive queue is deleted with its connection, like auto_delete
        self.auto_delete = auto_delete or exclusive
        self.queue_arguments = dict(queue_arguments) if queue_arguments else None
        self.binding_arguments = dict(binding_arguments) if binding_arguments else None
        self.consumer_arguments = dict(consumer_arguments) if consumer_arguments else None
        self.no_ack = bool(no_ack) if no_ack is not None else False
        self.alias = alias
        self.no_declare = bool(no_declare)
        self.expires = expires
        self.message_ttl = message_ttl
        self.max_length = max_length
        self.max_length_bytes = max_length_bytes
        self.max_priority = max_priority
        if channel is not None:
            self.maybe_bind(channel)

    # -- binding -----------------------------------------------------------------
    def bind(self, channel: Any) -> Queue:
        on_declared = self.on_declared
        bound = super().bind(channel)
        bound.on_declared = on_declared
        return bound

    def _copied(self) -> None:
        self.bindings = set(self.bindings)

    def when_bound(self) -> None:
        if self.exchange:
            self.exchange = self.exchange(self._channel)
            # an exchange bound before keeps its old channel (e.g. one lost with its connection)
            self.exchange.revive(self._channel)

    @property
    def can_cache_declaration(self) -> bool:  # type: ignore[override]
        expiring = bool(self.queue_arguments and "x-expires" in self.queue_arguments) or bool(self.expires)
        return not expiring and not self.auto_delete

    def _queue_arguments(self) -> dict[str, Any] | None:
        args: dict[str, Any] = dict(self.queue_arguments or {})
        for key, value in (
            ("x-message-ttl", _ms(self.message_ttl)),
            ("x-expires", _ms(self.expires)),
            ("x-max-length", self.max_length),
            ("x-max-length-bytes", self.max_length_bytes),
            ("x-max-priority", self.max_priority),
        ):
            if value is not None:
                args[key] = value
        return args or None

    # -- broker operations --------------------------------------------------------
    def declare(self, nowait: bool = False, channel: Any = None) -> Any:
        """Declare the exchange(s), the queue and its bindings; return the queue name."""
        if self.no_declare:  # nothing to do, bound or not
            return Ready(self.name) if is_async(channel or self._channel) else self.name
        return run(channel or self.channel, self._declare_plan(nowait, channel))

    def _declare_plan(self, nowait: bool = False, channel: Any = None) -> Plan[str]:
        if not self.no_declare:
            # through the methods, as Kombu's declare: a subclass's (or a test double's)
            # _create_* and declare/bind take part
            yield from call(self, "_create_exchange", nowait=nowait, channel=channel)
            yield from call(self, "_create_queue", nowait=nowait, channel=channel)
            yield from call(self, "_create_bindings", nowait=nowait, channel=channel)
        return self.name

    def _create_exchange(self, nowait: bool = False, channel: Any = None) -> Any:
        if self.exchange:
            return self.exchange.declare(nowait=nowait, channel=channel)
        return None

    def _create_queue(self, nowait: bool = False, channel: Any = None) -> Any:
        return run(channel or self.channel, self._create_queue_plan(nowait, channel))

    def _create_queue_plan(self, nowait: bool, channel: Any) -> Plan[None]:
        yield from call(self, "queue_declare", nowait=nowait, passive=False, channel=channel)
        if self.exchange and self.exchange.name:
            yield from call(self, "queue_bind", nowait=nowait, channel=channel)

    def _create_bindings(self, nowait: bool = False, channel: Any = None) -> Any:
        return run(channel or self.channel, self._create_bindings_plan(nowait, channel))

    def _create_bindings_plan(self, nowait: bool, channel: Any) -> Plan[None]:
        for item in self.bindings:
            channel = channel or self.channel
            yield from call(item, "declare", channel)
            yield from call(item, "bind", self, nowait=nowait, channel=channel)

    def queue_declare(self, nowait: bool = False, passive: bool = False, channel: Any = None) -> Any:
        """Declare just the queue; return ``(name, message_count, consumer_count)``."""
        channel = channel or self.channel
        return run(channel, self._queue_declare_plan(nowait, passive, channel))

    def _queue_declare_plan(self, nowait: bool, passive: bool, channel: Any) -> Plan[Any]:
        ret = yield from call(
            channel,
            "queue_declare",
            queue=self.name,
            passive=passive,
            durable=self.durable,
            exclusive=self.exclusive,
            auto_delete=self.auto_delete,
            arguments=self._queue_arguments(),
            nowait=nowait,
        )
        if not self.name and ret:
            self.name = ret[0]
        if self.on_declared and ret:
            self.on_declared(*ret)
        return ret

    def queue_bind(self, nowait: bool = False, channel: Any = None) -> Any:
        """Bind the queue to its exchange with its routing key."""
        return self.bind_to(self.exchange, self.routing_key, self.binding_arguments, channel=channel, nowait=nowait)

    def bind_to(
        self,
        exchange: Exchange | str = "",
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
        nowait: bool = False,
        channel: Any = None,
    ) -> Any:
        """Bind this queue to ``exchange`` with ``routing_key``."""
        if isinstance(exchange, Exchange):
            exchange = exchange.name
        return (channel or self.channel).queue_bind(
            queue=self.name,
            exchange=exchange,
            routing_key=routing_key,
            arguments=arguments,
            nowait=nowait,
        )

    def unbind_from(
        self,
        exchange: Exchange | str = "",
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
        nowait: bool = False,
        channel: Any = None,
    ) -> Any:
        """Remove the binding of this queue to ``exchange``."""
        if isinstance(exchange, Exchange):
            exchange = exchange.name
        return (channel or self.channel).queue_unbind(
            queue=self.name,
            exchange=exchange,
            routing_key=routing_key,
            arguments=arguments,
            nowait=nowait,
        )

    def unbind(self) -> Any:
        """Remove the queue's binding to its own exchange."""
        return self.unbind_from(self.exchange, self.routing_key, self.binding_arguments)

    def get(self, no_ack: bool | None = None, accept: Iterable[str] | None = None) -> Message | None | Any:
        """Fetch one message without consuming (``None`` when the queue is empty)."""
        return run(self.channel, self._get_plan(no_ack, accept))

    def _get_plan(self, no_ack: bool | None, accept: Iterable[str] | None) -> Plan[Message | None]:
        no_ack = self.no_ack if no_ack is None else no_ack
        channel = self.channel
        message = yield from call(channel, "basic_get", queue=self.name, no_ack=no_ack)
        if message is not None:
            m2p = getattr(channel, "message_to_python", None)
            if m2p:
                message = m2p(message)
            # accept and the size limit first, so refused content is never decompressed
            message.accept = prepare_accept_content(accept)
            message.max_decompressed_size = self._max_decompressed_size()
            message._raise_if_unreadable()
        return message  # type: ignore[no-any-return]

    def _max_decompressed_size(self) -> int | None:
        client = getattr(getattr(self.channel, "connection", None), "client", None)
        options = getattr(client, "transport_options", None)
        if not isinstance(options, Mapping):
            return DEFAULT_MAX_DECOMPRESSED_SIZE
        limit = options.get("max_decompressed_size", DEFAULT_MAX_DECOMPRESSED_SIZE)
        return None if limit is None else int(limit)

    def purge(self, nowait: bool = False) -> int:
        """Remove all ready messages; return how many."""
        return self.channel.queue_purge(queue=self.name, nowait=nowait) or 0

    def consume(
        self,
        consumer_tag: str = "",
        callback: Callable[[Any], Any] | None = None,
        no_ack: bool | None = None,
        nowait: bool = False,
        on_cancel: Callable[[str], Any] | None = None,
    ) -> Any:
        """Start a broker consumer for this queue (low level; see :class:`Consumer`)."""
        return run(self.channel, self._consume_plan(consumer_tag, callback, no_ack, nowait, on_cancel))

    def _consume_plan(
        self,
        consumer_tag: str = "",
        callback: Callable[[Any], Any] | None = None,
        no_ack: bool | None = None,
        nowait: bool = False,
        on_cancel: Callable[[str], Any] | None = None,
    ) -> Plan[Any]:
        if no_ack is None:
            no_ack = self.no_ack
        kwargs: dict[str, Any] = {}
        if on_cancel is not None:
            kwargs["on_cancel"] = on_cancel
        if self.consumer_arguments:
            kwargs["arguments"] = self.consumer_arguments
        return (
            yield from call(
                self.channel,
                "basic_consume",
                queue=self.name,
                no_ack=no_ack,
                consumer_tag=consumer_tag or "",
                callback=callback,
                nowait=nowait,
                **kwargs,
            )
        )

    def cancel(self, consumer_tag: str) -> Any:
        return self.channel.basic_cancel(consumer_tag)

    def delete(self, if_unused: bool = False, if_empty: bool = False, nowait: bool = False) -> Any:
        """Delete the queue on the broker."""
        return self.channel.queue_delete(queue=self.name, if_unused=if_unused, if_empty=if_empty, nowait=nowait)

    def queue_unbind(
        self, arguments: Mapping[str, Any] | None = None, nowait: bool = False, channel: Any = None
    ) -> Any:
        return self.unbind_from(self.exchange, self.routing_key, arguments, nowait, channel)

    @classmethod
    def from_dict(cls, queue: str, **options: Any) -> Queue:
        """Build a Queue from Celery-style configuration.

        A ``name`` among the options (as in another queue's ``as_dict()``) is ignored: the
        queue is named ``queue``, as in Kombu.
        """
        options.pop("name", None)
        # Kombu's rules: binding_key wins over routing_key for the queue; the exchange and
        # the queue each take durable/auto_delete from their own key, else the shared one
        binding_key = options.get("binding_key") or options.get("routing_key")
        e_durable = _first_set(options.get("exchange_durable"), options.get("durable"))
        e_auto_delete = _first_set(options.get("exchange_auto_delete"), options.get("auto_delete"))
        q_durable = _first_set(options.get("queue_durable"), options.get("durable"))
        q_auto_delete = _first_set(options.get("queue_auto_delete"), options.get("auto_delete"))
        exchange = options.get("exchange")
        if not isinstance(exchange, Exchange):
            exchange = Exchange(
                exchange or "",
                type=options.get("exchange_type") or "direct",
                delivery_mode=options.get("delivery_mode"),
                durable=True if e_durable is None else bool(e_durable),
                auto_delete=bool(e_auto_delete),
                arguments=options.get("exchange_arguments"),
            )
        # every other Queue attribute (expires, message_ttl, max_priority ...) as given
        kwargs: dict[str, Any] = {
            attr: options[attr] for attr, _ in cls.attrs if attr not in _FROM_DICT_EXPLICIT and attr in options
        }
        bindings = kwargs.get("bindings")
        if bindings is not None:
            kwargs["bindings"] = [b if isinstance(b, binding) else binding(**b) for b in bindings]
        return cls(
            queue,
            exchange=exchange,
            routing_key=binding_key or "",
            durable=True if q_durable is None else bool(q_durable),
            auto_delete=bool(q_auto_delete),
            **kwargs,
        )

    def as_dict(self, recurse: bool = False) -> dict[str, Any]:
        out = super().as_dict(recurse)
        if recurse and self.bindings:
            out["bindings"] = [b.as_dict(recurse=True) for b in self.bindings]
        return out

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Queue):
            return (
                self.name == other.name
                and self.exchange == other.exchange
                and self.routing_key == other.routing_key
                and self.queue_arguments == other.queue_arguments
                and self.binding_arguments == other.binding_arguments
                and self.consumer_arguments == other.consumer_arguments
                and self.durable == other.durable
                and self.exclusive == other.exclusive
                and self.auto_delete == other.auto_delete
            )
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash(f"Q|{self.name}")

    def __repr__(self) -> str:
        if self.bindings:
            bindings = ", ".join(str(b) for b in self.bindings)
            return self._repr_entity(f"Queue {_reprstr(self.name)} -> [{bindings}]")
        return self._repr_entity(f"Queue {_reprstr(self.name)} -> {self.exchange!r} -> {_reprstr(self.routing_key)}")
