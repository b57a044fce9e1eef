"""In-process transport: ``memory://`` (and ``memory://<virtual host>``).

All Connections of a process that name the same virtual host share one :class:`Broker`;
``memory://`` and ``memory://other`` are separate.  A test that wants a broker nobody else
sees passes one explicitly::

    broker = memory.Broker()
    Connection("memory://", transport_options={"broker": broker})

Queues declared with ``x-max-priority`` (``Queue(max_priority=...)``) deliver higher
priorities first; ``x-message-ttl`` / ``message_ttl`` and ``x-max-length`` (drop oldest)
are honoured.  Per-message ``expiration`` is ignored, as Kombu's memory transport ignores it
(test suites publish with an expiration already past and expect the message to arrive); a
broker made with ``Broker(honour_expiration=True)`` drops expired messages as RabbitMQ
does.  An ``auto_delete`` queue stays when its last consumer is cancelled, and an exclusive
queue when its channel closes, as on Kombu's memory transport; ``Broker(honour_auto_delete=True)``
deletes them as RabbitMQ does.
Consumers blocked in ``drain_events`` wait on a condition variable, so a publish
wakes them at once.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..asynchronous.wakeup import WakeupFd
from .base import Capabilities
from .options import TransportOptions, option
from .virtual import BrokerState, Delivery, InMemoryBindings, QueueStore, VirtualTransport

__all__ = [
    "Broker",
    "Channel",
    "MemoryOptions",
    "MemoryStore",
    "QueueView",
    "QueuesView",
    "Transport",
    "forget_broker",
    "get_broker",
    "reset_brokers",
]

_registry_lock = threading.Lock()
#: virtual host -> broker; process-wide on purpose: that is what memory:// means
_brokers: dict[str, Broker] = {}


def get_broker(virtual_host: str = "/") -> Broker:
    """The process-wide broker for ``virtual_host``."""
    with _registry_lock:
        broker = _brokers.get(virtual_host)
        if broker is None:
            broker = _brokers[virtual_host] = Broker()
        return broker


def broker_name(hostname: str | None, virtual_host: str | None) -> str:
    """The registry key for a memory:// URL.

    ``memory://other`` parses with ``other`` as the host name, ``memory:///other`` or
    ``memory://localhost/other`` with it as the virtual host; each names its own broker,
    and ``memory://`` (host ``localhost``, virtual host ``/``) the default one.
    """
    host = "" if hostname in (None, "", "localhost") else hostname
    vhost = "" if virtual_host in (None, "", "/") else virtual_host
    return f"{host}/{vhost}" if host or vhost else "/"


def reset_brokers() -> None:
    """Forget every process-wide broker (their messages are dropped)."""
    with _registry_lock:
        _brokers.clear()


def forget_broker(virtual_host: str) -> None:
    """Forget the process-wide broker of ``virtual_host`` (its messages are dropped)."""
    with _registry_lock:
        _brokers.pop(virtual_host, None)


class _MemQueue:
    """One queue: FIFO, or a deque per priority level when declared with a max priority."""

    __slots__ = ("broker", "levels", "max_priority", "max_length", "ttl", "size")

    def __init__(self, broker: Broker, arguments: Mapping[str, Any] | None) -> None:
        self.broker = broker
        arguments = arguments or {}
        self.max_priority = int(arguments.get("x-max-priority") or 0)
        ttl = arguments.get("x-message-ttl")
        self.ttl = float(ttl) / 1000.0 if ttl is not None else None
        length = arguments.get("x-max-length")
        self.max_length = int(length) if length is not None else None
        # index = priority; plain queues use level 0 only
        self.levels: list[deque[tuple[dict[str, Any], float | None]]] = [deque() for _ in range(self.max_priority + 1)]
        self.size = 0

    def _expiry(self, properties: dict[str, Any]) -> float | None:
        """When a message with ``properties`` expires here (None: never)."""
        expiration = properties.get("expiration")
        limits = []
        if expiration is not None and self.broker.honour_expiration:
            try:
                limits.append(float(expiration) / 1000.0)
            except (TypeError, ValueError):
                pass
        if self.ttl is not None:
            limits.append(self.ttl)
        return time.monotonic() + min(limits) if limits else None

    def push(self, payload: dict[str, Any], priority: int, front: bool = False) -> None:
        properties = payload["properties"]
        # most queues have no TTL and most messages no expiration: skip the clock then
        expires = self._expiry(properties) if self.ttl is not None or "expiration" in properties else None
        entry = (payload, expires)
        if self.max_priority:
            level = self.levels[max(0, min(int(priority or 0), self.max_priority))]
        else:
            level = self.levels[0]
        if front:
            level.appendleft(entry)
        else:
            level.append(entry)
        self.size += 1
        if self.max_length is not None:
            while self.size > self.max_length:
                self._pop_one()

    def _pop_one(self) -> tuple[dict[str, Any], float | None] | None:
        for level in reversed(self.levels):
            if level:
                self.size -= 1
                return level.popleft()
        return None

    def pop(self, max_count: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        now: float | None = None
        # a queue without priorities has one level: take from it without looking for one
        single = self.levels[0] if len(self.levels) == 1 else None
        while len(out) < max_count and self.size:
            if single is not None:
                self.size -= 1
                entry = single.popleft()
            else:
                next_entry = self._pop_one()
                if next_entry is None:
                    break
                entry = next_entry
            payload, expires = entry
            if expires is not None:
                if now is None:
                    now = time.monotonic()
                if expires <= now:
                    continue
            out.append(payload)
        return out

    def purge(self) -> int:
        size = self.size
        for level in self.levels:
            level.clear()
        self.size = 0
        return size


class Broker:
    """An in-memory broker: queues, exchanges and bindings of one virtual host."""

    #: drop messages whose per-message ``expiration`` has passed, as RabbitMQ does; off by
    #: default, as in Kombu's memory transport, which delivers them (test suites written
    #: for it publish with an expiration already past); queue TTLs are honoured either way
    honour_expiration: bool = False
    #: delete an ``auto_delete`` queue when its last consumer is cancelled and an
    #: exclusive queue when its channel closes, as RabbitMQ does; off by default, as in
    #: Kombu's memory transport, which keeps both (and their messages) for the life of the
    #: process: Celery's test suite receives events published before its receiver consumed
    honour_auto_delete: bool = False

    def __init__(self, honour_expiration: bool | None = None, *, honour_auto_delete: bool | None = None) -> None:
        if honour_expiration is not None:
            self.honour_expiration = honour_expiration
        if honour_auto_delete is not None:
            self.honour_auto_delete = honour_auto_delete
        # re-entrant: a finalizer (``__del__`` run by the garbage collector while this
        # thread holds the lock) may close a connection and delete a queue
        self.lock = threading.RLock()
        #: notified when messages arrive (``waiters`` counts who waits on it)
        self.cond = threading.Condition(self.lock)
        self.queues: dict[str, _MemQueue] = {}
        self.waiters = 0
        #: exchanges and bindings, shared by every connection to this broker
        self.table = InMemoryBindings()
        #: stores driven by an event loop -> the queues their loop waits on
        self.watchers: dict[MemoryStore, frozenset[str]] = {}

    def wake(self, queues: Iterable[str]) -> None:
        """Signal the event loops waiting on any of ``queues`` (called with the lock held)."""
        for store, watched in self.watchers.items():
            if not watched.isdisjoint(queues):
                store.wakeup_fd().wake()

    def peek(self, queue: str) -> list[dict[str, Any]]:
        """The envelopes waiting in ``queue``, in delivery order, without taking them."""
        with self.cond:
            existing = self.queues.get(queue)
            if existing is None:
                return []
            now = time.monotonic()
            return [
                payload
                for level in reversed(existing.levels)
                for payload, expires in level
                if expires is None or expires > now
            ]


class MemoryStore(QueueStore):
    """Queue store over a :class:`Broker`."""

    capabilities = Capabilities(priority=True, ttl=True, batch_publish=True)
    # envelopes never leave the process: keep bodies as bytes
    body_encoding = None
    # a take or an ack is a dict operation: nothing to gain from batching them
    costly_calls = False

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.bindings = broker.table
        self._wakeup: WakeupFd | None = None

    def use_own_queues(self, queues: Mapping[str, Any]) -> None:
        """Keep queues apart from the broker's from now on (Kombu's ``channel.queues = {}``).

        The store moves to a broker of its own holding an empty queue for each name in
        ``queues`` and sharing the exchanges and bindings of the broker it used.  Messages
        already waiting in the old broker's queues stay there.  Assigning a channel's own
        ``queues`` back to it changes nothing.
        """
        old = self.broker
        if isinstance(queues, QueuesView) and queues.broker is old:
            return
        own = Broker(old.honour_expiration, honour_auto_delete=old.honour_auto_delete)
        own.table = old.table
        for name in queues:
            own.queues[name] = _MemQueue(own, None)
        with old.lock:
            watched = old.watchers.pop(self, None)
        with own.lock:
            if watched is not None:
                own.watchers[self] = watched
            self.broker = own

    def deletes_auto_delete_queues(self) -> bool:
        return self.broker.honour_auto_delete

    def _queue(self, name: str) -> _MemQueue:
        queue = self.broker.queues.get(name)
        if queue is None:
            queue = self.broker.queues[name] = _MemQueue(self.broker, None)
        return queue

    def declare_queue(self, queue: str, arguments: Mapping[str, Any] | None = None) -> None:
        with self.broker.cond:
            if queue not in self.broker.queues:
                self.broker.queues[queue] = _MemQueue(self.broker, arguments)
            elif arguments and arguments.get("x-max-priority"):
                existing = self.broker.queues[queue]
                if existing.max_priority != int(arguments["x-max-priority"]):
                    from ..exceptions import PreconditionFailed

                    raise PreconditionFailed(
                        f"PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue "
                        f"{queue!r}: received {arguments['x-max-priority']} but current is "
                        f"{existing.max_priority}"
                    )

    def queue_exists(self, queue: str) -> bool:
        return queue in self.broker.queues

    def put(self, queue: str, payload: dict[str, Any], priority: int = 0) -> None:
        broker = self.broker
        with broker.lock:
            target = broker.queues.get(queue)
            if target is None:
                target = self._queue(queue)
            target.push(payload, priority)
            if broker.waiters:
                broker.cond.notify_all()
            if broker.watchers:
                broker.wake((queue,))

    def put_many(self, items: Sequence[tuple[str, dict[str, Any], int]]) -> None:
        broker = self.broker
        with broker.lock:
            for queue, payload, priority in items:
                self._queue(queue).push(payload, priority)
            if broker.waiters:
                broker.cond.notify_all()
            if broker.watchers:
                broker.wake({item[0] for item in items})

    def get(self, queues: Sequence[str], timeout: float | None, max_count: int = 1) -> list[Delivery]:
        broker = self.broker
        deadline = None if timeout is None else time.monotonic() + timeout
        with broker.cond:
            while True:
                for name in queues:
                    queue = broker.queues.get(name)
                    if queue is not None and queue.size:
                        payloads = queue.pop(max_count)
                        if payloads:
                            return [Delivery(name, payload) for payload in payloads]
                if deadline is None:
                    remaining = None
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return []
                broker.waiters += 1
                try:
                    broker.cond.wait(remaining)
                finally:
                    broker.waiters -= 1

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        # a taken envelope lives only in the channel's unacked map; dropping it is the ack
        return None

    def requeue(self, deliveries: Sequence[Delivery], redelivered: bool = True) -> None:
        cond = self.broker.cond
        with cond:
            # reversed + appendleft keeps the original order at the head of the queue
            for delivery in reversed(deliveries):
                payload = delivery.payload
                if redelivered:
                    payload = _mark_redelivered(payload)
                priority = payload["properties"].get("priority") or 0
                self._queue(delivery.queue).push(payload, priority, front=True)
            if self.broker.waiters:
                cond.notify_all()
            if self.broker.watchers:
                self.broker.wake({d.queue for d in deliveries})

    def purge(self, queue: str) -> int:
        with self.broker.cond:
            existing = self.broker.queues.get(queue)
            return existing.purge() if existing is not None else 0

    def size(self, queue: str) -> int:
        existing = self.broker.queues.get(queue)
        return existing.size if existing is not None else 0

    def delete_queue(self, queue: str) -> None:
        with self.broker.cond:
            self.broker.queues.pop(queue, None)

    def list_queues(self) -> list[str]:
        return sorted(self.broker.queues)

    # -- driven by an event loop: an in-process wake-up descriptor, signalled on put ----
    def wakeup_fd(self) -> WakeupFd:
        """The descriptor a put to a watched queue makes readable."""
        if self._wakeup is None or self._wakeup.closed:
            self._wakeup = WakeupFd()
        return self._wakeup

    def event_fds(self) -> Sequence[Any]:
        return [self.wakeup_fd()]

    def watch(self, queues: Sequence[str]) -> bool:
        broker = self.broker
        with broker.lock:
            broker.watchers[self] = frozenset(queues)
            # put between the take that found nothing and now: take again at once
            return any(name in broker.queues and broker.queues[name].size for name in queues)

    def on_readable(self, fd: int) -> bool:
        return self._wakeup is not None and self._wakeup.drain()

    def periodic(self) -> Sequence[tuple[float, Callable[[], None]]]:
        # expired messages are dropped as they are taken; there is nothing to do on a timer
        return ()

    def unwatch(self) -> None:
        with self.broker.lock:
            self.broker.watchers.pop(self, None)
        if self._wakeup is not None:
            self._wakeup.close()
            self._wakeup = None

    def close(self) -> None:
        self.unwatch()


def _mark_redelivered(payload: dict[str, Any]) -> dict[str, Any]:
    props = payload["properties"]
    info = dict(props.get("delivery_info") or {})
    info["redelivered"] = True
    copy = dict(payload)
    copy["properties"] = {**props, "delivery_info": info}
    return copy


@dataclass
class MemoryOptions(TransportOptions):
    """The ``transport_options`` of the memory transport."""

    transport_name: ClassVar[str] = "memory"

    broker: Any = option(None, "a :class:`Broker` of the test's own, instead of the process-wide one")
    polling_interval: float | None = option(
        None, "accepted for Kombu compatibility and unused: a publish wakes waiting consumers at once"
    )
    event_loop: bool = option(
        False,
        "declare ``implements.asynchronous``, so frameworks (Celery's asynloop) drive memory:// from"
        " their event loop; off by default, as on Kombu, whose memory transport declares it not",
    )


class Transport(VirtualTransport):
    """The ``memory://`` transport."""

    driver_type = "memory"
    driver_name = "memory"
    Store = MemoryStore
    Options = MemoryOptions
    #: ``asynchronous`` is False, as on Kombu: frameworks choose their loop by it, and a test
    #: suite on memory:// must see the choice Kombu's memory transport makes.  The store can
    #: be driven by a hub all the same (``register_with_event_loop`` works); the
    #: ``event_loop`` option declares it.
    capabilities = MemoryStore.capabilities.replace(asynchronous=False)
    #: Kombu's name for the default broker's exchanges and bindings (set below)
    global_state: BrokerState

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        options = self.check_options()
        if isinstance(options, MemoryOptions) and options.event_loop:
            self.capabilities = type(self).capabilities.replace(asynchronous=True)

    def create_store(self) -> MemoryStore:
        broker = self.transport_options.get("broker")
        if broker is None:
            broker = get_broker(broker_name(self.client.hostname, self.client.virtual_host))
        return MemoryStore(broker)

    @property
    def default_connection_params(self) -> dict[str, Any]:
        # as Kombu's virtual transports: info()/as_uri() show localhost for memory://
        return {"hostname": "localhost"}

    def driver_version(self) -> str:
        return "N/A"


