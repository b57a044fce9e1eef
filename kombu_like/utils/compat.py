"""Environment and file-descriptor helpers (Kombu's ``kombu.utils.compat``)."""

from __future__ import annotations

import numbers
import sys
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack, contextmanager
from functools import wraps
from importlib.metadata import entry_points
from io import UnsupportedOperation
from typing import Any

__all__ = [
    "FILENO_ERRORS",
    "coro",
    "detect_environment",
    "entrypoints",
    "fileno",
    "maybe_fileno",
    "nested",
    "register_after_fork",
]

#: what ``fileno()`` raises for objects that have no (usable) descriptor
FILENO_ERRORS = (AttributeError, ValueError, UnsupportedOperation)


def register_after_fork(obj: Any, func: Callable[[Any], Any]) -> None:
    """Call ``func(obj)`` in a child process after a fork.

    billiard's registry when billiard is installed (Celery forks with it), otherwise
    multiprocessing's; multiprocessing is only looked at when it is needed.
    """
    try:
        from billiard.util import register_after_fork as register
    except ImportError:
        from multiprocessing.util import register_after_fork as register
    register(obj, func)


def _green_environment() -> str:
    if "eventlet" in sys.modules:
        try:
            import socket

            from eventlet.patcher import is_monkey_patched

            if is_monkey_patched(socket):
                return "eventlet"
        except ImportError:
            pass
    if "gevent" in sys.modules:
        try:
            import socket

            from gevent import socket as gevent_socket

            if socket.socket is gevent_socket.socket:
                return "gevent"
        except ImportError:
            pass
    return "default"


_detected: list[str] = []


def _detect_environment() -> str:
    """``"eventlet"``, ``"gevent"`` (when the socket module is monkey patched) or ``"default"``."""
    return _green_environment()


def detect_environment() -> str:
    """:func:`_detect_environment`, computed once per process."""
    if not _detected:
        _detected.append(_detect_environment())
    return _detected[0]


def get_gevent_concurrent_error() -> type[BaseException] | None:
    """gevent's ``ConcurrentObjectUseError`` when gevent is loaded, else ``None``."""
    if "gevent" in sys.modules:
        try:
            from gevent.exceptions import ConcurrentObjectUseError

            return ConcurrentObjectUseError  # type: ignore[no-any-return]
        except ImportError:
            pass
    return None


def entrypoints(namespace: str) -> Iterator[tuple[Any, Any]]:
    """``(entry_point, loaded_object)`` for every entry point in group ``namespace``."""
    return ((ep, ep.load()) for ep in entry_points(group=namespace))


def fileno(f: Any) -> int:
    """The descriptor number of ``f`` (an int is returned as is)."""
    if type(f) is int:
        return f
    if isinstance(f, numbers.Integral):
        return int(f)
    if f is None:
        # callers catch ValueError for closed/missing descriptors
        raise ValueError("file descriptor is None")
    return int(f.fileno())


def maybe_fileno(f: Any) -> int | None:
    """The descriptor number of ``f``, or ``None`` if it has none."""
    try:
        return fileno(f)
    except FILENO_ERRORS:
        return None


@contextmanager
def nested(*managers: Any) -> Iterator[list[Any]]:
    """Enter several context managers as one (exits run in reverse order)."""
    with ExitStack() as stack:
        yield [stack.enter_context(m) for m in managers]


def coro(gen: Callable[..., Generator[Any, Any, Any]]) -> Callable[..., Generator[Any, Any, Any]]:
    """Decorator: calling the generator function also advances it to its first ``yield``."""

    @wraps(gen)
    def started(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        it = gen(*args, **kwargs)
        next(it)
        return it

    return started
