"""Publisher confirms of one asyncio AMQP channel: which publishes wait for the broker's
acks, and what they are told.  The numbering and the bookkeeping of acks and nacks are the
blocking transport's :class:`~.confirms.Confirms`; this adds the futures."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ...aio.hub import bounded
from ...exceptions import MessageNacked, MessageReturned
from ...plan import Ready
from .confirms import Confirms

__all__ = ["AsyncConfirms"]

logger = logging.getLogger(__name__)

#: when a publish's wait for its confirm ends: (deadline, timeout, exchange, routing key)
_Expiry = tuple[float, float, str, str]


class AsyncConfirms:
    """Confirm mode of a channel: with ``wait_each`` every publish awaits its confirm
    (``confirm_publish``); otherwise publishes are only tracked (``track_confirms``): a
    count waits for them (:meth:`settle`) and a refusal is logged."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        wait_each: bool,
        timeout: float,
        translate: Callable[[BaseException], BaseException],
        channel_id: int,
    ) -> None:
        self.loop = loop
        self.wait_each = wait_each
        self.timeout = timeout
        self.translate = translate
        self.channel_id = channel_id
        self.confirms = Confirms()
        #: (first, last, future, expiry) in order: a publish's, with its expiry (deadline,
        #: timeout, exchange, routing key), or a settle's (every publish up to ``last``),
        #: with None
        self.waiters: deque[tuple[int, int, asyncio.Future[Any], _Expiry | None]] = deque()
        #: one timer for every publish's wait: at the earliest deadline still to come
        self._timer: asyncio.TimerHandle | None = None
        #: a mandatory message returned with no handler: raised by the confirm that follows
        self.returned: MessageReturned | None = None

    def sent(self, count: int, exchange: str, routing_key: str, options: Mapping[str, Any]) -> Any:
        """``count`` messages were written: the awaitable of their confirm.

        With ``wait_each`` it is the future itself: a cancelled publish cancels it, and its
        confirm, when it comes, finds it done and is dropped (nothing waits to be told).
        """
        if not self.wait_each:
            self.confirms.sent(count)
            return Ready(None)
        if count == 1:
            first = last = self.confirms.sent_one()
        else:
            first, last = self.confirms.sent(count)
        future = self.loop.create_future()
        timeout = options.get("confirm_timeout") or self.timeout
        deadline = self.loop.time() + timeout
        self.waiters.append((first, last, future, (deadline, timeout, exchange, routing_key)))
        timer = self._timer
        if timer is None or deadline < timer.when():
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._expire, deadline)
        return future

    def _expire(self, when: float) -> None:
        """The timer: fail the publishes whose deadline passed, wake up for the next one."""
        self._timer = None
        now = max(self.loop.time(), when)
        upcoming: float | None = None
        for _, _, future, expiry in self.waiters:
            if expiry is None or future.done():
                continue
            deadline, timeout, exchange, routing_key = expiry
            if deadline <= now:
                future.set_exception(self._expired(timeout, exchange, routing_key))
            elif upcoming is None or deadline < upcoming:
                upcoming = deadline
        if upcoming is not None:
            self._timer = self.loop.call_at(upcoming, self._expire, upcoming)

    def _expired(self, timeout: float, exchange: str, routing_key: str) -> BaseException:
        return self.translate(
            socket.timeout(
                f"the broker did not confirm a publish to exchange {exchange!r} with routing key "
                f"{routing_key!r} within {timeout:g} s (confirm_timeout); it may or may not have been stored"
            )
        )

    @property
    def unsettled(self) -> bool:
        """True while a publish waits for its confirm."""
        return bool(self.confirms.pending)

    def settled(self) -> asyncio.Future[Any]:
        """The future of the confirms of every publish made so far."""
        future = self.loop.create_future()
        if not self.confirms.pending:
            future.set_result(None)
        else:
            self.waiters.append((1, self.confirms.next_seq - 1, future, None))
        return future

    async def settle(self) -> None:
        """Wait (at most the confirm timeout) until the broker confirmed earlier publishes."""
        timeout = self.timeout
        await bounded(
            asyncio.shield(self.settled()),
            timeout,
            lambda: self.translate(socket.timeout(f"publishes not confirmed within {timeout:g} s")),
        )

    def resolve(self, delivery_tag: int, multiple: bool, ok: bool) -> None:
        """A ``basic.ack`` (``ok``) or ``basic.nack`` from the broker."""
        confirms = self.confirms
        confirms.resolve(delivery_tag, multiple, ok)
        waiters = self.waiters
        while waiters and confirms.settled(waiters[0][1], waiters[0][0]):
            first, last, future, expiry = waiters.popleft()
            if expiry is None:
                if not future.done():
                    future.set_result(None)
                continue
            nacked = confirms.take_nacked(first, last)
            returned, self.returned = self.returned, None
            if future.done():
                continue
            if returned is not None:
                future.set_exception(returned)
            elif nacked:
                count = last - first + 1
                future.set_exception(
                    MessageNacked(f"the broker refused {len(nacked)} of {count} message(s) (basic.nack)")
                )
            else:
                future.set_result(None)
        if not ok and not self.wait_each:
            refused = confirms.take_all_nacked()
            if refused:
                # nobody waits for these confirms: the log is the only place the loss can show
                logger.error(
                    "the broker refused %d message(s) published on channel %s (basic.nack): they were not "
                    "stored; transport_options={'confirm_publish': True} raises MessageNacked at publish time",
                    refused,
                    self.channel_id,
                )

    def fail(self, error: BaseException) -> None:
        """The channel is gone: every wait fails with ``error``."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiters, self.waiters = self.waiters, deque()
        for _, _, future, _ in waiters:
            if not future.done():
                future.set_exception(error)
