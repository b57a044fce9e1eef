"""The bound on publishes handed over and not written yet, for the asyncio drivers that
write publishes behind (an I/O thread's, the Redis connection's on the loop)."""

from __future__ import annotations

import asyncio

__all__ = ["MAX_UNSENT", "Backlog"]

#: publishes handed over and not written yet beyond which a publish waits for room
MAX_UNSENT = 2000


class Backlog:
    """Publishes handed over and not written (or answered) yet, counted on the loop's
    thread; past :data:`MAX_UNSENT` a publisher awaits :meth:`room`, which comes back once
    half of them went out."""

    __slots__ = ("_room", "unsent")

    def __init__(self) -> None:
        self.unsent = 0
        self._room: asyncio.Future[None] | None = None

    def room(self) -> asyncio.Future[None] | None:
        """What to await before handing over more publishes, or None."""
        if self.unsent < MAX_UNSENT:
            return None
        if self._room is None or self._room.done():
            self._room = asyncio.get_running_loop().create_future()
        return self._room

    def written(self, count: int) -> None:
        """``count`` of them went out."""
        self.unsent -= count
        room = self._room
        if room is not None and self.unsent < MAX_UNSENT // 2:
            self._room = None
            if not room.done():
                room.set_result(None)

    def fail(self, exc: BaseException) -> None:
        """The connection closed: a publisher waiting for room gets ``exc``."""
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_exception(exc)
