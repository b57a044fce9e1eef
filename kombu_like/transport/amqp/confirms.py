"""Publisher confirms: which published messages the broker has acknowledged or refused."""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["Confirms"]


class Confirms:
    """Sequence numbers of published messages the broker has not confirmed yet.

    Publishing threads number their messages (:meth:`sent`) and wait for them while the
    thread that reads the socket resolves them: every method takes the lock.
    """

    __slots__ = ("next_seq", "pending", "out_of_order", "nacked", "_lock")

    def __init__(self) -> None:
        self.next_seq = 1
        self.pending: deque[int] = deque()
        self.out_of_order: set[int] = set()
        self.nacked: set[int] = set()
        self._lock = threading.Lock()

    def sent(self, count: int) -> tuple[int, int]:
        with self._lock:
            first = self.next_seq
            self.next_seq += count
            self.pending.extend(range(first, self.next_seq))
            return first, self.next_seq - 1

    def sent_one(self) -> int:
        """:meth:`sent` for one message: its number."""
        with self._lock:
            seq = self.next_seq
            self.next_seq = seq + 1
            self.pending.append(seq)
            return seq

    def resolve(self, tag: int, multiple: bool, ok: bool) -> None:
        with self._lock:
            pending = self.pending
            if multiple:
                while pending and pending[0] <= tag:
                    seq = pending.popleft()
                    if seq in self.out_of_order:
                        self.out_of_order.discard(seq)
                    elif not ok:
                        self.nacked.add(seq)
            elif pending and pending[0] == tag:
                pending.popleft()
                if not ok:
                    self.nacked.add(tag)
            elif pending and tag > pending[0]:
                self.out_of_order.add(tag)
                if not ok:
                    self.nacked.add(tag)
            while pending and pending[0] in self.out_of_order:
                self.out_of_order.discard(pending.popleft())

    def settled(self, last: int, first: int = 1) -> bool:
        """True when every publish numbered ``first`` to ``last`` is confirmed (or abandoned)."""
        with self._lock:
            out_of_order = self.out_of_order
            for seq in self.pending:
                if seq > last:
                    return True
                if seq >= first and seq not in out_of_order:
                    return False
            return True

    def take_nacked(self, first: int, last: int) -> list[int]:
        with self._lock:
            if not self.nacked:  # the common case: nothing was refused
                return []
            found = sorted(seq for seq in self.nacked if first <= seq <= last)
            self.nacked.difference_update(found)
            return found

    def take_all_nacked(self) -> int:
        """Forget every refusal recorded so far; return how many there were."""
        with self._lock:
            count = len(self.nacked)
            self.nacked.clear()
            return count

    def abandon(self, first: int, last: int) -> None:
        with self._lock:
            self.pending = deque(seq for seq in self.pending if not first <= seq <= last)
            self.out_of_order = {seq for seq in self.out_of_order if not first <= seq <= last}
