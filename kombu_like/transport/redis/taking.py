"""Taking messages: the atomic take script, waiting for messages, and what they bring.

A take pops up to ``max_count`` messages from the consumed queues' lists (highest
priority list first, as ``priority_order`` says) and records each in the unacked store, in
one script (:data:`.scripts.FETCH`).  Nothing else ever removes a message from a list.

Waiting on empty queues takes nothing.  The take connection speaks RESP3 with ``CLIENT
TRACKING ON NOLOOP``; a take that finds every list empty reads them (``LLEN``) as its last
step, so Redis sends an invalidation push on that connection as soon as any of them
changes -- a publish by anyone, Kombu included.  The consumer sleeps in ``poll()`` on that
socket (and on the fanout subscription's, if any) and takes again when woken.  A
connection cut while waiting costs nothing but the reconnect: no message was in flight.

Only when the server refuses tracking (an ACL without ``CLIENT``, say) does a waiting
consumer fall back to ``BRPOP``, whose popped message is lost if the connection drops
before the reply arrives; that is logged once as a warning.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from redis import exceptions as rexc

from ..virtual.store import Delivery
from . import scripts
from .codec import loads, preview, text
from .conversation import Conversation, call, drive, exchange, exchange_packed
from .keys import KeyLayout
from .options import RedisOptions
from .resp import array_header, is_push, pack_args
from .wire import Wire

if TYPE_CHECKING:
    from .command import CommandConnection
    from .fanout import FanoutListener

__all__ = ["Taker", "take_conversation", "take_connect_conversation"]

logger = logging.getLogger("kombu_like.transport.redis")

#: a blocking pop shorter than this is not worth a round trip (and Redis would read a
#: zero timeout as "forever")
MIN_BLOCK = 0.002

Preloaded = list[tuple[int, bytes]]
#: a message the take recorded but that cannot be read: (queue, raw, tag, reason)
Unreadable = tuple[str, bytes, str, BaseException]


def take_connect_conversation() -> Conversation[tuple[int | None, BaseException | None]]:
    """Set up a take connection: RESP3 and client tracking (Redis tells of changes to
    the lists a take read).  Returns its client id and why tracking was refused, if it was."""
    (hello,) = yield from exchange([("HELLO", "3")])
    client_id, tracking = yield from exchange([("CLIENT", "ID"), ("CLIENT", "TRACKING", "ON", "NOLOOP")])
    problem = next((r for r in (hello, tracking) if isinstance(r, Exception)), None)
    return (None if isinstance(client_id, Exception) else int(client_id)), problem


def take_conversation(data: bytes) -> Conversation[Any]:
    """Run the take script encoded in ``data`` (:meth:`Taker.take_request`); its reply."""
    [reply] = yield from exchange_packed(data, 1)
    if isinstance(reply, rexc.NoScriptError):
        # SCRIPT FLUSH since we connected: load it again and retry once
        yield from call("SCRIPT", "LOAD", scripts.FETCH.source)
        [reply] = yield from exchange_packed(data, 1)
    return reply


class Taker:
    """Takes messages for one store; one thread at a time.

    ``maintain(queues)`` is the store's maintenance (restore sweeps, fanout health,
    expiring queues), run before a take and whenever ``next_maintenance()`` comes due
    while waiting; ``fanout`` wakes a waiting take with pub/sub messages.
    """

    def __init__(
        self,
        connection_factory: Callable[[], Any],
        cmd: CommandConnection,
        keys: KeyLayout,
        options: RedisOptions,
        fanout: FanoutListener,
        maintain: Callable[[Sequence[str]], None],
        next_maintenance: Callable[[], float],
    ) -> None:
        self.cmd = cmd
        self.keys = keys
        self.options = options
        self.fanout = fanout
        self.maintain = maintain
        self.next_maintenance = next_maintenance
        # a Redis Cluster's topology (.cluster) routes each take to its queue's master
        self.wire: Wire = getattr(connection_factory, "wire_class", Wire)(
            connection_factory,
            "take",
            options.socket_timeout,
            0,
            self._on_connect,
            reply_spin=options.reply_spin,
            parser=options.reply_parser,
        )
        self._lock = threading.Lock()
        self._last_score = 0.0
        self._pending_wait = 0.0
        #: whether the take connection has tracking on (waits take nothing)
        self.tracking = False
        self._warned = False
        self._lists: dict[tuple[str, ...], tuple[list[str], list[str], dict[bytes, int]]] = {}
        #: driven by an event loop: takes without waiting also watch the lists they
        #: found empty, and take the fanout messages already received
        self.evented = False
        #: (queues, connection generation) whose lists the take connection watches now
        #: (a set: the virtual layer rotates the order of the queues it takes from)
        self.armed: tuple[frozenset[str], int] | None = None
        #: when a PING sent on the idle take connection (event loop) must be answered
        self.pong_due: float | None = None
        self._fetch_parts: dict[tuple[str, ...], tuple[bytes, bytes, int]] = {}

    def _on_connect(self, wire: Wire) -> None:
        wire.client_id, problem = drive(wire, take_connect_conversation())
        self.tracking_set(problem)

    def tracking_set(self, problem: BaseException | None) -> None:
        """Note whether the take connection (re)connected with tracking (``problem``:
        why not)."""
        self.tracking = problem is None
        if problem is not None and not self._warned:
            self._warned = True
            logger.warning(
                "Redis refused client tracking on the take connection (%s): a consumer waiting on an empty "
                "queue uses BRPOP, and a message it pops is lost if the connection drops before the reply "
                "arrives",
                problem,
            )

    def _score(self) -> float:
        # delivery time for the unacked index, strictly increasing so a lost take can be
        # found again by its score
        score = time.time()
        if score <= self._last_score:
            score = self._last_score + 1e-6
        self._last_score = score
        return score

    def _lists_for(self, queues: Sequence[str]) -> tuple[list[str], list[str], dict[bytes, int]]:
        """List keys to pop (in order), the queue of each, and key -> list number."""
        cache_key = tuple(queues)
        found = self._lists.get(cache_key)
        if found is None:
            layout = self.keys
            keys: list[str] = []
            names: list[str] = []
            for step in layout.consume_steps:
                for queue in queues:
                    keys.append(layout.list_key(queue, step))
                    names.append(queue)
            numbers = {key.encode("utf-8"): i for i, key in enumerate(keys, 1)}
            found = (keys, names, numbers)
            if len(self._lists) > 256:
                self._lists.clear()
            self._lists[cache_key] = found
        return found

    def get(self, queues: Sequence[str], timeout: float | None, max_count: int = 1) -> list[Delivery]:
        """Take up to ``max_count`` messages, waiting at most ``timeout`` seconds."""
        with self._lock:
            deadline = None if timeout is None else time.monotonic() + timeout
            # every reply on the take connection is awaited no longer than the caller
            # waits (drain_events(timeout) on a hung server); a take whose reply comes too
            # late drops the connection, and its messages come back by their score.  An
            # event loop's take does not wait for messages: its replies get the socket
            # timeout, as any other command's
            wires = [self.wire, self.fanout.wire]
            for wire in wires:
                wire.deadline = None if self.evented and timeout == 0 else deadline
            try:
                return self._get(queues, deadline, timeout, max_count)
            finally:
                for wire in wires:
                    wire.deadline = None

    def _get(
        self, queues: Sequence[str], deadline: float | None, timeout: float | None, max_count: int
    ) -> list[Delivery]:
        keys, names, numbers = self._lists_for(queues)
        self.maintain(queues)
        if timeout == 0 and self.evented:
            return self._take_evented(queues, keys, names, numbers, max_count)
        deliveries = self._take(keys, names, max_count, watch=timeout != 0)
        if deliveries or timeout == 0:
            return deliveries
        while True:
            now = time.monotonic()
            wait = self.next_maintenance() - now
            if deadline is not None:
                wait = min(wait, deadline - now)
            if wait >= MIN_BLOCK and not self.wire.connected:
                # dropped since the last take (maintenance saw a failover, say):
                # reconnect and watch the lists through the new connection
                deliveries = self._take(keys, names, max_count, watch=True)
                if deliveries:
                    return deliveries
            if wait >= MIN_BLOCK:
                if self.tracking:
                    woken, preloaded = self._watch(numbers, wait, max_count)
                    if woken:
                        # a list changed (or a fanout message came): take again, which
                        # watches the lists once more if it finds nothing
                        deliveries = self._take(keys, names, max_count, preloaded, watch=True)
                        if deliveries:
                            return deliveries
                        continue
                else:
                    preloaded = self._wait(self.blocking_keys(keys, names), numbers, wait, max_count)
                    if preloaded:
                        return self._take(keys, names, max_count, preloaded)
            if deadline is not None and time.monotonic() >= deadline - MIN_BLOCK:
                return []
            self.maintain(queues)
            if (self.tracking or len(set(names)) > 1 and self.keys.cluster) and wait >= MIN_BLOCK:
                # a look at the lists once per maintenance interval: a wake-up Redis
                # never sent would cost at most that long, and the take connection
                # shows it is alive even with health checks off (with the cluster
                # layout's BRPOP, the queues it does not wait on are looked at here)
                deliveries = self._take(keys, names, max_count, watch=True)
                if deliveries:
                    return deliveries

    def _take_evented(
        self, queues: Sequence[str], keys: list[str], names: list[str], numbers: dict[bytes, int], max_count: int
    ) -> list[Delivery]:
        """An event loop's take: fanout messages already received go in with it, and lists
        found empty stay watched (the take's last step reads them on the tracking
        connection), so the loop is woken when they change."""
        fanout = self.fanout
        preloaded = fanout.read(numbers, max_count) if fanout.active and fanout.has_pending() else None
        self.armed = None
        deliveries = self._take(keys, names, max_count, preloaded, watch=True)
        if not deliveries and self.tracking:
            self.armed = (frozenset(queues), self.wire.generation)
        return deliveries

    def reports_change(self, push: Any) -> bool:
        """Whether a push on the take connection says a watched list may have changed.

        Redis (7.0) tracks every key a take script names when the script reads a list, the
        unacked store's two keys included; an invalidation of those alone comes from an
        ack, anyone's, and must not wake a waiting consumer.
        """
        if not push or push[0] != b"invalidate":
            return False
        keys = push[1] if len(push) > 1 else None
        if not keys:
            return True  # every key: a FLUSHDB, say
        bookkeeping = self.keys.is_bookkeeping
        return not all(map(bookkeeping, keys))

    def finish_ping(self) -> None:
        """Read the answer to a PING sent while the loop watched the idle connection, so
        it is not taken for the next command's reply."""
        if self.pong_due is None:
            return
        wire = self.wire
        try:
            while wire.connected:
                message = wire.read_message(wire.bounded(max(self.pong_due - time.monotonic(), 0.001)))
                if is_push(message):
                    if self.reports_change(message):
                        wire.pushes.append(message)
                    continue
                if message != b"PONG":
                    raise rexc.InvalidResponse(f"expected PONG on the take connection, got {message!r}")
                break
        finally:
            self.pong_due = None

    # -- the take script -------------------------------------------------------------------
    def _take(
        self,
        keys: list[str],
        names: list[str],
        max_count: int,
        preloaded: Preloaded | None = None,
        watch: bool = False,
    ) -> list[Delivery]:
        wire = self.wire
        if self.cmd.owes:
            self.cmd.recover()
        if self.pong_due is not None:
            self.finish_ping()
        groups = self.take_groups(keys, names, preloaded)
        if len(groups) == 1:
            taken = self._take_one(keys, names, max_count, preloaded, watch)
            # pushes read before the reply tell of changes the take has seen already
            wire.pushes.clear()
            return taken
        # the cluster layout: one script per queue (its keys share a slot).  Pushes read
        # meanwhile may tell of a queue taken from earlier in the round: they are kept,
        # costing at most one more take
        deliveries: list[Delivery] = []
        for group_keys, group_names, group_preloaded in groups:
            left = max(max_count - len(deliveries), 0)
            if not left and not group_preloaded:
                break
            try:
                deliveries += self._take_one(group_keys, group_names, left, group_preloaded, watch)
            except (rexc.ConnectionError, rexc.TimeoutError):
                if not deliveries:
                    raise
                # what the round took is handed out; the next take reconnects
                logger.warning("connection lost in a take; delivering the %d message(s) taken", len(deliveries))
                wire.disconnect()
                break
        return deliveries

    def _take_one(
        self, keys: list[str], names: list[str], max_count: int, preloaded: Preloaded | None, watch: bool
    ) -> list[Delivery]:
        wire = self.wire
        score: float | None = None
        try:
            wire.connect()  # first: connecting tells whether the take can watch
            score, data = self.take_request(keys, names, max_count, preloaded, watch)
            reply = drive(wire, take_conversation(data))
        except (rexc.ConnectionError, rexc.TimeoutError):
            # the script may have run: its messages are found by their score and given
            # back by the next command (or the next connection)
            if self.options.ack_emulation and score is not None:
                self.cmd.lost_take(score, names[0])
            raise
        deliveries, unreadable = self.deliveries(reply, keys, names)
        for queue, raw, tag, reason in unreadable:
            self.cmd.run(*self.quarantine_call(queue, raw, tag))
            self.quarantined(queue, raw, reason)
        return deliveries

    def take_groups(
        self, keys: list[str], names: list[str], preloaded: Preloaded | None
    ) -> list[tuple[list[str], list[str], Preloaded]]:
        """The takes one take is made of: all lists in one script, or with the cluster
        layout one script per queue -- each with its lists, their queues and the
        preloaded messages renumbered to its lists."""
        if not self.keys.cluster or len(set(names)) == 1:
            return [(keys, names, preloaded or [])]
        grouped: dict[str, tuple[list[str], list[str], Preloaded]] = {}
        renumber: dict[int, tuple[str, int]] = {}
        for number, (key, queue) in enumerate(zip(keys, names, strict=True), 1):
            group = grouped.setdefault(queue, ([], [], []))
            group[0].append(key)
            group[1].append(queue)
            renumber[number] = (queue, len(group[0]))
        for number, raw in preloaded or ():
            queue, local = renumber[number]
            grouped[queue][2].append((local, raw))
        return list(grouped.values())

    def take_request(
        self, keys: list[str], names: list[str], max_count: int, preloaded: Preloaded | None, watch: bool
    ) -> tuple[float, bytes]:
        """A take's score (how it is found again if its reply is lost) and its command."""
        score = self._score()
        return score, self._fetch_command(keys, names, max_count, score, preloaded or [], watch and self.tracking)

    def deliveries(self, reply: Any, keys: list[str], names: list[str]) -> tuple[list[Delivery], list[Unreadable]]:
        """What a take's reply brings: deliveries, and messages to move to their
        dead-letter lists (:meth:`quarantine_call`, then :meth:`quarantined`)."""
        if isinstance(reply, Exception):
            raise reply
        deliveries: list[Delivery] = []
        unreadable: list[Unreadable] = []
        for number, raw, status, tag in reply:
            queue = names[number - 1]
            if status == 1:
                delivery, reason = self._delivery(queue, raw, text(tag))
                if delivery is not None:
                    deliveries.append(delivery)
                else:
                    unreadable.append((queue, raw, text(tag), reason))
            elif status == 0:
                logger.error(
                    "Message in queue %r is not a Kombu message envelope; moved it to the Redis list %r "
                    "for inspection: %s",
                    queue,
                    self.keys.deadletter(queue),
                    preview(raw),
                )
            else:
                logger.error("Cannot read queue %r from Redis list %r: %s", queue, keys[number - 1], text(raw))
        return deliveries, unreadable

    def _fetch_command(
        self, keys: list[str], names: list[str], max_count: int, score: float, preloaded: Preloaded, watch: bool
    ) -> bytes:
        """The EVALSHA of :data:`.scripts.FETCH`, its unchanging parts encoded once per queue set."""
        cache_key = tuple(keys)
        static = self._fetch_parts.get(cache_key)
        if static is None:
            layout = self.keys
            # one queue's unacked store (with the cluster layout every name is one queue's)
            unacked, index = layout.unacked_of(names[0]), layout.unacked_index_of(names[0])
            head = ["EVALSHA", scripts.FETCH.sha, len(keys) + 2, unacked, index, *keys]
            record = "1" if self.options.ack_emulation else "0"
            rest = [layout.deadletter_head, record, layout.deadletter_tail, *names]
            # the three arguments between them (max_count, score, watch) change with every take
            static = (pack_args(head), pack_args(rest), len(head) + 3 + len(rest))
            if len(self._fetch_parts) > 256:
                self._fetch_parts.clear()
            self._fetch_parts[cache_key] = static
        fixed, tail, count = static
        dynamic = pack_args([max_count, repr(score), b"1" if watch else b"0"])
        parts = [array_header(count + 2 * len(preloaded)), fixed, dynamic, tail]
        for number, raw in preloaded:
            parts.append(pack_args([number, raw]))
        return b"".join(parts)

    def _delivery(self, queue: str, raw: bytes, tag: str) -> tuple[Delivery | None, Any]:
        try:
            payload = loads(raw)
            if not isinstance(payload, dict) or not isinstance(payload.get("properties"), dict):
                raise TypeError("the envelope or its properties is not a JSON object")
        except Exception as exc:  # anything another program could have written
            return None, exc
        return Delivery(queue, payload, tag), None

    def quarantine_call(self, queue: str, raw: bytes, tag: str) -> tuple[scripts.Script, list[Any], list[Any]]:
        """The script call moving a recorded but unreadable message to the queue's
        dead-letter list."""
        layout = self.keys
        return (
            scripts.RESTORE,
            [layout.unacked_of(queue), layout.unacked_index_of(queue), layout.deadletter(queue)],
            [tag, raw, "tail", "0"],
        )

    def quarantined(self, queue: str, raw: bytes, reason: BaseException) -> None:
        logger.error(
            "Cannot decode a message from queue %r (%s); moved it to the Redis list %r for inspection: %s",
            queue,
            reason,
            self.keys.deadletter(queue),
            preview(raw),
        )

    # -- waiting ---------------------------------------------------------------------
    def _watch(self, numbers: dict[bytes, int], wait: float, max_count: int) -> tuple[bool, Preloaded]:
        """Sleep until a watched list changes, a fanout message comes, or ``wait`` ends.

        Returns whether to take again, and fanout messages to record in that take.
        Nothing is taken while waiting, so an error here loses nothing.  An idle
        connection is checked with ``PING`` every ``health_check_interval``: one that
        died silently must not leave the consumer asleep for good.
        """
        options = self.options
        wire = self.wire
        fanout = self.fanout if self.fanout.active else None
        poller = select.poll()
        poller.register(wire.fileno(), select.POLLIN | select.POLLPRI)
        if fanout is not None:
            poller.register(fanout.wire.fileno(), select.POLLIN | select.POLLPRI)
        interval = options.health_check_interval
        grace = options.socket_timeout or interval or 30
        end = time.monotonic() + wait
        pong_due: float | None = None
        woken = False
        got: Preloaded = []
        try:
            while not woken:
                if wire.pushes:
                    woken = any(map(self.reports_change, wire.pushes))
                    wire.pushes.clear()
                    if woken:
                        break
                if fanout is not None and fanout.has_pending():
                    got += fanout.read(numbers, max_count)
                    woken = woken or bool(got)
                    if woken:
                        break
                if wire.has_buffered():
                    pong_due = self._watched(wire.read_message(), pong_due)
                    continue
                now = time.monotonic()
                if pong_due is not None and now >= pong_due:
                    raise rexc.TimeoutError(f"Redis did not answer PING on the take connection within {grace:.1f}s")
                if pong_due is None and interval and now - wire.last_io >= interval:
                    wire.send([("PING",)])
                    pong_due = now + grace
                    continue
                if now >= end:
                    break
                until = end
                if pong_due is not None:
                    until = min(until, pong_due)
                elif interval:
                    until = min(until, wire.last_io + interval)
                ready = {fd for fd, _ in poller.poll(max(until - now, 0.0) * 1000)}
                if fanout is not None and fanout.wire.connected and fanout.wire.fileno() in ready:
                    got += fanout.read(numbers, max_count)
                    woken = bool(got)
                if wire.fileno() in ready:
                    pong_due = self._watched(wire.read_message(), pong_due)
            if pong_due is not None:
                # the PING's reply must not be taken for the next command's
                reply = wire.read(wire.bounded(grace))
                if reply != b"PONG":
                    raise rexc.InvalidResponse(f"expected PONG on the take connection, got {reply!r}")
        except BaseException:
            if not got:
                raise
            # fanout messages already read are not in any list: record them first
            logger.warning("error while waiting on the take connection; recording %d fanout message(s)", len(got))
            wire.disconnect()
            return True, got
        return woken, got

    def _watched(self, message: Any, pong_due: float | None) -> float | None:
        """Note what came on the take connection while waiting; the PING deadline after it."""
        if is_push(message):
            if self.reports_change(message):
                self.wire.pushes.append(message)
            return pong_due
        if isinstance(message, Exception):
            raise message
        if message == b"PONG" and pong_due is not None:
            return None
        raise rexc.InvalidResponse(f"unexpected reply on the take connection while waiting: {message!r}")

    def blocking_keys(self, keys: list[str], names: list[str]) -> list[str]:
        """The lists one ``BRPOP`` waits on: all of them, or with the cluster layout those
        of the first queue (one ``BRPOP`` may name keys of one slot only; the others are
        looked at by the take after each maintenance round)."""
        if not self.keys.cluster:
            return keys
        return [key for key, queue in zip(keys, names, strict=True) if queue == names[0]]

    def _wait(self, keys: list[str], numbers: dict[bytes, int], wait: float, max_count: int) -> Preloaded:
        """Block until a message arrives (BRPOP) or a fanout message is published."""
        options = self.options
        block = self.wire
        block.send([("BRPOP", *keys, f"{wait:.3f}")])
        self._pending_wait = wait
        fanout = self.fanout if self.fanout.active else None
        poller = select.poll()
        poller.register(block.fileno(), select.POLLIN | select.POLLPRI)
        if fanout is not None:
            poller.register(fanout.wire.fileno(), select.POLLIN | select.POLLPRI)
        # a reply later than this means the connection died without telling us
        overdue = time.monotonic() + wait + (options.health_check_interval or options.socket_timeout or 30)
        got: Preloaded = []
        in_flight = True
        try:
            while True:
                ready = {block.fileno()} if block.has_buffered() else set()
                if fanout is not None and fanout.has_pending():
                    ready.add(fanout.wire.fileno())
                if not ready:
                    remaining = overdue - time.monotonic()
                    if remaining <= 0:
                        raise rexc.TimeoutError(f"Redis did not answer BRPOP within {wait:.1f}s plus the grace period")
                    ready = {fd for fd, _ in poller.poll(remaining * 1000)}
                if fanout is not None and fanout.wire.connected and fanout.wire.fileno() in ready:
                    got += fanout.read(numbers, max_count)
                    if got:
                        got += self._finish_brpop(numbers)
                        in_flight = False
                        return got
                if block.fileno() in ready:
                    reply = block.read(max(overdue - time.monotonic(), 0.001))
                    in_flight = False
                    got += self._popped(reply, numbers)
                    return got
        finally:
            if in_flight and block.connected:
                self._abandon_brpop(numbers)

    def _finish_brpop(self, numbers: dict[bytes, int]) -> Preloaded:
        """End a pending BRPOP at once and return what it took, if anything."""
        block = self.wire
        if block.client_id is not None:
            [reply] = self.cmd.execute([("CLIENT", "UNBLOCK", block.client_id)])
            if isinstance(reply, rexc.ResponseError):
                block.client_id = None
        # without CLIENT UNBLOCK, wait for the BRPOP to time out (it never outlives its wait)
        wait = self.options.socket_timeout or 30
        return self._popped(block.read(wait if block.client_id is not None else wait + self._pending_wait), numbers)

    @staticmethod
    def _popped(reply: Any, numbers: dict[bytes, int]) -> Preloaded:
        """The message a BRPOP reply carries, if any."""
        if isinstance(reply, Exception):
            # e.g. UNBLOCKED when a failover turns the server into a replica
            raise reply
        if not reply:
            return []
        key, raw = reply
        return [(numbers[key], raw)]

    def _abandon_brpop(self, numbers: dict[bytes, int]) -> None:
        # leaving for an error: a message the BRPOP took must still reach the unacked hash
        # or go back to its queue, never vanish with the connection
        try:
            by_number = {number: key for key, number in numbers.items()}
            for number, raw in self._finish_brpop(numbers):
                self.cmd.execute([("RPUSH", by_number[number], raw)])
        except Exception:
            logger.warning("could not end a pending BRPOP cleanly; dropping its connection", exc_info=True)
            self.wire.disconnect()
