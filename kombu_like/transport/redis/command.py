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
from typing import TYPE_CHECKING, Any, TypeVar, cast

from redis import exceptions as rexc

from ...exceptions import IrrecoverableConnectionError, VersionMismatch
from . import scripts
from .codec import check, dumps, loads_plain
from .conversation import Conversation, call, defer, drive, exchange, perform
from .keys import KeyLayout, clamp_priority
from .options import RedisOptions
from .wire import Wire

if TYPE_CHECKING:
    from .cluster import ClusterWire

__all__ = [
    "MAX_DEFERRED_REPLIES",
    "Ack",
    "MIN_REDIS_VERSION",
    "CommandConnection",
    "SeveralMasters",
    "Ledger",
    "ack_conversation",
    "check_cluster",
    "connect_conversation",
    "evalsha_command",
    "recover_conversation",
    "reloading_conversation",
    "script_conversation",
    "scripts_conversation",
    "server_version",
    "start_tracking",
]

logger = logging.getLogger("kombu_like.transport.redis")

#: how many hash slots a Redis Cluster has
CLUSTER_SLOTS = 16384
#: the oldest Redis whose commands the transport uses
MIN_REDIS_VERSION = (6, 2)
#: acknowledgements written but whose replies are not read yet, before we read them
MAX_DEFERRED_REPLIES = 2048

Call = tuple[scripts.Script, Sequence[Any], Sequence[Any]]
#: an acknowledgement: the queue the message came from and its delivery tag
Ack = tuple[str, str]
_T = TypeVar("_T")


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
        self.acks: list[Ack] = []
        #: (score, a queue the take was from): the cluster layout finds it in that
        #: queue's unacked index
        self.takes: list[tuple[float, str]] = []


def log_unsettled(ledger: Ledger, exc: BaseException) -> None:
    """Say that closing a connection left ``ledger``'s acks and takes unsettled."""
    logger.warning(
        "could not confirm %d acknowledgement(s) and %d interrupted take(s) before closing (%s); "
        "the next connection retries them",
        len(ledger.acks),
        len(ledger.takes),
        exc,
    )


# -- the command connection's conversations (see .conversation), for both drivers --------
def connect_conversation(cluster_layout: bool = False, routed: bool = False) -> Conversation[None]:
    """Load the scripts once per server session (so EVALSHA never misses on the hot path)
    and check the server is recent enough -- and, on a Redis Cluster node, that the keys
    are laid out for a cluster (``cluster_layout``) and, unless the connection routes
    commands across masters (``routed``, :mod:`.cluster`), that one master serves every
    slot."""
    info, *replies = yield from exchange([("INFO", "server"), *(("SCRIPT", "LOAD", s.source) for s in scripts.ALL)])
    check(replies, "loading the transport's Lua scripts")
    version = server_version(info)
    if version is not None and version < MIN_REDIS_VERSION:
        raise VersionMismatch(
            f"Redis {'.'.join(map(str, version))} is too old for this transport: it needs Redis "
            f"{'.'.join(map(str, MIN_REDIS_VERSION))} or later (RPOP with a count, ZADD GT)"
        )
    if isinstance(info, bytes) and b"redis_mode:cluster" in info:
        slots = yield from call("CLUSTER", "SLOTS")
        check_cluster(slots, cluster_layout, routed)
    elif routed:
        raise IrrecoverableConnectionError(
            "this Redis is no Redis Cluster node, but the cluster option is on: turn it off for a single server"
        )


class SeveralMasters(IrrecoverableConnectionError):
    """A connection to one server met a Redis Cluster of several masters (the transport
    connects again, routing across them, when the key layout allows it)."""


def check_cluster(slots: Any, cluster_layout: bool, routed: bool = False) -> None:
    """Refuse a Redis Cluster node the transport cannot work with: Kombu's layout
    (scripts naming one global unacked hash) would be refused there, and a connection to
    one server, which follows no redirection, needs one master serving every slot."""
    masters = {(master[0], master[1]) for _, _, master, *_ in slots or ()}
    covered = sum(int(end) - int(start) + 1 for start, end, *_ in slots or ())
    if not routed and (len(masters) != 1 or covered != CLUSTER_SLOTS) and cluster_layout:
        raise SeveralMasters(
            f"this Redis is a node of a Redis Cluster whose {covered} assigned slots are served by "
            f"{len(masters)} masters: a connection to one server cannot use it; connect with the "
            "cluster option (transport_options={'cluster': True})"
        )
    if not cluster_layout:
        raise IrrecoverableConnectionError(
            "this Redis is a Redis Cluster node, which refuses commands whose keys span two slots "
            "as Kombu's key layout's do: set transport_options={'key_layout': 'cluster'} (a layout "
            "Kombu processes cannot share)"
            + (f"; its {covered} assigned slots are served by {len(masters)} masters" if len(masters) > 1 else "")
        )


