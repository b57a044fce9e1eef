"""The one retry loop: policy, backoff and callbacks.

Decisions are made by exception class alone: the caller says which classes are worth
retrying; everything else propagates at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["RetryPolicy", "fxrange", "intervals", "retry_over_time"]

_R = TypeVar("_R")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    ``max_retries=None`` retries forever; the sleep between tries starts at
    ``interval_start`` seconds and grows by ``interval_step`` up to ``interval_max``.
    ``timeout`` bounds the whole attempt (seconds), whatever ``max_retries`` says.
    """

    max_retries: int | None = 3
    interval_start: float = 0.0
    interval_step: float = 0.2
    interval_max: float = 0.2
    timeout: float | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None, **defaults: Any) -> RetryPolicy:
        """Build a policy from Kombu-style keyword options (unknown keys are ignored)."""
        values = dict(defaults)
        for key in ("max_retries", "interval_start", "interval_step", "interval_max", "timeout"):
            if options and key in options:
                values[key] = options[key]
        return cls(**values)


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
    interval to sleep; ``callback()`` is called repeatedly while sleeping (Kombu uses it to
    let a program react, e.g. to a shutdown request).  When ``max_retries`` tries or
    ``timeout`` seconds are used up, the last error is raised.
    """
    args = args or ()
    kwargs = kwargs or {}
    deadline = None if timeout is None else time.monotonic() + timeout
    sleeps = intervals(interval_start, interval_step, interval_max)
    retries = 0
    while True:
        try:
            return fun(*args, **kwargs)
        except catch as exc:
            if max_retries is not None and retries >= max_retries:
                raise
            if deadline is not None and time.monotonic() >= deadline:
                raise
            interval = next(sleeps)
            if errback is not None:
                chosen = errback(exc, interval)
                if isinstance(chosen, int | float) and not isinstance(chosen, bool):
                    interval = chosen
            if deadline is not None:
                interval = min(interval, max(deadline - time.monotonic(), 0))
            _sleep(interval, callback)
            retries += 1


def _sleep(interval: float, callback: Callable[[], Any] | None) -> None:
    if callback is None or interval <= 0:
        if interval > 0:
            time.sleep(interval)
        return
    end = time.monotonic() + interval
    while True:
        callback()
        remaining = end - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(remaining, 1.0))
