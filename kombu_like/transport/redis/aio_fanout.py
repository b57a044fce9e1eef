"""Fanout on the asyncio loop: the blocking listener's bookkeeping, its connection the loop's.

Which patterns a connection subscribes to, and the copy each consumed queue gets of a
published message, are :class:`~.fanout.FanoutListener`'s; only the pub/sub connection is
an :class:`~.aio_wire.AsyncWire`, whose messages the loop collects and whose
subscriptions follow the consumers from a task.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from redis import exceptions as rexc

from .aio_wire import AsyncWire
from .fanout import FanoutListener
from .resp import pack_commands

if TYPE_CHECKING:
    from .aio_store import AsyncRedisStore

__all__ = ["AsyncFanout", "retrieved"]

logger = logging.getLogger("kombu_like.transport.redis")


class AsyncFanout(FanoutListener):
    """The pub/sub subscriptions of an :class:`AsyncRedisStore`: the blocking listener's
    bookkeeping (which patterns, copies per queue), its connection an :class:`AsyncWire`
    whose messages the loop collects."""

    def __init__(self, blocking: FanoutListener, store: AsyncRedisStore) -> None:
        # the blocking listener's state, taken over (it never connected)
        self.__dict__.update(blocking.__dict__)
        self.store = store
        self.awire = AsyncWire(
            store.endpoint,
            "pub/sub",
            self._subscribe_all,
            self._received,
            store.options.reply_parser,
            pubsub=True,
            on_lost=self._lost,
        )
        self._syncing: asyncio.Future[None] | None = None

    @property
    def active(self) -> bool:
        return bool(self.patterns) and self.awire.connected

    def has_pending(self) -> bool:
        return bool(self._early)

    def _received(self, message: Any) -> None:
        if isinstance(message, list) and message and message[0] == b"pmessage":
            self._early.append(message)
            self.store.wake()

    def _lost(self, exc: BaseException) -> None:
        # raised by the connection's next wait; subscribed again at once (messages
        # published meanwhile are missed, as pub/sub misses them for any client)
        self.store.on_error(exc)
        if self.patterns:
            self._syncing = asyncio.ensure_future(self.awire.connect())
            self._syncing.add_done_callback(retrieved)

    async def _subscribe_all(self, wire: AsyncWire) -> None:
        if self.patterns:
            await wire.execute_packed(pack_commands([("PSUBSCRIBE", *self.patterns)]), len(self.patterns))

    def sync(self, queues: Any) -> None:
        """Follow the consumed ``queues`` (subscribing runs on the loop: see :meth:`synced`)."""
        added, removed = self.follow(queues)
        if added or removed:
            self._syncing = asyncio.ensure_future(self._resubscribe(added, removed))
            self._syncing.add_done_callback(retrieved)

    async def synced(self) -> None:
        """Wait for the subscriptions :meth:`sync` started."""
        syncing = self._syncing
        if syncing is not None:
            try:
                await asyncio.shield(syncing)
            finally:
                if self._syncing is syncing and syncing.done():
                    self._syncing = None

    async def _resubscribe(self, added: list[str], removed: list[str]) -> None:
        wire = self.awire
        if not self.patterns:
            wire.disconnect()
            return
        if not wire.connected:
            await wire.connect()  # subscribes to everything wanted
            return
        try:
            if removed:
                await wire.execute_packed(pack_commands([("PUNSUBSCRIBE", *removed)]), len(removed))
            if added:
                await wire.execute_packed(pack_commands([("PSUBSCRIBE", *added)]), len(added))
        except rexc.RedisError:
            wire.disconnect()
            if added:
                raise

    def take_early(self, numbers: dict[bytes, int], max_count: int) -> tuple[list[tuple[int, bytes]], list[Any]]:
        """Messages received, as copies for the take script, and writes to make first."""
        messages, self._early = self._early[:max_count], self._early[max_count:]
        return self.copies(messages, numbers)

    def check_health(self) -> None:
        """A lost pub/sub connection is reconnected by the next maintenance."""

    def close(self) -> None:
        self.awire.disconnect()


def retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.debug("background Redis work failed: %r", future.exception())
