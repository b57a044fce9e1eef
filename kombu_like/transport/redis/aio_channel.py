"""The Redis channel, connection and event-loop driver of the asyncio API (no thread).

:class:`AsyncRedisChannel` is the blocking transport's channel class -- routing,
envelopes, prefetch, unacknowledged-message bookkeeping and restore are its own -- whose
round trips (declarations, bindings, purge, ``basic_get``, cancel, close) are the virtual
channel's plans awaited step by step, each store call a conversation on the asyncio
connections of an :class:`~.aio_store.AsyncRedisStore`.

Publishes are handed to the connection's :class:`Publisher` and return, as on AMQP
without confirms: the publishes of one round of the loop are routed against one reading
of the bindings and written as one pipeline by the blocking channel's ``publish_batch``;
their replies are checked as they come, a failure raised by the next publish on the
channel and by the connection's next wait.  ``mandatory`` publishes, and every publish
with ``transport_options={"confirm_publish": True}``, await Redis's reply instead.  A
round trip of the connection first waits for the publishes handed over before it, so a
message published and then fetched by ``basic_get`` is there.

Deliveries come from :class:`AsyncLoopDriver`, the blocking event-loop driver
(:class:`~kombu_like.transport.virtual.evloop.LoopDriver`) on the asyncio loop, whose
takes are awaited: prefetch, fair shares, ack batching and hand-out are its own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ...aio.backlog import Backlog
from ...aio.message import Message
from ...plan import Plan, Ready, arun
from ..virtual.evloop import LoopDriver
from ..virtual.store import Delivery, GuardedStore
from ..virtual.transport import VirtualConnection
from . import RedisChannel, RedisConnection

if TYPE_CHECKING:
    from .aio_store import AsyncRedisStore

__all__ = ["AsyncLoopDriver", "AsyncRedisChannel", "AsyncRedisConnection", "AsyncSeam", "Publisher"]

logger = logging.getLogger(__name__)

#: publishes routed and written together at most
MAX_PIPELINE = 500

Item = tuple[dict[str, Any], str, str, bool]


# -- the seam: awaited store calls translated as the blocking ones are ----------------------
class _AsyncBindings:
    """The bindings as an asyncio channel calls them: each call a conversation, awaited,
    its errors translated at the seam."""

    def __init__(self, store: AsyncRedisStore, seam: AsyncSeam) -> None:
        self._store = store
        self._seam = seam
        bindings = store.bindings
        self._calls: dict[str, Callable[..., Any]] = {
            "declare_exchange": bindings.declare_exchange_conversation,
            "delete_exchange": bindings.delete_exchange_conversation,
            "unbind": bindings.unbind_conversation,
            "unbind_queue": bindings.unbind_queue_conversation,
            "all_bindings": bindings.all_bindings_conversation,
        }

    def exchange(self, name: str) -> Any:
        return self._read("exchange", name)

    def get_bindings(self, name: str) -> Any:
        return self._read("get_bindings", name)

    def _read(self, what: str, name: str) -> Any:
        bindings = self._store.bindings
        if self._store.cache.is_pinned:  # routing a publish batch: the snapshot answers
            return getattr(bindings, what)(name)
        conversation = getattr(bindings, f"{what}_conversation")
        return self._seam.guard(lambda: self._store.converse(conversation(name)))

    def __getattr__(self, name: str) -> Any:
        conversation = self._calls.get(name)
        if conversation is None:
            raise AttributeError(name)
        return lambda *args: self._seam.guard(lambda: self._store.converse(conversation(*args)))

    async def bind(self, exchange: str, binding: Any) -> None:
        store = self._store
        bindings = store.bindings
        exchange_type = await self._seam.guard(lambda: store.converse(bindings.bind_conversation(exchange, binding)))
        if exchange_type == "fanout":
            store.fanout.bound(binding.queue, exchange, binding.routing_key or "")
            await self._seam.guard(store.fanout.synced)

    @property
    def version(self) -> int:
        return self._store.cache.version


class AsyncSeam(GuardedStore):
    """:class:`~kombu_like.transport.virtual.store.GuardedStore` of an
    :class:`~.aio_store.AsyncRedisStore`: the store calls that wait return awaitables,
    their errors translated when they come; the others are the blocking seam's."""

    __slots__ = ()

    def __init__(self, store: AsyncRedisStore, translate: Any) -> None:
        super().__init__(store, translate)  # type: ignore[arg-type]
        self.bindings = _AsyncBindings(store, self)  # type: ignore[assignment]

    async def guard(self, work: Any, queue: str | None = None) -> Any:
        """Await ``work`` (started here: a call never awaited starts nothing), its errors
        translated as the blocking seam translates them."""
        try:
            return await work()
        except Exception as exc:
            self._fail(exc, queue)

    def declare_queue(self, queue: str, arguments: Any = None) -> Any:  # type: ignore[override]
        return self.guard(lambda: self.store.declare_queue(queue, arguments), queue)

    def queue_exists(self, queue: str) -> Any:  # type: ignore[override]
        return self.guard(lambda: self.store.queue_exists(queue), queue)

    def size(self, queue: str) -> Any:  # type: ignore[override]
        return self.guard(lambda: self.store.size(queue), queue)

    def purge(self, queue: str) -> Any:  # type: ignore[override]
        return self.guard(lambda: self.store.purge(queue), queue)

    def delete_queue(self, queue: str) -> Any:  # type: ignore[override]
        return self.guard(lambda: self.store.delete_queue(queue), queue)

    def list_queues(self) -> Any:  # type: ignore[override]
        return self.guard(lambda: self.store.list_queues())  # type: ignore[attr-defined]

    def get_one(self, queue: str) -> Any:  # type: ignore[override]
        return self.guard(lambda: self.store.get_one(queue), queue)

    def get(self, queues: Sequence[str], timeout: float | None = 0, max_count: int = 1) -> Any:  # type: ignore[override]
        queue = queues[0] if len(queues) == 1 else None
        return self.guard(lambda: self.store.get(queues, timeout, max_count), queue)


