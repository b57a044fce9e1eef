"""The one retry engine: :class:`RetryPolicy` and its :meth:`~RetryPolicy.call` loop.

``Connection.ensure_connection``, ``Connection.ensure``, ``Connection.autoretry``,
``Producer.publish(retry=True, retry_policy=...)`` and ``retry_over_time`` all run this
loop; they differ only in what they do between two attempts (reconnect, switch to the next
failover URL, open a new channel).

Decisions are made by exception class alone: the caller says which classes are worth
retrying (``catch``) and which never are (``give_up``, checked first); everything else
propagates at once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

from .exceptions import AccessRefused, ConnectionClosed, IrrecoverableConnectionError

__all__ = ["NEVER_RETRIED", "RetryPolicy", "fxrange", "intervals", "retry_over_time"]

_R = TypeVar("_R")

#: errors that retrying cannot cure (TLS mismatch, refused credentials, unknown virtual host,
#: a connection closed on purpose): the engine gives up on them at once, whatever ``catch``
#: says, because every transport's error tuples contain their base classes
NEVER_RETRIED: tuple[type[BaseException], ...] = (IrrecoverableConnectionError, AccessRefused, ConnectionClosed)

#: what to do after a failed attempt: ``(exc, intervals, retries) -> seconds to sleep``
#: (``None``: the next interval of the policy).  It may raise to stop retrying.
OnRetry = Callable[[BaseException, Iterator[float], int], "float | None"]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry; Kombu's ``retry_policy`` keywords.

    ``max_retries`` is the number of retries after the first attempt (``None``: no
    limit); the sleeps are ``interval_start``, ``+interval_step`` ..., capped at
    ``interval_max``; ``timeout`` (seconds) bounds the whole call, whatever
    ``max_retries`` says: no sleep reaches past it and no attempt starts after it.
    The defaults are Kombu's ``ensure_connection`` defaults.
    """

    max_retries: int | None = None
    interval_start: float = 2.0
    interval_step: float = 2.0
    interval_max: float = 30.0
    timeout: float | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None, **defaults: Any) -> RetryPolicy:
        """Build a policy from Kombu-style keyword options (other keys are ignored)."""
        values = dict(defaults)
        for key in _FIELDS:
            if options and key in options:
                values[key] = options[key]
        return cls(**values)

    def updated(self, **changes: Any) -> RetryPolicy:
        """This policy with some fields replaced (keys that are not fields are ignored)."""
        return replace(self, **{key: value for key, value in changes.items() if key in _FIELDS})

    def intervals(self) -> Iterator[float]:
        """The sleeps between attempts, as Kombu's ``retry_over_time`` computes them."""
        maximum = float(self.interval_max)
        for value in fxrange(
            self.interval_start, self.interval_max + self.interval_start, self.interval_step, repeatlast=True
        ):
            yield min(value, maximum)

    def call(
        self,
        fun: Callable[..., _R],
        catch: tuple[type[BaseException], ...],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        on_retry: OnRetry | None = None,
        callback: Callable[[], Any] | None = None,
        give_up: tuple[type[BaseException], ...] = NEVER_RETRIED,
    ) -> _R:
        """Call ``fun(*args, **kwargs)`` until it returns, retrying on ``catch``.

        After a failure that may be retried, ``callback()`` is called, then
        ``on_retry(exc, intervals, retries)`` says how long to sleep (and does whatever the
        caller needs between attempts); ``callback()`` is also called about once a second
        while sleeping.  The last error is raised when the policy is used up.
        """
        kwargs = kwargs or {}
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        sleeps = self.intervals()
        retries = 0
        while True:
            try:
                return fun(*args, **kwargs)
            except give_up:
                raise
            except catch as exc:
                if self.max_retries is not None and retries >= self.max_retries:
                    raise
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                if callback is not None:
                    callback()
                chosen = on_retry(exc, sleeps, retries) if on_retry is not None else None
                interval = next(sleeps) if chosen is None else min(float(chosen), float(self.interval_max))
                if deadline is not None:
                    interval = min(interval, max(deadline - time.monotonic(), 0.0))
                _sleep(interval, callback)
                retries += 1


_FIELDS = tuple(f.name for f in fields(RetryPolicy))


def intervals(start: float, step: float, maximum: float) -> Iterator[float]:
    """Sleep times: ``start``, ``start+step``, ... capped at ``maximum``, forever."""
    current = start
    while True:
        yield min(current, maximum)
        current += step


def fxrange(
    start: float = 1.0, stop: float | None = None, step: float = 1.0, repeatlast: bool = False
) -> Iterator[float]:
    """Kombu's float range: start, start+step ... up to stop (repeating it if asked)."""
    cur = start * 1.0
    while True:
        if stop is None or cur <= stop:
            yield cur
            cur += step
        else:
            if not repeatlast:
                break
            yield cur - step


def retry_over_time(
    fun: Callable[..., _R],
    catch: tuple[type[BaseException], ...],
    args: tuple[Any, ...] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    errback: Callable[[BaseException, float], Any] | None = None,
    max_retries: int | None = None,
    interval_start: float = 2,
    interval_step: float = 2,
    interval_max: float = 30,
    callback: Callable[[], Any] | None = None,
    timeout: float | None = None,
) -> _R:
    """Call ``fun`` until it returns, retrying on ``catch`` with growing sleeps.

    ``errback(exc, interval)`` is called before each sleep and may return a different
    interval to sleep (capped at ``interval_max``).  A thin front for
    :meth:`RetryPolicy.call`; Kombu's own calling convention (``errback(exc,
    interval_range, retries)``) is :func:`kombu_like.utils.functional.retry_over_time`.
    """
    policy = RetryPolicy(max_retries, interval_start, interval_step, interval_max, timeout)

    def on_retry(exc: BaseException, sleeps: Iterator[float], retries: int) -> float:
        interval = next(sleeps)
        if errback is not None:
            chosen = errback(exc, interval)
            if isinstance(chosen, int | float) and not isinstance(chosen, bool):
                return float(chosen)
        return interval

    # the caller chose exactly what to retry: no classes are excluded
    return policy.call(fun, tuple(catch), tuple(args or ()), kwargs, on_retry, callback, give_up=())


_TIME_SLEEP = time.sleep


def _sleeper() -> Callable[[float], Any]:
    # Kombu's retry loop sleeps through ``kombu.utils.functional.sleep``, and test suites
    # written for Kombu (Celery's) patch that name to skip the waits: honour the patch.
    functional = sys.modules.get("kombu_like.utils.functional")
    sleep = getattr(functional, "sleep", _TIME_SLEEP)
    return time.sleep if sleep is _TIME_SLEEP else sleep  # type: ignore[no-any-return]


def _sleep(interval: float, callback: Callable[[], Any] | None) -> None:
    if interval <= 0:
        return
    sleep = _sleeper()
    if callback is None:
        sleep(interval)
        return
    # slices counted, not timed: a patched sleep that returns at once must not spin
    remaining = interval
    while remaining > 0:
        step = min(remaining, 1.0)
        sleep(step)
        remaining -= step
        callback()
