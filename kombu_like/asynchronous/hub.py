"""The event loop (Kombu's ``kombu.asynchronous.hub``).

A :class:`Hub` waits on file descriptors (readers and writers) and a
:class:`~kombu_like.asynchronous.timer.Timer`, and runs callbacks: the ones due on the
timer, the ones queued with :meth:`Hub.call_soon` (from any thread: a
:class:`~.wakeup.WakeupFd` wakes the poller at once), then the ones whose descriptors
became ready.  One ``next(loop)`` is one such round; Celery's worker drives it that way.
"""

from __future__ import annotations

import errno
import os
import select
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import suppress
from queue import Empty
from types import GeneratorType
from typing import Any

from ..log import get_logger
from ..utils.compat import fileno
from ..utils.eventio import ERR, READ, WRITE, poll
from ..utils.objects import cached_property
from .held import HeldWork
from .timer import Entry, Timer
from .wakeup import WakeupFd

__all__ = ["Hub", "Stop", "get_event_loop", "set_event_loop"]

logger = get_logger(__name__)

_current: list[Hub | None] = [None]
_MISSING = object()


class Stop(BaseException):
    """Raised inside the loop to stop :meth:`Hub.run_forever`."""


def _stop() -> None:
    raise Stop()


def get_event_loop() -> Hub | None:
    """The process's current event loop (set with :func:`set_event_loop`)."""
    return _current[0]


def set_event_loop(loop: Hub | None) -> Hub | None:
    """Make ``loop`` the current event loop; returns it."""
    _current[0] = loop
    return loop