# -- publishing -----------------------------------------------------------------------------
class Publisher:
    """The publishes of one asyncio connection, handed over and written in order."""

    def __init__(self, store: AsyncRedisStore, on_error: Callable[[BaseException], None]) -> None:
        self.store = store
        self.on_error = on_error
        self.queue: deque[tuple[AsyncRedisChannel, list[Item], asyncio.Future[None] | None]] = deque()
        #: publishes handed over and not answered yet
        self.backlog = Backlog()
        self._task: asyncio.Future[None] | None = None
        #: the replies of what was written, not checked yet
        self._answers: set[asyncio.Future[Any]] = set()

    def add(self, channel: AsyncRedisChannel, items: list[Item], awaited: bool) -> asyncio.Future[None] | None:
        future = asyncio.get_running_loop().create_future() if awaited else None
        self.queue.append((channel, items, future))
        self.backlog.unsent += len(items)
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        return future

    async def settled(self) -> None:
        """Wait until every publish handed over so far was written and answered."""
        while self._task is not None or self._answers:
            if self._task is not None:
                await asyncio.shield(self._task)
            if self._answers:
                await asyncio.wait(list(self._answers))  # cancelling the caller cancels none of them

    async def _run(self) -> None:
        try:
            await asyncio.sleep(0)  # the publishes of this round of the loop go together
            while self.queue:
                batch = []
                size = 0
                while self.queue and size < MAX_PIPELINE:
                    batch.append(self.queue.popleft())
                    size += len(batch[-1][1])
                await self._send(batch)
        finally:
            self._task = None

    async def _send(self, batch: list[tuple[AsyncRedisChannel, list[Item], asyncio.Future[None] | None]]) -> None:
        store = self.store
        cache = store.cache
        names = sorted({item[1] for _, items, _ in batch for item in items if item[1]})
        try:
            if not store.cmd.connected:  # cut since: connected again, as a blocking send would
                await store.cmd.connect()
            with cache.filling():
                for name in names:
                    await store.converse(store.bindings.exchange_conversation(name))
        except Exception as exc:  # nothing of the batch was written
            translated = _translated(batch[0][0], exc)
            for channel, items, future in batch:
                self._failed(channel, items, future, translated)
            return
        with cache.pinned():
            for channel, items, future in _runs(batch):
                with store.collecting() as written:
                    try:
                        channel._publish_now(items)
                    except Exception as exc:
                        self._failed(channel, items, future, exc)
                        continue
                self._await_answers(channel, items, future, written)

    def _await_answers(
        self,
        channel: AsyncRedisChannel,
        items: list[Item],
        future: asyncio.Future[None] | None,
        written: list[asyncio.Future[Any]],
    ) -> None:
        if not written:
            self.backlog.written(len(items))
            if future is not None and not future.done():
                future.set_result(None)
            return
        answer = asyncio.ensure_future(asyncio.gather(*written))
        self._answers.add(answer)

        def answered(answer: asyncio.Future[Any]) -> None:
            self._answers.discard(answer)
            self.backlog.written(len(items))
            exc = answer.exception() if not answer.cancelled() else asyncio.CancelledError()
            if exc is not None:
                self._failed(channel, items, future, _translated(channel, exc), counted=True)
            elif future is not None and not future.done():
                future.set_result(None)

        answer.add_done_callback(answered)

    def _failed(
        self,
        channel: AsyncRedisChannel,
        items: list[Item],
        future: asyncio.Future[None] | None,
        exc: BaseException,
        counted: bool = False,
    ) -> None:
        if not counted:
            self.backlog.written(len(items))
        if future is not None:
            if not future.done():
                future.set_exception(exc)
            return
        logger.error("could not publish %d message(s): %s", len(items), exc)
        channel._publish_error = exc
        self.on_error(exc)

    def fail_all(self, exc: BaseException) -> None:
        """The connection closed: what was not written fails."""
        queue, self.queue = self.queue, deque()
        for _, items, future in queue:
            self.backlog.written(len(items))
            if future is not None and not future.done():
                future.set_exception(exc)
        self.backlog.fail(exc)


