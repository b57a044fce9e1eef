"""Functional helpers (Kombu's ``kombu.utils.functional``).

Caches, lazy values, list coercion and Kombu's ``retry_over_time`` calling convention
(``errback(exc, interval_range, retries)``) over the library's one retry loop.
"""

from __future__ import annotations

import functools
import inspect
import random
import threading
from collections import OrderedDict, UserDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import count
from time import sleep  # noqa: F401 - the retry engine sleeps through this name (see retry._sleep)
from typing import Any

from .. import retry as _retry
from ..retry import fxrange
from .encoding import safe_repr

__all__ = [
    "ChannelPromise",
    "LRUCache",
    "accepts_argument",
    "dictfilter",
    "fxrange",
    "fxrangemax",
    "is_list",
    "lazy",
    "maybe_evaluate",
    "maybe_list",
    "maybe_promise",
    "memoize",
    "promise",
    "reprcall",
    "reprkwargs",
    "retry_over_time",
    "shufflecycle",
]

KEYWORD_MARK = object()


class ChannelPromise:
    """A channel opened on first use: ``promise()`` calls ``contract()`` once."""

    __value__: Any

    def __init__(self, contract: Callable[[], Any]) -> None:
        self.__contract__ = contract

    def __call__(self) -> Any:
        try:
            return self.__value__
        except AttributeError:
            value = self.__value__ = self.__contract__()
            return value

    def __repr__(self) -> str:
        try:
            return repr(self.__value__)
        except AttributeError:
            return f"<promise: 0x{id(self.__contract__):x}>"


class LRUCache(UserDict):  # type: ignore[type-arg]
    """A dict that keeps at most ``limit`` keys, dropping the least recently used."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.mutex = threading.RLock()
        self.data: OrderedDict[Any, Any] = OrderedDict()

    def __getitem__(self, key: Any) -> Any:
        with self.mutex:
            value = self.data[key]
            self.data.move_to_end(key)
            return value

    def __setitem__(self, key: Any, value: Any) -> None:
        with self.mutex:
            if key in self.data:
                self.data.move_to_end(key)
            elif self.limit and len(self.data) >= self.limit:
                self.data.popitem(last=False)
            self.data[key] = value

    def update(self, *args: Any, **kwargs: Any) -> None:
        with self.mutex:
            self.data.update(*args, **kwargs)
            if self.limit:
                while len(self.data) > self.limit:
                    self.data.popitem(last=False)

    def popitem(self, last: bool = True) -> tuple[Any, Any]:
        with self.mutex:
            return self.data.popitem(last)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.data)

    def keys(self) -> Any:
        with self.mutex:
            return self.data.keys()

    def _iterate_items(self) -> Iterator[tuple[Any, Any]]:
        with self.mutex:
            for key in list(self.data):
                if key in self.data:
                    yield key, self.data[key]

    def _iterate_values(self) -> Iterator[Any]:
        for _, value in self._iterate_items():
            yield value

    items = iteritems = _iterate_items  # type: ignore[assignment]
    values = itervalues = _iterate_values  # type: ignore[assignment]
    iterkeys = keys

    def incr(self, key: Any, delta: int = 1) -> int:
        """Add ``delta`` to the integer stored (as text, like memcached) under ``key``."""
        with self.mutex:
            value = int(self.data.pop(key)) + delta
            self[key] = str(value)
            return value

    def __getstate__(self) -> dict[str, Any]:
        state = dict(vars(self))
        state.pop("mutex", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.mutex = threading.RLock()


def memoize(
    maxsize: int | None = None,
    keyfun: Callable[[tuple[Any, ...], dict[str, Any]], Any] | None = None,
    Cache: type[LRUCache] = LRUCache,  # noqa: N803 - Kombu's keyword
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator caching a function's results (``hits``/``misses``/``clear()`` on it)."""

    def decorate(fun: Callable[..., Any]) -> Callable[..., Any]:
        cache = Cache(limit=maxsize)
        lock = threading.Lock()

        @functools.wraps(fun)
        def cached(*args: Any, **kwargs: Any) -> Any:
            key = keyfun(args, kwargs) if keyfun else args + (KEYWORD_MARK,) + tuple(sorted(kwargs.items()))
            try:
                with lock:
                    value = cache[key]
            except KeyError:
                value = fun(*args, **kwargs)
                cached.misses += 1  # type: ignore[attr-defined]
                with lock:
                    cache[key] = value
            else:
                cached.hits += 1  # type: ignore[attr-defined]
            return value

        def clear() -> None:
            cache.clear()
            cached.hits = cached.misses = 0  # type: ignore[attr-defined]

        cached.hits = cached.misses = 0  # type: ignore[attr-defined]
        cached.clear = clear  # type: ignore[attr-defined]
        cached.original_func = fun  # type: ignore[attr-defined]
        return cached

    return decorate