def _evalsha(script: scripts.Script, keys: Sequence[Any], args: Sequence[Any]) -> tuple[Any, ...]:
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


def script_conversation(script: scripts.Script, keys: Sequence[Any], args: Sequence[Any]) -> Conversation[Any]:
    """Run one Lua script; its reply (an error reply raised)."""
    command = _evalsha(script, keys, args)
    [reply] = yield from exchange([command])
    if isinstance(reply, rexc.NoScriptError):
        # SCRIPT FLUSH since we connected: load it again and retry once
        yield from call("SCRIPT", "LOAD", script.source)
        [reply] = yield from exchange([command])
    if isinstance(reply, Exception):
        raise reply
    return reply


def scripts_conversation(calls: Sequence[Call]) -> Conversation[list[Any]]:
    """Run several scripts in one round trip; error replies come back in their place."""
    commands = [_evalsha(script, keys, args) for script, keys, args in calls]
    return (yield from reloading_conversation(commands, [script for script, _, _ in calls], scripts.ALL))


def evalsha_command(script: scripts.Script, keys: Sequence[Any], args: Sequence[Any]) -> tuple[Any, ...]:
    """The ``EVALSHA`` command running ``script`` on ``keys`` and ``args``."""
    return _evalsha(script, keys, args)


def reloading_conversation(
    commands: Sequence[Sequence[Any]],
    run_scripts: Sequence[scripts.Script | None],
    reload: Sequence[scripts.Script] | None = None,
) -> Conversation[list[Any]]:
    """Run ``commands`` in one round trip, error replies in their place; a command that
    runs a script (``run_scripts[i]``, None for the others) and meets ``NOSCRIPT`` (a
    ``SCRIPT FLUSH`` or a new server since we connected) is sent again once its script
    is loaded -- with ``reload`` (every script of a transport) loaded too when given."""
    replies = yield from exchange(commands)
    missing = [
        i for i, reply in enumerate(replies) if isinstance(reply, rexc.NoScriptError) and run_scripts[i] is not None
    ]
    if missing:
        wanted = {script for i in missing if (script := run_scripts[i]) is not None}
        for script in reload if reload is not None else ():
            wanted.discard(script)
            yield from call("SCRIPT", "LOAD", script.source)
        for script in sorted(wanted, key=lambda s: s.name):
            yield from call("SCRIPT", "LOAD", script.source)
        again = yield from exchange([commands[i] for i in missing])
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    return replies  # type: ignore[no-any-return]


def _ack_commands(keys: KeyLayout, acks: list[Ack]) -> list[tuple[Any, ...]]:
    if not keys.cluster:
        tags = [tag for _, tag in acks]
        return [("ZREM", keys.unacked_index, *tags), ("HDEL", keys.unacked, *tags)]
    # the cluster layout: each queue's deliveries are in its own unacked store
    by_queue: dict[str, list[str]] = {}
    for queue, tag in acks:
        by_queue.setdefault(queue, []).append(tag)
    commands: list[tuple[Any, ...]] = []
    for queue, tags in by_queue.items():
        commands += [("ZREM", keys.unacked_index_of(queue), *tags), ("HDEL", keys.unacked_of(queue), *tags)]
    return commands


def ack_conversation(ledger: Ledger, keys: KeyLayout, tags: list[Ack]) -> Conversation[bool]:
    """Write the removal of ``tags`` (and of the acks the ledger owes) from the unacked
    store, replies read later; False, the tags owed in the ledger, when not written."""
    if ledger.acks:
        tags = ledger.acks + tags
        ledger.acks.clear()
    try:
        yield from defer(_ack_commands(keys, tags), lambda: ledger.acks.extend(tags))
    except (rexc.ConnectionError, rexc.TimeoutError):
        # not written: keep them for the next command, which fails or carries them
        ledger.acks.extend(tags)
        logger.warning("could not send %d acknowledgement(s) to Redis; will retry", len(tags))
        return False
    return True


def recover_conversation(ledger: Ledger, keys: KeyLayout) -> Conversation[None]:
    """Resend acks whose fate is unknown and give back takes whose reply was lost."""
    if ledger.acks:
        tags = ledger.acks[:]
        ledger.acks.clear()
        try:
            yield from defer(_ack_commands(keys, tags), lambda: ledger.acks.extend(tags))
        except BaseException:
            # not written: they stay owed
            ledger.acks.extend(tags)
            raise
    if ledger.takes:
        scores = ledger.takes[:]
        ledger.takes.clear()
        try:
            for score, queue in scores:
                yield from _give_back_take(keys, score, queue)
        except BaseException:
            ledger.takes += scores
            raise