def _runs(
    batch: list[tuple[AsyncRedisChannel, list[Item], asyncio.Future[None] | None]],
) -> list[tuple[AsyncRedisChannel, list[Item], asyncio.Future[None] | None]]:
    """``batch`` with the publishes handed over one after another on one channel, and not
    awaited, joined: each run is one pipeline."""
    runs: list[tuple[AsyncRedisChannel, list[Item], asyncio.Future[None] | None]] = []
    for channel, items, future in batch:
        if future is None and runs and runs[-1][0] is channel and runs[-1][2] is None:
            runs[-1][1].extend(items)
        else:
            runs.append((channel, list(items) if future is None else items, future))
    return runs


def _translated(channel: Any, exc: BaseException) -> BaseException:
    """``exc`` as the seam translates store errors (kept as its cause)."""
    try:
        channel.seam._fail(exc)  # type: ignore[arg-type]
    except BaseException as translated:
        return translated
    return exc  # pragma: no cover - _fail always raises


# -- the channel ------------------------------------------------------------------------------
def _awaited(method: Callable[..., Any]) -> Callable[..., Any]:
    """A channel method that does no I/O, as a round trip of the asyncio API: its result
    once the publishes handed over before it were answered."""

    @functools.wraps(method)
    def round_trip(self: AsyncRedisChannel, *args: Any, **kwargs: Any) -> Any:
        result = method(self, *args, **kwargs)
        if not self.connection.publisher.queue and not self.connection.publisher._answers:
            return Ready(result)
        return self._after_publishes(Ready(result))

    return round_trip


class AsyncRedisChannel(RedisChannel):
    """The Redis channel of the asyncio API (see the module's docstring)."""

    Message = Message
    aio_client: Any = None
    connection: AsyncRedisConnection
    store: AsyncRedisStore  # type: ignore[assignment]
    _publish_error: BaseException | None = None
    _confirm = False

    def run_plan(self, plan: Plan[Any]) -> Any:
        return arun(plan)

    def _perform(self, plan: Plan[Any]) -> Any:
        return self._after_publishes(arun(plan))

    async def _after_publishes(self, work: Any) -> Any:
        await self.connection.publisher.settled()
        return await work

    # -- publishing ---------------------------------------------------------------------
    def basic_publish(
        self,
        message: dict[str, Any],
        exchange: str = "",
        routing_key: str = "",
        mandatory: bool = False,
        immediate: bool = False,
        **kwargs: Any,
    ) -> Any:
        self._check_open()
        self._raise_publish_error()
        return self.connection.publisher.add(
            self, [(message, exchange, routing_key, mandatory)], mandatory or self._confirm
        )

    def publish_batch(self, batch: Sequence[Item]) -> Any:
        """Handed over as :meth:`basic_publish` is (one pipeline); awaited with confirms or
        a ``mandatory`` message among them."""
        self._check_open()
        self._raise_publish_error()
        items = list(batch)
        return self.connection.publisher.add(self, items, self._confirm or any(item[3] for item in items))

    def _publish_now(self, items: list[Item]) -> None:
        """Route and write ``items`` (the bindings read for them are pinned)."""
        if len(items) == 1 and items[0][3]:
            RedisChannel.basic_publish(self, *items[0])  # mandatory: unroutable raises
        else:
            RedisChannel.publish_batch(self, items)

    def backlog(self) -> asyncio.Future[None] | None:
        return self.connection.publisher.backlog.room()

    def _raise_publish_error(self) -> None:
        error = self._publish_error
        if error is not None:
            self._publish_error = None
            raise error

    # -- consuming ----------------------------------------------------------------------
    def basic_consume(self, queue: str, no_ack: bool = False, callback: Any = None, *args: Any, **kwargs: Any) -> Any:
        tag = RedisChannel.basic_consume(self, queue, no_ack, callback, *args, **kwargs)
        return self._subscribed(tag)

    async def _subscribed(self, tag: str) -> str:
        # subscribed before basic_consume returns: a fanout message published right after
        # consume() must reach this consumer
        await self.seam.guard(self.store.fanout.synced)  # type: ignore[attr-defined]
        return tag

    basic_qos = _awaited(RedisChannel.basic_qos)
    basic_recover = _awaited(RedisChannel.basic_recover)
    flow = _awaited(RedisChannel.flow)


