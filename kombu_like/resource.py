"""Generic resource pool (Kombu's ``kombu.resource``): :class:`Resource`.

A pool of anything a subclass can create (:meth:`Resource.new`), thread-safe, limited or
not, that forgets its resources in a forked child (their sockets belong to the parent).
The connection, channel and producer pools in :mod:`kombu_like.pools` build on it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from .exceptions import LimitExceeded

__all__ = ["Resource"]

logger = logging.getLogger(__name__)

_fork_lock = threading.Lock()
_fork_hook_installed = False
#: pools and groups to forget in a forked child (their sockets belong to the parent)
_close_after_fork: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def _check_limit(limit: Any) -> None:
    # bool is an int: limit=True would silently become a pool of one
    if isinstance(limit, bool):
        raise TypeError("limit must be an int, not bool")


def _after_fork_in_child() -> None:
    for item in list(_close_after_fork.values()):
        try:
            if isinstance(item, Resource):
                item.force_close_all()
            else:  # a pool group
                item.clear()
        except Exception:  # the child must start whatever the parent's pools looked like
            logger.debug("error forgetting pool after fork", exc_info=True)


def _close_in_child_after_fork(item: Any) -> None:
    global _fork_hook_installed
    with _fork_lock:
        if not _fork_hook_installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook_installed = True
        _close_after_fork[id(item)] = item


class _Lazy:
    """A resource not created yet: created on first acquire, outside the pool's lock."""

    __slots__ = ("factory",)

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.factory = factory

    def __call__(self) -> Any:
        return self.factory()


