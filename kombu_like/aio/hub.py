"""An asyncio event loop seen through the part of Kombu's Hub API that our event-loop
drivers use (``add_reader``, ``remove``, ``call_soon``, ``call_later``,
``call_repeatedly``, ``readers``).

The virtual transports' :class:`~kombu_like.transport.virtual.evloop.LoopDriver` takes,
dispatches and acks for the blocking Hub; over this adapter it does the same for the
asyncio API, in the loop's thread, with no thread of its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from ..utils.compat import fileno

__all__ = ["AsyncioHub", "bounded"]

logger = logging.getLogger(__name__)


async def bounded(future: asyncio.Future[Any], timeout: float | None, error: Callable[[], BaseException]) -> Any:
    """Await ``future``, failing it with ``error()`` after ``timeout`` seconds.

    Unlike :func:`asyncio.wait_for` this never swallows a cancellation of the caller that
    comes as the future completes (it awaits the future itself), and it costs a timer
    handle, not a task.  A cancelled caller cancels ``future``.
    """
    if timeout is None:
        return await future
    handle = asyncio.get_running_loop().call_later(timeout, _expire, future, error)
    try:
        return await future
    finally:
        handle.cancel()


def _expire(future: asyncio.Future[Any], error: Callable[[], BaseException]) -> None:
    if not future.done():
        future.set_exception(error())


class _Repeating:
    """``call_repeatedly``'s entry: calls ``callback`` every ``interval`` seconds until cancelled."""

    def __init__(self, hub: AsyncioHub, interval: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.hub = hub
        self.interval = interval
        self.callback = callback
        self.args = args
        self.cancelled = False
        self._handle: asyncio.TimerHandle = hub.loop.call_later(interval, self._run)

    def _run(self) -> None:
        if self.cancelled:
            return
        self._handle = self.hub.loop.call_later(self.interval, self._run)
        self.hub._guarded(self.callback, *self.args)

    def cancel(self) -> None:
        self.cancelled = True
        self._handle.cancel()


class AsyncioHub:
    """Kombu's Hub API over ``loop``.

    A callback that raises does not stop the loop: the error goes to ``on_error`` (the
    asyncio connection raises it from its next wait), as a Hub raises it from its loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, on_error: Callable[[BaseException], Any]) -> None:
        self.loop = loop
        self.on_error = on_error
        #: fd -> (callback, args), as the Hub keeps them (drivers check what they added)
        self.readers: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        #: called with the hub when it closes (the Hub's ``on_close``)
        self.on_close: set[Callable[[Any], Any]] = set()
        self._thread = threading.get_ident()

    def _guarded(self, callback: Callable[..., Any], *args: Any) -> None:
        try:
            callback(*args)
        except Exception as exc:
            self.on_error(exc)

    def add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        number = fileno(fd)
        self.readers[number] = (callback, args)
        self.loop.add_reader(number, self._guarded, callback, *args)

    def remove(self, fd: Any) -> None:
        number = fileno(fd)
        self.readers.pop(number, None)
        self.loop.remove_reader(number)

    remove_reader = remove

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> asyncio.Handle:
        # drivers call this from other threads too (an ack made elsewhere frees room)
        if threading.get_ident() == self._thread:
            return self.loop.call_soon(self._guarded, callback, *args)
        return self.loop.call_soon_threadsafe(self._guarded, callback, *args)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> asyncio.TimerHandle:
        return self.loop.call_later(delay, self._guarded, callback, *args)

    def call_repeatedly(self, interval: float, callback: Callable[..., Any], *args: Any) -> _Repeating:
        return _Repeating(self, interval, callback, args)

    def close(self) -> None:
        """Forget every reader; tell those that asked (``on_close``)."""
        for callback in list(self.on_close):
            self._guarded(callback, self)
        self.on_close.clear()
        for number in list(self.readers):
            self.remove(number)