# -- Kombu's process-wide view ------------------------------------------------------------
class QueueView:
    """One queue of the default broker, shaped like the :class:`queue.Queue` Kombu keeps."""

    def __init__(self, broker: Broker, name: str) -> None:
        self._broker = broker
        self.name = name

    def qsize(self) -> int:
        return MemoryStore(self._broker).size(self.name)

    def empty(self) -> bool:
        return self.qsize() == 0

    def get(self, block: bool = True, timeout: float | None = None) -> dict[str, Any]:
        """Take the next envelope; :class:`queue.Empty` when none arrives in time."""
        from queue import Empty

        wait = (timeout if timeout is not None else None) if block else 0
        deliveries = MemoryStore(self._broker).get([self.name], wait, 1)
        if not deliveries:
            raise Empty()
        return deliveries[0].payload

    def get_nowait(self) -> dict[str, Any]:
        return self.get(block=False)

    def put(self, item: dict[str, Any], block: bool = True, timeout: float | None = None) -> None:
        priority = int((item.get("properties") or {}).get("priority") or 0)
        MemoryStore(self._broker).put(self.name, item, priority)

    @property
    def queue(self) -> list[dict[str, Any]]:
        """The waiting envelopes, in delivery order (a copy)."""
        return self._broker.peek(self.name)

    def __repr__(self) -> str:
        return f"<QueueView {self.name!r} size={self.qsize()}>"