class AsyncRedisConnection(RedisConnection):
    """The virtual connection of an asyncio Redis connection."""

    store: AsyncRedisStore  # type: ignore[assignment]
    publisher: Publisher

    def consumers_changed(self) -> None:
        VirtualConnection.consumers_changed(self)  # not Redis's, which subscribes at once
        if self.is_open:
            self.store.sync_fanout(self.consumed_queues())


# -- deliveries -------------------------------------------------------------------------------
class AsyncLoopDriver(LoopDriver):
    """:class:`~kombu_like.transport.virtual.evloop.LoopDriver` whose takes are awaited:
    one at a time; a change reported while one is in flight takes again after it."""

    def __init__(self, connection: AsyncRedisConnection, loop: Any, on_error: Callable[[BaseException], None]) -> None:
        super().__init__(connection, loop)
        self.store = connection.store
        self.on_error = on_error
        self._taking: asyncio.Future[Any] | None = None
        self._again = False
        self.store.waker = self.woken

    def woken(self) -> None:
        """A watched list changed or a fanout message came: take again."""
        self.idle = frozenset()
        if self._taking is not None:
            self._again = True
        else:
            self.schedule()

    def _fetch(self, queues: list[str], targets: dict[str, Any], max_count: int) -> None:
        if self._taking is not None:
            self._again = True
            return
        try:
            self.flush_acks()
        except BaseException:
            self._failed()
            raise
        self.store.queues = tuple(queues)
        seam: Any = self.seam
        taking = self._taking = asyncio.ensure_future(seam.get(queues, 0, max_count))
        taking.add_done_callback(functools.partial(self._took, queues=queues, targets=targets))

    def _took(self, taking: asyncio.Future[Any], queues: list[str], targets: dict[str, Any]) -> None:
        if taking is not self._taking:
            return  # the loop was left meanwhile (see stop)
        self._taking = None
        again, self._again = self._again, False
        if taking.cancelled():
            return
        try:
            exc = taking.exception()
            if exc is not None:
                self._failed()
                raise exc
            deliveries: list[Delivery] = taking.result()
            if not (self.active and self.connection.is_open):
                if deliveries:  # the loop was left meanwhile: back to their queues
                    self.seam.requeue(deliveries, redelivered=False)
                return
            woken = self._found(queues, deliveries) or again
            self._hand_out(deliveries, targets, woken)
        except Exception as exc:
            self.on_error(exc)

    def _found(self, queues: list[str], deliveries: list[Delivery]) -> bool:
        if deliveries:
            self.idle = self.idle.difference(d.queue for d in deliveries)
            return False
        # the take watches the lists it found empty (tracking): the next change wakes us;
        # without tracking the periodic work takes again
        self.idle = frozenset(queues) if self.store.armed(queues) else frozenset()
        return False

    def stop(self) -> None:
        super().stop()
        taking, self._taking = self._taking, None
        if taking is not None:
            if taking.done():
                # answered, never handed out: back to their queues
                if not taking.cancelled() and taking.exception() is None and taking.result():
                    self.seam.requeue(taking.result(), redelivered=False)
            else:
                taking.cancel()  # a take whose reply is lost: the ledger gives it back
                self.left = taking
        self.store.waker = None

    #: the take cancelled by :meth:`stop`, to wait for before the store closes
    left: asyncio.Future[Any] | None = None