class _Call:
    """A callback with its arguments, queued by :meth:`Hub.call_soon`.

    Kombu queues a ``vine.promise`` here; this keeps the part of it a caller of
    ``call_soon`` uses (``fun``, ``args``, ``cancel()``) at a third of the cost.
    """

    __slots__ = ("args", "fun", "cancelled")

    def __init__(self, fun: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fun = fun
        self.args = args
        self.cancelled = False

    def __call__(self) -> Any:
        if self.cancelled:
            return None
        return self.fun(*self.args)

    def cancel(self) -> None:
        """Do not run after all (if it has not run yet)."""
        self.cancelled = True

    def __repr__(self) -> str:
        return f"<call_soon {getattr(self.fun, '__name__', self.fun)!r}{self.args!r}>"


class Hub:
    """An event loop over file descriptors and a timer.

    ``readers``/``writers`` map descriptor numbers to ``(callback, args)``; a callback
    that is a generator is advanced with ``next()`` instead of called.  Descriptors
    added with ``consolidate=True`` are not called one by one: the ready ones are handed
    together to ``consolidate_callback(fds)``.
    """

    READ = READ
    WRITE = WRITE
    ERR = ERR

    def __init__(self, timer: Timer | None = None) -> None:
        self.timer = timer if timer is not None else Timer()
        self.readers: dict[int, Any] = {}
        self.writers: dict[int, Any] = {}
        self.on_tick: set[Callable[[], Any]] = set()
        self.on_close: set[Callable[[Hub], Any]] = set()
        self.consolidate: set[int] = set()
        self.consolidate_callback: Callable[[list[int]], Any] | None = None
        #: errors raised by timers that must stop the loop instead of being logged
        self.propagate_errors: tuple[type[BaseException], ...] = ()
        self._ready: set[Any] = set()
        self._ready_lock = threading.Lock()
        self._loop_thread: int | None = None
        self._waker: WakeupFd | None = None
        self._poller: Any = None
        #: descriptors handed to the poller through :meth:`_watch` (some may be closed)
        self._watched: set[int] = set()
        self._loop: Generator[None, None, None] | None = None
        self._dispatching = False
        self._after_dispatch: list[Callable[[], Any]] = []
        #: callbacks to run before the loop next waits for events
        self._held = HeldWork()
        #: the loop's thread is in one of its rounds (not between them, nor after the last)
        self._in_round = False
        #: events a look before waiting found (the round handles them without waiting)
        self._found: Any = None

    # -- the poller ----------------------------------------------------------------
    @property
    def poller(self) -> Any:
        if self._poller is None:
            self._poller = poll()
            self._watched.clear()
            if self._waker is not None:
                self._poller.register(self._waker.fileno(), READ)
            for fd in set(self.readers) | set(self.writers):
                self._watch(fd)
        return self._poller

    @poller.setter
    def poller(self, value: Any) -> None:
        self._poller = value
        self._watched.clear()

    def _watch(self, fd: int) -> None:
        flags = (READ | ERR if fd in self.readers else 0) | (WRITE if fd in self.writers else 0)
        if flags:
            self.poller.register(fd, flags)
            self._watched.add(fd)
        elif fd in self._watched:
            # Celery's pool removes the writer of every idle process on every round: a
            # descriptor never handed to the poller costs no system call
            self._unregister(fd)

    def _unregister(self, fd: int) -> None:
        self._watched.discard(fd)
        if self._poller is not None:
            with suppress(AttributeError, KeyError, OSError, ValueError):
                self._poller.unregister(fd)

    def _ensure_waker(self) -> WakeupFd:
        # made when a loop starts, so a hub that never runs holds no descriptor; a forked
        # child must not share its parent's (its wake-ups would wake the parent's loop)
        waker = self._waker
        if waker is None or waker.pid != os.getpid():
            if waker is not None:
                self._unregister(waker.fileno())
                with suppress(OSError):
                    waker.close()
            waker = self._waker = WakeupFd()
            self.poller.register(waker.fileno(), READ)
        return waker

    # -- descriptors ---------------------------------------------------------------
    def add(self, fd: Any, callback: Any, flags: int, args: tuple[Any, ...] = (), consolidate: bool = False) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is ready for ``flags`` (READ or WRITE)."""
        fd = fileno(fd)
        table = self.readers if flags & READ else self.writers
        table[fd] = None if consolidate else (callback, args)
        if consolidate:
            self.consolidate.add(fd)
        try:
            self._watch(fd)
        except ValueError:
            self._discard(fd)
            self._unregister(fd)
            raise
        waker = self._waker
        if waker is not None and self._loop_thread is not None and self._loop_thread != threading.get_ident():
            # the loop may be waiting with nothing to watch (see create_loop): let it look again
            waker.wake()

    def add_reader(self, fds: Any, callback: Any, *args: Any) -> None:
        """Call ``callback(*args)`` when ``fds`` is readable (or in error)."""
        self.add(fds, callback, READ | ERR, args)

    def add_writer(self, fds: Any, callback: Any, *args: Any) -> None:
        """Call ``callback(*args)`` when ``fds`` is writable."""
        self.add(fds, callback, WRITE, args)

    def remove(self, fd: Any) -> None:
        """Stop watching ``fd`` altogether."""
        fd = fileno(fd)
        try:
            self._unregister(fd)
        finally:
            self._discard(fd)

    def remove_reader(self, fd: Any) -> None:
        """Stop calling the reader of ``fd`` (its writer stays)."""
        fd = fileno(fd)
        self.readers.pop(fd, None)
        if fd not in self.writers:
            self.consolidate.discard(fd)
        self._watch(fd)

    def remove_writer(self, fd: Any) -> None:
        """Stop calling the writer of ``fd`` (its reader stays)."""
        fd = fileno(fd)
        if fd not in self.readers:
            self.consolidate.discard(fd)
        if self.writers.pop(fd, _MISSING) is not _MISSING:
            # what the poller watches changes only if it was a writer: Celery's pool
            # removes the writer of every idle process on every pass of its loop
            self._watch(fd)

    def _discard(self, fd: int) -> None:
        self.readers.pop(fd, None)
        self.writers.pop(fd, None)
        self.consolidate.discard(fd)

    # -- callbacks and timers ---------------------------------------------------------
    def call_soon(self, callback: Any, *args: Any) -> Any:
        """Run ``callback(*args)`` at the start of the next round; safe from any thread."""
        if not (hasattr(callback, "then") and not args):
            callback = _Call(callback, args)
        with self._ready_lock:
            self._ready.add(callback)
        # the loop's own thread looks at the queue before it waits again; the waker folds
        # the wake-ups of other threads into one until the loop drains it
        waker = self._waker
        if waker is not None and threading.get_ident() != self._loop_thread:
            waker.wake()
        return callback

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Entry | None:
        """Run ``callback(*args)`` in ``delay`` seconds (on the loop's thread)."""
        return self.timer.call_after(delay, callback, args)

    def call_at(self, when: Any, callback: Callable[..., Any], *args: Any) -> Entry | None:
        """Run ``callback(*args)`` at ``when`` (monotonic seconds or a datetime)."""
        return self.timer.call_at(when, callback, args)

    def call_repeatedly(self, delay: float, callback: Callable[..., Any], *args: Any) -> Entry | None:
        """Run ``callback(*args)`` every ``delay`` seconds."""
        return self.timer.call_repeatedly(delay, callback, args)

    def _pop_ready(self) -> set[Any]:
        with self._ready_lock:
            ready, self._ready = self._ready, set()
            return ready

    @cached_property
    def scheduler(self) -> Iterator[tuple[float | None, Entry | None]]:
        return iter(self.timer)

    def fire_timers(
        self,
        min_delay: float = 1,
        max_delay: float = 10,
        max_timers: int = 10,
        propagate: tuple[type[BaseException], ...] = (),
    ) -> float:
        """Run up to ``max_timers`` due entries; return how long the poller may wait."""
        delay: float | None = None
        if not self.timer._queue:
            return min(min_delay, max_delay)
        for _ in range(max_timers):
            delay, entry = next(self.scheduler)
            if entry is None:
                break
            try:
                entry()
            except propagate:
                raise
            except (MemoryError, AssertionError):
                raise
            except OSError as exc:
                if exc.errno == errno.ENOMEM:
                    raise
                logger.error("Error in timer: %r", exc, exc_info=True)
            except Exception as exc:
                logger.error("Error in timer: %r", exc, exc_info=True)
        else:
            # ran max_timers entries: more may be due, so do not wait at all
            return 0
        if delay is None:  # the schedule is empty now
            delay = min_delay
        return min(delay, max_delay)

    def on_callback_error(self, callback: Any, exc: BaseException) -> None:
        logger.error("Callback %r raised exception: %r", callback, exc, exc_info=True)

    # -- running ---------------------------------------------------------------------
    def create_loop(self) -> Generator[None, None, None]:
        """A generator doing one round of the loop per ``next()``."""
        try:
            yield from self._rounds()
        finally:
            self._in_round = False
            # the loop ends (stopped, failed or dropped): what waited for it to wait goes now
            self._held.run_quietly("the loop ended")

    def _rounds(self) -> Generator[None, None, None]:
        waker = self._ensure_waker()
        waker_fd = waker.fileno()
        readers, writers = self.readers, self.writers
        self._loop_thread = threading.get_ident()
        while True:
            self._in_round = True
            if self._ready:
                self._dispatching = True
                try:
                    for item in self._pop_ready():
                        item()
                except BaseException:
                    self._end_dispatch(failing=True)
                    raise
                self._dispatching = False
                if self._after_dispatch:
                    self._end_dispatch()
            timeout = self.fire_timers(propagate=self.propagate_errors) if self.timer._queue else 1.0
            for tick in list(self.on_tick):
                tick()
            if self._ready:
                timeout = 0  # a callback queued more work: do not sleep on it
            if self._held.callbacks:
                timeout = self._before_waiting(timeout)
            try:
                if self._found is not None:
                    events, self._found = self._found, None
                elif readers or writers:
                    events = self.poller.poll(timeout)
                else:
                    # nothing to watch yet (start-up): the poller is not asked, as in Kombu;
                    # the loop waits for the timers or a wake-up (call_soon, a descriptor added)
                    events = self._wait_for_wakeup(waker_fd, timeout)
            except ValueError:  # a descriptor was closed under us; start a new round
                return
            self._dispatching = True
            try:
                self._dispatch(events, waker, waker_fd)
            except BaseException:
                self._end_dispatch(failing=True)
                raise
            self._dispatching = False
            if self._after_dispatch:
                self._end_dispatch()
            self._in_round = False
            yield

    def _dispatch(self, events: Any, waker: WakeupFd, waker_fd: int) -> None:
        """Run the handlers of the descriptors the poller reported ready."""
        readers, writers, consolidate = self.readers, self.writers, self.consolidate
        to_consolidate: list[int] = []
        for fd, event in events or ():
            if fd == waker_fd:
                # what the wake-ups announced is in the queue, taken at the next round
                waker.drain()
                continue
            if fd in consolidate and writers.get(fd) is None:
                to_consolidate.append(fd)
                continue
            handlers = []
            if event & (READ | ERR) and fd in readers:
                handlers.append(readers[fd])
            if event & (WRITE | ERR) and fd in writers and not (event & ERR and handlers):
                handlers.append(writers[fd])
            if not handlers:
                self.remove(fd)
                continue
            for handler in handlers:
                if handler is None:
                    to_consolidate.append(fd)
                    continue
                self._run_handler(fd, *handler)
        if to_consolidate and self.consolidate_callback is not None:
            self.consolidate_callback(to_consolidate)

    def defer_to_round_end(self, callback: Callable[[], Any]) -> bool:
        """Run ``callback`` once the callbacks being run now are done, if the calling
        thread is the loop's and it is running the callbacks queued with
        :meth:`call_soon` or the handlers of ready descriptors (else ``False``).

        Work that many callbacks of one round produce (a connection's acks) goes out
        together this way, before the loop waits again.
        """
        if not self._dispatching or threading.get_ident() != self._loop_thread:
            return False
        self._after_dispatch.append(callback)
        return True

    def defer_until_wait(self, callback: Callable[[], Any]) -> bool:
        """Run ``callback`` before the loop next waits for events -- within
        :data:`~.held.MAX_HELD_ROUNDS` rounds or :data:`~.held.MAX_HELD_SECONDS`, and
        when :meth:`run_once` or :meth:`run_forever` returns or the hub closes -- if called
        by the loop's thread during a round (else ``False``: the caller does the work now).

        For work that is cheaper done once for many rounds than once per round, and that
        nothing waits for while the loop has events to handle: a connection's acks, which
        the broker needs only to send more (it is sent more when the loop runs dry).
        """
        if not self._in_round or threading.get_ident() != self._loop_thread:
            return False
        self._held.add(callback)
        return True

    def _before_waiting(self, timeout: float) -> float:
        """Run what waits for the loop to wait (a connection's acks), unless a look finds
        events at once -- kept in :attr:`_found` -- and it may wait longer; the timeout of
        this round's wait."""
        if timeout and self._held.may_wait() and (self.readers or self.writers):
            try:
                found = self.poller.poll(0)
            except ValueError:  # a descriptor was closed under us: the round's wait says so
                found = None
            if found:
                self._found = found
                return 0
        self._held.run()
        return 0 if self._ready else timeout

    def _end_dispatch(self, failing: bool = False) -> None:
        self._dispatching = False
        if not self._after_dispatch:
            return
        callbacks, self._after_dispatch = self._after_dispatch, []
        error: BaseException | None = None
        for callback in callbacks:
            try:
                callback()
            except BaseException as exc:
                if failing:  # the round's own error is the one to raise
                    logger.error("Error after a failing round: %r", exc, exc_info=True)
                elif error is None:
                    error = exc
        if error is not None:
            raise error

    @staticmethod
    def _wait_for_wakeup(waker_fd: int, timeout: float | None) -> list[tuple[int, int]]:
        try:
            ready, _, _ = select.select([waker_fd], [], [], timeout)
        except InterruptedError:
            return []
        return [(waker_fd, READ)] if ready else []

    def _run_handler(self, fd: int, callback: Any, args: tuple[Any, ...]) -> None:
        if isinstance(callback, GeneratorType):
            try:
                next(callback)
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise
                self.remove(fd)
            except StopIteration:
                pass
            except Exception:
                self.remove(fd)
                raise
            return
        try:
            callback(*args)
        except Empty:
            pass

    @property
    def loop(self) -> Generator[None, None, None]:
        if self._loop is None:
            self._loop = self.create_loop()
        return self._loop

    def run_once(self) -> None:
        """One round of the loop (nothing deferred to the next wait is left held)."""
        try:
            next(self.loop)
        except StopIteration:
            self._loop = None
        finally:
            if self._held.callbacks:
                self._held.run()

    def run_forever(self) -> None:
        """Run rounds until :meth:`stop` is called."""
        try:
            while True:
                try:
                    next(self.loop)
                except StopIteration:
                    self._loop = None
        except Stop:
            pass
        finally:
            if self._held.callbacks:
                self._held.run()

    def stop(self) -> None:
        """Stop :meth:`run_forever` (from any thread)."""
        self.call_soon(_stop)

    # -- closing ------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every descriptor and start a fresh poller (the waker stays)."""
        self._close()

    def close(self, *args: Any) -> None:
        """Forget every descriptor, run ``on_close`` callbacks and what was queued."""
        self._close()
        if self._waker is not None:
            with suppress(OSError):
                self._waker.close()
            self._waker = None

    def _close(self) -> None:
        # work held until the loop waits (a connection's acks) goes before anything closes
        self._held.run_quietly("the hub closed")
        for fd in list(self.readers) + list(self.writers):
            self._unregister(fd)
        self.readers.clear()
        self.writers.clear()
        self.consolidate.clear()
        if self._poller is not None:
            with suppress(OSError):
                self._poller.close()
            self._poller = None
        self._watched.clear()
        self._loop = None
        for callback in list(self.on_close):
            callback(self)
        # work queued before closing (e.g. acks) still runs
        for item in self._pop_ready():
            item()
        if _current[0] is self:
            set_event_loop(None)

    # -- description ----------------------------------------------------------------
    def repr_active(self) -> str:
        from .debug import repr_active

        return repr_active(self)

    def repr_events(self, events: Any) -> str:
        from .debug import repr_events

        return repr_events(self, events or [])

    def __repr__(self) -> str:
        return f"<Hub@{id(self):#x}: R:{len(self.readers)} W:{len(self.writers)}>"
