"""The Redis queue store: Kombu's data layout, atomic takes, pipelined acks.

Connections (each a :class:`~.wire.Wire`):

* *command* (:class:`~.command.CommandConnection`): publishes, acks, declarations --
  shared by the threads of one :class:`~kombu_like.Connection`; it owns the lock (its
  docstring says the rule) and the ledger of acks and takes still to settle;
* *take* (:mod:`.taking`): the take script, and the wait on empty queues (RESP3 with
  client tracking: Redis says when a watched list changes; nothing is popped while
  waiting);
* *pub/sub* (:mod:`.fanout`): fanout subscriptions, when a consumed queue is bound to a
  fanout exchange;
* *invalidation* (:mod:`.cache`): client-side caching invalidations.

A take is one script (:data:`.scripts.FETCH`) that pops messages and records them in the
unacked hash in the same step.  Acks made while a batch is dispatched are written in one
go at its end, others at once; their replies are read with the next command, so
acknowledging costs no round trip of its own.  Giving messages back lives in
:mod:`.recovery`, exchanges and bindings in :mod:`.bindings`.  Each helper receives the
command connection, the key layout and the options -- not the store.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis import exceptions as rexc

from ...exceptions import PreconditionFailed
from ..base import Capabilities
from ..virtual.store import Delivery, PlainShape, QueueStore
from . import scripts
from .bindings import Bindings
from .codec import PlainTemplates, check, dumps, loads, text
from .command import Ack, CommandConnection, Ledger, log_unsettled, scripts_conversation
from .conversation import Conversation, call, exchange
from .fanout import FanoutListener
from .keys import KeyLayout, clamp_priority
from .looping import LoopHooks
from .options import RedisOptions
from .recovery import Restorer, mark_redelivered
from .replicas import check_replicated, wait_packed
from .resp import command_head, pack_commands, with_bulk
from .taking import Taker

__all__ = ["Ledger", "RedisStore"]

logger = logging.getLogger("kombu_like.transport.redis")


#: acks collected during one dispatch are written early once this many wait ...
ACK_BATCH_SIZE = 256
#: ... or once the first of them waited this long (seconds)
ACK_BATCH_DELAY = 0.5


class _AckBatch(threading.local):
    pending: list[Ack] | None = None
    since = 0.0


class RedisStore(QueueStore):
    """Queues, bindings and unacked messages in Redis, laid out as Kombu lays them out."""

    body_encoding = "base64"

    def __init__(
        self,
        options: RedisOptions,
        connection_factory: Callable[[], Any],
        db: int,
        translate: Callable[[BaseException], BaseException],
        capabilities: Capabilities,
        on_close: Callable[[], None] | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.options = options
        self.connection_factory = connection_factory
        self.translate = translate
        self.capabilities = capabilities
        self._on_close = on_close
        self.keys = KeyLayout(
            prefix=options.global_keyprefix,
            sep=options.sep,
            priority_steps=options.priority_steps,
            unacked=options.unacked_key,
            unacked_index=options.unacked_index_key,
            fanout_prefix=options.fanout_prefix_for(db),
            deadletter_prefix=options.deadletter_prefix,
            lowest_priority_first=options.priority_order == "kombu",
            cluster=options.key_layout == "cluster",
        )
        # the ledger (acks whose fate is unknown, takes whose reply was lost) is shared
        # with the stores the transport makes after this one
        self.cmd = CommandConnection(connection_factory, self.keys, options, ledger)
        self.ledger = self.cmd.ledger
        #: queue -> x-expires (ms) of queues declared through this store
        self.expires: dict[str, int] = {}
        self.fanout = FanoutListener(connection_factory, self.cmd, self.keys, options)
        self.bindings: Bindings = Bindings(connection_factory, self.cmd, self.keys, options, self.expires, self.fanout)
        self.cache = self.bindings.cache
        self.restorer = Restorer(self.cmd, self.keys, options, self.bindings)
        self._acks = _AckBatch()
        self._lpush_prefixes: dict[tuple[str, Any], bytes] = {}
        self._plain = PlainTemplates(
            lambda queue: command_head(3, ("LPUSH", self.keys.list_key(queue, 0))), self.body_encoding
        )
        #: the WAIT that follows every publish (``wait_replicas``), encoded; empty: none
        self._wait = wait_packed(options.wait_replicas, options.wait_timeout) if options.wait_replicas else b""
        self.taker = Taker(
            connection_factory, self.cmd, self.keys, options, self.fanout, self.maintain, self.next_maintenance
        )
        self._next_sweep = 0.0
        self._next_refresh = 0.0
        self.closed = False
        self.loop = LoopHooks(self.taker, self.fanout, options, self.maintain)

    def connect(self) -> None:
        """Open the command connection now (``Connection.connect`` fails fast this way)."""
        self.cmd.open()

    # -- the command connection ----------------------------------------------------------
    def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Run ``commands`` in one round trip; error replies come back in their place."""
        return self.cmd.execute(commands)

    def run(self, script: scripts.Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run one Lua script and return its reply (raising an error reply)."""
        return self.cmd.run(script, keys, args)

    # -- queues --------------------------------------------------------------------------
    def declare_queue(self, queue: str, arguments: Mapping[str, Any] | None = None) -> None:
        self.cmd.converse(self.declare_queue_conversation(queue, arguments))

    def declare_queue_conversation(self, queue: str, arguments: Mapping[str, Any] | None) -> Conversation[None]:
        arguments = dict(arguments or {})
        expires = arguments.get("x-expires")
        if expires:
            self.expires[queue] = int(expires)
        else:
            self.expires.pop(queue, None)
        priority = arguments.get("x-max-priority")
        if priority and self.options.priority_order == "kombu":
            # the one place a user who expects RabbitMQ's order can be told before it bites
            warnings.warn(
                f"Redis queue {queue!r} has max priority {priority}: with priority_order='kombu' "
                f"(Kombu's order on Redis, the default) priority 0 is served first, the reverse of "
                f"RabbitMQ; set transport_options={{'priority_order': 'amqp'}} for the highest first",
                RuntimeWarning,
                stacklevel=2,
            )
        record = dumps({"x-max-priority": int(priority)} if priority else {})
        created, current = yield from exchange(
            [("HSETNX", self.keys.queues, queue, record), ("HGET", self.keys.queues, queue)]
        )
        check((created, current), f"declaring queue {queue!r}")
        if created or not priority or current is None:
            return
        try:
            existing = loads(current).get("x-max-priority")
        except (ValueError, AttributeError):
            existing = None
        if existing is not None and int(existing) != int(priority):
            raise PreconditionFailed(
                f"PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue {queue!r}: "
                f"received {priority} but current is {existing}"
            )

    def queue_exists(self, queue: str) -> bool:
        return self.cmd.converse(self.queue_exists_conversation(queue))

    def queue_exists_conversation(self, queue: str) -> Conversation[bool]:
        declared, exists = yield from exchange(
            [("HEXISTS", self.keys.queues, queue), ("EXISTS", *self.keys.list_keys(queue))]
        )
        check((declared, exists), f"looking up queue {queue!r}")
        return bool(declared or exists)

    def size(self, queue: str) -> int:
        return self.cmd.converse(self.size_conversation(queue))

    def size_conversation(self, queue: str) -> Conversation[int]:
        replies = yield from exchange([("LLEN", key) for key in self.keys.list_keys(queue)])
        check(replies, f"counting the messages of queue {queue!r}")
        return int(sum(replies))

    def purge(self, queue: str) -> int:
        return self.cmd.converse(self.purge_conversation(queue))

    def purge_conversation(self, queue: str) -> Conversation[int]:
        keys = self.keys.list_keys(queue)
        commands: list[tuple[Any, ...]] = [("MULTI",)]
        for key in keys:
            commands += [("LLEN", key), ("DEL", key)]
        commands.append(("EXEC",))
        replies = yield from exchange(commands)
        check(replies, f"purging queue {queue!r}")
        done = replies[-1] or []
        return int(sum(done[::2]))

    def delete_queue(self, queue: str) -> None:
        self.cmd.converse(self.delete_queue_conversation(queue))

    def delete_queue_conversation(self, queue: str) -> Conversation[None]:
        self.expires.pop(queue, None)
        self.fanout.unbound(queue)
        replies = yield from exchange([("DEL", *self.keys.list_keys(queue)), ("HDEL", self.keys.queues, queue)])
        check(replies, f"deleting queue {queue!r}")

    def list_queues(self) -> list[str]:
        names = self.cmd.converse(call("HKEYS", self.keys.queues))
        return sorted(text(name) for name in names)

    # -- publishing ------------------------------------------------------------------------
    def _lpush(self, queue: str, priority: Any, payload: dict[str, Any]) -> bytes:
        """The RESP bytes of the LPUSH that publishes ``payload`` (prefix cached per list)."""
        cache_key = (queue, priority)
        prefix = self._lpush_prefixes.get(cache_key)
        if prefix is None:
            prefix = command_head(3, ("LPUSH", self.keys.list_key(queue, priority)))
            if len(self._lpush_prefixes) > 10_000:
                self._lpush_prefixes.clear()
            self._lpush_prefixes[cache_key] = prefix
        data = dumps(payload).encode("utf-8")
        return with_bulk(prefix, data)

    def _expire_commands(self, queue: str) -> bytes:
        expires = self.expires.get(queue)
        if not expires:
            return b""
        return pack_commands([("PEXPIRE", key, expires) for key in self.keys.list_keys(queue)])

    def put(self, queue: str, payload: dict[str, Any], priority: int = 0) -> None:
        self._send_put(queue, *self.put_request(queue, payload, priority))

    def put_plain(self, queue: str, body: str, delivery_tag: str, shape: PlainShape) -> bool:
        """Publish a plain message (see :meth:`~..virtual.store.QueueStore.put_plain`): its
        LPUSH with the envelope filled in from a template of ``shape``."""
        data = self._plain.command(queue, body, delivery_tag, shape)
        if data is None:
            return False
        self._send_put(queue, *self._with_extras(queue, data))
        return True

    def _send_put(self, queue: str, data: bytes, count: int) -> None:
        if self._wait:  # WAIT's reply is a count to read, not only an integer
            self.put_checked(self.cmd.execute_packed(data, count), queue)
            return
        replies = self.cmd.execute_counts(data, count)
        if replies is not None:
            self.put_checked(replies, queue)

    def put_request(self, queue: str, payload: dict[str, Any], priority: int = 0) -> tuple[bytes, int]:
        """The commands of one publish to ``queue``, encoded, and how many they are."""
        return self._with_extras(queue, self._lpush(queue, priority, payload))

    def _with_extras(self, queue: str, data: bytes) -> tuple[bytes, int]:
        """A publish's LPUSH ``data`` followed by what goes with it (the queue's expiry
        renewed, ``WAIT``), and how many commands they are."""
        count = 1
        if self.expires and queue in self.expires:
            data += self._expire_commands(queue)
            count += len(self.keys.steps)
        if self._wait:
            data += self._wait
            count += 1
        return data, count

    def put_checked(self, replies: Sequence[Any], queue: str, where: str | None = None) -> None:
        """Raise the error reply among a publish's ``replies`` (or, with ``wait_replicas``,
        :class:`~kombu_like.exceptions.MessageNacked` when too few replicas of the server
        ``where`` -- the command connection's by default -- have it)."""
        what = f"publishing to queue {queue!r}"
        if self._wait:
            self._check_replicated(replies, what, where)
            return
        check(replies, what)

    def _check_replicated(self, replies: Sequence[Any], what: str, where: str | None) -> None:
        """``replies`` end with a WAIT's: the writes' errors first, then the replicas'."""
        check(replies[:-1], what)
        options = self.options
        server = self.cmd.server if where is None else where
        check_replicated(replies[-1], options.wait_replicas, options.wait_timeout, what, server)

    def put_many(self, items: Sequence[tuple[str, dict[str, Any], int]]) -> None:
        if not items:
            return
        data, owners = self.put_many_request(items)
        if self._wait:
            self.put_many_checked(self.cmd.execute_packed(data, len(owners)), owners, len(items))
            return
        replies = self.cmd.execute_counts(data, len(owners))
        if replies is not None:
            self.put_many_checked(replies, owners, len(items))

    def put_many_request(self, items: Sequence[tuple[str, dict[str, Any], int]]) -> tuple[bytes, list[str]]:
        """The commands publishing ``items``, encoded, and the queue each one is for.

        Everything is encoded before anything is sent: a message that cannot be encoded
        fails the whole batch, not half of it."""
        expiring = self.expires
        steps = len(self.keys.steps)
        parts: list[bytes] = []
        owners: list[str] = []
        for queue, payload, priority in items:
            parts.append(self._lpush(queue, priority, payload))
            owners.append(queue)
            if expiring and queue in expiring:
                parts.append(self._expire_commands(queue))
                owners += [queue] * steps
        if self._wait:  # one WAIT for the batch: it counts every write before it
            parts.append(self._wait)
            owners.append("")
        return b"".join(parts), owners

    def put_many_checked(
        self, replies: Sequence[Any], owners: Sequence[str], size: int, where: str | None = None
    ) -> None:
        """Raise the error replies among a batch's ``replies``, naming their queues (or,
        with ``wait_replicas``, :class:`~kombu_like.exceptions.MessageNacked`)."""
        failed = sorted({owners[i] for i, reply in enumerate(replies) if isinstance(reply, Exception)})
        what = f"publishing a batch of {size} messages"
        if self._wait:
            self._check_replicated(replies, f"{what} (failed for queue {', '.join(failed)})" if failed else what, where)
            return
        check(replies, f"{what} (failed for queue {', '.join(failed)})")

    def put_fanout(self, exchange: str, payload: dict[str, Any], routing_key: str) -> bool:
        if self.options.fanout_mode != "pubsub":
            return False
        self.cmd.converse(self.put_fanout_conversation(exchange, payload, routing_key))
        return True

    def put_fanout_conversation(
        self, exchange_name: str, payload: dict[str, Any], routing_key: str
    ) -> Conversation[None]:
        channel = self.keys.fanout_channel(exchange_name, routing_key, self.options.fanout_patterns)
        [reply] = yield from exchange([("PUBLISH", channel, dumps(payload))])
        check([reply], f"publishing to fanout exchange {exchange_name!r}")

    # -- taking (see .taking) ----------------------------------------------------------
    def get(self, queues: Sequence[str], timeout: float | None, max_count: int = 1) -> list[Delivery]:
        return self.taker.get(queues, timeout, max_count)

    # -- acknowledgement and redelivery --------------------------------------------------
    def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not self.options.ack_emulation:
            return
        tags = [(d.queue, d.receipt) for d in deliveries if d.receipt is not None]
        if not tags:
            return
        batch = self._acks.pending
        if batch is not None:
            # acked while a take is handed out: written together once it all was
            if not batch:
                self._acks.since = time.monotonic()
            batch += tags
            if len(batch) < ACK_BATCH_SIZE and time.monotonic() - self._acks.since < ACK_BATCH_DELAY:
                return
            tags = batch[:]
            batch.clear()
        self.cmd.ack(tags)

    def hold_acks(self) -> bool:
        """Collect the acks this thread makes from now on, until :meth:`write_held_acks`
        (or until :data:`ACK_BATCH_SIZE` of them, or :data:`ACK_BATCH_DELAY` after the
        first); False when they are collected already."""
        if self._acks.pending is not None:
            return False
        self._acks.pending = []
        return True

    def write_held_acks(self) -> None:
        """Write the acks this thread collected since :meth:`hold_acks`, in one go."""
        tags, self._acks.pending = self._acks.pending, None
        if tags:
            try:
                self.cmd.ack(tags)
            except rexc.RedisError:
                self.cmd.owe_acks(tags)
                logger.warning("could not send %d acknowledgement(s) to Redis; will retry", len(tags))

    def recover(self) -> None:
        """Resend acks whose fate is unknown and give back takes whose reply was lost."""
        self.cmd.recover()

    def requeue(self, deliveries: Sequence[Delivery], redelivered: bool = True) -> None:
        self.cmd.converse(self.requeue_conversation(deliveries, redelivered))

    def requeue_conversation(self, deliveries: Sequence[Delivery], redelivered: bool = True) -> Conversation[None]:
        calls = []
        record = "1" if self.options.ack_emulation else "0"
        # pushed at the consuming end in reverse, so the first delivered comes back first
        for delivery in reversed(deliveries):
            payload = mark_redelivered(delivery.payload) if redelivered else delivery.payload
            priority = clamp_priority((payload.get("properties") or {}).get("priority"))
            key = self.keys.list_key(delivery.queue, priority)
            keys = [self.keys.unacked_of(delivery.queue), self.keys.unacked_index_of(delivery.queue), key]
            calls.append((scripts.RESTORE, keys, [delivery.receipt or "", dumps(payload), "head", record]))
        if not calls:
            return
        try:
            replies = yield from scripts_conversation(calls)
        except (rexc.ConnectionError, rexc.TimeoutError):
            if not self.options.ack_emulation:
                raise
            # the connection was found cut (a channel closing after a lost connection):
            # once more on a new one -- each restore first checks the message is still
            # recorded, so one that went back before the cut is not put back twice
            replies = yield from scripts_conversation(calls)
        check(replies, f"returning {len(calls)} message(s) to their queues")

    # -- maintenance: visibility timeout, expiring queues, pub/sub health --------------
    def next_maintenance(self) -> float:
        due = self._next_sweep if self.options.ack_emulation else time.monotonic() + 3600
        due = min(due, self.fanout.next_check())
        if self.expires:
            due = min(due, self._next_refresh)
        return due

    def maintain(self, queues: Sequence[str]) -> None:
        if self.cmd.owes:
            self.cmd.recover()
        self.cmd.converse_in_steps(self.maintenance_conversation(queues), self.bindings.lock)
        if self.fanout.wanted:
            self.fanout.sync(self.fanout.consumed)
            self.fanout.check_health()

    def maintenance_conversation(self, queues: Sequence[str]) -> Conversation[None]:
        """The periodic work on the command connection that is due: the visibility-timeout
        sweep and keeping expiring queues alive (``queues``: those consumed)."""
        now = time.monotonic()
        if self.options.ack_emulation and now >= self._next_sweep:
            assert self.options.unacked_restore_interval is not None
            self._next_sweep = now + self.options.unacked_restore_interval
            yield from self.restorer.sweep_conversation(queues)
        if self.expires and now >= self._next_refresh:
            yield from self.refresh_expiring_conversation(queues)

    def refresh_expiring_conversation(self, queues: Sequence[str]) -> Conversation[None]:
        """Keep expiring queues and their binding tables alive while they are consumed."""
        longest = 0
        commands: list[tuple[Any, ...]] = []
        for queue in queues:
            expires = self.expires.get(queue)
            if not expires:
                continue
            longest = max(longest, expires)
            commands += yield from self.bindings.refresh_conversation(queue, expires)
            commands += [("PEXPIRE", key, expires) for key in self.keys.list_keys(queue)]
        # Kombu refreshes binding deadlines three times per lifetime; so do we
        self._next_refresh = time.monotonic() + (min(longest * 2, 3_600_000) / 3000 if longest else 60)
        if commands:
            check((yield from exchange(commands)), "refreshing expiring queues")

    def restore_visible(self) -> int:
        """Give back every message unacknowledged for longer than ``visibility_timeout``.

        Runs by itself every ``unacked_restore_interval`` seconds while consuming.  Each
        message is put back by one atomic script that first checks it is still recorded,
        so consumers sweeping at the same time (Kombu's included) never both restore it.
        """
        return self.restorer.sweep()

    def sync_fanout(self, queues: Sequence[str] | set[str]) -> None:
        """Subscribe to the fanout channels of the consumed ``queues`` (and no others), so
        a message published right after ``consume()`` returns reaches the consumer."""
        self.fanout.sync(queues)

    # -- driven by an event loop (see .looping) ------------------------------------------
    def event_fds(self) -> Sequence[Any]:
        return self.loop.event_fds()

    def watch(self, queues: Sequence[str]) -> bool:
        return self.loop.watch(queues)

    def on_readable(self, fd: int) -> bool:
        return self.loop.on_readable(fd)

    def periodic(self) -> Sequence[tuple[float, Callable[[], None]]]:
        return self.loop.periodic()

    def unwatch(self) -> None:
        self.loop.unwatch()

    def on_driver_error(self, exc: BaseException, queue: str | None = None) -> None:
        """After a failover the server is a replica: reconnect (through Sentinel if
        configured) instead of asking it again."""
        if isinstance(exc, rexc.ReadOnlyError) or (
            isinstance(exc, rexc.RedisError) and str(exc).startswith(("UNBLOCKED", "MASTERDOWN"))
        ):
            self.drop_connections()

    # -- closing ---------------------------------------------------------------------
    def drop_connections(self) -> None:
        """Disconnect every connection; the next command reconnects."""
        self.taker.wire.disconnect()
        self.fanout.wire.disconnect()
        self.cmd.disconnect()

    def close(self) -> None:
        """Deliver pending acknowledgements, then drop every connection.

        What cannot be delivered now stays in the transport's ledger for the next
        connection it makes.
        """
        if self.closed:
            return
        self.closed = True
        self.taker.evented = False
        try:
            for attempt in range(2):
                try:
                    if self.cmd.settle():
                        break
                except rexc.RedisError as exc:
                    if attempt:
                        log_unsettled(self.ledger, exc)
        finally:
            self.taker.wire.disconnect()
            self.cmd.disconnect()
            self.fanout.close()
            self.bindings.close()
            if self._on_close is not None:
                self._on_close()