class lazy:  # noqa: N801 - Kombu's public name
    """A value computed by ``fun(*args, **kwargs)`` each time it is used."""

    def __init__(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._fun = fun
        self._args = args
        self._kwargs = kwargs

    def __call__(self) -> Any:
        return self.evaluate()

    def evaluate(self) -> Any:
        """Compute the value now."""
        return self._fun(*self._args, **self._kwargs)

    def __str__(self) -> str:
        return str(self())

    def __repr__(self) -> str:
        return repr(self())

    def __eq__(self, rhs: object) -> bool:
        return bool(self() == rhs)

    def __ne__(self, rhs: object) -> bool:
        return bool(self() != rhs)

    __hash__ = None  # type: ignore[assignment]

    def __deepcopy__(self, memo: dict[int, Any]) -> lazy:
        memo[id(self)] = self
        return self

    def __reduce__(self) -> Any:
        return (type(self), (self._fun,), {"_args": self._args, "_kwargs": self._kwargs})


def maybe_evaluate(value: Any) -> Any:
    """Evaluate ``value`` if it is :class:`lazy`, else return it."""
    if isinstance(value, lazy):
        return value.evaluate()
    return value


promise = lazy
maybe_promise = maybe_evaluate


def is_list(obj: Any, scalars: Any = (Mapping, str), iters: Any = (Iterable,)) -> bool:
    """True for iterables other than mappings and strings."""
    return isinstance(obj, iters) and not isinstance(obj, scalars or ())


def maybe_list(obj: Any, scalars: Any = (Mapping, str)) -> Any:
    """``[obj]`` for a scalar, ``obj`` itself for a list-like value or ``None``."""
    return obj if obj is None or is_list(obj, scalars) else [obj]


def dictfilter(d: Mapping[Any, Any] | None = None, **kw: Any) -> dict[Any, Any]:
    """A copy of ``d`` (updated with ``kw``) without the keys whose value is ``None``."""
    merged: Mapping[Any, Any] = kw if d is None else ({**d, **kw} if kw else d)
    return {k: v for k, v in merged.items() if v is not None}


def shufflecycle(it: Iterable[Any]) -> Iterator[Any]:
    """Endless random choices from ``it``."""
    items = list(it)
    while True:
        random.shuffle(items)
        yield items[0]


def fxrangemax(
    start: float = 1.0,
    stop: float | None = None,
    step: float = 1.0,
    max: float = 100.0,  # noqa: A002
) -> Iterator[float]:
    """Like :func:`fxrange`, capped at ``stop``, ending once the values sum up to ``max``."""
    total, cur = 0.0, start * 1.0
    while total < max:
        yield cur
        cur = min(cur + step, stop) if stop else cur + step
        total += cur


def retry_over_time(
    fun: Callable[..., Any],
    catch: Any,
    args: Iterable[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    errback: Callable[[BaseException, Iterator[float], int], Any] | None = None,
    max_retries: int | None = None,
    interval_start: float = 2,
    interval_step: float = 2,
    interval_max: float = 30,
    callback: Callable[[], Any] | None = None,
    timeout: float | None = None,
) -> Any:
    """Call ``fun`` until it succeeds, retrying on ``catch`` with growing sleeps.

    Kombu's calling convention: ``errback(exc, interval_range, retries)`` returns the
    seconds to sleep (usually ``next(interval_range)``); sleeps never exceed
    ``interval_max``.  The loop itself is :func:`kombu_like.retry.retry_over_time`.
    """
    interval_range = (
        min(value, float(interval_max))
        for value in fxrange(interval_start, interval_max + interval_start, interval_step, repeatlast=True)
    )
    retries = count()

    def on_error(exc: BaseException, default: float) -> float:
        n = next(retries)
        if errback is None:
            return next(interval_range)
        return min(float(errback(exc, interval_range, n)), float(interval_max))

    catch_tuple = tuple(catch) if isinstance(catch, list | tuple) else (catch,)
    return _retry.retry_over_time(
        fun,
        catch_tuple,
        tuple(args or ()),
        dict(kwargs or {}),
        on_error,
        max_retries,
        interval_start,
        interval_step,
        interval_max,
        callback,
        timeout,
    )


def reprkwargs(kwargs: Mapping[str, Any], sep: str = ", ", fmt: str = "{0}={1}") -> str:
    """``k=v`` pairs with safely repr'ed values."""
    return sep.join(fmt.format(k, safe_repr(v)) for k, v in kwargs.items())


def reprcall(name: str, args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None, sep: str = ", ") -> str:
    """``name(arg, ..., k=v, ...)`` as text, for logs."""
    positional = sep.join(map(safe_repr, args or ()))
    keywords = reprkwargs(kwargs or {}, sep)
    joiner = sep if positional and keywords else ""
    return f"{name}({positional}{joiner}{keywords})"


def accepts_argument(func: Callable[..., Any], argument_name: str) -> bool:
    """True when ``func`` has a parameter (positional or keyword-only) named so."""
    spec = inspect.getfullargspec(func)
    return argument_name in spec.args or argument_name in spec.kwonlyargs
