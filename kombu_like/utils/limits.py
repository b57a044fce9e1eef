"""Rate limiting (Kombu's ``kombu.utils.limits``)."""

from __future__ import annotations

from collections import deque
from time import monotonic
from typing import Any

__all__ = ["TokenBucket"]


class TokenBucket:
    """The token bucket algorithm, plus a queue of items waiting for tokens.

    The bucket holds at most ``capacity`` tokens and gains ``fill_rate`` tokens a second.
    :meth:`can_consume` takes tokens when there are enough; :meth:`expected_time` says how
    long until there will be.  ``add``/``pop`` keep items that wait for a token (Celery
    parks rate-limited tasks there).  Not thread safe: callers hold their own lock.
    """

    def __init__(self, fill_rate: float, capacity: float = 1) -> None:
        self.capacity = float(capacity)
        self._tokens = float(capacity)
        self.fill_rate = float(fill_rate)
        self.timestamp = monotonic()
        self.contents: deque[Any] = deque()

    def add(self, item: Any) -> None:
        """Park ``item`` until a token is available."""
        self.contents.append(item)

    def pop(self) -> Any:
        """Take the oldest parked item (``IndexError`` when there is none)."""
        return self.contents.popleft()

    def clear_pending(self) -> None:
        """Forget every parked item."""
        self.contents.clear()

    def can_consume(self, tokens: float = 1) -> bool:
        """Take ``tokens`` if the bucket has that many; never takes a part of them."""
        if tokens <= self._get_tokens():
            self._tokens -= tokens
            return True
        return False

    def expected_time(self, tokens: float = 1) -> float:
        """Seconds until ``tokens`` tokens are in the bucket (0 when they are already)."""
        available = self._get_tokens()
        return max(tokens - available, 0.0) / self.fill_rate

    def _get_tokens(self) -> float:
        now = monotonic()
        if self._tokens < self.capacity:
            self._tokens = min(self.capacity, self._tokens + self.fill_rate * (now - self.timestamp))
        # idle time at capacity must not count as refill time later
        self.timestamp = now
        return self._tokens
