"""A consumer of the asyncio API cancelled again and again, and what must hold after.

:func:`run_cancellations` publishes ``count`` numbered messages in ``rounds`` chunks.  Each
round starts a consumer on a new connection (coroutine callbacks, a prefetch window),
cancels its task in the state the round aims at, and closes the connection; a last
consumer then takes what is left.  Every number must have been acknowledged exactly once
and the queue must be empty: a cancellation may only leave messages unacknowledged, to
come back, never lose one or get one acknowledged twice.

The states a cancellation lands in (each is aimed at in turn, and each must be hit):

* ``waiting`` -- in ``drain_events`` with no delivery to hand out, messages in the queue;
* ``idle`` -- in ``drain_events`` with the queue empty (everything published is acked);
* ``batch`` -- inside a coroutine callback while more deliveries of the same take wait
  in the consumer, not handed to any callback yet;
* ``callback`` -- inside a coroutine callback, the message not acknowledged yet;
* ``ack`` -- right after ``await message.ack()`` started, before the callback returned
  (the ack made, not necessarily written to the broker yet).

Everything random -- chunk sizes, the acks before each cancellation, the suspensions in
the callbacks -- comes from one seed, which every failure names.  On memory:// a seed
replays the run exactly; on a broker, the timing of deliveries varies too.  The consumer's
inbox (a private attribute) is read only to tell the states apart, never asserted on.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from kombu_like import Queue
from kombu_like.aio import Connection
from kombu_like.aio.hub import bounded

__all__ = ["STATES", "cancellation_seed", "run_cancellations"]

STATES = ("waiting", "idle", "batch", "callback", "ack")


def cancellation_seed() -> int:
    """``KOMBU_LIKE_CANCEL_SEED`` when set (to replay a failure), else a new seed."""
    given = os.environ.get("KOMBU_LIKE_CANCEL_SEED")
    return int(given) if given else random.randrange(2**32)


class _Run:
    def __init__(self, connect: Callable[[], Connection], queue: Queue, seed: int, prefetch: int) -> None:
        self.connect = connect
        self.queue = queue
        self.seed = seed
        self.rng = random.Random(seed)
        self.prefetch = prefetch
        self.published = 0
        #: every number acknowledged, in order, duplicates kept
        self.acked: list[int] = []
        self.distinct: set[int] = set()
        self.redelivered = 0
        #: the state each cancellation landed in
        self.cancelled_in: list[str] = []
        # what the running round aims at: a state, after this many acks of the round
        self.state = "starting"
        self.target = ""
        self.after_acks = 0
        self.round_acks = 0
        self.reached: asyncio.Future[None] | None = None

    def where(self) -> str:
        return f"seed {self.seed}, round {len(self.cancelled_in)}"

    def enter(self, state: str) -> None:
        self.state = state
        reached = self.reached
        if reached is None or reached.done():
            return
        # idle is where a consumer stays: cancel there when the aim can no longer be met
        if state == "idle" or (state == self.target and self.round_acks >= self.after_acks):
            reached.set_result(None)

    async def consume(self, conn: Connection) -> None:
        rng = self.rng
        consumer: Any = None

        async def handle(body: int, message: Any) -> None:
            self.enter("batch" if consumer._inbox else "callback")
            if message.delivery_info.get("redelivered"):
                self.redelivered += 1
            for _ in range(1 + rng.randrange(2)):
                await asyncio.sleep(0)
            self.enter("ack")
            try:
                await message.ack()
            finally:
                if message.acknowledged:
                    self.acked.append(body)
                    self.distinct.add(body)
                    self.round_acks += 1
            await asyncio.sleep(0)

        try:
            consumer = conn.Consumer([self.queue], callbacks=[handle], prefetch_count=self.prefetch)
            async with consumer:
                while True:
                    if not consumer._inbox:  # the wait will suspend
                        self.enter("idle" if len(self.distinct) == self.published else "waiting")
                    await conn.drain_events()
        except asyncio.CancelledError:
            self.cancelled_in.append(self.state)
            raise

    async def publish(self, conn: Connection, count: int) -> None:
        producer = conn.Producer()
        async with producer.batch():
            for number in range(self.published, self.published + count):
                await producer.publish(number, routing_key=self.queue.name)
        self.published += count

    async def cancel_once(self, conn: Connection, target: str, wait: float) -> None:
        """Start a consumer, cancel it once it entered ``target`` (or ``idle``)."""
        self.target = target
        outstanding = self.published - len(self.distinct)
        aims_mid_stream = outstanding and target not in ("idle", "waiting")
        self.after_acks = self.rng.randrange(outstanding) if aims_mid_stream else 0
        await self.cancel_when_reached(conn, wait, f"{target} never reached")

    async def finish(self, conn: Connection, wait: float) -> None:
        """A last consumer: until everything published was acked."""
        self.target = "idle"
        await self.cancel_when_reached(conn, wait, "messages left unconsumed")
        self.cancelled_in.pop()  # not one of the cancellations under test

    async def cancel_when_reached(self, conn: Connection, wait: float, failure: str) -> None:
        self.round_acks = 0
        self.state = "starting"
        # awaited directly (no task in between): the consumer is cancelled at the first
        # suspension after it entered the state, before it can run on
        self.reached = reached = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(self.consume(conn))

        def ended(_: object) -> None:
            if not reached.done():
                reached.set_result(None)

        task.add_done_callback(ended)
        where = self.where()
        try:
            await bounded(reached, wait, lambda: AssertionError(f"{where}: {failure}"))
        finally:
            task.cancel()
            await asyncio.wait([task])
        if not task.cancelled():
            task.result()  # the consumer failed: say how
            raise AssertionError(f"{where}: the consumer ended by itself")


async def run_cancellations(
    connect: Callable[[], Connection],
    queue: Queue,
    seed: int,
    count: int = 10_000,
    rounds: int = 100,
    prefetch: int = 20,
    wait: float = 10.0,
) -> dict[str, int]:
    """The scenario of this module's docstring; ``wait`` bounds each round's wait for its
    aim.  Raises :class:`AssertionError` naming ``seed`` when anything was lost, acked twice
    or left, or when a state was never hit; returns how many cancellations landed in each
    state, and how many messages came back."""
    run = _Run(connect, queue, seed, prefetch)
    try:
        await _cancel_rounds(run, count, rounds, wait)
        async with connect() as conn:  # after the last consumer's connection closed
            left = await queue(conn.default_channel).queue_declare(passive=True)
    except AssertionError:
        raise
    except Exception as exc:
        raise AssertionError(f"{run.where()}: {exc!r}") from exc
    twice = sorted(number for number, times in Counter(run.acked).items() if times > 1)
    assert not twice, f"seed {seed}: acked more than once: {twice[:20]}"
    missing = sorted(set(range(count)) - run.distinct)
    assert not missing, f"seed {seed}: never acked: {missing[:20]}"
    assert left.message_count == 0, f"seed {seed}: {left.message_count} messages left in {queue.name}"
    hit = Counter(run.cancelled_in)
    assert set(hit) == set(STATES), f"seed {seed}: cancellations landed in {dict(hit)}, not in every state"
    assert run.redelivered, f"seed {seed}: no message came back after a cancellation"
    return {**hit, "redelivered": run.redelivered}


async def _cancel_rounds(run: _Run, count: int, rounds: int, wait: float) -> None:
    rng, connect = run.rng, run.connect
    # chunk sizes adding up to count, some rounds publishing nothing
    cuts = sorted(rng.randrange(count + 1) for _ in range(rounds - 1))
    chunks = [b - a for a, b in zip([0, *cuts], [*cuts, count], strict=True)]
    async with connect() as conn:
        await run.queue(conn.default_channel).declare()
    for number, chunk in enumerate(chunks):
        async with connect() as conn:
            await run.publish(conn, chunk)
            await run.cancel_once(conn, STATES[number % len(STATES)], wait)
    async with connect() as conn:
        await run.finish(conn, wait)
