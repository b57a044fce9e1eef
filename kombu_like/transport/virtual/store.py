"""What a queue store and a binding store implement.

A queue store is a place that can hold named queues of messages: a Redis server, SQS, an
sqlite file, process memory.  The virtual channel gives it exchanges, bindings, prefetch,
acknowledgement bookkeeping and redelivery; the store only moves envelopes in and out.
Exchanges and bindings live in the store's :attr:`QueueStore.bindings`, a
:class:`BindingStore`: by default an :class:`InMemoryBindings` (process memory), or the
store's own where bindings must be shared between processes (Redis, sqlite).

Every call the virtual layer makes into a store or its binding store goes through one
error-mapping seam (:class:`GuardedStore`; the driverless :class:`InMemoryBindings` is
called directly): a store raises what its driver raises, the
store's :meth:`QueueStore.on_driver_error` runs for side effects (dropping connections),
and the transport's ``translate_error`` turns the error into the library's exception tree
with the driver's exception kept as ``__cause__``.

Envelopes are Kombu's virtual-transport JSON envelope, as plain dicts::

    {"body": "<encoded>", "content-type": "application/json", "content-encoding": "utf-8",
     "headers": {...},
     "properties": {"delivery_mode": 2, "priority": 0, "body_encoding": "base64",
                    "delivery_info": {"exchange": "...", "routing_key": "..."},
                    "delivery_tag": "<uuid>", ...}}

A store that serializes them (Redis, SQS, sqlite) uses JSON, so a Kombu process reads them.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, runtime_checkable

from ..base import Capabilities
from .routing import Binding, ExchangeInfo

#: what the envelopes of plain messages differ in, besides the body and the delivery tag:
#: (content type, content encoding, delivery mode, exchange, routing key)
PlainShape = tuple[str | None, str | None, int, str, str]

__all__ = [
    "BindingStore",
    "BindingTable",
    "Delivery",
    "GuardedBindings",
    "GuardedStore",
    "InMemoryBindings",
    "PlainShape",
    "QueueStore",
    "drives_event_loop",
    "unreadable_envelope",
]


@dataclass(slots=True)
class Delivery:
    """One envelope taken from a queue and not yet acknowledged.

    ``receipt`` is whatever the store needs to acknowledge or restore it later (a Redis
    unacked-hash key, an SQS receipt handle, a row id); the virtual layer never looks in it.
    """

    queue: str
    payload: dict[str, Any]
    receipt: Any = None


logger = logging.getLogger("kombu_like.transport.virtual")

#: content type of an entry a store could not read as an envelope: no consumer accepts
#: it by accident
UNREADABLE = "application/x-kombu-like-unreadable"
#: bytes of such an entry quoted in its error
UNREADABLE_PREVIEW = 80


def unreadable_envelope(what: str, queue: str, raw: bytes, exc: BaseException, delivery_tag: str) -> dict[str, Any]:
    """The envelope a store delivers for an entry of ``queue`` it cannot read (``what``
    names it: "message 5 of queue 'q'"): the raw bytes, opaque, with the problem in a
    header, so the consumer sees it (and may reject it) instead of it vanishing or
    blocking the queue."""
    problem = f"{what} is not a valid envelope ({type(exc).__name__}: {exc}); raw bytes: {raw[:UNREADABLE_PREVIEW]!r}"
    # the consumer reports it, with this text, in its one line per bad message
    logger.debug("%s", problem)
    return {
        "body": raw,
        "content-type": UNREADABLE,
        "content-encoding": "binary",
        "headers": {"x-kombu-like-error": problem},
        "properties": {
            "body_encoding": None,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "delivery_tag": delivery_tag,
            "priority": 0,
        },
    }


@runtime_checkable
class BindingStore(Protocol):
    """Where a transport keeps exchanges and bindings.

    Every method may be called from several threads.  Errors are raised as the driver
    raises them (the seam translates them).
    """

    def declare_exchange(self, info: ExchangeInfo) -> None:
        """Record exchange ``info``; an exchange of that name that exists stays as it is."""
        ...

    def exchange(self, name: str) -> ExchangeInfo | None:
        """The declared exchange ``name``, or ``None``."""
        ...

    def delete_exchange(self, name: str) -> None:
        """Forget exchange ``name`` and every binding to it."""
        ...

    def bind(self, exchange: str, binding: Binding) -> None:
        """Bind ``binding.queue`` to ``exchange`` (binding twice is binding once)."""
        ...

    def unbind(self, exchange: str, binding: Binding) -> None:
        """Remove one binding; a missing one is no error."""
        ...

    def unbind_queue(self, queue: str) -> None:
        """Remove every binding of ``queue``, to every exchange (the queue was deleted)."""
        ...

    def get_bindings(self, exchange: str) -> list[Binding]:
        """The bindings of ``exchange``, in the order they were made."""
        ...

    def all_bindings(self) -> list[tuple[str, Binding]]:
        """Every ``(exchange, binding)`` pair."""
        ...

    @property
    def version(self) -> Any:
        """Changes whenever bindings change, so routing caches know to drop what they hold."""
        ...


class InMemoryBindings:
    """Exchanges and bindings kept in process memory, guarded by a lock (the default).

    ``version`` changes on every binding change so routing caches know when to drop what
    they cached.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exchanges: dict[str, ExchangeInfo] = {}
        self.bindings: dict[str, list[Binding]] = {}
        self.version = 0

    def declare_exchange(self, info: ExchangeInfo) -> None:
        with self._lock:
            self.exchanges.setdefault(info.name, info)

    def exchange(self, name: str) -> ExchangeInfo | None:
        return self.exchanges.get(name)

    def exchange_versioned(self, name: str) -> tuple[ExchangeInfo | None, int]:
        return self.exchanges.get(name), self.version

    def delete_exchange(self, name: str) -> None:
        with self._lock:
            self.exchanges.pop(name, None)
            self.bindings.pop(name, None)
            self.version += 1

    def bind(self, exchange: str, binding: Binding) -> None:
        with self._lock:
            current = self.bindings.setdefault(exchange, [])
            if binding not in current:
                current.append(binding)
                self.version += 1

    def unbind(self, exchange: str, binding: Binding) -> None:
        with self._lock:
            current = self.bindings.get(exchange, [])
            if binding in current:
                current.remove(binding)
                self.version += 1

    def unbind_queue(self, queue: str) -> None:
        with self._lock:
            for exchange, current in self.bindings.items():
                self.bindings[exchange] = [b for b in current if b.queue != queue]
            self.version += 1

    def get_bindings(self, exchange: str) -> list[Binding]:
        return list(self.bindings.get(exchange, ()))

    def all_bindings(self) -> list[tuple[str, Binding]]:
        with self._lock:
            return [(ex, b) for ex, items in self.bindings.items() for b in items]