def _give_back_take(keys: KeyLayout, score: float, owner: str) -> Conversation[None]:
    """Put back the messages of a take whose reply never arrived (found by its score in
    the unacked index of ``owner``, one of its queues)."""
    unacked, index = keys.unacked_of(owner), keys.unacked_index_of(owner)
    tags = yield from call("ZRANGE", index, repr(score), repr(score), "BYSCORE")
    if not tags:
        return
    values = yield from call("HMGET", unacked, *tags)
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
        calls.append((scripts.RESTORE, [unacked, index, key], [tag, dumps(payload), "head", "1"]))
    if calls:
        commands = [_evalsha(s, k, a) for s, k, a in reversed(calls)]
        check((yield from exchange(commands)), "giving back messages of an interrupted take")
        logger.info("gave back %d message(s) whose delivery was interrupted by a lost connection", len(calls))


def start_tracking(wire: Wire, redirect: Any, prefixes: Sequence[str]) -> int:
    """Turn on broadcast client tracking of ``prefixes`` on ``wire``, invalidations sent to
    client ``redirect``; the wire's :attr:`~.wire.Wire.generation` it holds for (raising
    an error reply).  The caller holds the wire's lock."""
    args: list[Any] = []
    for prefix in prefixes:
        args += ["PREFIX", prefix]
    wire.connect()
    _, on = wire.execute(
        [("CLIENT", "TRACKING", "OFF"), ("CLIENT", "TRACKING", "ON", "REDIRECT", redirect, "BCAST", *args)]
    )
    if isinstance(on, Exception):
        raise on
    return wire.generation


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
        # a Redis Cluster's topology (.cluster) routes each command to its slot's master
        wire_class = getattr(connection_factory, "wire_class", Wire)
        self.routed = wire_class is not Wire
        self.wire: Wire = wire_class(
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
        drive(wire, connect_conversation(self.keys.cluster, self.routed))

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

    def execute_packed(self, data: bytes, count: int) -> list[Any]:
        """Run ``count`` commands encoded in ``data`` in one round trip; their replies."""
        with self._lock:
            if self.ledger.acks or self.ledger.takes:
                self._recover()
            return self.wire.execute_packed(data, count)

    @property
    def server(self) -> str:
        """Where the commands go, for messages (no credentials)."""
        return str(self.wire.server)

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

    def converse(self, conversation: Conversation[_T]) -> _T:
        """Run ``conversation`` (see :mod:`.conversation`) as one unit, once the ledger is
        settled; its result."""
        with self._lock:
            if self.ledger.acks or self.ledger.takes:
                self._recover()
            return drive(self.wire, conversation)

    def converse_in_steps(self, conversation: Conversation[_T], lock: Any) -> _T:
        """Run ``conversation`` one step at a time, each under ``lock`` (a helper's, whose
        state the conversation reads between rounds) and this connection's lock, both let
        go between steps: a long conversation (a sweep) does not hold up other threads."""
        replies: Any = None
        error: BaseException | None = None
        while True:
            with lock:
                try:
                    step = conversation.send(replies) if error is None else conversation.throw(error)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                error = None
                try:
                    with self._lock:
                        if self.ledger.acks or self.ledger.takes:
                            self._recover()
                        replies = perform(self.wire, step)
                except BaseException as exc:  # thrown in at the conversation's yield
                    error = exc

    def run(self, script: scripts.Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run one Lua script and return its reply (raising an error reply)."""
        return self.converse(script_conversation(script, keys, args))

    def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Run several scripts in one round trip; error replies come back in their place."""
        return self.converse(scripts_conversation(calls))

    def track(self, redirect: Any, prefixes: Sequence[str]) -> int:
        """Turn on broadcast client tracking of ``prefixes``, invalidations sent to client
        ``redirect`` (on a Redis Cluster: a dict, the client on each master); the
        :attr:`generation` it holds for (raising an error reply)."""
        with self._lock:
            if isinstance(redirect, dict):
                return cast("ClusterWire", self.wire).track_each(redirect, prefixes)
            return start_tracking(self.wire, redirect, prefixes)

    # -- acknowledgements and the ledger -----------------------------------------------
    def ack(self, tags: list[Ack]) -> None:
        """Remove ``tags`` (queue, delivery tag) from the unacked store; the replies are read with a later command.

        Tags that cannot be written now stay owed in the ledger.
        """
        with self._lock:
            if drive(self.wire, ack_conversation(self.ledger, self.keys, tags)):
                if self.wire.deferred_replies > MAX_DEFERRED_REPLIES:
                    self.wire.read_deferred()

    def owe_acks(self, tags: list[Ack]) -> None:
        """Note acks that could not be written, for the next command to carry."""
        with self._lock:
            self.ledger.acks.extend(tags)

    def lost_take(self, score: float, queue: str) -> None:
        """Note a take from ``queue`` (one of its queues) whose reply was lost: its
        messages, found by ``score`` in the unacked index, are given back before the next
        command."""
        with self._lock:
            self.ledger.takes.append((score, queue))

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
        drive(self.wire, recover_conversation(self.ledger, self.keys))
