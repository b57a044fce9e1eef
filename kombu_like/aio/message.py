"""A received message whose acknowledgements are awaited."""

from __future__ import annotations

import logging
from typing import Any

from ..message import Message as BaseMessage

__all__ = ["Message"]


async def flushed(channel: Any) -> None:
    """Wait until what ``channel`` wrote can be followed by more (the transport's write
    buffer is below its limit); at once on transports without one."""
    wait = getattr(channel, "flushed", None)
    if wait is not None:
        await wait()


class Message(BaseMessage):
    """:class:`kombu_like.message.Message` with awaitable ``ack``, ``reject`` and ``requeue``.

    The state checks and the write are those of the blocking API and happen before the
    first suspension: once ``await message.ack()`` has started, the ack is sent whole, even
    if the awaiting task is cancelled; awaiting only waits for room in the write buffer.
    """

    async def ack(self, multiple: bool = False) -> None:  # type: ignore[override]
        """Acknowledge the message: the broker may now forget it."""
        BaseMessage.ack(self, multiple=multiple)
        await flushed(self.channel)

    async def reject(self, requeue: bool = False) -> None:  # type: ignore[override]
        """Reject the message; with ``requeue`` it goes back to its queue."""
        BaseMessage.reject(self, requeue=requeue)
        await flushed(self.channel)

    async def requeue(self) -> None:  # type: ignore[override]
        """Reject the message and put it back on its queue for redelivery."""
        BaseMessage.requeue(self)
        await flushed(self.channel)

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