#: the name earlier releases used for :class:`InMemoryBindings`
BindingTable = InMemoryBindings


class QueueStore(ABC):
    """What a queue store implements: every abstract method below, nothing else is required.

    Every method may be called from several threads of one process, one Connection's
    channels share one store object, and every blocking call honours its timeout.
    Errors are raised as the driver raises them; the virtual layer calls every method
    through one seam that runs :meth:`on_driver_error` and the transport's
    ``translate_error``, which maps them onto the library's exception tree.

    A subclass that leaves an abstract method out cannot be instantiated: the error names
    the missing methods when the store is made, not when one is first called.
    """

    #: what the store does natively (priority, ttl, batch_publish, fanout ...); declared
    #: here once, the transport reads it from here
    capabilities: Capabilities = Capabilities()
    #: how message bodies are encoded inside the envelope (Kombu's default is base64);
    #: ``None`` keeps bytes as they are, for stores that never serialize the envelope
    body_encoding: str | None = "base64"
    #: whether a take or an ack costs a call to a server or a file: under an event loop
    #: such a store's takes wait for a fair share of a prefetch window and its acks are
    #: written together (see :mod:`.evloop`); False for a store in process memory
    costly_calls: bool = True
    #: where exchanges and bindings live; :class:`InMemoryBindings` unless the store
    #: shares them between processes
    bindings: BindingStore

    def __init__(self) -> None:
        self.bindings = InMemoryBindings()

    def deletes_auto_delete_queues(self) -> bool:
        """Whether an ``auto_delete`` queue goes with its last consumer, and an exclusive
        queue with its channel.

        True, as on RabbitMQ; a store that keeps both, as Kombu's memory transport does,
        returns False.
        """
        return True

    # -- queues (must implement) ------------------------------------------------------
    @abstractmethod
    def declare_queue(self, queue: str, arguments: Mapping[str, Any] | None = None) -> None:
        """Create ``queue`` if it does not exist; ``arguments`` are the AMQP ``x-`` args."""

    @abstractmethod
    def queue_exists(self, queue: str) -> bool:
        """True when ``queue`` exists (or the store cannot tell a missing queue apart)."""

    @abstractmethod
    def put(self, queue: str, payload: dict[str, Any], priority: int = 0) -> None:
        """Append ``payload`` to ``queue``."""

    def put_many(self, items: Sequence[tuple[str, dict[str, Any], int]]) -> None:
        """Append many ``(queue, payload, priority)``; stores batch this in one round trip."""
        for queue, payload, priority in items:
            self.put(queue, payload, priority)

    def put_plain(self, queue: str, body: str, delivery_tag: str, shape: PlainShape) -> bool:
        """Optional: append the plain message of ``shape`` without an envelope built first;
        False when this store does not (the caller then calls :meth:`put`).

        A plain message is what most publishes are: no headers, priority 0, no property
        but ``delivery_mode``.  Its envelope is :func:`~.channel.plain_envelope` of these
        fields, ``body`` already encoded in :attr:`body_encoding`.  A store that takes it
        stores exactly what :meth:`put` would store for that envelope.
        """
        return False

    @abstractmethod
    def get(self, queues: Sequence[str], timeout: float | None, max_count: int = 1) -> list[Delivery]:
        """Take up to ``max_count`` envelopes from the first of ``queues`` that has any.

        Wait at most ``timeout`` seconds (``None``: forever, ``0``: do not wait) for one to
        arrive, and return ``[]`` when none did.  Taken envelopes stay recoverable until
        :meth:`ack` (at-least-once).
        """

    def get_one(self, queue: str) -> Delivery | None:
        """Take the head of ``queue`` without waiting (``basic_get``); ``None`` when empty.

        Under an event loop too it takes from ``queue`` itself and leaves what the loop's
        takes and :meth:`watch` serve as it is.  The default, ``get([queue], 0, 1)``, does
        so for a store whose takes under the loop read the queues themselves.
        """
        taken = self.get([queue], 0, 1)
        return taken[0] if taken else None

    @abstractmethod
    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Forget ``deliveries`` for good."""

    def reject(self, deliveries: Sequence[Delivery]) -> None:
        """Discard ``deliveries`` rejected without requeue.

        Same as :meth:`ack` unless the store dead-letters natively (an SQS redrive policy).
        """
        self.ack(deliveries)

    @abstractmethod
    def requeue(self, deliveries: Sequence[Delivery], redelivered: bool = True) -> None:
        """Put ``deliveries`` back at the head of their queues, marking them redelivered."""

    @abstractmethod
    def purge(self, queue: str) -> int:
        """Remove every ready message of ``queue`` and return how many there were."""

    @abstractmethod
    def size(self, queue: str) -> int:
        """Number of ready messages in ``queue``."""

    @abstractmethod
    def delete_queue(self, queue: str) -> None:
        """Delete ``queue`` and its messages (its bindings are removed by the channel)."""

    # -- optional ------------------------------------------------------------------
    def list_queues(self) -> list[str]:
        """Names of the queues the store holds (``kombu-like queues``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot list queues")

    def consumer_count(self, queue: str) -> int:
        """Consumers of ``queue`` the store knows of (0 when it cannot tell)."""
        return 0

    def put_fanout(self, exchange: str, payload: dict[str, Any], routing_key: str) -> bool:
        """Broadcast to a fanout exchange natively; return False to let the virtual layer
        put a copy into every bound queue instead."""
        return False

    # -- optional: driven by an event loop ----------------------------------------------
    # A store that overrides the four methods below can be driven by Kombu's Hub: the
    # transport then declares ``capabilities.asynchronous`` (see
    # :func:`drives_event_loop`) unless it declares ``capabilities`` itself, as memory://
    # does (it declares it only with its ``event_loop`` option).  The virtual layer calls them from the loop's thread
    # only; none of them may block.  Takes under the loop are ``get(queues, 0, n)``.
    def event_fds(self) -> Sequence[Any]:
        """What the loop must watch for this store now: file descriptor numbers, or
        objects with ``fileno()`` (sockets).

        Asked again after every take and every readable event, so a descriptor that
        changed is swapped in the loop.  An object is watched for as long as the same
        object is returned: return the socket itself, so the new socket of a reconnect is
        watched anew even when it got the old one's number.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be driven by an event loop")

    def watch(self, queues: Sequence[str]) -> bool:
        """Make one of :meth:`event_fds` readable once a message may be in ``queues``.

        Called after ``get(queues, 0, ...)`` found nothing.  Returns True when one may be
        there already (arrived between that take and this call): the loop takes again.
        The watch holds across later takes of other queues: until :meth:`on_readable`
        returns True, the periodic work runs or a descriptor is replaced, the loop does not
        take from the watched queues again.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be driven by an event loop")

    def on_readable(self, fd: int) -> bool:
        """``fd`` (one of :meth:`event_fds`) is readable: read what came without blocking.

        Returns True when a take may now find messages.  A connection found closed
        raises, as the driver raises it (the seam makes it a connection error).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be driven by an event loop")

    def periodic(self) -> Sequence[tuple[float, Callable[[], float | None]]]:
        """``(interval, function)`` pairs: the store's periodic work (restoring messages
        past their visibility timeout, health checks, looking for writes no descriptor
        reports ...), run from the loop's timer instead of from inside a blocking take.
        The loop takes once after each run.  A function that returns a number of seconds
        is run once more that much later as well (when it knows it is due before its
        interval ends: a delayed message); ``None`` leaves it to its interval."""
        raise NotImplementedError(f"{type(self).__name__} cannot be driven by an event loop")

    def periodic_due(self) -> Sequence[Callable[[], float | None]]:
        """Those of the :meth:`periodic` functions that something the store read or did
        since it was last asked made due before their timer (a delayed message heard of);
        the loop runs each at its next round.  Asked after every take and readable event;
        must not block.  None by default."""
        return ()

    def unwatch(self) -> None:
        """The loop lets go of the store (the connection closes or leaves the loop)."""
        return None

    def on_driver_error(self, exc: BaseException, queue: str | None = None) -> None:
        """Called with every error a store call raised, before it is translated.

        The one place for side effects of an error: dropping connections to a server
        that became a read-only replica, forgetting a cached queue URL (``queue`` names
        the queue the call was about, when there was one).  Must not raise.
        """
        return None

    # Acks made while one take is handed out: a store that writes acks in batches keeps
    # them from hold_acks() until write_held_acks(), which writes them in one go.  Neither
    # raises a driver error: acks that cannot be written are kept for a later write (or
    # their messages come back, as unacknowledged ones do).
    def hold_acks(self) -> object:
        """Keep the acks made from now on until :meth:`write_held_acks` (a store that
        batches them); by default each ack is written when it is made."""
        return None

    def write_held_acks(self) -> None:
        """Write the acks kept since :meth:`hold_acks`."""
        return None

    def close(self) -> None:
        """Release connections held by the store."""
        return None


#: the methods a store overrides to be driven by an event loop
EVENT_LOOP_HOOKS = ("event_fds", "watch", "on_readable", "periodic")


def drives_event_loop(store: type[QueueStore] | QueueStore) -> bool:
    """True when ``store`` (a class or an instance) overrides every event-loop hook."""
    cls = store if isinstance(store, type) else type(store)
    return all(getattr(cls, name) is not getattr(QueueStore, name) for name in EVENT_LOOP_HOOKS)


#: ``translate(exc, queue)``: the transport's mapping of a store error onto the library's tree
Translate = Callable[[BaseException, "str | None"], BaseException]


class _Seam:
    """The error-mapping half shared by :class:`GuardedStore` and :class:`GuardedBindings`."""

    __slots__ = ("_store", "_translate")

    def __init__(self, store: QueueStore, translate: Translate) -> None:
        self._store = store
        self._translate = translate

    def fail(self, exc: Exception, queue: str | None = None) -> NoReturn:
        """Raise ``exc`` as the transport translates it (``exc`` kept as ``__cause__``)."""
        try:
            self._store.on_driver_error(exc, queue)
        except Exception:  # a failing hook must not hide the error it was told about
            pass
        translated = self._translate(exc, queue)
        if translated is exc:
            raise exc
        raise translated from exc


class GuardedBindings:
    """A :class:`BindingStore` whose every call goes through the error seam."""

    __slots__ = ("_bindings", "_fail", "_versioned")

    def __init__(self, bindings: BindingStore, seam: _Seam) -> None:
        self._bindings = bindings
        self._fail = seam.fail
        self._versioned: Callable[[str], tuple[ExchangeInfo | None, Any]] | None = getattr(
            bindings, "exchange_versioned", None
        )

    def declare_exchange(self, info: ExchangeInfo) -> None:
        try:
            self._bindings.declare_exchange(info)
        except Exception as exc:
            self._fail(exc)

    def exchange(self, name: str) -> ExchangeInfo | None:
        try:
            return self._bindings.exchange(name)
        except Exception as exc:
            self._fail(exc)

    def exchange_versioned(self, name: str) -> tuple[ExchangeInfo | None, Any]:
        """Exchange ``name`` and the :attr:`version` its bindings were read at: one call
        where the store offers ``exchange_versioned`` (a publish needs both)."""
        try:
            if self._versioned is not None:
                return self._versioned(name)
            bindings = self._bindings
            return bindings.exchange(name), bindings.version
        except Exception as exc:
            self._fail(exc)

    def delete_exchange(self, name: str) -> None:
        try:
            self._bindings.delete_exchange(name)
        except Exception as exc:
            self._fail(exc)

    def bind(self, exchange: str, binding: Binding) -> None:
        try:
            self._bindings.bind(exchange, binding)
        except Exception as exc:
            self._fail(exc, binding.queue)

    def unbind(self, exchange: str, binding: Binding) -> None:
        try:
            self._bindings.unbind(exchange, binding)
        except Exception as exc:
            self._fail(exc, binding.queue)

    def unbind_queue(self, queue: str) -> None:
        try:
            self._bindings.unbind_queue(queue)
        except Exception as exc:
            self._fail(exc, queue)

    def get_bindings(self, exchange: str) -> list[Binding]:
        try:
            return self._bindings.get_bindings(exchange)
        except Exception as exc:
            self._fail(exc)

    def all_bindings(self) -> list[tuple[str, Binding]]:
        try:
            return self._bindings.all_bindings()
        except Exception as exc:
            self._fail(exc)

    @property
    def version(self) -> Any:
        try:
            return self._bindings.version
        except Exception as exc:
            self._fail(exc)


class GuardedStore:
    """A queue store as the virtual layer calls it: through the one error-mapping seam.

    Each method is the store's, inside one ``try``/``except``: on an error the store's
    :meth:`~QueueStore.on_driver_error` runs, then the transport's translation, and the
    translated exception is raised from the original.  Nothing else is added, so the hot
    path pays one call frame and no allocation.
    """

    __slots__ = ("store", "bindings", "capabilities", "body_encoding", "_fail")

    def __init__(self, store: QueueStore, translate: Translate) -> None:
        seam = _Seam(store, translate)
        self.store = store
        bindings = store.bindings
        # InMemoryBindings itself only reads and writes dicts under a lock: it has no driver
        # whose errors the seam could map, and every publish looks up its exchange there.
        # A subclass (which may do I/O) goes through the seam as any other binding store.
        self.bindings: BindingStore = (
            bindings if type(bindings) is InMemoryBindings else GuardedBindings(bindings, seam)
        )
        self.capabilities = store.capabilities
        self.body_encoding = store.body_encoding
        self._fail = seam.fail

    def declare_queue(self, queue: str, arguments: Mapping[str, Any] | None = None) -> None:
        try:
            self.store.declare_queue(queue, arguments)
        except Exception as exc:
            self._fail(exc, queue)

    def queue_exists(self, queue: str) -> bool:
        try:
            return self.store.queue_exists(queue)
        except Exception as exc:
            self._fail(exc, queue)

    def put(self, queue: str, payload: dict[str, Any], priority: int = 0) -> None:
        try:
            self.store.put(queue, payload, priority)
        except Exception as exc:
            self._fail(exc, queue)

    def put_plain(self, queue: str, body: str, delivery_tag: str, shape: PlainShape) -> bool:
        try:
            return self.store.put_plain(queue, body, delivery_tag, shape)
        except Exception as exc:
            self._fail(exc, queue)

    def put_many(self, items: Sequence[tuple[str, dict[str, Any], int]]) -> None:
        try:
            self.store.put_many(items)
        except Exception as exc:
            self._fail(exc, _only_queue(item[0] for item in items))

    def put_fanout(self, exchange: str, payload: dict[str, Any], routing_key: str) -> bool:
        try:
            return self.store.put_fanout(exchange, payload, routing_key)
        except Exception as exc:
            self._fail(exc)

    def get(self, queues: Sequence[str], timeout: float | None, max_count: int = 1) -> list[Delivery]:
        try:
            return self.store.get(queues, timeout, max_count)
        except Exception as exc:
            self._fail(exc, _only_queue(queues))

    def get_one(self, queue: str) -> Delivery | None:
        try:
            return self.store.get_one(queue)
        except Exception as exc:
            self._fail(exc, queue)

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        try:
            self.store.ack(deliveries)
        except Exception as exc:
            self._fail(exc, _only_queue(d.queue for d in deliveries))

    def reject(self, deliveries: Sequence[Delivery]) -> None:
        try:
            self.store.reject(deliveries)
        except Exception as exc:
            self._fail(exc, _only_queue(d.queue for d in deliveries))

    def requeue(self, deliveries: Sequence[Delivery], redelivered: bool = True) -> None:
        try:
            self.store.requeue(deliveries, redelivered)
        except Exception as exc:
            self._fail(exc, _only_queue(d.queue for d in deliveries))

    def purge(self, queue: str) -> int:
        try:
            return self.store.purge(queue)
        except Exception as exc:
            self._fail(exc, queue)

    def size(self, queue: str) -> int:
        try:
            return self.store.size(queue)
        except Exception as exc:
            self._fail(exc, queue)

    def delete_queue(self, queue: str) -> None:
        try:
            self.store.delete_queue(queue)
        except Exception as exc:
            self._fail(exc, queue)

    def list_queues(self) -> list[str]:
        try:
            return self.store.list_queues()
        except NotImplementedError:
            raise
        except Exception as exc:
            self._fail(exc)

    def consumer_count(self, queue: str) -> int:
        try:
            return self.store.consumer_count(queue)
        except Exception as exc:
            self._fail(exc, queue)

    def event_fds(self) -> Sequence[Any]:
        try:
            return self.store.event_fds()
        except Exception as exc:
            self._fail(exc)

    def watch(self, queues: Sequence[str]) -> bool:
        try:
            return self.store.watch(queues)
        except Exception as exc:
            self._fail(exc, _only_queue(queues))

    def on_readable(self, fd: int) -> bool:
        try:
            return self.store.on_readable(fd)
        except Exception as exc:
            self._fail(exc)

    def call(self, method: Callable[[], Any], queue: str | None = None) -> Any:
        """Run ``method`` (anything else that talks to the driver) through the seam."""
        try:
            return method()
        except Exception as exc:
            self._fail(exc, queue)


def _only_queue(queues: Any) -> str | None:
    """The queue a call was about when it was about exactly one."""
    names = set(queues)
    return names.pop() if len(names) == 1 else None