class Resource:
    """A thread-safe pool of reusable resources, at most ``limit`` handed out at once.

    Subclasses implement :meth:`new` (and usually :meth:`prepare`,
    :meth:`close_resource`, :meth:`collect_resource`).  ``limit`` of ``None``/``0`` means
    no pooling: every acquire creates a resource and every release closes it.
    """

    #: raised when no resource is free (subclasses name what ran out)
    LimitExceeded: type[LimitExceeded] = LimitExceeded
    #: forget every resource in a forked child process
    close_after_fork = False

    def __init__(
        self, limit: int | None = None, preload: int | None = None, close_after_fork: bool | None = None
    ) -> None:
        _check_limit(limit)
        self._limit = limit
        self.preload = preload or 0
        self._closed = False
        self._cond = threading.Condition(threading.Lock())
        #: released resources, most recently released last (reused first: warm connections)
        self._idle: list[Any] = []
        #: id -> resource handed out and not released yet
        self._in_use: dict[int, Any] = {}
        #: id -> resource handed out while the pool was unlimited (so never pooled); a
        #: later limit does not count them, and they are closed when they come back
        self._unpooled: dict[int, Any] = {}
        #: slots taken by acquires still creating/preparing their resource
        self._reserved = 0
        if close_after_fork is not None:
            self.close_after_fork = close_after_fork
        if self.close_after_fork:
            _close_in_child_after_fork(self)
        self.setup()

    # -- to implement ------------------------------------------------------------------
    def new(self) -> Any:
        """Create a resource (cheaply: connect lazily, in :meth:`prepare` or on use)."""
        raise NotImplementedError("subclass responsibility")

    def setup(self) -> None:
        """Called when the pool is created or resized."""

    def prepare(self, resource: Any) -> Any:
        """Make ``resource`` ready to hand out; return it (or a replacement)."""
        if isinstance(resource, _Lazy):
            return resource()
        return resource

    def close_resource(self, resource: Any) -> None:
        """Close a resource the pool no longer keeps."""
        resource.close()

    def release_resource(self, resource: Any) -> None:
        """Called when ``resource`` comes back to the pool."""

    def collect_resource(self, resource: Any) -> None:
        """Drop ``resource`` without talking to the broker (after fork, on reset)."""

    def _prepare_within(self, resource: Any, timeout: float | None) -> Any:
        # hook for pools whose preparation itself waits on another pool
        return self.prepare(resource)

    # -- acquire / release -----------------------------------------------------------
    @property
    def limit(self) -> int | None:
        """Most resources handed out at once (``None``/``0``: unlimited, no pooling)."""
        return self._limit

    @limit.setter
    def limit(self, limit: int | None) -> None:
        self.resize(limit or 0)

    def acquire(self, block: bool = False, timeout: float | None = None) -> Any:
        """Take a resource from the pool; call its ``release()`` to give it back.

        With ``block=False`` a full pool raises :attr:`LimitExceeded` at once; with
        ``block=True`` the call waits up to ``timeout`` seconds (``None``: until one is
        released) and then raises :attr:`LimitExceeded`.
        """
        if self._closed:
            raise RuntimeError(f"acquire on closed pool {self!r}")
        if not self._limit:
            resource = self._prepare_within(self.new(), timeout)
            with self._cond:
                self._in_use[id(resource)] = resource
            self._attach_release(resource)
            return resource
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError(f"acquire on closed pool {self!r}")
                if self._idle:
                    candidate = self._idle.pop()
                    break
                limit = self._limit
                if not limit or len(self._in_use) + self._reserved < limit:
                    candidate = None
                    break
                if not block:
                    raise self.LimitExceeded(self._limit_message(None))
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise self.LimitExceeded(self._limit_message(timeout))
                self._cond.wait(remaining)
            self._reserved += 1
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            resource = self._prepare_within(self.new() if candidate is None else candidate, remaining)
        except BaseException:
            with self._cond:
                self._reserved -= 1
                if candidate is not None:
                    # still a valid (possibly never used) resource: keep it for the next one
                    self._idle.append(candidate)
                self._cond.notify()
            raise
        with self._cond:
            self._reserved -= 1
            self._in_use[id(resource)] = resource
        self._attach_release(resource)
        return resource

    def _limit_message(self, timeout: float | None) -> str:
        waited = f" after waiting {timeout:g}s" if timeout else ""
        return (
            f"{type(self).__name__}: all {self._limit} resources are in use{waited}; "
            f"release one, raise the limit or acquire(block=True, timeout=...)"
        )

    def _attach_release(self, resource: Any) -> None:
        # Kombu's contract: the acquired object's release() gives it back to its pool
        pool = self

        def release() -> None:
            pool.release(resource)

        try:
            resource.release = release
        except AttributeError:  # objects with __slots__ are released with pool.release()
            pass

    def release(self, resource: Any) -> None:
        """Give ``resource`` back (releasing it twice is harmless)."""
        with self._cond:
            if self._in_use.pop(id(resource), None) is not None:
                limit = self._limit
                # unlimited pools do not pool: what comes back is closed
                keep = (
                    bool(limit)
                    and not self._closed
                    and self._reusable(resource)
                    and (len(self._in_use) + len(self._idle) + self._reserved < (limit or 0))
                )
                if keep:
                    self._idle.append(resource)
            elif self._unpooled.pop(id(resource), None) is not None:
                keep = False
            else:
                logger.debug("%r: %r was released already", self, resource)
                return
            self._cond.notify()
        if keep:
            self.release_resource(resource)
        else:
            self._quietly(self.close_resource, resource)

    def _reusable(self, resource: Any) -> bool:
        return True

    def replace(self, resource: Any) -> None:
        """Close a defective resource; the pool creates a fresh one when next needed."""
        with self._cond:
            self._in_use.pop(id(resource), None)
            self._unpooled.pop(id(resource), None)
            self._cond.notify()
        self._quietly(self.close_resource, resource)

    def _quietly(self, fun: Callable[[Any], Any], resource: Any) -> None:
        try:
            fun(resource)
        except Exception:  # closing something broken must not break the caller
            logger.debug("%r: error closing %r", self, resource, exc_info=True)

    def force_close_all(self, close_pool: bool = True) -> None:
        """Forget every resource, those in use too (used after fork and by :func:`reset`).

        With ``close_pool`` the pool refuses further acquires.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = close_pool
            items = list(self._in_use.values()) + list(self._unpooled.values()) + self._idle
            self._in_use.clear()
            self._unpooled.clear()
            self._idle = []
            self._cond.notify_all()
        for item in items:
            if not isinstance(item, _Lazy):
                self._quietly(self.collect_resource, item)

    def resize(self, limit: int, force: bool = False, ignore_errors: bool = False, reset: bool = False) -> None:
        """Change the limit.

        Shrinking below the number of resources in use raises :class:`RuntimeError`
        unless ``force`` (which forgets every resource, in use or not) or
        ``ignore_errors`` (resources in use stay out until released, then are closed).
        """
        _check_limit(limit)
        previous = self._limit or 0
        if self._in_use and 0 < limit < previous and not ignore_errors:
            if not force:
                raise RuntimeError(f"Can't shrink pool when in use: was={previous} now={limit}")
            reset = True
        if reset:
            self.force_close_all(close_pool=False)
        surplus: list[Any] = []
        with self._cond:
            self._limit = limit
            if limit and not previous:
                # handed out while unlimited: not the limited pool's, closed when released
                self._unpooled.update(self._in_use)
                self._in_use.clear()
            if limit:
                while self._idle and len(self._idle) + len(self._in_use) > limit:
                    surplus.append(self._idle.pop(0))
            self._cond.notify_all()
        self.setup()
        for item in surplus:
            if not isinstance(item, _Lazy):
                self._quietly(self.collect_resource, item)

    # -- introspection -----------------------------------------------------------------
    @property
    def in_use(self) -> int:
        """How many resources are handed out right now."""
        return len(self._in_use) + len(self._unpooled)

    @property
    def idle(self) -> int:
        """How many released resources wait in the pool."""
        return len(self._idle)

    # Kombu keeps its pool in ``_resource`` (a LIFO queue of idle and not-yet-created
    # resources) and ``_dirty`` (the set handed out); test suites written for Kombu,
    # Celery's among them, look at both.  Read-only views of the same state:
    @property
    def _dirty(self) -> set[Any]:
        with self._cond:
            # as in Kombu: only what a limited pool handed out (unlimited ones are not pooled)
            return set(self._in_use.values()) if self._limit else set()

    @property
    def _resource(self) -> _ResourceView:
        return _ResourceView(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} limit={self._limit} in_use={self.in_use} idle={len(self._idle)}>"


class _ResourceView:
    """``pool._resource`` as Kombu has it: ``queue`` lists what acquire would take, last first."""

    def __init__(self, pool: Resource) -> None:
        self._pool = pool

    @property
    def queue(self) -> list[Any]:
        pool = self._pool
        with pool._cond:
            idle = list(pool._idle)
            free = max((pool._limit or 0) - len(pool._in_use) - len(idle) - pool._reserved, 0)
        # slots not filled yet are resources to be created on acquire, as in Kombu
        return [_Lazy(pool.new) for _ in range(free)] + idle

    def qsize(self) -> int:
        return len(self.queue)

    def empty(self) -> bool:
        return not self.queue
