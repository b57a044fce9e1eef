"""The virtual transport: a Connection made of a queue store and virtual channels."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from itertools import count
from typing import TYPE_CHECKING, Any, ClassVar

from ...exceptions import ConnectionError
from ..base import Capabilities, Transport
from ..options import TransportOptions
from .channel import VirtualChannel
from .evloop import LoopDriver
from .store import Delivery, GuardedStore, QueueStore, drives_event_loop

if TYPE_CHECKING:
    from ...connection import Connection as ClientConnection

__all__ = ["VirtualConnection", "VirtualTransport"]

logger = logging.getLogger(__name__)

#: most deliveries taken from the store in one go (drain_events hands them out one a call)
MAX_BATCH = 64


def fair_share(prefetch_count: int) -> int:
    """Free prefetch room worth a take under an event loop, for a channel that still holds
    unacknowledged messages: half the window.  Taking for every single ack costs one round
    trip per message; the half still held keeps the consumer busy meanwhile."""
    return max(prefetch_count // 2, 1)


class VirtualConnection:
    """One client connection to a queue store, holding its channels."""

    def __init__(self, transport: VirtualTransport, store: QueueStore) -> None:
        self.transport = transport
        self.client = transport.client
        self.store = store
        #: ``store`` as the virtual layer calls it: through the error-mapping seam
        self.seam = GuardedStore(store, transport.translate_store_error)
        self.channels: list[VirtualChannel] = []
        self.is_open = True
        self._ids = count(1)
        self._lock = threading.Lock()
        # set whenever consumers or prefetch capacity change, so a drain_events waiting
        # with nothing to consume wakes up at once instead of sleeping out its timeout
        self._changed = threading.Event()
        # only a drain_events with nothing to consume waits on _changed; setting the
        # event costs a lock round trip, so acks skip it when nobody waits
        self._idle_waiters = 0
        self._rotation = 0
        #: drives the connection from an event loop after register_with_event_loop
        self.loop_driver: LoopDriver | None = None
        #: taken from the store, not handed to a consumer yet: (delivery, channel,
        #: consumer tag) in the order taken.  drain_events hands out one a call, as
        #: Kombu's virtual transports do, and takes again only once it is empty; nothing
        #: is taken beyond the consumers' prefetch room, so these count against it
        self.buffer: deque[tuple[Delivery, VirtualChannel, str]] = deque()
        #: hand out the whole of each take in one drain_events call instead (Kombu's SQS)
        self.batch_per_drain = transport.batch_per_drain

    def channel(self, channel_class: type[VirtualChannel] | None = None) -> VirtualChannel:
        """A new channel: the transport's, or ``channel_class`` (a subclass of it, such as
        the asyncio API's)."""
        if not self.is_open:
            raise ConnectionError("connection is closed")
        channel = (channel_class or self.transport.Channel)(self, next(self._ids))
        with self._lock:
            self.channels.append(channel)
        return channel

    def channel_closed(self, channel: VirtualChannel) -> None:
        with self._lock:
            if channel in self.channels:
                self.channels.remove(channel)
        self._changed.set()

    def consumers_changed(self) -> None:
        self._changed.set()
        if self.loop_driver is not None:
            self.loop_driver.reset()

    def capacity_changed(self) -> None:
        if self._idle_waiters:
            self._changed.set()
        if self.loop_driver is not None:
            # prefetch room came back: consumers limited by it take again
            self.loop_driver.schedule()

    # -- the event-loop driver ------------------------------------------------------------
    def register_with_event_loop(self, loop: Any) -> None:
        """Deliver to this connection's consumers from ``loop`` (Kombu's Hub).

        Registering with another loop leaves the previous one.
        """
        if not self.is_open:
            raise ConnectionError("connection is closed")
        self.unregister_from_event_loop()
        driver = LoopDriver(self, loop)
        self.loop_driver = driver
        try:
            driver.start()
        except BaseException:
            self.unregister_from_event_loop()
            raise

    def unregister_from_event_loop(self) -> None:
        """Leave the event loop: none of the connection's descriptors stays watched."""
        driver, self.loop_driver = self.loop_driver, None
        if driver is not None:
            try:
                driver.stop()
            finally:
                self.seam.call(self.store.unwatch)

    def consumed_queues(self) -> set[str]:
        return {q for ch in self.channels for q in ch.consumers.values()}

    def _plan(self) -> tuple[list[str], dict[str, list[tuple[VirtualChannel, str]]], int]:
        """Queues to take from now, who consumes each, and how many to take at most."""
        return self._plan_holding(False)[:3]

    def _plan_holding(self, hold: bool) -> tuple[list[str], dict[str, list[tuple[VirtualChannel, str]]], int, bool]:
        """:meth:`_plan`; with ``hold``, a channel that still holds unacknowledged messages
        takes only once a fair share of its prefetch window is free (the last item: some
        channel was held back so, with room for fewer)."""
        targets: dict[str, list[tuple[VirtualChannel, str]]] = {}
        max_count = MAX_BATCH
        held = False
        for channel in list(self.channels):
            if not channel.consumers:
                continue
            qos = channel.qos
            capacity = qos.capacity()
            acking = [t for t in channel.consumers if t not in channel.no_ack_consumers]
            if acking and capacity <= 0:
                continue
            if hold and acking and qos.delivered and capacity < fair_share(qos.prefetch_count):
                held = True
                continue
            if acking:
                max_count = min(max_count, capacity)
            for tag, queue in channel.consumers.items():
                targets.setdefault(queue, []).append((channel, tag))
        queues = list(targets)
        if len(queues) > 1:
            # rotate so one busy queue cannot starve the others
            self._rotation = (self._rotation + 1) % len(queues)
            queues = queues[self._rotation :] + queues[: self._rotation]
        return queues, targets, max(max_count, 1), held

    def ack(self, deliveries: list[Delivery]) -> None:
        """Acknowledge ``deliveries`` in the store; under an event loop, together with the
        other acks of the loop's round (see :meth:`LoopDriver.defer_ack`)."""
        driver = self.loop_driver
        if driver is None or not driver.defer_ack(deliveries):
            self.seam.ack(deliveries)

    def drain_events(self, timeout: float | None = None) -> None:
        """Hand one message to its consumer (all of one take with ``batch_per_drain``),
        waiting up to ``timeout`` seconds for one to arrive."""
        driver = self.loop_driver
        if driver is not None and driver.acks:
            # drained by hand while registered with a loop: acks kept for the loop's
            # round go now, not when the loop runs again
            driver.flush_acks()
        if self.buffer and self.deliver_buffered():
            if self.batch_per_drain:
                self.deliver_all()
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._changed.clear()
            queues, targets, max_count = self._plan()
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if queues:
                deliveries = self.seam.get(queues, remaining, max_count)
                if deliveries:
                    self.fill(deliveries, targets)
                    if self.deliver_buffered():
                        if self.batch_per_drain:
                            self.deliver_all()
                        return
            elif remaining is None or remaining > 0:
                self._idle_waiters += 1
                try:
                    # re-plan before sleeping: capacity may have freed since _plan ran
                    if not self._plan()[0]:
                        self._changed.wait(remaining)
                finally:
                    self._idle_waiters -= 1
                if self._changed.is_set() or self._plan()[0]:
                    continue
            if deadline is not None and time.monotonic() >= deadline:
                raise socket.timeout("timed out")

    # -- taken, not handed out yet ------------------------------------------------------
    def fill(self, deliveries: list[Delivery], targets: dict[str, list[tuple[VirtualChannel, str]]]) -> None:
        """Keep ``deliveries`` to hand out, each to the first consumer of its queue still
        there; those whose queue has none left go back to it."""
        chosen: dict[str, tuple[VirtualChannel, str] | None] = {}
        buffer = self.buffer
        orphans = []
        for delivery in deliveries:
            queue = delivery.queue
            if queue in chosen:
                target = chosen[queue]
            else:
                target = chosen[queue] = next(
                    ((ch, tag) for ch, tag in targets.get(queue, ()) if ch.is_open and tag in ch.consumers), None
                )
            if target is None:
                orphans.append(delivery)
            else:
                buffer.append((delivery, *target))
        if buffer:
            self.hold_acks()
        if orphans:
            # the consumer went away while we took: give them back untouched
            self.seam.requeue(orphans, redelivered=False)

    def deliver_buffered(self) -> bool:
        """Hand the first message taken and not handed out yet to its consumer; False when
        there was none."""
        buffer = self.buffer
        while buffer:
            try:
                item = buffer.popleft()
            except IndexError:  # given back by another thread meanwhile
                return False
            delivery, channel, tag = item
            if tag not in channel.consumers:
                # cancelled meanwhile (from another thread): its messages go back in order
                buffer.appendleft(item)
                self.give_back(channel, tag)
                continue
            try:
                channel.deliver(delivery, tag)
            finally:
                if not buffer:
                    self.write_held_acks()
            return True
        return False

    def deliver_all(self) -> None:
        """Hand out everything taken and not handed out yet (the event loop's way)."""
        while self.deliver_buffered():
            pass

    def _take_out(
        self, match: Callable[[tuple[Delivery, VirtualChannel, str]], bool], limit: int | None = None
    ) -> list[Delivery]:
        """Remove from the buffer, in order, the deliveries of the items ``match`` accepts
        (the first ``limit`` of them, when given)."""
        buffer = self.buffer
        keep: list[tuple[Delivery, VirtualChannel, str]] = []
        out: list[Delivery] = []
        while buffer and (limit is None or len(out) < limit):
            try:
                item = buffer.popleft()
            except IndexError:  # emptied by drain_events in another thread
                break
            if match(item):
                out.append(item[0])
            else:
                keep.append(item)
        buffer.extendleft(reversed(keep))
        return out

    def give_back(self, channel: VirtualChannel, consumer_tag: str | None = None) -> None:
        """Requeue, in order and not marked redelivered, what was taken for ``channel``
        (its consumer ``consumer_tag`` only, when given) and not handed out yet."""
        if not self.buffer:
            return
        back = self._take_out(lambda item: item[1] is channel and (consumer_tag is None or item[2] == consumer_tag))
        try:
            if back:
                self.seam.requeue(back, redelivered=False)
        finally:
            if not self.buffer:
                self.write_held_acks()

    def discard(self, queue: str) -> int:
        """Forget for good what was taken from ``queue`` and not handed out yet (the queue
        was purged or deleted): none of it is handed out or comes back.  Returns how many.
        """
        if not self.buffer:
            return 0
        gone = self._take_out(lambda item: item[0].queue == queue)
        if not gone:
            return 0
        try:
            self.seam.ack(gone)
        finally:
            # written now, not with the acks made while the rest of the take is handed out:
            # a purged message must not be restored later
            self.write_held_acks()
            self.capacity_changed()
        return len(gone)

    def take_buffered(self, queue: str) -> Delivery | None:
        """The first message taken from ``queue`` and not handed out yet, no longer held
        for its consumer (``basic_get`` returns it: it is the head of the queue)."""
        if not self.buffer:
            return None
        taken = self._take_out(lambda item: item[0].queue == queue, 1)
        if not taken:
            return None
        if not self.buffer:
            self.write_held_acks()
        self.capacity_changed()
        return taken[0]

    def buffered(self, channel: VirtualChannel) -> int:
        """How many messages taken for ``channel`` are not handed out yet."""
        return sum(1 for item in self.buffer if item[1] is channel) if self.buffer else 0

    def taken_from(self, queue: str) -> int:
        """How many messages taken from ``queue`` are not handed out yet: still in the
        queue as a Kombu user sees it (its message count, what a purge removes)."""
        if not self.buffer:
            return 0
        # a copy: drain_events in another thread may change the buffer meanwhile
        return sum(1 for item in self.buffer.copy() if item[0].queue == queue)

    def hold_acks(self) -> None:
        """A take is being handed out (one message a drain_events call, or all at once by
        the event loop): the store may keep the acks made meanwhile
        (:meth:`QueueStore.hold_acks <.store.QueueStore.hold_acks>`)."""
        self.store.hold_acks()

    def write_held_acks(self) -> None:
        """The last message of a take was handed out (or given back): the acks kept go."""
        self.store.write_held_acks()

    def close(self) -> None:
        if not self.is_open:
            return
        self.is_open = False
        try:
            try:
                self.unregister_from_event_loop()
            finally:
                for channel in list(self.channels):
                    channel.close()
        finally:
            try:
                # closing channels gave theirs back; anything left (taken by another thread
                # meanwhile) goes back too, before the store closes
                left = [item[0] for item in self.buffer]
                self.buffer.clear()
                if left:
                    self.seam.requeue(left, redelivered=False)
                self.write_held_acks()
            except Exception:
                # the store's own recovery brings unacknowledged messages back
                logger.debug("could not give back taken messages on close", exc_info=True)
            try:
                self.seam.call(lambda: self.transport.close_store(self.store))
            finally:
                self._changed.set()


