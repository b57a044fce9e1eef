"""The command connection of a Redis store: its socket, its lock and its pending-ack ledger.

Publishes, acks, declarations, bindings and restores all go through one
:class:`CommandConnection`, shared by the threads of one :class:`~kombu_like.Connection`.
The helpers of the store (:mod:`.bindings`, :mod:`.taking`, :mod:`.recovery`,
:mod:`.fanout`, :mod:`.cache`) receive this object, the key layout and the options --
never the store itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from redis import exceptions as rexc

from ...exceptions import VersionMismatch
from . import scripts
from .codec import check, dumps, loads_plain
from .keys import KeyLayout, clamp_priority
from .options import RedisOptions
from .wire import Wire

__all__ = ["MAX_DEFERRED_REPLIES", "MIN_REDIS_VERSION", "CommandConnection", "Ledger", "server_version"]

logger = logging.getLogger("kombu_like.transport.redis")

#: the oldest Redis whose commands the transport uses
MIN_REDIS_VERSION = (6, 2)
#: acknowledgements written but whose replies are not read yet, before we read them
MAX_DEFERRED_REPLIES = 2048

Call = tuple[scripts.Script, Sequence[Any], Sequence[Any]]


def server_version(info: Any) -> tuple[int, ...] | None:
    """The ``redis_version`` of an ``INFO server`` reply, when it can be read."""
    if not isinstance(info, bytes):
        return None
    for line in info.splitlines():
        if line.startswith(b"redis_version:"):
            try:
                return tuple(int(part) for part in line.split(b":", 1)[1].strip().split(b".")[:2])
            except ValueError:
                return None
    return None


class Ledger:
    """Recovery work that must outlive one connection: acks whose fate is unknown and
    takes whose reply was lost.  A transport hands the same ledger to each store it makes,
    so whatever a broken store could not finish, its successor does."""

    def __init__(self) -> None:
        self.acks: list[str] = []
        self.takes: list[float] = []


class CommandConnection:
    """One store's command connection, owning the socket, the lock and the ledger.

    **The locking rule.**  Every method takes the lock itself (a private
    :class:`threading.RLock`) for as long as it uses the socket, the deferred ack replies
    or the :class:`Ledger`; no caller ever takes it.  One method call is one unit: the
    commands it sends are written and their replies read with no other thread's commands
    in between, and whatever the ledger owes (acks, interrupted takes) is settled before
    its commands go out.  Nothing here calls back into the helpers, so a helper that
    holds a lock of its own (the bindings and their cache, the pub/sub listener) may call
    these methods: the order is always the helper's lock, then this one.  Two calls in a
    row are not atomic together; what must be atomic is one script.  The one exception is
    :meth:`disconnect`, which closes the socket without waiting for the lock, so dropping
    a failed-over server's connection never waits behind a command stuck on it.
    """

    def __init__(
        self,
        connection_factory: Callable[[], Any],
        keys: KeyLayout,
        options: RedisOptions,
        ledger: Ledger | None = None,
    ) -> None:
        self.keys = keys
        self.options = options
        self._lock = threading.RLock()
        self.wire = Wire(
            connection_factory,
            "command",
            options.socket_timeout,
            options.health_check_interval,
            self._on_connect,
            reply_spin=options.reply_spin,
            parser=options.reply_parser,
        )
        self.ledger = ledger if ledger is not None else Ledger()

    # -- the connection ----------------------------------------------------------------
    def _on_connect(self, wire: Wire) -> None:
        # load the scripts once per server session so EVALSHA never misses on the hot path
        info, *replies = wire.execute([("INFO", "server"), *(("SCRIPT", "LOAD", s.source) for s in scripts.ALL)])
        check(replies, "loading the transport's Lua scripts")
        version = server_version(info)
        if version is not None and version < MIN_REDIS_VERSION:
            raise VersionMismatch(
                f"Redis {'.'.join(map(str, version))} is too old for this transport: it needs Redis "
                f"{'.'.join(map(str, MIN_REDIS_VERSION))} or later (RPOP with a count, ZADD GT)"
            )

    def open(self) -> None:
        """Connect now and check the server answers."""
        with self._lock:
            self.wire.connect()
            self.wire.call("PING")

    @property
    def generation(self) -> int:
        """Changes whenever the socket is replaced."""
        return self.wire.generation

    def disconnect(self) -> None:
        """Close the socket without waiting for the lock; the next command reconnects."""
        self.wire.disconnect()

    @property
    def owes(self) -> bool:
        """Whether the ledger holds acks or takes to settle (a hint: read without the lock)."""
        ledger = self.ledger
        return bool(ledger.acks or ledger.takes)

    # -- commands --------------------------------------------------------------------
    def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Run ``commands`` in one round trip; error replies come back in their place."""
        with self._lock:
            if self.ledger.acks or self.ledger.takes:
                self._recover()
            return self.wire.execute(commands)

    def execute_counts(self, data: bytes, count: int) -> list[Any] | None:
        """Send ``count`` encoded commands whose replies are integers (publishes); the
        replies, or None when every one was a plain integer."""
        with self._lock:
            if self.ledger.acks or self.ledger.takes:
                self._recover()
            return self.wire.execute_counts(data, count)

    def call(self, *args: Any) -> Any:
        """Run one command and return its reply (raising an error reply)."""
        with self._lock:
            return self.wire.call(*args)

    def run(self, script: scripts.Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run one Lua script and return its reply (raising an error reply)."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        with self._lock:
            [reply] = self.execute([command])
            if isinstance(reply, rexc.NoScriptError):
                # SCRIPT FLUSH since we connected: load it again and retry once
                self.wire.call("SCRIPT", "LOAD", script.source)
                [reply] = self.wire.execute([command])
        if isinstance(reply, Exception):
            raise reply
        return reply

    def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Run several scripts in one round trip; error replies come back in their place."""
        commands = [("EVALSHA", script.sha, len(keys), *keys, *args) for script, keys, args in calls]
        with self._lock:
            replies = self.execute(commands)
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, rexc.NoScriptError)]
            if missing:
                for script in scripts.ALL:
                    self.wire.call("SCRIPT", "LOAD", script.source)
                for i, reply in zip(missing, self.wire.execute([commands[i] for i in missing]), strict=True):
                    replies[i] = reply
        return replies

    def track(self, redirect: Any, prefixes: Sequence[str]) -> int:
        """Turn on broadcast client tracking of ``prefixes``, invalidations sent to client
        ``redirect``; the :attr:`generation` it holds for (raising an error reply)."""
        args: list[Any] = []
        for prefix in prefixes:
            args += ["PREFIX", prefix]
        with self._lock:
            self.wire.connect()
            _, on = self.wire.execute(
                [("CLIENT", "TRACKING", "OFF"), ("CLIENT", "TRACKING", "ON", "REDIRECT", redirect, "BCAST", *args)]
            )
            if isinstance(on, Exception):
                raise on
            return self.wire.generation

    # -- acknowledgements and the ledger -----------------------------------------------
    def ack(self, tags: list[str]) -> None:
        """Remove ``tags`` from the unacked store; the replies are read with a later command.

        Tags that cannot be written now stay owed in the ledger.
        """
        with self._lock:
            ledger = self.ledger
            if ledger.acks:
                tags = ledger.acks + tags
                ledger.acks.clear()
            commands = [("ZREM", self.keys.unacked_index, *tags), ("HDEL", self.keys.unacked, *tags)]
            try:
                self.wire.send_deferred(commands, lambda: ledger.acks.extend(tags))
            except (rexc.ConnectionError, rexc.TimeoutError):
                # not written: keep them for the next command, which fails or carries them
                ledger.acks.extend(tags)
                logger.warning("could not send %d acknowledgement(s) to Redis; will retry", len(tags))
                return
            if self.wire.deferred_replies > MAX_DEFERRED_REPLIES:
                self.wire.read_deferred()

    def owe_acks(self, tags: list[str]) -> None:
        """Note acks that could not be written, for the next command to carry."""
        with self._lock:
            self.ledger.acks.extend(tags)

    def lost_take(self, score: float) -> None:
        """Note a take whose reply was lost: its messages, found by ``score`` in the
        unacked index, are given back before the next command."""
        with self._lock:
            self.ledger.takes.append(score)

    def recover(self) -> None:
        """Resend acks whose fate is unknown and give back takes whose reply was lost."""
        with self._lock:
            if self.ledger.acks or self.ledger.takes:
                self._recover()

    def settle(self) -> bool:
        """Settle the ledger and read every deferred reply; whether nothing is owed now."""
        with self._lock:
            if self.ledger.acks or self.ledger.takes or self.wire.deferred_replies:
                self._recover()
                self.wire.read_deferred()
            # replies lost by read_deferred came back to the ledger: the caller goes again
            return not (self.ledger.acks or self.ledger.takes)

    def _recover(self) -> None:
        ledger = self.ledger
        if ledger.acks:
            tags = ledger.acks[:]
            ledger.acks.clear()
            try:
                self.wire.send_deferred(
                    [("ZREM", self.keys.unacked_index, *tags), ("HDEL", self.keys.unacked, *tags)],
                    lambda: ledger.acks.extend(tags),
                )
            except BaseException:
                # not written: they stay owed
                ledger.acks.extend(tags)
                raise
        if ledger.takes:
            scores = ledger.takes[:]
            ledger.takes.clear()
            try:
                for score in scores:
                    self._give_back_take(score)
            except BaseException:
                ledger.takes += scores
                raise

    def _give_back_take(self, score: float) -> None:
        """Put back the messages of a take whose reply never arrived (found by its score)."""
        keys = self.keys
        wire = self.wire
        tags = wire.call("ZRANGE", keys.unacked_index, repr(score), repr(score), "BYSCORE")
        if not tags:
            return
        values = wire.call("HMGET", keys.unacked, *tags)
        calls: list[Call] = []
        for tag, value in zip(tags, values, strict=True):
            if value is None:
                continue
            try:
                payload, _, queue = loads_plain(value)
            except Exception:  # noqa: S112 - the sweep deals with it after visibility_timeout
                continue
            priority = clamp_priority((payload.get("properties") or {}).get("priority"))
            key = keys.list_key(queue, priority)
            calls.append((scripts.RESTORE, [keys.unacked, keys.unacked_index, key], [tag, dumps(payload), "head", "1"]))
        if calls:
            commands = [("EVALSHA", s.sha, len(k), *k, *a) for s, k, a in reversed(calls)]
            check(wire.execute(commands), "giving back messages of an interrupted take")
            logger.info("gave back %d message(s) whose delivery was interrupted by a lost connection", len(calls))
