"""A schedule of timed callbacks (Kombu's ``kombu.asynchronous.timer``).

Times are on the :func:`time.monotonic` clock; :func:`to_timestamp` converts a
``datetime`` (an ETA) to it.  The :class:`Timer` does not run anything by itself: an
event loop (:class:`~kombu_like.asynchronous.Hub`) or a timer thread (Celery's
``timer2``) iterates over it and gets ``(seconds_to_wait, None)`` or ``(None, entry)``
to run.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timezone, tzinfo
from time import monotonic
from time import time as _wall_time
from typing import Any, NamedTuple
from weakref import proxy

from ..log import get_logger

__all__ = ["Entry", "Timer", "scheduled", "to_timestamp"]

logger: logging.Logger = get_logger(__name__)

#: longest time (seconds) an iteration asks its caller to wait before looking again
DEFAULT_MAX_INTERVAL = 2
EPOCH = datetime.fromtimestamp(0, timezone.utc)


def to_timestamp(d: Any, default_timezone: tzinfo = timezone.utc, time: Callable[[], float] = monotonic) -> Any:
    """A ``datetime`` as a timestamp on the ``time`` clock (monotonic); others unchanged.

    Naive datetimes are taken to be in ``default_timezone``; times in the past give 0.
    """
    if isinstance(d, datetime):
        if d.tzinfo is None:
            d = d.replace(tzinfo=default_timezone)
        offset = _wall_time() - time()
        return max((d - EPOCH).total_seconds() - offset, 0)
    return d


class Entry:
    """A callback ``fun(*args, **kwargs)`` waiting in a :class:`Timer`.

    ``cancel()`` makes the timer skip it; ``tref`` is a weak proxy to the entry, which
    is what callers keep to cancel it later without keeping it alive.
    """

    __slots__ = ("__weakref__", "_last_run", "args", "canceled", "fun", "kwargs", "tref")

    def __init__(self, fun: Callable[..., Any], args: Any = None, kwargs: dict[str, Any] | None = None) -> None:
        self.fun = fun
        self.args = args or []
        self.kwargs = kwargs or {}
        self.tref = proxy(self)
        self._last_run: float | None = None
        self.canceled = False

    def __call__(self) -> Any:
        return self.fun(*self.args, **self.kwargs)

    def cancel(self) -> None:
        """Do not run this entry (nor reschedule it if it repeats)."""
        try:
            self.tref.canceled = True  # type: ignore[attr-defined]
        except ReferenceError:
            pass

    @property
    def cancelled(self) -> bool:
        return self.canceled

    @cancelled.setter
    def cancelled(self, value: bool) -> None:
        self.canceled = value

    # entries with the same eta and priority are ordered by identity (never by hash)
    def __lt__(self, other: Entry) -> bool:
        return id(self) < id(other)

    def __le__(self, other: Entry) -> bool:
        return id(self) <= id(other)

    def __gt__(self, other: Entry) -> bool:
        return id(self) > id(other)

    def __ge__(self, other: Entry) -> bool:
        return id(self) >= id(other)

    def __repr__(self) -> str:
        name = getattr(self.fun, "__name__", repr(self.fun))
        return f"<TimerEntry: {name}(*{self.args!r}, **{self.kwargs!r})"


#: the entry class, under a name class bodies do not shadow
TimerEntry = Entry


class scheduled(NamedTuple):  # noqa: N801 - Kombu's public name
    """One item of the timer's heap."""

    eta: float
    priority: int
    entry: Entry


