"""Logical clocks (Kombu's ``kombu.clocks``)."""

from __future__ import annotations

import threading
from operator import itemgetter
from typing import Any

__all__ = ["LamportClock", "timetuple"]


class timetuple(tuple):  # type: ignore[type-arg]  # noqa: N801 - Kombu's public name
    """``(clock, timestamp, id, obj)`` of an event, ordered for use in a heap.

    Events compare by logical clock when both have one (ties broken by ``id``), else by
    wall-clock ``timestamp``.
    """

    __slots__ = ()

    def __new__(cls, clock: int | None, timestamp: float, id: str, obj: Any = None) -> timetuple:  # noqa: A002
        return tuple.__new__(cls, (clock, timestamp, id, obj))

    def __getnewargs__(self) -> tuple[Any, ...]:
        return tuple(self)

    def __repr__(self) -> str:
        return f"_lamport(clock={self[0]}, timestamp={self[1]}, id={self[2]} {self[3]!r})"

    def __lt__(self, other: tuple[Any, ...]) -> bool:  # type: ignore[override]
        try:
            a, b = self[0], other[0]
            if a and b:
                if a == b:
                    return bool(self[2] < other[2])
                return bool(a < b)
            return bool(self[1] < other[1])
        except IndexError:
            return NotImplemented

    def __gt__(self, other: tuple[Any, ...]) -> bool:  # type: ignore[override]
        return bool(other < self)

    def __le__(self, other: tuple[Any, ...]) -> bool:  # type: ignore[override]
        return not other < self

    def __ge__(self, other: tuple[Any, ...]) -> bool:  # type: ignore[override]
        return not self < other

    clock = property(itemgetter(0))
    timestamp = property(itemgetter(1))
    id = property(itemgetter(2))
    obj = property(itemgetter(3))


class LamportClock:
    """Lamport's logical clock.

    Call :meth:`forward` for an event of this process (and send the value with a
    message); call :meth:`adjust` with the value a received message carries.  ``mutex``
    may be replaced (Celery swaps in a dummy lock when it runs single-threaded).
    """

    def __init__(self, initial_value: int = 0, Lock: Any = threading.Lock) -> None:  # noqa: N803
        self.value = initial_value
        self.mutex = Lock()

    def adjust(self, other: int) -> int:
        """Move past ``other`` (a value received from another process)."""
        with self.mutex:
            self.value = max(self.value, other) + 1
            return self.value

    def forward(self) -> int:
        """Advance for an event of this process."""
        with self.mutex:
            self.value += 1
            return self.value

    def sort_heap(self, h: list[tuple[Any, ...]]) -> tuple[Any, ...]:
        """The latest event of a heap of ``(clock, process_id, ...)`` tuples.

        Events with equal clocks are ordered by process id.
        """
        if len(h) > 1 and h[0][0] == h[1][0]:
            same = [h[0]]
            for event in h[1:]:
                if event[0] != h[0][0]:
                    break
                same.append(event)
            return sorted(same, key=itemgetter(1))[0]
        return h[0]

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        return f"<LamportClock: {self.value}>"