class QueuesView(MutableMapping[str, QueueView]):
    """Queue name -> :class:`QueueView` of the process-wide ``memory://`` broker.

    Kombu's ``kombu.transport.memory.Channel.queues``: test suites read queue sizes from it
    and ``clear()`` it between tests, which here deletes every queue of the default broker.
    """

    def __init__(self, broker: Broker | None = None) -> None:
        self._broker = broker

    @property
    def broker(self) -> Broker:
        """The broker whose queues this is (the process-wide ``memory://`` one by default)."""
        return self._broker if self._broker is not None else get_broker("/")

    def __getitem__(self, name: str) -> QueueView:
        if name not in self.broker.queues:
            raise KeyError(name)
        return QueueView(self.broker, name)

    def __setitem__(self, name: str, value: Any) -> None:
        MemoryStore(self.broker).declare_queue(name)

    def __delitem__(self, name: str) -> None:
        if name not in self.broker.queues:
            raise KeyError(name)
        MemoryStore(self.broker).delete_queue(name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.broker.queues))

    def __len__(self) -> int:
        return len(self.broker.queues)

    def clear(self) -> None:
        with self.broker.cond:
            self.broker.queues.clear()


class MemoryBrokerState(BrokerState):
    """Kombu's ``Transport.global_state``: the default broker's exchanges and bindings."""

    def __init__(self) -> None:
        super().__init__()

    def clear(self) -> None:
        """Forget the default broker's exchanges and bindings (and this state's own)."""
        super().clear()
        table = get_broker("/").table
        with table._lock:
            table.exchanges.clear()
            table.bindings.clear()
            table.version += 1