class Timer:
    """A heap of :class:`Entry` objects ordered by due time.

    ``max_interval`` caps the wait an iteration reports, so a caller looks again at
    least that often; ``on_error(exc)`` receives errors raised by entries run through
    :meth:`apply_entry` (they are logged otherwise).
    """

    Entry = TimerEntry
    on_error: Callable[[BaseException], Any] | None = None

    def __init__(
        self,
        max_interval: float | None = None,
        on_error: Callable[[BaseException], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.max_interval = float(max_interval or DEFAULT_MAX_INTERVAL)
        self.on_error = on_error or self.on_error
        self._queue: list[scheduled] = []

    def __enter__(self) -> Timer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- scheduling ---------------------------------------------------------------
    def call_at(
        self, eta: Any, fun: Callable[..., Any], args: Any = (), kwargs: dict[str, Any] | None = None, priority: int = 0
    ) -> TimerEntry | None:
        """Run ``fun(*args, **kwargs)`` at ``eta`` (monotonic seconds or a ``datetime``)."""
        return self.enter_at(self.Entry(fun, args, kwargs or {}), eta, priority)

    def call_after(
        self,
        secs: float,
        fun: Callable[..., Any],
        args: Any = (),
        kwargs: dict[str, Any] | None = None,
        priority: int = 0,
    ) -> TimerEntry | None:
        """Run ``fun(*args, **kwargs)`` in ``secs`` seconds."""
        return self.enter_after(secs, self.Entry(fun, args, kwargs or {}), priority)

    def call_repeatedly(
        self,
        secs: float,
        fun: Callable[..., Any],
        args: Any = (),
        kwargs: dict[str, Any] | None = None,
        priority: int = 0,
    ) -> TimerEntry | None:
        """Run ``fun`` every ``secs`` seconds until the returned entry is cancelled.

        The next run is scheduled relative to when the previous one started, so a slow
        callback does not push the whole series back.
        """
        entry = self.Entry(fun, args, kwargs or {})

        def run_and_reschedule(*call_args: Any, **call_kwargs: Any) -> Any:
            now = monotonic()
            last = entry._last_run
            try:
                if last is None or now - last >= secs:
                    entry._last_run = now
                    return fun(*call_args, **call_kwargs)
                return None
            finally:
                if not entry.canceled:
                    last = entry._last_run
                    self.enter_after(secs - (now - last) if last is not None else secs, entry, priority)

        entry.fun = run_and_reschedule
        return self.enter_after(secs, entry, priority)

    def enter_at(
        self, entry: TimerEntry, eta: Any = None, priority: int = 0, time: Callable[[], float] = monotonic
    ) -> TimerEntry | None:
        """Schedule ``entry`` at ``eta`` (now if ``None``)."""
        if eta is None:
            eta = time()
        if isinstance(eta, datetime):
            try:
                eta = to_timestamp(eta)
            except Exception as exc:
                if not self.handle_error(exc):
                    raise
                return None
        return self._enter(eta, priority, entry)

    def enter_after(
        self, secs: float, entry: TimerEntry, priority: int = 0, time: Callable[[], float] = monotonic
    ) -> TimerEntry | None:
        """Schedule ``entry`` ``secs`` seconds from now."""
        return self.enter_at(entry, time() + float(secs), priority)

    def _enter(self, eta: float, priority: int, entry: TimerEntry) -> TimerEntry:
        heapq.heappush(self._queue, scheduled(eta, priority or 0, entry))
        return entry

    # -- running -----------------------------------------------------------------
    def apply_entry(self, entry: TimerEntry) -> None:
        """Run ``entry``, reporting (never raising) what it raises."""
        try:
            entry()
        except Exception as exc:
            if not self.handle_error(exc):
                logger.error("Error in timer: %r", exc, exc_info=True)

    def handle_error(self, exc_info: BaseException) -> bool:
        """Pass an error to ``on_error``; False when there is none to take it."""
        if self.on_error:
            self.on_error(exc_info)
            return True
        return False

    def stop(self) -> None:
        """Nothing to stop: the timer has no thread of its own."""

    def __iter__(self) -> Iterator[tuple[float | None, TimerEntry | None]]:
        """Endless ``(wait, entry)`` pairs.

        ``(None, entry)``: run ``entry`` now; ``(seconds, None)``: nothing is due for that
        long; ``(None, None)``: the schedule is empty.
        """
        queue = self._queue
        while True:
            if not queue:
                yield None, None
                continue
            eta = queue[0][0]
            now = monotonic()
            if now < eta:
                yield min(eta - now, self.max_interval), None
                continue
            # another thread may have pushed an earlier item since we looked; it is due
            # too (its eta is before the head we saw), so whatever we pop is runnable
            item = heapq.heappop(queue)
            if not item.entry.canceled:
                yield None, item.entry

    def clear(self) -> None:
        """Forget every scheduled entry."""
        self._queue[:] = []

    def cancel(self, tref: TimerEntry) -> None:
        tref.cancel()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def queue(self) -> list[scheduled]:
        """A sorted snapshot of what is scheduled."""
        return sorted(self._queue)

    @property
    def schedule(self) -> Timer:
        return self
