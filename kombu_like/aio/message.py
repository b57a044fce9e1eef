"""A received message whose acknowledgements are awaited."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from ..message import Message as BaseMessage

__all__ = ["Message", "backlog"]


def backlog(channel: Any) -> Awaitable[None] | None:
    """What to await before writing more on ``channel`` (its transport's write buffer is
    over its limit), or ``None`` -- at once on transports without one, and whenever the
    buffer has room: a coroutine per ack or publish would cost more than the write."""
    full = getattr(channel, "backlog", None)
    return None if full is None else full()  # type: ignore[no-any-return]


class Message(BaseMessage):
    """:class:`kombu_like.message.Message` with awaitable ``ack``, ``reject`` and ``requeue``.

    The state checks and the write are those of the blocking API and happen before the
    first suspension: once ``await message.ack()`` has started, the ack is sent whole, even
    if the awaiting task is cancelled; awaiting only waits for room in the write buffer.
    """

    async def ack(self, multiple: bool = False) -> None:  # type: ignore[override]
        """Acknowledge the message: the broker may now forget it."""
        BaseMessage.ack(self, multiple=multiple)
        full = self.channel.backlog  # every asyncio channel has it: None without a buffer
        if full is not None:
            wait = full()
            if wait is not None:
                await wait

    async def reject(self, requeue: bool = False) -> None:  # type: ignore[override]
        """Reject the message; with ``requeue`` it goes back to its queue."""
        BaseMessage.reject(self, requeue=requeue)
        wait = backlog(self.channel)
        if wait is not None:
            await wait

    async def requeue(self) -> None:  # type: ignore[override]
        """Reject the message and put it back on its queue for redelivery."""
        BaseMessage.requeue(self)
        wait = backlog(self.channel)
        if wait is not None:
            await wait

    async def ack_log_error(  # type: ignore[override]
        self, logger: logging.Logger, errors: tuple[type[BaseException], ...], multiple: bool = False
    ) -> None:
        """Acknowledge, logging (instead of raising) any of ``errors``."""
        try:
            await self.ack(multiple=multiple)
        except errors:
            logger.critical("Couldn't ack %r", self.delivery_tag, exc_info=True)

    async def reject_log_error(  # type: ignore[override]
        self, logger: logging.Logger, errors: tuple[type[BaseException], ...], requeue: bool = False
    ) -> None:
        """Reject, logging (instead of raising) any of ``errors``."""
        try:
            await self.reject(requeue=requeue)
        except errors:
            logger.critical("Couldn't reject %r", self.delivery_tag, exc_info=True)
