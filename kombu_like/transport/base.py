"""The transport seam.

Everything above ``kombu_like.transport`` talks to a broker through two objects:

* a :class:`Transport`, one per :class:`~kombu_like.Connection`, that opens and closes the
  broker connection, creates channels, waits for events and translates driver errors;
* a channel (see :class:`Channel`) that speaks the AMQP 0-9-1 model: declare, bind,
  publish, consume, get, ack/reject, qos.

A native AMQP transport maps these one to one onto protocol methods.  Stores that only
have queues (Redis, SQS, memory, sqlite) subclass :mod:`kombu_like.transport.virtual`,
which provides the whole channel and asks the store for a handful of queue operations.

A transport author overrides only what is documented here; nothing else leaks upward.
"""

from __future__ import annotations

import functools
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from time import monotonic
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from amqp.exceptions import ChannelError as _AMQPChannelError
from amqp.exceptions import ConnectionError as _AMQPConnectionError

from ..exceptions import ChannelError, ConnectionError, KombuError, OperationalError
from ..message import Message

if TYPE_CHECKING:
    from ..connection import Connection

__all__ = [
    "Capabilities",
    "Channel",
    "Management",
    "Message",
    "StdChannel",
    "Transport",
    "driver_seam",
    "queue_declare_ok_t",
    "time_left",
    "time_limit",
]

#: when the call the current thread is in must be over (``time_limit``), else None
_CALL_DEADLINE: ContextVar[float | None] = ContextVar("kombu_like_call_deadline", default=None)


@contextmanager
def time_limit(timeout: float | None) -> Iterator[None]:
    """Bound the synchronous broker calls made inside the block (declares, consume, qos
    ...) by ``timeout`` seconds from now, for a call that has a timeout of its own
    (``SimpleQueue.get(timeout=2)``); ``None`` adds no limit.  Nested limits: the earliest
    wins.  Transports read it through :func:`time_left`."""
    if timeout is None:
        yield
        return
    deadline = monotonic() + timeout
    outer = _CALL_DEADLINE.get()
    token = _CALL_DEADLINE.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _CALL_DEADLINE.reset(token)


def time_left(limit: float) -> float:
    """``limit`` seconds, or what is left of an earlier :func:`time_limit` (never below a
    millisecond, so a wait still looks once)."""
    deadline = _CALL_DEADLINE.get()
    if deadline is None:
        return limit
    return max(min(limit, deadline - monotonic()), 0.001)


class queue_declare_ok_t(NamedTuple):  # noqa: N801 - AMQP/Kombu name
    """Result of ``queue_declare``."""

    queue: str
    message_count: int
    consumer_count: int


@dataclass(frozen=True)
class Capabilities:
    """What a transport can do natively; the rest is absent, never silently faked."""

    #: exchange types that route correctly on this transport
    exchange_types: frozenset[str] = frozenset({"direct", "topic", "fanout", "headers"})
    #: messages with a higher ``priority`` are delivered first
    priority: bool = False
    #: per-message ``expiration`` and queue ``message_ttl`` are honoured
    ttl: bool = False
    #: the broker itself tracks unacknowledged messages (not emulated by the client)
    native_acks: bool = False
    #: fanout reaches every bound queue (False: only listening consumers, or not at all)
    fanout: bool = True
    #: ``Producer.batch()`` sends many messages in one round trip
    batch_publish: bool = False
    #: the transport can be driven by an event loop
    asynchronous: bool = False
    #: the transport sends and checks heartbeats
    heartbeats: bool = False
    #: exchange-to-exchange bindings
    exchange_bindings: bool = False
    #: extra, transport-specific flags
    extra: Mapping[str, Any] = field(default_factory=dict)

    # Kombu spells this ``transport.implements.exchange_type``.
    @property
    def exchange_type(self) -> frozenset[str]:
        return self.exchange_types

    def replace(self, **changes: Any) -> Capabilities:
        """Return a copy with ``changes`` applied."""
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        values.update(changes)
        return Capabilities(**values)


