"""Waiting for messages on a Redis Cluster: one watch connection per slot watched.

A command may name keys of one slot only on a cluster, even when two slots are on one
master, and a connection carries one blocking ``XREAD`` at a time: a wait on several
queues is split by slot, and each part waits on a connection of its own to the master
that serves that slot (a :class:`~.watch.Watcher` each, made with
:func:`~kombu_like.transport.redis.compat.dedicated_node_connection`; its ``CLIENT
UNBLOCK`` goes to the same master, since client ids are per node).  All of a queue's
streams share its slot, so a consumer of ``n`` queues holds at most ``n`` of them.

The blocking API waits on every part's socket at once (``select``); under an event loop
the sockets of every part are the store's event descriptors.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Sequence
from typing import Any

from ..redis.compat import dedicated_node_connection
from .watch import Watcher

__all__ = ["ClusterWatcher"]


class _Part:
    """The streams of one slot, the master serving it, and their ids."""

    __slots__ = ("ids", "node", "slot", "streams")

    def __init__(self, slot: int, node: Any) -> None:
        self.slot = slot
        self.node = node
        self.streams: list[str] = []
        self.ids: list[str] = []


def _no_unblock(client_id: int) -> None:
    """The standby connection never waits: nothing to unblock."""


class ClusterWatcher:
    """The watcher of a store on a Redis Cluster (``cluster``: redis-py's cluster client);
    the same methods as :class:`~.watch.Watcher`."""

    def __init__(self, cluster: Any, block_ms: int) -> None:
        self.cluster = cluster
        self.block_ms = block_ms
        #: slot -> (name of the master it was made for, its watcher)
        self._watchers: dict[int, tuple[str, Watcher]] = {}
        #: the sockets last handed to an event loop, and whose they are
        self._by_socket: dict[Any, Watcher] = {}
        #: a connection that waits for nothing, to the cluster's default node: the event
        #: descriptor before any slot is watched (a store under a loop always names one)
        self._standby: Watcher | None = None
        #: handed to every slot's watcher (see :class:`~.watch.Watcher`)
        self.on_reply: Callable[[Any], None] | None = None
        self.on_connect: Callable[[], None] | None = None

    def _watcher(self, part: _Part) -> Watcher:
        known = self._watchers.get(part.slot)
        if known is not None:
            if known[0] == part.node.name:
                return known[1]
            known[1].close()  # the slot moved to another master (a failover)
        cluster, node = self.cluster, part.node

        def unblock(client_id: int) -> Any:
            return cluster.get_redis_connection(node).execute_command("CLIENT", "UNBLOCK", client_id)

        watcher = Watcher(lambda: dedicated_node_connection(cluster, node), unblock, self.block_ms)
        watcher.on_reply = self.on_reply
        watcher.on_connect = self.on_connect
        self._watchers[part.slot] = (node.name, watcher)
        return watcher

    def _split(self, streams: Sequence[str], ids: Sequence[str]) -> list[_Part]:
        """``streams`` and their ids grouped by slot, with the master serving each now."""
        parts: dict[int, _Part] = {}
        for stream, entry_id in zip(streams, ids, strict=True):
            slot = int(self.cluster.keyslot(stream))
            part = parts.get(slot)
            if part is None:
                part = parts[slot] = _Part(slot, self.cluster.get_node_from_key(stream))
            part.streams.append(stream)
            part.ids.append(entry_id)
        return list(parts.values())

    # -- the blocking API ------------------------------------------------------------------
    def wait(self, streams: Sequence[str], ids: Sequence[str], timeout: float) -> bool:
        """Wait up to ``timeout`` seconds (at most one block interval) for an entry not
        delivered yet in ``streams``, on every slot they are in; True when one came."""
        parts = self._split(streams, ids)
        if len(parts) == 1:
            part = parts[0]
            return self._watcher(part).wait(part.streams, part.ids, timeout)
        armed: dict[Any, Watcher] = {}
        try:
            for part in parts:
                watcher = self._watcher(part)
                watcher.arm(part.streams, part.ids)
                armed[watcher.socket()] = watcher
            limit = max(0.0, min(timeout, self.block_ms / 1000))
            readable, _, _ = select.select(list(armed), [], [], limit)
            for sock in readable:
                armed[sock].on_readable()
            return bool(readable)
        finally:
            for watcher in armed.values():
                watcher.cancel()  # nothing to do for those that answered

    # -- under an event loop ---------------------------------------------------------------
    @property
    def waiting(self) -> bool:
        """A slot's wait was sent under an event loop and not answered yet."""
        return any(watcher.waiting for _, watcher in self._watchers.values())

    def sockets(self) -> list[Any]:
        """The sockets of the slots' watch connections (none for a lost one, until its
        next wait connects again)."""
        by_socket = {}
        watchers = [watcher for _, watcher in self._watchers.values()]
        if watchers and self._standby is not None:
            self._standby.close()
            self._standby = None
        elif not watchers:
            if self._standby is None:
                node = self.cluster.get_default_node()
                connect = lambda: dedicated_node_connection(self.cluster, node)  # noqa: E731
                self._standby = Watcher(connect, _no_unblock, self.block_ms)
            watchers = [self._standby]
        for watcher in watchers:
            sock = watcher.socket()
            if sock is not None:
                by_socket[sock] = watcher
        self._by_socket = by_socket
        return list(by_socket)

    def arm(self, streams: Sequence[str], ids: Sequence[str]) -> None:
        """Send the wait for ``streams``, one per slot; the slots no longer wanted stop
        waiting."""
        wanted: set[int] = set()
        for part in self._split(streams, ids):
            self._watcher(part).arm(part.streams, part.ids)
            wanted.add(part.slot)
        for slot, (_, watcher) in self._watchers.items():
            if slot not in wanted:
                watcher.cancel()

    def on_readable(self, fd: Any = None) -> bool:
        """Read the reply on the watch socket ``fd`` (a number or the socket); True."""
        for sock, watcher in list(self._by_socket.items()):
            if fd is sock or fd == sock.fileno():
                return watcher.on_readable()
        return True

    def cancel(self) -> None:
        for _, watcher in self._watchers.values():
            watcher.cancel()

    def close(self) -> None:
        for _, watcher in self._watchers.values():
            watcher.close()
        if self._standby is not None:
            self._standby.close()
            self._standby = None
        self._watchers.clear()
        self._by_socket.clear()
