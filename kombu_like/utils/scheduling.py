"""Fair scheduling between resources (Kombu's ``kombu.utils.scheduling``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .imports import symbol_by_name

__all__ = ["FairCycle", "cycle_by_name", "priority_cycle", "round_robin_cycle", "sorted_cycle"]

CYCLE_ALIASES = {
    "priority": "kombu_like.utils.scheduling:priority_cycle",
    "round_robin": "kombu_like.utils.scheduling:round_robin_cycle",
    "sorted": "kombu_like.utils.scheduling:sorted_cycle",
}


class FairCycle:
    """Call ``fun(resource, callback)`` on each resource in turn until one succeeds.

    A resource "fails" by raising ``predicate`` (e.g. ``Empty``); after every resource
    failed once, the last error is raised.
    """

    def __init__(
        self, fun: Callable[..., Any], resources: Sequence[Any], predicate: type[BaseException] = Exception
    ) -> None:
        self.fun = fun
        self.resources = resources
        self.predicate = predicate
        self.pos = 0

    def _next(self) -> Any:
        if not self.resources:
            raise self.predicate()
        if self.pos >= len(self.resources):
            self.pos = 0
        resource = self.resources[self.pos]
        self.pos += 1
        return resource

    def get(self, callback: Callable[..., Any], **kwargs: Any) -> Any:
        """Try the next resources until one returns; raise when all failed."""
        tried = 0
        while True:
            resource = self._next()
            try:
                return self.fun(resource, callback, **kwargs)
            except self.predicate:
                if tried >= len(self.resources) - 1:
                    raise
                tried += 1

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"<FairCycle: {self.pos}/{len(self.resources)} {self.resources}>"


class round_robin_cycle:  # noqa: N801 - Kombu's public name
    """Items in order; the one just used moves to the end."""

    def __init__(self, it: list[Any] | None = None) -> None:
        self.items = it if it is not None else []

    def update(self, it: Sequence[Any]) -> None:
        """Replace the items (in place)."""
        self.items[:] = it

    def consume(self, n: int) -> list[Any]:
        """The first ``n`` items."""
        return self.items[:n]

    def rotate(self, last_used: Any) -> Any:
        """Move ``last_used`` to the end."""
        try:
            self.items.append(self.items.pop(self.items.index(last_used)))
        except ValueError:
            pass
        return last_used


class priority_cycle(round_robin_cycle):  # noqa: N801 - Kombu's public name
    """Items always in the same order (the first has priority)."""

    def rotate(self, last_used: Any) -> Any:
        return None


class sorted_cycle(priority_cycle):  # noqa: N801 - Kombu's public name
    """Items in sorted order."""

    def consume(self, n: int) -> list[Any]:
        return sorted(self.items[:n])


def cycle_by_name(name: str) -> Any:
    """The cycle class called ``name`` (``round_robin``, ``priority``, ``sorted``) or a path."""
    return symbol_by_name(name, CYCLE_ALIASES)
