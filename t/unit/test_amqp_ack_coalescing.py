"""A loop round's acks merged into one ``basic.ack multiple``: every delivery ends exactly
as the acks, rejects and nacks made one by one would have left it on the broker."""

from __future__ import annotations

import random

from kombu_like.transport.amqp.acks import MAX_ABOVE, AckCoalescer
from kombu_like.transport.amqp.framing import ACK_ARGS, ACK_METHOD, NACK_METHOD, REJECT_METHOD, method_frame
from t.unit.test_amqp_framing import Wire


def settlement(channel_id: int, kind: str, tag: int, multiple: bool = False, requeue: bool = False) -> bytes:
    if kind == "ack":
        return method_frame(channel_id, ACK_METHOD, ACK_ARGS.pack(tag, int(multiple)))
    if kind == "reject":
        return method_frame(channel_id, REJECT_METHOD, ACK_ARGS.pack(tag, int(requeue)))
    return method_frame(channel_id, NACK_METHOD, ACK_ARGS.pack(tag, int(multiple) | (2 if requeue else 0)))


class Broker:
    """What RabbitMQ does with settlements: an unknown tag closes the channel."""

    def __init__(self, delivered: dict[int, int]) -> None:
        #: channel -> tag -> outcome ("unacked", "acked", "rejected", "requeued")
        self.outcome = {c: dict.fromkeys(range(1, n + 1), "unacked") for c, n in delivered.items()}
        self.closed: set[int] = set()

    def write(self, frames: list[bytes]) -> None:
        for frame in frames:
            channel_id = int.from_bytes(frame[1:3], "big")
            method, (tag, bits) = frame[7:11], ACK_ARGS.unpack_from(frame, 11)
            if channel_id in self.closed:
                continue
            states = self.outcome[channel_id]
            multiple = bool(bits & 1) and method != REJECT_METHOD
            requeue = bool(bits & (1 if method == REJECT_METHOD else 2))
            result = "acked" if method == ACK_METHOD else ("requeued" if requeue else "rejected")
            if states.get(tag) != "unacked":
                self.closed.add(channel_id)  # PRECONDITION_FAILED - unknown delivery tag
                continue
            targets = [t for t, s in states.items() if s == "unacked" and t <= tag] if multiple else [tag]
            for t in targets:
                states[t] = result


channels = {1: object(), 2: object()}


def scenario(rng: random.Random) -> tuple[dict[int, int], list[list[bytes]]]:
    """Deliveries per channel, and the settlement frames written for them, in write batches."""
    delivered = {c: rng.randint(1, 30) for c in channels}
    # each channel's deliveries settled in delivery order, a few swapped with the next one,
    # some never settled (held by the application) and a few settled twice
    order = [(c, t) for c, n in delivered.items() for t in range(1, n + 1)]
    for _ in range(rng.randint(0, 4)):
        i = rng.randrange(len(order) - 1)
        order[i], order[i + 1] = order[i + 1], order[i]
    kept = [item for item in order if rng.random() > 0.12]
    kept += rng.choices(order, k=rng.choice([0, 0, 0, 1, 2]))
    kinds = ["ack", "ack", "ack", "ack", "reject", "nack"]
    frames = [
        settlement(c, rng.choice(kinds), t, multiple=rng.random() < 0.1, requeue=rng.random() < 0.5) for c, t in kept
    ]
    cuts = sorted(rng.randint(0, len(frames)) for _ in range(rng.randint(0, 8)))
    return delivered, [frames[a:b] for a, b in zip([0, *cuts], [*cuts, len(frames)], strict=True)]


def test_merged_acks_leave_every_delivery_as_one_by_one_settlements_would() -> None:
    merges = 0
    for seed in range(2000):
        delivered, batches = scenario(random.Random(seed))
        one_by_one, merged = Broker(delivered), Broker(delivered)
        coalescer = AckCoalescer(channels)
        for batch in batches:
            one_by_one.write(batch)
            sent = coalescer(list(batch))
            merges += len(batch) - len(sent)
            merged.write(sent)
        # a channel the broker closes (a double settlement) ends the same way; on the
        # others each delivery ends as it would have
        assert merged.closed == one_by_one.closed, f"seed {seed}"
        for channel_id in channels:
            if channel_id not in one_by_one.closed:
                assert merged.outcome[channel_id] == one_by_one.outcome[channel_id], f"seed {seed}"
    assert merges > 1000  # the scenarios do merge acks


def test_consecutive_acks_go_out_as_one_frame() -> None:
    coalescer = AckCoalescer(channels)
    first = coalescer([settlement(1, "ack", 1), settlement(1, "ack", 2), settlement(1, "ack", 3)])
    assert first == [method_frame(1, ACK_METHOD, ACK_ARGS.pack(3, 1))]
    # the next round carries on from there
    assert coalescer([settlement(1, "ack", 5), settlement(1, "ack", 4)]) == [
        method_frame(1, ACK_METHOD, ACK_ARGS.pack(5, 1))
    ]


def test_an_unsettled_delivery_below_keeps_acks_one_by_one() -> None:
    coalescer = AckCoalescer(channels)
    batch = [settlement(1, "ack", 2), settlement(1, "ack", 3)]  # 1 still held by the application
    assert coalescer(list(batch)) == batch
    # once 1 is acked on its own, the ledger knows 1..3 are settled
    coalescer.written(settlement(1, "ack", 1))
    assert coalescer([settlement(1, "ack", 4), settlement(1, "ack", 5)]) == [
        method_frame(1, ACK_METHOD, ACK_ARGS.pack(5, 1))
    ]


def test_a_reused_channel_id_starts_a_new_ledger() -> None:
    live = dict(channels)
    coalescer = AckCoalescer(live)
    coalescer([settlement(1, "ack", 1), settlement(1, "ack", 2)])
    live[1] = object()  # channel 1 closed and another opened under its id: tags restart at 1
    batch = [settlement(1, "ack", 3), settlement(1, "ack", 4)]
    assert coalescer(list(batch)) == batch


def test_a_gap_that_never_closes_stops_the_tracking() -> None:
    coalescer = AckCoalescer(channels)
    for tag in range(2, MAX_ABOVE + 10, 2):
        batch = [settlement(1, "ack", tag), settlement(1, "ack", tag + 1)]
        assert coalescer(list(batch)) == batch
    coalescer.written(settlement(1, "ack", 1))  # too late: the channel is not tracked any more
    batch = [settlement(1, "ack", MAX_ABOVE + 20), settlement(1, "ack", MAX_ABOVE + 21)]
    assert coalescer(list(batch)) == batch


def test_acks_held_and_written_one_a_round_are_noted_so_later_rounds_merge() -> None:
    wire = Wire()
    try:
        frames = wire.reader
        frames._write = wire.ours.sendall  # what connecting sets up
        frames.coalesce = AckCoalescer(channels)
        for tag in (1, 2, 3):  # one ack a round
            frames.hold(settlement(1, "ack", tag))
            frames.flush()
        frames.hold(settlement(1, "ack", 4))
        frames.hold(settlement(1, "ack", 5))
        frames.write(b"")
        sent = b"".join(settlement(1, "ack", tag) for tag in (1, 2, 3))
        sent += method_frame(1, ACK_METHOD, ACK_ARGS.pack(5, 1))
        assert wire.theirs.recv(1024) == sent
    finally:
        wire.close()