#: store class -> (its capabilities, as the transport declares them)
_DECLARED: dict[type[QueueStore], tuple[Capabilities, Capabilities]] = {}


class _StoreCapabilities:
    """``Transport.capabilities`` of a virtual transport: those its store class declares.

    Declared once, on the store; a transport whose options change what it can do assigns
    its own value on the instance (or declares ``capabilities`` itself).
    """

    def __get__(self, transport: VirtualTransport | None, owner: type[VirtualTransport]) -> Capabilities:
        if transport is not None:
            own = transport.__dict__.get("capabilities")
            if own is not None:
                return own  # type: ignore[no-any-return]
        store = owner.Store
        if store is None:
            return Capabilities()
        cached = _DECLARED.get(store)
        if cached is None or cached[0] is not store.capabilities:
            # asynchronous is what the store does, not what it says: True only when it
            # implements the event-loop hooks
            declared = store.capabilities
            asynchronous = drives_event_loop(store)
            if declared.asynchronous != asynchronous:
                declared = declared.replace(asynchronous=asynchronous)
            cached = _DECLARED[store] = (store.capabilities, declared)
        return cached[1]

    def __set__(self, transport: VirtualTransport, value: Capabilities) -> None:
        transport.__dict__["capabilities"] = value


class VirtualTransport(Transport):
    """Base class of transports built on a :class:`QueueStore`.

    A subclass sets ``driver_type``/``driver_name``/``default_port`` and ``Store`` (its
    :class:`QueueStore` class, whose ``capabilities`` are the transport's), and implements
    :meth:`create_store`; :meth:`translate_error` maps the store's driver errors.  Every
    call the virtual layer makes into the store goes through :class:`GuardedStore`, so a
    store raises what its driver raises.
    """

    Channel = VirtualChannel
    Connection = VirtualConnection
    #: drain_events hands out all of each take instead of one message a call (Kombu's SQS
    #: transport does; its other virtual transports hand out one)
    batch_per_drain: ClassVar[bool] = False
    #: the class of the transport's store; its ``capabilities`` are the transport's
    Store: type[QueueStore] | None = None
    #: the transport's options (a :class:`TransportOptions` dataclass): the
    #: ``transport_options`` keys it reads, checked when the connection is made
    Options: ClassVar[type[TransportOptions] | None] = None
    capabilities: Capabilities = _StoreCapabilities()  # type: ignore[assignment]

    def __init__(self, client: ClientConnection, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.transport_options: dict[str, Any] = dict(client.transport_options or {})

    def create_store(self) -> QueueStore:
        """Connect to the store (within ``client.connect_timeout``) and return it."""
        raise NotImplementedError

    def close_store(self, store: QueueStore) -> None:
        store.close()

    def translate_store_error(self, exc: BaseException, queue: str | None = None) -> BaseException:
        """:meth:`translate_error` for an error raised by a store call about ``queue``.

        The seam calls this; a transport whose messages name the queue overrides it.
        """
        return self.translate_error(exc)

    def check_options(self) -> TransportOptions | None:
        """The transport options read into :attr:`Options`, once per transport.

        A value that does not fit raises :class:`ValueError` naming the option; an unknown
        key is warned about with the closest known name.  ``None`` when the transport
        declares no :attr:`Options`.
        """
        checked: TransportOptions | None = self.__dict__.get("_checked_options")
        if checked is None and self.Options is not None:
            checked = self.Options.from_transport_options(self.transport_options)
            self.__dict__["_checked_options"] = checked
        return checked

    def establish_connection(self) -> VirtualConnection:
        self.check_options()
        try:
            store = self.create_store()
        except Exception as exc:
            translated = self.translate_error(exc)
            if translated is exc:
                raise
            raise translated from exc
        return self.Connection(self, store)

    def close_connection(self, connection: VirtualConnection) -> None:
        connection.close()

    def create_channel(self, connection: VirtualConnection) -> VirtualChannel:
        return connection.channel()

    def drain_events(self, connection: VirtualConnection, timeout: float | None = None, **kwargs: Any) -> None:
        # Store errors are translated by the seam around each store call; anything else
        # raised here comes from a consumer callback and reaches the caller as raised, as
        # in Kombu (an OSError from user code is not a broker connection error).
        if connection.buffer and connection.loop_driver is None and connection.deliver_buffered():
            return  # most calls: hand out a message taken earlier, one call shorter
        connection.drain_events(timeout)

    def verify_connection(self, connection: VirtualConnection) -> bool:
        return connection.is_open

    def register_with_event_loop(self, connection: VirtualConnection, loop: Any) -> None:
        """Deliver to ``connection``'s consumers from ``loop`` (Kombu's Hub).

        Does nothing on a transport whose store cannot be driven by an event loop, as
        Kombu's transports do.  A store that can is driven even where the transport does
        not declare ``capabilities.asynchronous`` (memory:// by default): the declaration
        steers which loop a framework picks, not what a hub can do.
        """
        if drives_event_loop(connection.store):
            connection.register_with_event_loop(loop)

    def unregister_from_event_loop(self, connection: VirtualConnection, loop: Any) -> None:
        """Stop delivering from ``loop``: none of the connection's descriptors stays watched."""
        driver = connection.loop_driver
        if driver is not None and driver.loop is loop:
            connection.unregister_from_event_loop()

    def on_readable(self, connection: VirtualConnection, loop: Any) -> None:
        """Take and deliver what the consumers have room for, without waiting."""
        driver = connection.loop_driver
        if driver is not None:
            driver.take()
