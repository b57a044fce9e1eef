"""Callback semaphores (Kombu's ``kombu.asynchronous.semaphore``)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["DummyLock", "LaxBoundedSemaphore"]


class LaxBoundedSemaphore:
    """A semaphore for an event loop: ``acquire`` runs a callback now or when released.

    "Lax": releasing more often than acquiring never raises the value above the initial
    one.  Not thread safe (it belongs to one event loop).
    """

    def __init__(self, value: int) -> None:
        self.initial_value = self.value = value
        self._waiting: deque[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = deque()

    def acquire(self, callback: Callable[..., Any], *partial_args: Any, **partial_kwargs: Any) -> bool:
        """Run ``callback(*args, **kwargs)`` now if a slot is free (True), else queue it."""
        if self.value <= 0:
            self._waiting.append((callback, partial_args, partial_kwargs))
            return False
        self.value = max(self.value - 1, 0)
        callback(*partial_args, **partial_kwargs)
        return True

    def release(self) -> None:
        """Give the slot to the oldest waiting callback (run now), or free it."""
        if self._waiting:
            callback, args, kwargs = self._waiting.popleft()
            callback(*args, **kwargs)
        else:
            self.value = min(self.value + 1, self.initial_value)

    def grow(self, n: int = 1) -> None:
        """Allow ``n`` more holders (waiting callbacks may run now)."""
        self.initial_value += n
        self.value += n
        for _ in range(n):
            self.release()

    def shrink(self, n: int = 1) -> None:
        """Allow ``n`` fewer holders."""
        self.initial_value = max(self.initial_value - n, 0)
        self.value = max(self.value - n, 0)

    def clear(self) -> None:
        """Drop waiting callbacks and free every slot."""
        self._waiting.clear()
        self.value = self.initial_value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {id(self):#x} value:{self.value} waiting:{len(self._waiting)}>"


class DummyLock:
    """A lock that does nothing, for code that runs in one thread only."""

    def __enter__(self) -> DummyLock:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def release(self) -> None:
        return None
