"""The asyncio driver of the virtual transports whose store calls block: the blocking
transport's code, its I/O on a thread of its own (sqlite://, sqs://, and the Redis
connections redis-py makes: rediss://, Sentinel; plain redis:// runs on the asyncio loop,
see :mod:`kombu_like.transport.redis.aio`).

Every store call of a connection -- publishes, takes, acks, declarations, the store's
periodic work -- is made by the blocking transport's own code (its store, routing,
envelopes, prefetch and unacked bookkeeping, restore), run by one I/O thread per
connection.  That thread runs a :class:`~kombu_like.asynchronous.hub.Hub` with the
connection registered on it, exactly as the blocking API's event-loop mode does: the
store's own event-loop hooks wake it (Redis's client tracking, sqlite's wake-up
descriptor and its poll of the file for other processes' writes, SQS's receive thread),
and its timers run the store's periodic work.  The asyncio loop's thread never waits on
the store:

* a round trip (declare, bind, purge, ``basic_get``, ``qos``, cancel, close ...) is a job
  for the I/O thread whose result the caller awaits;
* a publish is handed over and returns, as on AMQP without confirms: the publishes queued
  meanwhile go out together (one pipeline, one transaction, one batch call), and a
  failure is logged, raised by the next publish on the channel and by the connection's
  next wait.  ``mandatory`` publishes, and every publish with
  ``transport_options={"confirm_publish": True}`` or ``wait_replicas``, await the store
  instead; the queue of
  publishes not written yet is bounded (``backlog``);
* acks, rejects and requeues are handed over and return;
* deliveries come back to the loop's thread in one call per take.

Jobs run in the order they were made, each whole: a cancelled caller stops waiting, it
never cuts a store call in half; a job whose caller was cancelled before it started does
not run, and a message fetched by a ``basic_get`` whose caller stopped waiting goes back
to its queue.  Messages delivered and not acked when a channel closes go back to their
queues (the blocking channel's close, run on the I/O thread).  Closing the connection
ends the thread and waits for it.

Why a thread: a store's operations here are blocking calls of a library (a sqlite
transaction waiting for another process's lock, boto3's HTTP, redis-py's TLS and Sentinel
connects); running them unchanged keeps one implementation of each, and one thread per
connection keeps the loop free and the threads bounded.  (Redis's own conversations of
several round trips -- ``NOSCRIPT`` fallbacks, the reconnect ledger -- are written once as
:mod:`~kombu_like.transport.redis.conversation` s, which the asyncio loop awaits.)
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ..asynchronous.hub import Hub
from ..exceptions import ConnectionError
from ..plan import SENT, Plan, arun
from .backlog import MAX_UNSENT, Backlog
from .message import Message
from .virtual import ROUND_TRIPS

if TYPE_CHECKING:
    from ..connection import Connection as SyncConnection
    from .connection import Connection

__all__ = ["MAX_UNSENT", "IOThread", "ThreadedDriver", "threaded_channel_class"]

logger = logging.getLogger(__name__)

#: publishes written in one pipeline at most
MAX_PIPELINE = 500
#: seconds closing waits for the I/O thread's end once its last job ran
JOIN_TIMEOUT = 5.0


class _GuardedHub(Hub):
    """A Hub whose callbacks' errors go to ``report`` instead of ending its loop round
    (a take failing on a lost connection must not drop the jobs queued beside it)."""

    def __init__(self, report: Callable[[BaseException], None]) -> None:
        super().__init__()
        self.report = report

    def call_soon(self, callback: Any, *args: Any) -> Any:
        return super().call_soon(self._guarded, callback, args)

    def _guarded(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            callback(*args)
        except Exception as exc:
            self.report(exc)

    def on_callback_error(self, callback: Any, exc: BaseException) -> None:
        self.report(exc)


class IOThread:
    """One thread doing one connection's store I/O; jobs in, results and deliveries out.

    Work crosses in batches: jobs queue in order and the thread is woken once for all
    that queued while it was busy; results and deliveries likewise reach the asyncio loop
    in one ``call_soon_threadsafe`` per batch.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, on_error: Callable[[BaseException], None], name: str) -> None:
        self.loop = loop
        self.on_error = on_error
        self.hub = _GuardedHub(self.report)
        self._jobs: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._jobs_posted = False
        self._handover_due = False
        #: the acks job posted last, while no other job followed it
        self._acks: list[tuple[Any, int, bool]] | None = None
        self._acks_lock = threading.Lock()
        self._results: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._results_posted = False
        #: accepting jobs (cleared, on the loop's thread, once closing started)
        self.accepting = True
        self._running = True
        #: publishes handed over and not written yet
        self.backlog = Backlog()
        #: done (on the loop's thread) once the thread ended
        self.exited: asyncio.Future[None] = loop.create_future()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.accepting and self.thread.is_alive()

    def on_thread(self) -> bool:
        """True on the I/O thread itself."""
        return threading.get_ident() == self.thread.ident

    # -- from the loop's thread ---------------------------------------------------------
    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the I/O thread, after the jobs posted before."""
        if not self.accepting:
            raise ConnectionError("connection is closed")
        if self._acks is not None:
            with self._acks_lock:
                self._acks = None  # acks made after this job run after it
        self._jobs.append((fn, args))
        if not self._handover_due:
            # the I/O thread is woken once the loop's round is over, for all the jobs the
            # round made (a consumer's acks of a whole take)
            self._handover_due = True
            self.loop.call_soon(self._hand_over)

    def _hand_over(self) -> None:
        self._handover_due = False
        if self._jobs and not self._jobs_posted:
            self._jobs_posted = True
            self.hub.call_soon(self._run_jobs)

    def ack(self, channel: Any, delivery_tag: int, multiple: bool) -> None:
        """Acknowledge on the I/O thread: the acks made one after another go as one job."""
        with self._acks_lock:
            acks = self._acks
            if acks is not None:
                acks.append((channel, delivery_tag, multiple))
                return
        acks = [(channel, delivery_tag, multiple)]
        self.post(_write_acks, self, acks)
        self._acks = acks  # no other thread sets it to a list

    def _take_acks(self, acks: list[tuple[Any, int, bool]]) -> None:
        """On the I/O thread: no ack joins ``acks`` any longer."""
        with self._acks_lock:
            if self._acks is acks:
                self._acks = None

    def submit(
        self, fn: Callable[..., Any], *args: Any, orphan: Callable[[Any], Any] | None = None
    ) -> asyncio.Future[Any]:
        """:meth:`post`, with a future of ``fn``'s result (a cancelled one: not run).

        ``orphan(result)`` is called on the loop's thread with the result of a call whose
        caller stopped waiting while it ran (what it fetched must go back).
        """
        future = self.loop.create_future()
        self.post(self._call, fn, args, future, orphan)
        return future

    def _run_results(self) -> None:
        self._results_posted = False
        results = self._results
        while results:
            fn, args = results.popleft()
            try:
                fn(*args)
            except Exception as exc:  # a consumer's error reaches it through its inbox
                self.on_error(exc)

    # -- from the I/O thread --------------------------------------------------------------
    def to_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the asyncio loop's thread, after what was sent before."""
        self._results.append((fn, args))
        if not self._results_posted:
            self._results_posted = True
            # the loop is woken once the I/O thread's round is over, for all it produced
            # (every delivery of a take): a wake-up per item would hand the GIL back and
            # forth between the two threads
            if not self.hub.defer_to_round_end(self._wake_loop):
                self._wake_loop()

    def _wake_loop(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._run_results)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            logger.debug("asyncio loop closed; dropping a result of the I/O thread")

    def report(self, exc: BaseException) -> None:
        """An error of the I/O thread's own work: raised by the connection's next wait."""
        logger.debug("error in the I/O thread: %r", exc)
        self.to_loop(self.on_error, exc)

    def stop(self) -> None:
        """End the thread once the job running now returns."""
        self._running = False
        self.hub.call_soon(_nothing)  # work queued: the loop's round ends without waiting

    def _call(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        future: asyncio.Future[Any],
        orphan: Callable[[Any], Any] | None,
    ) -> None:
        if future.cancelled():
            return  # the caller gave up before anything was sent
        try:
            result = fn(*args)
        except BaseException as exc:
            self.to_loop(_fail, future, exc)
        else:
            self.to_loop(_succeed, future, result, orphan)

    def _run_jobs(self) -> None:
        self._jobs_posted = False
        jobs = self._jobs
        while jobs:
            fn, args = jobs.popleft()
            if fn is _publish and jobs and jobs[0][0] is _publish:
                batch = [args]
                while jobs and jobs[0][0] is _publish and len(batch) < MAX_PIPELINE:
                    batch.append(jobs.popleft()[1])
                _publish_many(self, batch)
                continue
            try:
                fn(*args)
            except Exception as exc:
                self.report(exc)

    def _run(self) -> None:
        hub = self.hub
        try:
            rounds = hub.create_loop()
            while self._running:
                try:
                    next(rounds)
                except StopIteration:
                    rounds = hub.create_loop()
                except Exception as exc:
                    self.report(exc)
                    rounds = hub.create_loop()
        finally:
            try:
                hub.close()
            except Exception:  # the thread ends either way
                logger.debug("error closing the I/O thread's hub", exc_info=True)
            finally:
                self.to_loop(self._exited)

    def _exited(self) -> None:  # on the loop's thread, the I/O thread gone
        self.accepting = False
        # jobs queued after its last round (it ended on an error): their callers fail,
        # they do not wait for ever
        jobs, self._jobs = self._jobs, deque()
        for fn, args in jobs:
            if fn == self._call and not args[2].done():
                args[2].set_exception(ConnectionError("connection is closed"))
        self.backlog.fail(ConnectionError("connection is closed"))  # a publisher waiting for room
        if not self.exited.done():
            self.exited.set_result(None)


