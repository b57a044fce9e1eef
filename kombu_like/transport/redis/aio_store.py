"""The Redis queue store on the asyncio loop: the blocking store's code, its I/O awaited.

An :class:`AsyncRedisStore` wraps a :class:`~.store.RedisStore` that never opens a
connection of its own: its key layout, options, ledger, take script, bindings, restorer
and fanout bookkeeping do all the deciding, through the same conversations, request
builders and reply handlers the blocking store runs (:mod:`.conversation`).  Only the
connections differ: three :class:`~.aio_wire.AsyncWire` s (command, take, pub/sub) read
and written by the asyncio loop, no thread.

What the virtual layer must wait for (declarations, bindings, a take, a purge) is a
coroutine; what it does not (a publish, an ack, a requeue) is written at once and
returns, its replies checked when they come: a failed publish is raised by the next
publish on its channel and by the connection's next wait (``on_error``).  A requeue is
awaited by the next take or round trip of the connection, so a message given back is in
its queue before anything else is asked of Redis.

Waiting on empty queues is the blocking event-loop mode's (:mod:`.looping`): a take that
finds its lists empty reads them on the tracking take connection, and Redis's
invalidation push, read by the loop, wakes the consumers.  Nothing is popped while
waiting, so a connection cut while a consumer waits loses nothing; a take whose reply is
lost (cut, or its caller cancelled) is given back by the ledger, as on the blocking API.

Bindings are read from Redis for each publish batch and routed against that snapshot
(:class:`~.cache.SnapshotCache`), as the blocking API's ``Producer.batch()`` routes against one
view; the blocking API's client-side cache (a connection polled before each routing
decision) is not used here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from redis import exceptions as rexc

from ..virtual.store import Delivery
from .aio_fanout import AsyncFanout
from .aio_wire import AsyncWire, Endpoint
from .cache import SnapshotCache
from .codec import check
from .command import (
    Ack,
    ack_conversation,
    connect_conversation,
    log_unsettled,
    recover_conversation,
    script_conversation,
)
from .conversation import Conversation, adrive, call, drive, exchange
from .taking import take_connect_conversation, take_conversation

if TYPE_CHECKING:
    from .store import RedisStore

__all__ = ["AsyncRedisStore"]

logger = logging.getLogger("kombu_like.transport.redis")

_T = TypeVar("_T")


class AsyncRedisStore:
    """The queue store of an asyncio connection (see the module's docstring)."""

    body_encoding = "base64"
    costly_calls = True

    def __init__(self, store: RedisStore, endpoint: Endpoint, on_error: Callable[[BaseException], None]) -> None:
        self.blocking = store
        self.endpoint = endpoint
        self._server = f"{endpoint.host}:{endpoint.port}"
        self.on_error = on_error
        self.options = store.options
        self.keys = store.keys
        self.ledger = store.ledger
        self.capabilities = store.capabilities
        self.expires = store.expires
        self.taker = store.taker
        self.restorer = store.restorer
        self.bindings = store.bindings
        self.cache = SnapshotCache()
        self.bindings.cache = store.cache = self.cache  # type: ignore[assignment]
        self.fanout = AsyncFanout(store.fanout, self)
        store.fanout = self.bindings.fanout = self.taker.fanout = self.fanout
        parser = self.options.reply_parser
        self.cmd = AsyncWire(endpoint, "command", self._setup_command, parser=parser)
        self.take = AsyncWire(
            endpoint, "take", self._setup_take, self._on_take_push, parser=parser, on_lost=self._take_lost
        )
        #: messages being given back (requeues, takes whose caller stopped waiting):
        #: awaited before the next round trip
        self._restoring: set[asyncio.Future[Any]] = set()
        #: the loop driver's wake-up (a watched list changed, a fanout message came)
        self.waker: Callable[[], None] | None = None
        #: the queues the loop's consumers take from (for the maintenance)
        self.queues: tuple[str, ...] = ()
        self._maintaining: asyncio.Future[None] | None = None
        self._held: list[Ack] | None = None
        self._collected: list[asyncio.Future[Any]] | None = None
        self.closed = False

    # -- connections ----------------------------------------------------------------------
    async def _setup_command(self, wire: AsyncWire) -> None:
        await adrive(wire, connect_conversation(self.keys.cluster), connect=False)

    async def _setup_take(self, wire: AsyncWire) -> None:
        wire.client_id, problem = await adrive(wire, take_connect_conversation(), connect=False)
        self.taker.tracking_set(problem)

    async def connect(self) -> None:
        await self.cmd.connect()
        await adrive(self.cmd, call("PING"))

    async def converse(self, conversation: Conversation[_T]) -> _T:
        """Run ``conversation`` on the command connection, once the ledger is settled and
        the messages given back meanwhile are back."""
        await self._settle()
        return await adrive(self.cmd, conversation)

    async def _settle(self) -> None:
        await self._restored()
        await self._recover()

    async def _restored(self) -> None:
        """Wait for the messages being given back (a give-back may start another)."""
        while self._restoring:
            # asyncio.wait: a caller cancelled meanwhile must not cancel the give-back
            await asyncio.wait(list(self._restoring))

    async def _recover(self) -> None:
        if self.ledger.acks or self.ledger.takes:
            await adrive(self.cmd, recover_conversation(self.ledger, self.keys))

    async def _converse_now(self, conversation: Conversation[_T]) -> _T:
        """:meth:`converse` without waiting for the messages being given back."""
        await self._recover()
        return await adrive(self.cmd, conversation)

    def _in_background(self, work: Coroutine[Any, Any, Any], what: str) -> asyncio.Future[Any]:
        """Run ``work`` on the loop; its failure is logged and raised by the connection's
        next wait."""
        future = asyncio.ensure_future(work)
        self._restoring.add(future)

        def done(future: asyncio.Future[Any]) -> None:
            self._restoring.discard(future)
            if future.cancelled():
                return
            exc = future.exception()
            if exc is not None:
                logger.warning("could not %s: %s", what, exc)
                self.on_error(exc)

        future.add_done_callback(done)
        return future

    # -- queues (awaited) -------------------------------------------------------------------
    async def declare_queue(self, queue: str, arguments: Any = None) -> None:
        await self.converse(self.blocking.declare_queue_conversation(queue, arguments))

    async def queue_exists(self, queue: str) -> bool:
        return await self.converse(self.blocking.queue_exists_conversation(queue))

    async def size(self, queue: str) -> int:
        return await self.converse(self.blocking.size_conversation(queue))

    async def purge(self, queue: str) -> int:
        return await self.converse(self.blocking.purge_conversation(queue))

    async def delete_queue(self, queue: str) -> None:
        await self.converse(self.blocking.delete_queue_conversation(queue))

    async def list_queues(self) -> list[str]:
        names = await self.converse(call("HKEYS", self.keys.queues))
        return sorted(name.decode() if isinstance(name, bytes) else str(name) for name in names)

    def consumer_count(self, queue: str) -> int:
        return 0

    def deletes_auto_delete_queues(self) -> bool:
        return self.blocking.deletes_auto_delete_queues()

    # -- publishing (written at once, replies checked as they come) ---------------------------
    def put(self, queue: str, payload: dict[str, Any], priority: int = 0) -> asyncio.Future[Any]:
        data, count = self.blocking.put_request(queue, payload, priority)
        return self._written(data, count, lambda replies: self.blocking.put_checked(replies, queue, self._server))

    def put_many(self, items: Sequence[tuple[str, dict[str, Any], int]]) -> asyncio.Future[Any] | None:
        if not items:
            return None
        data, owners = self.blocking.put_many_request(items)
        size = len(items)
        return self._written(
            data, len(owners), lambda replies: self.blocking.put_many_checked(replies, owners, size, self._server)
        )

    def put_fanout(self, exchange_name: str, payload: dict[str, Any], routing_key: str) -> bool:
        if self.options.fanout_mode != "pubsub":
            return False
        conversation = self.blocking.put_fanout_conversation(exchange_name, payload, routing_key)
        step = next(conversation)
        self._written(step.data, step.size, lambda replies: _finish(conversation, replies))
        return True

    @contextlib.contextmanager
    def collecting(self) -> Iterator[list[asyncio.Future[Any]]]:
        """The futures of the publishes written within the block (see :meth:`_written`)."""
        collected: list[asyncio.Future[Any]] = []
        self._collected = collected
        try:
            yield collected
        finally:
            self._collected = None

    def _written(self, data: bytes, count: int, checked: Callable[[list[Any]], None]) -> asyncio.Future[Any]:
        """Write ``data`` now; a future done once ``checked`` passed its replies."""
        result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._collected is not None:
            self._collected.append(result)
        replies = self.cmd.execute_packed(data, count)

        def answered(replies: asyncio.Future[list[Any]]) -> None:
            try:
                checked(replies.result())
            except BaseException as exc:
                if not result.done():
                    result.set_exception(exc)
            else:
                if not result.done():
                    result.set_result(None)

        replies.add_done_callback(answered)
        return result

    # -- taking -----------------------------------------------------------------------------
    async def get(self, queues: Sequence[str], timeout: float | None = 0, max_count: int = 1) -> list[Delivery]:
        """Take up to ``max_count`` messages without waiting; lists found empty are
        watched (their next change wakes the loop driver)."""
        await self._settle()
        taking = asyncio.ensure_future(self._take(queues, max_count))
        try:
            return await asyncio.shield(taking)
        except asyncio.CancelledError:
            # the caller stopped waiting; the take goes on (its reply keeps the stream in
            # step) and what it brings goes back to its queues
            self._restoring.add(taking)
            taking.add_done_callback(self._give_back_orphan)
            raise

    async def get_one(self, queue: str) -> Delivery | None:
        """Take the head of ``queue`` (``basic_get``); None when it is empty."""
        taken = await self.get([queue], 0, 1)
        return taken[0] if taken else None

    def _give_back_orphan(self, taking: asyncio.Future[list[Delivery]]) -> None:
        self._restoring.discard(taking)
        if not taking.cancelled() and taking.exception() is None and taking.result():
            self.requeue(taking.result(), redelivered=False)

    async def _take(self, queues: Sequence[str], max_count: int) -> list[Delivery]:
        taker = self.taker
        keys, names, numbers = taker._lists_for(queues)
        preloaded: list[tuple[int, bytes]] = []
        if self.fanout.active and self.fanout.has_pending():
            preloaded, writes = self.fanout.take_early(numbers, max_count)
            for commands, doing in writes:
                check((await adrive(self.cmd, exchange(commands))), doing)
        wire = self.take
        if not wire.connected:
            await wire.connect()  # first: connecting tells whether the take can watch
        taker.armed = None
        deliveries: list[Delivery] = []
        # one script, or with the cluster layout one per queue
        for group_keys, group_names, group_preloaded in taker.take_groups(keys, names, preloaded):
            left = max(max_count - len(deliveries), 0)
            if not left and not group_preloaded:
                break
            try:
                deliveries += await self._take_one(group_keys, group_names, left, group_preloaded)
            except (rexc.ConnectionError, rexc.TimeoutError):
                if not deliveries:
                    raise
                # what the round took is handed out; the next take reconnects
                logger.warning("connection lost in a take; delivering the %d message(s) taken", len(deliveries))
                wire.disconnect()
                break
        if not deliveries and taker.tracking:
            taker.armed = (frozenset(queues), wire.generation)
        return deliveries

    async def _take_one(
        self, keys: list[str], names: list[str], max_count: int, preloaded: list[tuple[int, bytes]]
    ) -> list[Delivery]:
        taker = self.taker
        wire = self.take
        score, data = taker.take_request(keys, names, max_count, preloaded, True)
        try:
            reply = await adrive(wire, take_conversation(data))
        except (rexc.ConnectionError, rexc.TimeoutError, asyncio.CancelledError):
            # the script may have run: its messages are found by their score and given
            # back before the next command (or by the next connection)
            if self.options.ack_emulation:
                self.ledger.takes.append((score, names[0]))
            raise
        deliveries, unreadable = taker.deliveries(reply, keys, names)
        for queue, raw, tag, reason in unreadable:
            await adrive(self.cmd, script_conversation(*taker.quarantine_call(queue, raw, tag)))
            taker.quarantined(queue, raw, reason)
        return deliveries

    def armed(self, queues: Sequence[str]) -> bool:
        """Whether the last take watches ``queues`` (their next change wakes the loop)."""
        return self.taker.armed == (frozenset(queues), self.take.generation) and self.take.connected

    def _on_take_push(self, push: Any) -> None:
        # a change reported while a take is on its way wakes the loop driver too: it
        # takes once more after that take (the change may be in a queue it did not read)
        if self.taker.reports_change(push):
            self.taker.armed = None
            self.wake()

    def _take_lost(self, exc: BaseException) -> None:
        # as the blocking event loop finds it: raised by the connection's next wait; the
        # next take reconnects and watches the lists again (nothing was taken meanwhile)
        self.taker.armed = None
        self.on_error(exc)
        self.wake()

    def wake(self) -> None:
        if self.waker is not None:
            self.waker()

    # -- acknowledgements and giving back ----------------------------------------------------
    def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not self.options.ack_emulation:
            return
        tags = [(d.queue, d.receipt) for d in deliveries if d.receipt is not None]
        if not tags:
            return
        if self._held is not None:
            self._held += tags
            return
        self._write_acks(tags)

    def _write_acks(self, tags: list[Ack]) -> None:
        # a deferred write: the conversation runs here, on the asyncio wire, without waiting;
        # what cannot be written stays owed in the ledger and goes with the next command
        if self.cmd.connected:
            drive(self.cmd, ack_conversation(self.ledger, self.keys, tags))
        else:
            self.ledger.acks.extend(tags)

    def hold_acks(self) -> bool:
        if self._held is not None:
            return False
        self._held = []
        return True

    def write_held_acks(self) -> None:
        tags, self._held = self._held, None
        if tags:
            self._write_acks(tags)

    def requeue(self, deliveries: Sequence[Delivery], redelivered: bool = True) -> None:
        if deliveries:
            conversation = self.blocking.requeue_conversation(list(deliveries), redelivered)
            self._in_background(
                self._converse_now(conversation), f"return {len(deliveries)} message(s) to their queues"
            )

    def reject(self, deliveries: Sequence[Delivery]) -> None:
        self.ack(deliveries)

    # -- the loop ----------------------------------------------------------------------------
    def sync_fanout(self, queues: Any) -> None:
        self.fanout.sync(queues)

    def maintain_soon(self) -> None:
        """Start the periodic work (visibility-timeout sweep, ledger, expiring queues,
        fanout subscriptions) unless it is running."""
        if self._maintaining is None or self._maintaining.done():
            self._maintaining = asyncio.ensure_future(self._maintain())
            self._maintaining.add_done_callback(self._maintained)

    async def _maintain(self) -> None:
        await self._settle()
        await adrive(self.cmd, self.blocking.maintenance_conversation(self.queues))
        fanout = self.fanout
        if fanout.patterns and not fanout.awire.connected:
            await fanout.awire.connect()

    def _maintained(self, future: asyncio.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self.on_error(future.exception())  # type: ignore[arg-type]
        self.wake()

    def event_fds(self) -> Sequence[Any]:
        return ()  # the asyncio wires are the loop's already

    def watch(self, queues: Sequence[str]) -> bool:
        return False  # a take that finds its lists empty watches them

    def on_readable(self, fd: int) -> bool:
        return False

    def periodic(self) -> Sequence[tuple[float, Callable[[], None]]]:
        interval = self.blocking.loop.periodic()[0][0]
        return [(interval, self.maintain_soon)]

    def on_driver_error(self, exc: BaseException, queue: str | None = None) -> None:
        if isinstance(exc, rexc.ReadOnlyError) or (
            isinstance(exc, rexc.RedisError) and str(exc).startswith(("UNBLOCKED", "MASTERDOWN"))
        ):
            self.drop_connections()

    def drop_connections(self) -> None:
        self.take.disconnect()
        self.fanout.awire.disconnect()
        self.cmd.disconnect()

    def unwatch(self) -> None:
        self.taker.armed = None
        self.queues = ()

    def close(self) -> None:
        """Closing is :meth:`aclose` (awaited by the driver); nothing to do at once."""

    async def aclose(self) -> None:
        """Give back what is being given back, settle the ledger, then disconnect."""
        if self.closed:
            return
        self.closed = True
        try:
            await self._restored()
            for attempt in range(2):
                try:
                    if self.ledger.acks or self.ledger.takes:
                        await adrive(self.cmd, recover_conversation(self.ledger, self.keys))
                    if self.cmd.connected:
                        await self.cmd.drained()
                    if not (self.ledger.acks or self.ledger.takes):
                        break
                except rexc.RedisError as exc:
                    if attempt:
                        log_unsettled(self.ledger, exc)
        finally:
            if self._maintaining is not None:
                self._maintaining.cancel()
            self.take.disconnect()
            self.cmd.disconnect()
            self.fanout.close()


def _finish(conversation: Conversation[Any], replies: list[Any]) -> None:
    """Hand ``replies`` to a conversation of one round, which checks them."""
    try:
        conversation.send(replies)
    except StopIteration:
        return
    raise RuntimeError("a publish took more than one round")
