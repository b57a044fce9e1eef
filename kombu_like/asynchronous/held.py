"""Work an event loop holds until it is about to wait for events (:class:`HeldWork`).

A connection's acks are the example: RabbitMQ needs them only to send more, so a loop
with events to handle can send many rounds' acks in one write, as long as they go out
before it waits -- and within a few rounds, or a few milliseconds, when it never does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..log import get_logger

__all__ = ["MAX_HELD_ROUNDS", "MAX_HELD_SECONDS", "HeldWork"]

#: work held until the loop waits waits no more than this many rounds that find events at
#: once, nor this long (a slow callback -- a task run in the loop's thread -- ends it)
MAX_HELD_ROUNDS = 8
MAX_HELD_SECONDS = 0.01

logger = get_logger(__name__)


class HeldWork:
    """Callbacks held until the loop waits, and how long they have been held."""

    def __init__(self) -> None:
        #: the callbacks, in the order they were held (empty: nothing held)
        self.callbacks: list[Callable[[], Any]] = []
        self._rounds = 0
        self._since = 0.0

    def add(self, callback: Callable[[], Any]) -> None:
        if not self.callbacks:
            self._since = time.monotonic()
        self.callbacks.append(callback)

    def may_wait(self) -> bool:
        """Count one more round held; True while the callbacks may be held longer."""
        self._rounds += 1
        return self._rounds < MAX_HELD_ROUNDS and time.monotonic() - self._since < MAX_HELD_SECONDS

    def run(self) -> None:
        """Run the callbacks (each of them); the first error is raised, the others logged."""
        self._rounds = 0
        callbacks, self.callbacks = self.callbacks, []
        error: BaseException | None = None
        for callback in callbacks:
            try:
                callback()
            except BaseException as exc:
                if error is None:
                    error = exc
                else:
                    logger.error("Error in a callback held until the loop waited: %r", exc, exc_info=True)
        if error is not None:
            raise error

    def run_quietly(self, when: str) -> None:
        """Run the callbacks, logging their errors (the loop is ending: ``when`` says how)."""
        if not self.callbacks:
            return
        try:
            self.run()
        except Exception as exc:
            logger.error("Error in a callback run as %s: %r", when, exc, exc_info=True)