class ChannelQueues:
    """``Channel.queues``, as Kombu's memory channel has it.

    On the class, the queues of the process-wide broker (``memory://``), which test suites
    read and clear between tests.  On a channel, the queues its connection uses.  Assigning
    a mapping to a channel's ``queues`` (``channel.queues = {}``, which test suites written
    for Kombu do to give a connection queues nobody else sees) gives its connection queues
    of its own, as Kombu's channel then keeps its own queue dictionary; exchanges and
    bindings stay shared, as Kombu's stay process-wide.
    """

    _default = QueuesView()

    def __get__(self, channel: Any, owner: type | None = None) -> QueuesView:
        if channel is None:
            return self._default
        return QueuesView(channel.store.broker)

    def __set__(self, channel: Any, value: Mapping[str, Any]) -> None:
        channel.store.use_own_queues(value)


class MemoryChannel(Transport.Channel):  # type: ignore[misc,valid-type]
    """The memory transport's channel, with Kombu's class-level broker state."""

    #: every queue of the process-wide broker (``memory://``) on the class; on a channel,
    #: the queues it uses (see :class:`ChannelQueues`)
    queues = ChannelQueues()
    #: Kombu's class-level event registry, kept for code that reads or clears it
    events: Any = defaultdict(set)
    do_restore = False
    supports_fanout = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # a channel's own events (basic_return callbacks) shadow the class-level registry
        self.events = {"basic_return": set()}


Transport.Channel = MemoryChannel
Transport.global_state = MemoryBrokerState()
Channel = MemoryChannel