class StdChannel:
    """Kombu's channel base class: every channel of every transport is one.

    Gives a channel Kombu's helpers -- ``Consumer()``/``Producer()`` bound to it,
    ``prepare_queue_arguments``, ``after_reply_message_received`` and use as a context
    manager that closes it -- so code that subclasses or type-checks Kombu's
    ``StdChannel`` keeps working.
    """

    no_ack_consumers: Any = None

    def Consumer(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 - Kombu's name
        """A :class:`~kombu_like.Consumer` on this channel."""
        from ..messaging import Consumer

        return Consumer(self, *args, **kwargs)

    def Producer(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 - Kombu's name
        """A :class:`~kombu_like.Producer` on this channel."""
        from ..messaging import Producer

        return Producer(self, *args, **kwargs)

    def get_bindings(self) -> list[dict[str, Any]]:
        """The broker's bindings, where the transport can list them."""
        raise NotImplementedError(f"{type(self).__name__} cannot list bindings")

    def after_reply_message_received(self, queue: str) -> None:
        """Called after an RPC reply arrived on ``queue`` (a transport may delete it)."""

    def prepare_queue_arguments(self, arguments: Mapping[str, Any], **kwargs: Any) -> Mapping[str, Any]:
        """The ``queue_declare`` arguments for this transport (unchanged by default)."""
        return arguments

    def close(self) -> None:
        """Close the channel."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class Channel(StdChannel, ABC):
    """The channel every transport provides: AMQP 0-9-1's model, one method per operation.

    Every abstract method below must be implemented; a channel class that leaves one out
    cannot be instantiated (the error names the missing methods).  Virtual transports get
    all of them from :class:`~kombu_like.transport.virtual.VirtualChannel`.

    Attributes: ``connection`` (whose ``client`` is the :class:`~kombu_like.Connection`),
    ``events`` (``{'basic_return': set()}``), ``no_ack_consumers``, ``is_open``.

    Channels may also offer ``publish_batch(items)`` where ``items`` are
    ``(message, exchange, routing_key, mandatory)`` tuples, sent in one round trip; the
    producer uses it when the transport declares ``batch_publish``.
    """

    is_open: bool
    events: dict[str, set[Callable[..., Any]]]

    # -- exchanges -------------------------------------------------------------------
    @abstractmethod
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
        """Declare an exchange; ``passive`` only checks that it exists (NotFound if not)."""

    @abstractmethod
    def exchange_delete(self, exchange: str, if_unused: bool = False, nowait: bool = False) -> Any:
        """Delete an exchange and its bindings."""

    # -- queues ----------------------------------------------------------------------
    @abstractmethod
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
        """Declare a queue (a server-named one when ``queue`` is empty); return its name,
        ready message count and consumer count (``None`` with ``nowait``, where the broker
        sends no reply).  ``passive`` raises NotFound for a missing queue."""

    @abstractmethod
    def queue_bind(
        self,
        queue: str,
        exchange: str = "",
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
        nowait: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Bind ``queue`` to ``exchange`` with ``routing_key`` (and header ``arguments``)."""

    @abstractmethod
    def queue_unbind(
        self,
        queue: str,
        exchange: str = "",
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
        nowait: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Remove one binding."""

    @abstractmethod
    def queue_purge(self, queue: str, nowait: bool = False, **kwargs: Any) -> int | None:
        """Drop the ready messages of ``queue``; return how many there were."""

    @abstractmethod
    def queue_delete(
        self, queue: str, if_unused: bool = False, if_empty: bool = False, nowait: bool = False, **kwargs: Any
    ) -> int | None:
        """Delete ``queue``, its messages and its bindings; return the message count."""

    # -- publishing ------------------------------------------------------------------
    @abstractmethod
    def prepare_message(
        self,
        body: Any,
        priority: int | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
        headers: dict[str, Any] | None = None,
        properties: dict[str, Any] | None = None,
    ) -> Any:
        """The transport's message object for an encoded ``body``."""

    @abstractmethod
    def basic_publish(
        self,
        message: Any,
        exchange: str = "",
        routing_key: str = "",
        mandatory: bool = False,
        immediate: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Route ``message`` (from :meth:`prepare_message`) and store it durably enough that
        it is not lost once this returns (or confirmed, on transports with confirms)."""

    # -- consuming -------------------------------------------------------------------
    @abstractmethod
    def basic_consume(
        self,
        queue: str,
        no_ack: bool = False,
        callback: Callable[[Any], Any] | None = None,
        consumer_tag: str | None = None,
        nowait: bool = False,
        **kwargs: Any,
    ) -> str:
        """Deliver messages of ``queue`` to ``callback`` while the connection drains events;
        return the consumer tag."""

    @abstractmethod
    def basic_cancel(self, consumer_tag: str, nowait: bool = False, **kwargs: Any) -> Any:
        """Stop the consumer ``consumer_tag``."""

    @abstractmethod
    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        """One message from ``queue`` without waiting, or ``None``."""

    @abstractmethod
    def message_to_python(self, raw: Any) -> Message:
        """The :class:`~kombu_like.message.Message` for a raw transport message."""

    @abstractmethod
    def basic_ack(self, delivery_tag: int, multiple: bool = False, **kwargs: Any) -> Any:
        """Acknowledge ``delivery_tag`` (and every earlier one with ``multiple``)."""

    @abstractmethod
    def basic_reject(self, delivery_tag: int, requeue: bool = False, **kwargs: Any) -> Any:
        """Reject ``delivery_tag``: back to its queue, marked redelivered, with ``requeue``;
        otherwise discarded (or dead-lettered)."""

    @abstractmethod
    def basic_recover(self, requeue: bool = True) -> Any:
        """Give back every unacknowledged message of this channel."""

    @abstractmethod
    def basic_qos(self, prefetch_size: int = 0, prefetch_count: int = 0, apply_global: bool = False) -> Any:
        """Deliver at most ``prefetch_count`` unacknowledged messages (0: no limit)."""

    # -- lifecycle -------------------------------------------------------------------
    @abstractmethod
    def close(self) -> None:
        """Close the channel; its unacknowledged messages go back to their queues."""


_F = TypeVar("_F", bound=Callable[..., Any])


def driver_seam(driver_errors: tuple[type[BaseException], ...]) -> Callable[[_F], _F]:
    """The error-mapping seam for the methods of a native transport's channel.

    ``driver_errors`` raised by a decorated method go through the channel's
    ``transport.driver_error``: the transport's :meth:`Transport.on_driver_error` hook, then
    its :meth:`Transport.translate_error`, raised from the original.  (Virtual transports
    need no decorator: :class:`~kombu_like.transport.virtual.GuardedStore` does the same
    around every store call.)  One ``try`` per call, nothing allocated on success.
    """

    def decorate(method: _F) -> _F:
        @functools.wraps(method)
        def translated(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except driver_errors as exc:
                translated = self.transport.driver_error(exc)
                if translated is exc:
                    raise
                raise translated from exc

        return translated  # type: ignore[return-value]

    return decorate


class Management:
    """Optional broker management: listing queues and bindings where the broker can."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def get_bindings(self) -> list[dict[str, Any]]:
        raise NotImplementedError("this transport cannot list bindings")


class Transport:
    """Base class of every transport.

    Subclasses set the class-level descriptors (``driver_type``, ``driver_name``,
    ``default_port``, ``capabilities``) and implement the ``*_connection``,
    ``create_channel`` and ``drain_events`` methods.  ``translate_error`` is the one place a
    driver exception becomes a :mod:`kombu_like.exceptions` class.
    """

    #: family of the driver, e.g. ``"amqp"``, ``"redis"``, ``"sqs"``, ``"memory"``
    driver_type: str = "N/A"
    #: name of the Python package the transport drives
    driver_name: str = "N/A"
    #: port used when the URL names none
    default_port: int | None = None
    #: what this transport does natively
    capabilities: Capabilities = Capabilities()

    #: errors meaning "the connection is gone": the retry loop reconnects.  py-amqp's base
    #: classes are included because Kombu's exception classes *are* py-amqp's, so code
    #: written for Kombu raises and expects them on every transport.
    connection_errors: tuple[type[BaseException], ...] = (ConnectionError, OperationalError, _AMQPConnectionError)
    #: errors meaning "the channel is gone": the retry loop opens a new channel
    channel_errors: tuple[type[BaseException], ...] = (ChannelError, _AMQPChannelError)
    recoverable_connection_errors: tuple[type[BaseException], ...] = (
        ConnectionError,
        OperationalError,
    )
    recoverable_channel_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, client: Connection, **kwargs: Any) -> None:
        self.client = client

    # -- connection lifecycle ----------------------------------------------------------
    def establish_connection(self) -> Any:
        """Open the broker connection within ``client.connect_timeout`` and return it."""
        raise NotImplementedError

    def close_connection(self, connection: Any) -> None:
        """Close ``connection``; must not block longer than a few seconds."""
        raise NotImplementedError

    def create_channel(self, connection: Any) -> Any:
        """Open and return a new channel on ``connection``."""
        raise NotImplementedError

    def close_channel(self, channel: Any) -> None:
        """Close ``channel`` (restoring its unacked messages on emulated transports)."""
        channel.close()

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Deliver pending events to consumers; raise :class:`socket.timeout` when none
        arrived within ``timeout`` seconds (``None`` waits forever)."""
        raise NotImplementedError

    def verify_connection(self, connection: Any) -> bool:
        """Return True when ``connection`` is still usable."""
        return True

    def heartbeat_check(self, connection: Any, rate: int = 2) -> None:
        """Send/check heartbeats; transports without heartbeats do nothing."""

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        """Hook the connection into an event loop (transports that support it)."""

    def unregister_from_event_loop(self, connection: Any, loop: Any) -> None:
        """Undo :meth:`register_with_event_loop` (transports that support it)."""

    def on_readable(self, connection: Any, loop: Any) -> None:
        """Called by an event loop when the connection's socket is readable."""

    def qos_semantics_matches_spec(self, connection: Any) -> bool:
        return True

    # -- errors --------------------------------------------------------------------
    def on_driver_error(self, exc: BaseException) -> None:
        """Called with a driver error before it is translated: the one place for side
        effects such as dropping a connection.  Queue stores have their own hook
        (:meth:`~kombu_like.transport.virtual.QueueStore.on_driver_error`).  Must not raise."""
        return None

    def driver_error(self, exc: BaseException) -> BaseException:
        """:meth:`on_driver_error`, then :meth:`translate_error`: what the seam raises."""
        try:
            self.on_driver_error(exc)
        except Exception:  # a failing hook must not hide the error it was told about
            pass
        return self.translate_error(exc)

    def translate_error(self, exc: BaseException) -> BaseException:
        """Map a driver exception onto :mod:`kombu_like.exceptions`.

        Return ``exc`` itself if it is already one of ours or is not a broker error.  The
        caller raises the result ``from exc``.
        """
        if isinstance(exc, KombuError | socket.timeout):
            return exc
        if isinstance(exc, OSError):
            return ConnectionError(f"{type(exc).__name__}: {exc}")
        return exc

    # -- descriptive -----------------------------------------------------------------
    def driver_version(self) -> str:
        return "N/A"

    def get_manager(self, *args: Any, **kwargs: Any) -> Management:
        return Management(self)

    @property
    def implements(self) -> Capabilities:
        """Kombu's name for :attr:`capabilities`."""
        return self.capabilities

    @property
    def default_connection_params(self) -> dict[str, Any]:
        return {"port": self.default_port} if self.default_port else {}

    def get_heartbeat_interval(self, connection: Any) -> float:
        return 0

    def as_uri(self, uri: str, include_password: bool = False, mask: str = "**") -> str:
        from ..utils.url import maybe_sanitize_url

        return uri if include_password else maybe_sanitize_url(uri, mask)  # type: ignore[no-any-return]

    @property
    def supports_ev(self) -> bool:
        return self.capabilities.asynchronous

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__}>"


#: callback taking a raw transport message
RawCallback = Callable[[Any], Any]
