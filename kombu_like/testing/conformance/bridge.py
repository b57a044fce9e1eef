"""The asyncio API behind the blocking API's surface, so one conformance test runs on both.

A conformance test is written once, against the blocking API's surface: ``conn.Producer()``,
``conn.Consumer(...)``, ``conn.drain_events(timeout=...)``, ``conn.SimpleQueue(...)``,
``conn.channel()`` and entities bound to ``conn.default_channel``.  Run on the asyncio API,
its connection is a :class:`BridgedConnection`: every operation is carried out by
:mod:`kombu_like.aio` on an event loop running on a thread of its own (an
:class:`AioBridge`, one per test class), while the test's thread waits for it.

* A method called from the test's thread runs on the loop and is awaited there when it
  returns an awaitable; messages it returns come back as :class:`BridgedMessage`.
  On the loop's thread (inside a callback, or while the loop runs an entity's plan)
  the stand-ins are transparent: their methods are the asyncio objects' own.
* Callbacks run on the loop's thread, inside ``drain_events``; the message they get is a
  :class:`BridgedMessage`, whose ``ack()``, ``reject()`` and ``requeue()`` run the
  asyncio message's coroutine at once up to its first suspension (the state check and
  the write, as the blocking call makes them: a second ``ack()`` raises in the callback)
  and the bridge waits for the rest before the bridged call returns.
* The operations of a test share one :mod:`contextvars` context, as the statements of one
  task do (``with producer.batch():`` spans several calls).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, TypeVar

import pytest

from ...aio import Connection as AsyncConnection
from ...aio import Message as AsyncMessage
from ...aio.threaded import ThreadedDriver, publishes_awaited
from ...plan import Plan, arun

__all__ = ["AioBridge", "BridgedChannel", "BridgedConnection", "BridgedMessage"]

_T = TypeVar("_T")


class _Resumed:
    """The rest of a coroutine that already ran up to its first suspension: awaiting this
    hands what it waits for to the awaiting task and resumes it from there."""

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, waiting_for = self.coro, self.first
        while True:
            try:
                sent = yield waiting_for
            except BaseException as exc:  # a cancellation of the task: into the coroutine
                try:
                    waiting_for = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    waiting_for = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _finish(resumed: _Resumed) -> Any:
    return await resumed


class AioBridge:
    """An asyncio event loop on a thread of its own, running the asyncio API for tests that
    run on another thread.  The thread starts with the first call and ends with
    :meth:`close`."""

    def __init__(self, limit: float = 60.0) -> None:
        #: seconds a call may take beyond the wait it was given
        self.limit = limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        #: the context the last call ended with, in which the next one starts
        self._context = contextvars.Context()
        #: what callbacks' acknowledgements still have to do, waited for by every call
        self._pending: list[asyncio.Future[Any]] = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="kombu_like-conformance-aio", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def on_loop_thread(self) -> bool:
        return self._thread is not None and threading.get_ident() == self._thread.ident

    # -- from the test's thread ---------------------------------------------------------
    def call(self, awaitable: Awaitable[_T], wait: float | None = None) -> _T:
        """Await ``awaitable`` on the loop and return its result (or raise its error);
        fail the test when it takes more than ``wait`` + :attr:`limit` seconds."""
        if self.on_loop_thread():
            raise RuntimeError("a bridged call made on the loop's own thread would wait for itself")
        loop = self.loop
        outcome: concurrent.futures.Future[_T] = concurrent.futures.Future()
        tasks: list[asyncio.Task[_T]] = []

        def begin() -> None:  # in the context the previous call ended with: the task copies it
            task = loop.create_task(self._settled(awaitable))
            tasks.append(task)
            task.add_done_callback(functools.partial(_copy_outcome, outcome))

        loop.call_soon_threadsafe(begin, context=self._context)
        limit = self.limit + (wait or 0.0)
        concurrent.futures.wait([outcome], timeout=limit)
        if not outcome.done():
            loop.call_soon_threadsafe(lambda: [task.cancel() for task in tasks])
            pytest.fail(f"an operation of the asyncio API did not end within {limit}s")
        return outcome.result()

    def run(self, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``function(*args, **kwargs)`` called on the loop's thread."""

        async def call() -> _T:
            return function(*args, **kwargs)

        return self.call(call())

    def invoke(self, target: Any, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """``target.<name>(*args, **kwargs)`` on the loop, awaited if it returns an awaitable."""
        timeout = kwargs.get("timeout")

        async def call() -> Any:
            result = getattr(target, name)(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return self.wrap(result)

        return self.call(call(), timeout if isinstance(timeout, (int, float)) else None)

    def wrap(self, value: Any) -> Any:
        """What a bridged call returns for ``value``: messages are bridged too."""
        if isinstance(value, AsyncMessage):
            return BridgedMessage(self, value)
        return value

    def close(self) -> None:
        """Cancel what still runs on the loop, stop it and end its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self.call(_shutdown(loop))
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(self.limit)
            self._loop = self._thread = None
            if not thread.is_alive():
                loop.close()

    # -- on the loop's thread -----------------------------------------------------------
    def start_now(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` up to its first suspension now (its errors are raised here), and
        the rest before the bridged call in progress returns."""
        try:
            first = coro.send(None)
        except StopIteration:
            return
        self._pending.append(asyncio.ensure_future(_finish(_Resumed(coro, first))))

    async def _settled(self, awaitable: Awaitable[_T]) -> _T:
        try:
            result = await awaitable
        except BaseException:
            await self._settle(quiet=True)
            raise
        finally:
            self._context = contextvars.copy_context()  # where the next call starts
        await self._settle()
        return result

    async def _settle(self, quiet: bool = False) -> None:
        while self._pending:
            pending, self._pending = self._pending, []
            outcomes = await asyncio.gather(*pending, return_exceptions=True)
            errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
            if errors and not quiet:
                raise errors[0]


def _copy_outcome(outcome: concurrent.futures.Future[Any], task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        outcome.set_exception(asyncio.CancelledError("the bridged operation was cancelled"))
    elif task.exception() is not None:
        outcome.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        outcome.set_result(task.result())


async def _shutdown(loop: asyncio.AbstractEventLoop) -> None:
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks(loop) if task is not current]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    await loop.shutdown_asyncgens()


class Bridged:
    """Stands for an object of the asyncio API.  From the test's thread its methods run on
    the bridge's loop (awaited when they return an awaitable); on the loop's thread it is
    transparent.  Other attributes are the object's own."""

    def __init__(self, bridge: AioBridge, target: Any) -> None:
        self._bridge = bridge
        self._target = target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if inspect.ismethod(value) and not self._bridge.on_loop_thread():
            return functools.partial(self._bridge.invoke, self._target, name)
        return value

    def __repr__(self) -> str:
        return f"<bridged {self._target!r}>"


class _BridgedContext(Bridged):
    """``with`` for an object used as ``async with``."""

    def __enter__(self) -> Any:
        self._bridge.invoke(self._target, "__aenter__")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bridge.invoke(self._target, "__aexit__", exc_type, exc, tb)


def unwrap(value: Any) -> Any:
    """The asyncio object a stand-in stands for (anything else as it is)."""
    return value._target if isinstance(value, Bridged) else value


class BridgedMessage(Bridged):
    """A received message of the asyncio API, acknowledged without awaiting."""

    def _settle(self, name: str, *args: Any, **kwargs: Any) -> None:
        if self._bridge.on_loop_thread():
            self._bridge.start_now(getattr(self._target, name)(*args, **kwargs))
        else:
            self._bridge.invoke(self._target, name, *args, **kwargs)

    def ack(self, multiple: bool = False) -> None:
        self._settle("ack", multiple=multiple)

    def reject(self, requeue: bool = False) -> None:
        self._settle("reject", requeue=requeue)

    def requeue(self) -> None:
        self._settle("requeue")


class BridgedChannel(Bridged):
    """A channel of the asyncio API: entities bound to it run their plans on the loop."""

    def run_plan(self, plan: Plan[Any]) -> Any:
        if self._bridge.on_loop_thread():
            return arun(plan)
        return self._bridge.wrap(self._bridge.call(arun(plan)))


class BridgedProducer(Bridged):
    def batch(self, max_size: int | None = None) -> BridgedBatch:
        return BridgedBatch(self._bridge, self._bridge.run(self._target.batch, max_size))


class BridgedBatch(_BridgedContext):
    pass


class BridgedConsumer(_BridgedContext):
    pass


class BridgedSimpleQueue(_BridgedContext):
    def __len__(self) -> int:
        # len() of the blocking SimpleQueue is qsize(), which the asyncio one awaits
        return int(self._bridge.invoke(self._target, "qsize"))


class BridgedConnection(Bridged):
    """A :class:`kombu_like.aio.Connection` with the blocking Connection's surface that the
    conformance tests use.  It connects when first used, as the blocking one does."""

    _target: AsyncConnection

    def __init__(self, bridge: AioBridge, target: AsyncConnection) -> None:
        super().__init__(bridge, target)
        self._default_channel: BridgedChannel | None = None

    @property
    def connection(self) -> Any:
        """The transport's connection the asyncio driver runs (``None`` for a driver with
        a connection of its own, as amqp's)."""
        return self._target.sync._connection

    @property
    def publishes_handed_over(self) -> bool:
        """True when a publish returns before the store took it -- the asyncio API's
        I/O-thread driver without ``confirm_publish`` -- so a store error is raised by the
        channel's next publish and the connection's next wait, not by that publish."""
        driver = self._target._driver
        return isinstance(driver, ThreadedDriver) and not publishes_awaited(self._target.transport_options)

    def connect(self) -> BridgedConnection:
        if not self._target.connected:
            self._bridge.invoke(self._target, "connect")
        return self

    def ensure_connection(self, *args: Any, **kwargs: Any) -> BridgedConnection:
        self._bridge.invoke(self._target, "ensure_connection", *args, **kwargs)
        return self

    @property
    def default_channel(self) -> BridgedChannel:
        self.connect()
        channel = self._target.default_channel
        if self._default_channel is None or self._default_channel._target is not channel:
            self._default_channel = BridgedChannel(self._bridge, channel)
        return self._default_channel

    def channel(self) -> BridgedChannel:
        return BridgedChannel(self._bridge, self._bridge.invoke(self._target, "channel"))

    def drain_events(self, timeout: float | None = None) -> None:
        self._bridge.invoke(self._target, "drain_events", timeout=timeout)

    def Producer(self, channel: Any = None, *args: Any, **kwargs: Any) -> BridgedProducer:  # noqa: N802
        self.connect()
        producer = self._bridge.run(self._target.Producer, unwrap(channel), *args, **kwargs)
        return BridgedProducer(self._bridge, producer)

    def Consumer(self, queues: Any = None, channel: Any = None, *args: Any, **kwargs: Any) -> BridgedConsumer:  # noqa: N802
        self.connect()
        bridge = self._bridge
        callbacks = kwargs.get("callbacks")
        if callbacks:
            kwargs["callbacks"] = [_dispatch(bridge, list(callbacks))]
        for name in ("on_message", "on_decode_error"):
            if kwargs.get(name) is not None:
                kwargs[name] = _bridged_first_argument(bridge, kwargs[name])
        consumer = bridge.run(self._target.Consumer, queues, unwrap(channel), *args, **kwargs)
        return BridgedConsumer(bridge, consumer)

    def SimpleQueue(self, name: Any, no_ack: bool | None = None, **kwargs: Any) -> BridgedSimpleQueue:  # noqa: N802
        self.connect()
        return BridgedSimpleQueue(self._bridge, self._bridge.run(self._target.SimpleQueue, name, no_ack, **kwargs))

    def SimpleBuffer(self, name: Any, no_ack: bool | None = None, **kwargs: Any) -> BridgedSimpleQueue:  # noqa: N802
        self.connect()
        return BridgedSimpleQueue(self._bridge, self._bridge.run(self._target.SimpleBuffer, name, no_ack, **kwargs))

    def release(self) -> None:
        self._bridge.invoke(self._target, "close")

    close = release

    def __enter__(self) -> BridgedConnection:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()


def _dispatch(bridge: AioBridge, callbacks: list[Callable[[Any, Any], Any]]) -> Callable[[Any, Any], None]:
    """One asyncio callback calling every blocking-API callback with the same message."""

    def dispatch(body: Any, message: Any) -> None:
        bridged = BridgedMessage(bridge, message)
        for callback in callbacks:
            callback(body, bridged)

    return dispatch


def _bridged_first_argument(bridge: AioBridge, handler: Callable[..., Any]) -> Callable[..., Any]:
    def call(message: Any, *args: Any) -> Any:
        return handler(BridgedMessage(bridge, message), *args)

    return call
