"""Publisher confirms: which published messages the broker has acknowledged or refused."""

from __future__ import annotations

from collections import deque

__all__ = ["Confirms"]


class Confirms:
    """Sequence numbers of published messages the broker has not confirmed yet."""

    __slots__ = ("next_seq", "pending", "out_of_order", "nacked")

    def __init__(self) -> None:
        self.next_seq = 1
        self.pending: deque[int] = deque()
        self.out_of_order: set[int] = set()
        self.nacked: set[int] = set()

    def sent(self, count: int) -> tuple[int, int]:
        first = self.next_seq
        self.next_seq += count
        self.pending.extend(range(first, self.next_seq))
        return first, self.next_seq - 1

    def resolve(self, tag: int, multiple: bool, ok: bool) -> None:
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

    def settled(self, last: int) -> bool:
        # publishes wait in order, so everything before the range was settled already
        return not self.pending or self.pending[0] > last

    def take_nacked(self, first: int, last: int) -> list[int]:
        found = sorted(seq for seq in self.nacked if first <= seq <= last)
        self.nacked.difference_update(found)
        return found

    def abandon(self, first: int, last: int) -> None:
        self.pending = deque(seq for seq in self.pending if not first <= seq <= last)
        self.out_of_order = {seq for seq in self.out_of_order if not first <= seq <= last}