def _nothing() -> None:
    pass


def _succeed(future: asyncio.Future[Any], result: Any, orphan: Callable[[Any], Any] | None = None) -> None:
    if not future.done():
        future.set_result(result)
    elif orphan is not None:
        orphan(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


# -- publishing: handed over, written as pipelines --------------------------------------
def _publish(channel: Any, item: tuple[Any, ...]) -> None:
    _publish_many(channel._io, [(channel, item)])


def _publish_items(channel: Any, items: list[tuple[Any, ...]]) -> None:
    _publish_many(channel._io, [(channel, item) for item in items])


def _publish_many(io: IOThread, batch: list[tuple[Any, ...]]) -> None:
    """Write the publishes of ``batch`` (``(channel, (message, exchange, routing_key,
    mandatory))``), one pipeline per run of one channel's."""
    start = 0
    while start < len(batch):
        channel = batch[start][0]
        end = start + 1
        while end < len(batch) and batch[end][0] is channel:
            end += 1
        items = [item for _, item in batch[start:end]]
        try:
            if len(items) == 1:
                channel._sync_publish(*items[0])
            else:
                channel._sync_publish_batch(items)
        except Exception as exc:
            logger.error("could not publish %d message(s): %s", len(items), exc)
            io.to_loop(channel._publish_failed, exc)
            io.report(exc)
        io.to_loop(io.backlog.written, end - start)
        start = end


# -- the channel ------------------------------------------------------------------------
_classes: dict[type, type] = {}


def _on_io_thread(method: Callable[..., Any]) -> Callable[..., asyncio.Future[Any]]:
    @functools.wraps(method)
    def awaited(self: Any, *args: Any, **kwargs: Any) -> Any:
        io = self._io
        if io.on_thread():  # the transport's own call (a connection closing its channels)
            return method(self, *args, **kwargs)
        return io.submit(functools.partial(method, self, *args, **kwargs))

    return awaited


def _write_acks(io: IOThread, acks: list[tuple[Any, int, bool]]) -> None:
    io._take_acks(acks)
    for channel, delivery_tag, multiple in acks:
        channel._sync_ack(delivery_tag, multiple)


def publishes_awaited(transport_options: Mapping[str, Any]) -> bool:
    """Whether a connection's publishes are awaited until the broker has them rather than
    handed over: with ``confirm_publish``, and with ``wait_replicas`` (a publish confirmed
    by Redis replicas returns once they have it)."""
    return bool(transport_options.get("confirm_publish") or transport_options.get("wait_replicas"))


def _handed_over(method: Callable[..., Any]) -> Callable[..., None]:
    @functools.wraps(method)
    def handed_over(self: Any, *args: Any, **kwargs: Any) -> None:
        io = self._io
        if io.on_thread():
            method(self, *args, **kwargs)
        else:
            io.post(functools.partial(method, self, *args, **kwargs))

    return handed_over


class _ThreadedChannel:
    """The methods of :func:`threaded_channel_class` (mixed in before the blocking
    channel class, whose methods run on the I/O thread)."""

    Message = Message
    aio_client: Any = None
    _io: IOThread
    _publish_error: BaseException | None = None
    _confirm: bool = False
    # the blocking channel's methods, run on the I/O thread
    _sync_publish: Callable[..., Any]
    _sync_publish_batch: Callable[..., Any]
    _sync_consume: Callable[..., Any]
    _sync_get: Callable[..., Any]
    _sync_ack: Callable[..., Any]
    _sync_reject: Callable[..., Any]
    _sync_unroutable: Callable[..., Any]

    def run_plan(self, plan: Plan[Any]) -> Any:
        return arun(plan)

    def basic_publish(
        self,
        message: dict[str, Any],
        exchange: str = "",
        routing_key: str = "",
        mandatory: bool = False,
        immediate: bool = False,
        **kwargs: Any,
    ) -> Any:
        self._raise_publish_error()
        if mandatory or self._confirm:
            return self._io.submit(functools.partial(self._sync_publish, message, exchange, routing_key, mandatory))
        self._io.post(_publish, self, (message, exchange, routing_key, mandatory))
        self._io.backlog.unsent += 1
        return SENT

    def publish_batch(self, batch: Any) -> Any:
        """Handed over as :meth:`basic_publish` is (one pipeline); awaited with confirms or
        a ``mandatory`` message among them."""
        self._raise_publish_error()
        items = list(batch)
        if self._confirm or any(item[3] for item in items):
            return self._io.submit(self._sync_publish_batch, items)
        self._io.post(_publish_items, self, items)
        self._io.backlog.unsent += len(items)
        return SENT

    def backlog(self) -> asyncio.Future[None] | None:
        return self._io.backlog.room()

    def _raise_publish_error(self) -> None:
        error = self._publish_error
        if error is not None:
            self._publish_error = None
            raise error

    def _publish_failed(self, exc: BaseException) -> None:
        self._publish_error = exc

    def basic_ack(self, delivery_tag: int, multiple: bool = False, **kwargs: Any) -> None:
        io = self._io
        if io.on_thread():
            self._sync_ack(delivery_tag, multiple)
        else:
            io.ack(self, delivery_tag, multiple)

    def basic_consume(self, queue: str, no_ack: bool = False, callback: Any = None, *args: Any, **kwargs: Any) -> Any:
        if callback is not None:
            to_loop = self._io.to_loop
            user = callback

            def callback(message: Any) -> None:  # on the I/O thread: handed to the loop's
                to_loop(user, message)

        return self._io.submit(functools.partial(self._sync_consume, queue, no_ack, callback, *args, **kwargs))

    def basic_get(self, queue: str, no_ack: bool = False, accept: Any = None, **kwargs: Any) -> Any:
        get = functools.partial(self._sync_get, queue, no_ack, accept, **kwargs)
        if self._io.on_thread():
            return get()
        return self._io.submit(get, orphan=self._give_back)

    def _unroutable(self, message: dict[str, Any], exchange: str, routing_key: str, mandatory: bool) -> None:
        events: Any = getattr(self, "events", {})
        if mandatory and events.get("basic_return") and self._io.on_thread():
            # the handlers are the user's (an RPC client's futures): they run on the loop's
            # thread, before the publish's caller resumes
            self._io.to_loop(self._sync_unroutable, message, exchange, routing_key, mandatory)
        else:
            self._sync_unroutable(message, exchange, routing_key, mandatory)

    def _give_back(self, message: Any) -> None:
        # fetched for a caller that stopped waiting: back to its queue at once (a closing
        # connection gives it back with the channel's other unacknowledged messages)
        if message is not None and message.delivery_tag is not None and self._io.accepting:
            self._io.post(self._sync_reject, message.delivery_tag, True)


def threaded_channel_class(base: type) -> type:
    """``base`` (a virtual transport's channel class) for the asyncio API, its store
    calls made by the connection's I/O thread."""
    cls = _classes.get(base)
    if cls is None:
        namespace: dict[str, Any] = {
            name: _on_io_thread(getattr(base, name))
            for name in ROUND_TRIPS
            if hasattr(base, name) and name not in ("basic_consume", "basic_get")
        }
        for name in ("basic_reject", "basic_nack"):
            namespace[name] = _handed_over(getattr(base, name))
        namespace.update(
            _sync_publish=getattr(base, "basic_publish"),  # noqa: B009 - any channel class
            _sync_publish_batch=getattr(base, "publish_batch"),  # noqa: B009
            _sync_consume=getattr(base, "basic_consume"),  # noqa: B009
            _sync_get=getattr(base, "basic_get"),  # noqa: B009
            _sync_ack=getattr(base, "basic_ack"),  # noqa: B009
            _sync_reject=getattr(base, "basic_reject"),  # noqa: B009
            _sync_unroutable=getattr(base, "_unroutable", None),
            __module__=__name__,
        )
        cls = _classes[base] = type(f"Async{base.__name__}", (_ThreadedChannel, base), namespace)
    return cls


class ThreadedDriver:
    """Connects a virtual transport whose store calls block, for an asyncio
    :class:`~kombu_like.aio.connection.Connection`: one I/O thread per connection."""

    #: transports (``driver_type``) this class drives; subclasses drive others
    driver_types: ClassVar[frozenset[str]] = frozenset({"sqlite", "sqs", "redis_streams"})

    def __init__(self, client: Connection, sync: SyncConnection) -> None:
        self.client = client
        self.sync = sync
        self.io: IOThread | None = None

    @classmethod
    def supports(cls, sync: SyncConnection) -> bool:
        return sync.transport.driver_type in cls.driver_types

    @property
    def is_open(self) -> bool:
        connection = self.sync._connection
        io = self.io
        return io is not None and io.alive and connection is not None and bool(connection.is_open)

    async def connect(self) -> None:
        name = f"kombu_like-{self.sync.transport.driver_type}-io"
        io = self.io = IOThread(asyncio.get_running_loop(), self.client._on_driver_error, name)
        io.start()
        try:
            await io.submit(self._open)
        except BaseException as exc:  # a cancellation too: the thread closes what it opened, and ends
            io.post(self._shut)
            io.accepting = False
            if not isinstance(exc, asyncio.CancelledError):
                await _ended(io)  # a cancelled caller does not wait: the thread ends by itself
            raise

    def _open(self) -> None:  # on the I/O thread
        sync = self.sync
        sync.connect()
        assert self.io is not None
        sync.transport.register_with_event_loop(sync.connection, self.io.hub)

    async def channel(self) -> Any:
        io = self.io
        if io is None or not io.alive:
            raise ConnectionError("connection is closed")
        return await io.submit(self._open_channel)

    def _open_channel(self) -> Any:  # on the I/O thread
        connection = self.sync.connection
        if connection is None:
            raise ConnectionError("connection is closed")
        transport: Any = self.sync.transport
        channel = connection.channel(threaded_channel_class(transport.Channel))
        channel.aio_client = self.client
        channel._io = self.io
        channel._confirm = publishes_awaited(self.sync.transport_options)
        return channel

    def _shut(self) -> None:  # on the I/O thread
        sync = self.sync
        io = self.io
        assert io is not None
        try:
            if sync._connection is not None:
                sync.transport.unregister_from_event_loop(sync.connection, io.hub)
        finally:
            io.stop()
            sync.release()  # channels close: their unacknowledged messages go back

    async def close(self) -> None:
        io = self.io
        if io is None or not io.accepting:
            return
        future = io.submit(self._shut)
        io.accepting = False
        # the close runs whole on the I/O thread even if this wait is cancelled (the thread
        # then ends by itself, unwaited: a timeout around close() returns on time)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            raise
        except BaseException:
            await _ended(io)
            raise
        await _ended(io)


async def _ended(io: IOThread) -> None:
    """Wait for ``io``'s thread to end (it was told to): no thread is left behind."""
    await asyncio.shield(io.exited)
    io.thread.join(JOIN_TIMEOUT)  # past its last line already: returns at once
