"""A loop round's acks on a channel sent as one ``basic.ack`` with ``multiple`` set, when
that settles exactly the deliveries they ack and nothing else.

Under an event loop, acks, rejects and nacks made by the loop's callbacks are held and
written together at the end of the round (:meth:`.evloop.LoopReader.defer`).  A Celery
worker acks each task from its own callback, in delivery order, so a round's acks are
often a run of consecutive delivery tags.  ``basic.ack`` with ``multiple`` set acks every
unacked delivery of the channel up to its tag; sent for the last tag of such a run it does
the work of the whole run in one frame, and the broker handles one method instead of
many (RabbitMQ then hands the freed prefetch room out in one go too).

It is only safe when every delivery of the channel up to that tag is settled: by an ack of
this round, or by an ack, reject or nack already written (or written before it in the same
write).  :class:`AckCoalescer` keeps, per channel, the settlements it saw written: the
highest tag up to which all are settled, and the settled tags above it.  What it has not
seen (settlements written before the loop read the connection, a ``no_ack`` delivery, the
old tags of a ``basic_recover``) keeps a gap open, and a gap means the acks go out one by
one as they were made: the ledger can only under-count, never claim a delivery that is not
settled.  A channel whose gap stays open while many settlements pile up above it stops
being tracked.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from .framing import ACK_ARGS, ACK_METHOD, REJECT_METHOD, method_frame

__all__ = ["AckCoalescer"]

#: channel id, method, delivery tag, bits of an ack, reject or nack method frame
_SETTLEMENT = struct.Struct(">xHxxxx4sQB")
#: settled tags kept above a gap before the channel is no longer tracked
MAX_ABOVE = 4096
#: bytes of an ack, reject or nack method frame
SETTLEMENT_FRAME_SIZE = 21


class _Ledger:
    """The settlements of one channel written so far."""

    __slots__ = ("above", "channel", "highest", "through")

    def __init__(self, channel: Any) -> None:
        #: the driver channel (a channel id is reused by the next channel opened)
        self.channel = channel
        #: every delivery tag up to this one is settled
        self.through = 0
        #: settled tags above :attr:`through` (a gap lies below the lowest)
        self.above: set[int] | None = set()
        #: the highest tag settled
        self.highest = 0

    def settle(self, tag: int, multiple: bool) -> None:
        above = self.above
        if above is None:
            return
        through = self.through
        if tag > self.highest:
            self.highest = tag
        if multiple:
            if tag > through:
                through = tag
                above.difference_update([t for t in above if t <= tag])
        elif tag > through:
            if tag == through + 1:
                through = tag
            else:
                above.add(tag)
                if len(above) > MAX_ABOVE:
                    self.above = None  # a gap that does not close: stop tracking
                    return
        while above and through + 1 in above:
            through += 1
            above.discard(through)
        self.through = through

    def covers(self, tags: list[int], top: int) -> bool:
        """True when acking every tag of ``tags`` settles all deliveries up to ``top``."""
        above = self.above
        if above is None or min(tags) <= self.through:
            return False
        acked = set(tags)
        if len(acked) != len(tags) or not acked.isdisjoint(above):
            return False  # a tag settled twice: let the broker say so, as without this
        # a round's acks are mostly of deliveries newer than any settled before
        below = len(above) if top > self.highest else sum(1 for t in above if t < top)
        return len(acked) + below == top - self.through


class AckCoalescer:
    """Rewrites a connection's held settlement frames (see :mod:`.acks`)."""

    def __init__(self, channels: Mapping[int, Any]) -> None:
        #: the connection's channel id -> driver channel
        self._channels = channels
        self._ledgers: dict[int, _Ledger] = {}

    def _ledger(self, channel_id: int) -> _Ledger:
        channel = self._channels.get(channel_id)
        ledger = self._ledgers.get(channel_id)
        if ledger is None or ledger.channel is not channel:
            ledger = self._ledgers[channel_id] = _Ledger(channel)
        return ledger

    def written(self, frame: bytes) -> None:
        """Note an ack, reject or nack frame written on its own."""
        channel_id, method, tag, bits = _SETTLEMENT.unpack_from(frame)
        self._settled(channel_id, method, tag, bits)

    def _settled(self, channel_id: int, method: bytes, tag: int, bits: int) -> None:
        # bit 1 is ``multiple`` of an ack or nack, ``requeue`` of a reject
        self._ledger(channel_id).settle(tag, method != REJECT_METHOD and bool(bits & 1))

    def __call__(self, held: list[bytes]) -> list[bytes]:
        """The frames to write for ``held`` (settlement frames, in the order made)."""
        if len(held) == 1:  # nothing to merge: only noted
            frame = held[0]
            if len(frame) == SETTLEMENT_FRAME_SIZE:
                self.written(frame)
            return held
        acks: dict[int, list[int]] = {}
        for frame in held:
            if len(frame) != SETTLEMENT_FRAME_SIZE:
                return held  # not only settlements: written as they are
            channel_id, method, tag, bits = _SETTLEMENT.unpack_from(frame)
            if method == ACK_METHOD and not bits:
                acks.setdefault(channel_id, []).append(tag)
            else:  # written first, whatever happens to the acks
                self._settled(channel_id, method, tag, bits)
        merged: dict[int, int] = {}
        for channel_id, tags in acks.items():
            ledger = self._ledger(channel_id)
            top = max(tags)
            if len(tags) > 1 and ledger.covers(tags, top):
                merged[channel_id] = top
                ledger.settle(top, True)
            else:
                for tag in tags:
                    ledger.settle(tag, False)
        if not merged:
            return held
        frames = [
            frame
            for frame in held
            if not (frame[7:11] == ACK_METHOD and not frame[19] and _SETTLEMENT.unpack_from(frame)[0] in merged)
        ]
        frames.extend(method_frame(channel_id, ACK_METHOD, ACK_ARGS.pack(top, 1)) for channel_id, top in merged.items())
        return frames
