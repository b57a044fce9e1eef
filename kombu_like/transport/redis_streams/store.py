"""The queue store on Redis Streams: one stream (per priority level) and one consumer group
per queue.

* publish (:mod:`.publishing`): ``XADD`` to the level stream of the message's priority
  (a script where the queue has ``x-max-length``), in one round trip for a batch;
* take: ``XREADGROUP ... >`` over the queue's level streams, highest first (one script on
  the queue's slot, which also drops expired entries, or takes them to be dead-lettered);
* ack: ``XACK`` + ``XDEL``; requeue: a copy at the tail marked redelivered, the original
  acked and deleted (one script); reject: to the queue's dead-letter exchange, or its
  ``:dead`` stream;
* a delivered message is leased to its consumer (:mod:`.lease`); waiting on empty queues
  does not take (:mod:`.watch`);
* a message with ``x-delay`` or a future ``eta`` waits in the queue's delayed set until a
  consumer of the queue moves it into its stream when due (:mod:`.delayed`); consumers
  hear of one due sooner than the others on the queue's schedule stream (:mod:`.due`);
* a queue declared with ``x-expires`` is deleted once unused that long (:mod:`.expiry`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from redis.exceptions import RedisError

from ...exceptions import PreconditionFailed
from ..base import Capabilities
from ..virtual import Delivery, QueueStore
from ..virtual.store import PlainShape
from . import scripts
from .acks import AckBatch
from .bindings import StreamBindings
from .codec import QueueSpec, Receipt, decode_entry
from .deadletter import DeadLetters
from .delayed import DelayedScripts
from .due import DueWatch, QueueTarget
from .expiry import Expiry, check_expires
from .hotpath import PipelineExecutor, WireExecutor, ack_commands, resp2_connections, take_call
from .keys import GROUP, StreamKeys
from .lease import Leases
from .options import StreamsOptions
from .publishing import Publishing, now_ms
from .takeover import Predecessors
from .upkeep import Upkeep
from .watch import Watcher, last_delivered_ids

__all__ = ["StreamsStore"]

logger = logging.getLogger("kombu_like.transport.redis_streams")


#: most entries per stream a closing store gives back from its pending list (more wait
#: for their leases to lapse)
CLOSE_GIVE_BACK = 10_000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class StreamsStore(QueueStore):
    """Queues as Redis streams, through a redis-py client (thread-safe: a connection pool).

    ``watch_connection`` makes the dedicated connection that waits for entries; a Redis
    Cluster's store is given its ``watcher`` instead (one watch connection per master,
    :class:`.cluster_watch.ClusterWatcher`).  On a single server the hot path -- publish,
    take, ack -- runs on a RESP connection of its own made like the watch connection
    (:mod:`.hotpath`); a cluster client runs it as everything else.
    """

    capabilities = Capabilities(
        priority=True,
        ttl=True,
        native_acks=True,
        fanout=True,
        batch_publish=True,
        asynchronous=True,
        extra={"leases": True, "delay": True, "dead_letter": True, "cluster": True},
    )
    body_encoding = "base64"

    def __init__(
        self,
        client: Any,
        options: StreamsOptions,
        watch_connection: Callable[[], Any] | None,
        watcher: Any = None,
        predecessors: Predecessors | None = None,
    ) -> None:
        super().__init__()
        self.client = client
        self.options = options
        self.keys = StreamKeys(options.global_keyprefix, cluster=options.cluster)
        #: this store's consumer name in every group: unique per store
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.scripts = {
            name: client.register_script(getattr(scripts, name))
            for name in ("TAKE", "REQUEUE", "DEAD", "CLAIM", "SIZE", "PURGE", "PUT_LIMITED", "TAKE_OVER")
        }
        #: redis-py pipelines: batches with delayed messages or confirmed by replicas
        self.pipelines = PipelineExecutor(client, self.scripts)
        self.hot: PipelineExecutor | WireExecutor = (
            WireExecutor(watch_connection, options)
            if watch_connection is not None and not options.cluster
            else self.pipelines
        )
        tracking = None
        if isinstance(self.hot, WireExecutor) and options.binding_cache:
            tracking = (resp2_connections(client.connection_pool), self.hot, options)
        self.bindings: StreamBindings = StreamBindings(client, self.keys, self.hot.hgetall, tracking)
        self.leases = Leases(
            client, self.consumer, options.lease_ms, self.scripts["CLAIM"], options.claim_count, options.lapse_ms
        )
        if watcher is None:
            assert watch_connection is not None, "a store needs a watch connection or a watcher"
            watcher = Watcher(watch_connection, self._unblock, int(options.block_interval * 1000))
        self.watcher = watcher
        self._specs: dict[str, QueueSpec] = {}
        self.dead_letters = DeadLetters(self)
        self.acks = AckBatch()
        self.delayed = DelayedScripts(client)
        #: when the delayed sets of the queues taken from are next worth a look
        self.due = DueWatch(self.delayed, self._delayed_streams)
        # the waits name the queues' schedule streams too: what they say goes to due; a
        # new watch connection may be to another server (a failover): look once
        watcher.on_reply = self.due.hear
        watcher.on_connect = self.due.nudge_all
        #: when (monotonic) this store last waited for its queues, or took after a wait
        self._listened = time.monotonic()
        #: under an event loop: the queues of the wait sent, and the schedule ids it names
        self._armed: tuple[tuple[str, ...], int] | None = None
        #: queues this store took from: their lapsed leases are its to take back
        self._queues: dict[str, None] = {}
        self.expiry = Expiry(self)
        self.publishing = Publishing(self)
        self.upkeep = Upkeep(self)
        #: the consumers of its connection's earlier stores, whose entries it takes over
        self.predecessors = Predecessors() if predecessors is None else predecessors
        #: closed having given back everything it held (else its successor takes it over)
        self.gave_back = False
        self._closed = False

    def _unblock(self, client_id: int) -> Any:
        return self.client.execute_command("CLIENT", "UNBLOCK", client_id)

    # -- queues ----------------------------------------------------------------------
    def spec(self, queue: str) -> QueueSpec:
        """The declared arguments of ``queue`` that matter here (read once when declared)."""
        spec = self._specs.get(queue)
        if spec is not None:
            return spec
        spec = QueueSpec.from_meta(self.client.hgetall(self.keys.meta(queue)))
        if spec.declared:  # not declared (yet): not cached, a later declaration counts
            self._specs[queue] = spec
        return spec

    def forget_spec(self, queue: str) -> QueueSpec | None:
        """Drop what is known of ``queue``'s declaration (it went); what was known."""
        self._queues.pop(queue, None)
        return self._specs.pop(queue, None)

    def streams(self, queue: str) -> list[str]:
        """The level streams of ``queue``, highest priority first."""
        return self.keys.streams(queue, self.spec(queue).max_priority)

    def declare_queue(self, queue: str, arguments: Mapping[str, Any] | None = None) -> None:
        args = {k: v for k, v in (arguments or {}).items() if v is not None}
        check_expires(queue, args.get("x-expires"))
        meta = self.keys.meta(queue)
        declared = QueueSpec.from_arguments(args)
        if not self.expiry.create(queue, declared, json.dumps(args, sort_keys=True, default=str)):
            existing = QueueSpec.from_meta(self.client.hgetall(meta))
            wanted = args.get("x-max-priority")
            if wanted and int(wanted) != existing.max_priority:
                raise PreconditionFailed(
                    f"PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue "
                    f"{queue!r}: received {wanted} but current is {existing.max_priority}"
                )
            spec = existing
        else:
            spec = declared
        self._specs[queue] = spec
        pipe = self.client.pipeline(transaction=False)
        for stream in self.keys.streams(queue, spec.max_priority):
            # from 0: what was published before the declaration is delivered too
            pipe.execute_command("XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM")
        pipe.sadd(self.keys.queues, queue)
        for command in self.expiry.renewal(queue, spec):  # declaring is a use
            pipe.execute_command(*command)
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, Exception) and "BUSYGROUP" not in str(reply):
                raise reply

    def queue_exists(self, queue: str) -> bool:
        exists = bool(self.client.exists(self.keys.meta(queue), self.keys.stream(queue)))
        if exists:
            # a passive declaration is a use of the queue, renewing its x-expires, as on
            # RabbitMQ (where every queue.declare-ok counts)
            self.expiry.used([queue])
        return exists

    def put(self, queue: str, payload: dict[str, Any], priority: int = 0) -> None:
        self.publishing.put(queue, payload, priority)

    def put_many(self, items: Sequence[tuple[str, dict[str, Any], int]]) -> None:
        self.publishing.put_many(items)

    def put_plain(self, queue: str, body: str, delivery_tag: str, shape: PlainShape) -> bool:
        return self.publishing.put_plain(queue, body, delivery_tag, shape)

    def _delayed_streams(self, queue: str) -> QueueTarget:
        """Where ``queue``'s due delayed messages go."""
        spec = self.spec(queue)
        streams = [(level, self.keys.stream(queue, level)) for level in range(spec.max_priority + 1)]
        return QueueTarget(self.keys.delayed(queue), streams, spec.max_length, self.keys.schedule(queue))

    # -- taking ------------------------------------------------------------------------
    def get(self, queues: Sequence[str], timeout: float | None, max_count: int = 1) -> list[Delivery]:
        if not queues:
            return []
        if not self._closed:
            self.upkeep.start()
        self._look_if_busy()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            renew_in = self.expiry.used(queues)  # a get, or a consumer waiting: a use
            for queue in queues:
                taken = self._take(queue, max_count)
                if taken:
                    return taken
            if deadline is None:
                remaining = self.options.block_interval
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
            if renew_in is not None:  # wakes up to renew the expiring queues waited on
                remaining = min(remaining, max(renew_in, 0.001))
            streams, ids = self._watch_points(queues)
            self.watcher.wait(streams, ids, remaining)
            self._listened = time.monotonic()

    def _take(self, queue: str, max_count: int) -> list[Delivery]:
        if queue not in self._queues:
            self._queues[queue] = None
            self.upkeep.wake()  # its delayed messages may be due already
        streams = self.streams(queue)
        call = take_call(streams, self.consumer, max_count, now_ms())
        expiring_to_exchange = self.spec(queue).dead_letter_exchange is not None
        if expiring_to_exchange:  # expired entries come too (index negated): dead-lettered
            call = call._replace(args=[*call.args, "1"])
        reply = self.hot.script(call)
        if not reply:
            return []
        if expiring_to_exchange:
            taken = [(int(i) < 0, decode_entry(queue, streams[abs(int(i)) - 1], e, f)) for i, e, f in reply]
            expired = [delivery for gone, delivery in taken if gone]
            if expired:
                self.dead_letters.send(expired, "expired")
            deliveries = [delivery for gone, delivery in taken if not gone]
        else:
            deliveries = [decode_entry(queue, streams[int(i) - 1], e, f) for i, e, f in reply]
        self.leases.add(d.receipt for d in deliveries)
        limit = self.options.max_deliveries
        if limit is None:
            return deliveries
        spent = [d for d in deliveries if d.receipt.deliveries >= limit]
        if not spent:
            return deliveries
        for delivery in spent:
            logger.warning(
                "message %s of queue %r was delivered %d times (max_deliveries): dead-lettered, not delivered again",
                delivery.receipt.entry_id,
                queue,
                delivery.receipt.deliveries,
            )
        self.dead_letters.send(spent, "delivery_limit")
        return [d for d in deliveries if d.receipt.deliveries < limit]

    def _watch_points(self, queues: Sequence[str]) -> tuple[list[str], list[str]]:
        """The streams of ``queues`` and the id after which an entry is news to the group,
        then the queues' schedule streams and the last entry heard of in each."""
        self.settle()  # about to wait: nothing acknowledged stays unconfirmed meanwhile
        streams = [stream for queue in queues for stream in self.streams(queue)]
        ids = last_delivered_ids(self.client, streams)
        schedules, heard = self.due.schedule_points(queues)
        return streams + schedules, ids + heard

    def _look_if_busy(self) -> None:
        """Look at the delayed sets of the queues taken from when this store did not wait
        on their schedule streams for ``delayed_check_interval`` (it found messages at
        every take): it cannot have heard of delayed messages others scheduled."""
        now = time.monotonic()
        if self.watcher.waiting:
            self._listened = now
        elif now - self._listened >= self.options.delayed_check_interval:
            self._listened = now
            self.due.nudge_all()

    # -- settling --------------------------------------------------------------------
    @staticmethod
    def _by_stream(deliveries: Iterable[Delivery]) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = defaultdict(list)
        for delivery in deliveries:
            receipt = delivery.receipt
            if isinstance(receipt, Receipt):
                grouped[receipt.stream].append(receipt.entry_id)
        return grouped

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        now = self.acks.add(deliveries)
        if now:
            self.write_acks(now)

    def hold_acks(self) -> None:
        """A take is handed out: keep the acks made meanwhile (see :mod:`.acks`)."""
        self.acks.hold()

    def write_held_acks(self) -> None:
        """The take was handed out: write the acks kept (kept on for the next round when
        Redis cannot be reached: handing out goes on, the entries stay leased)."""
        kept = self.acks.release()
        if kept:
            try:
                self.write_acks(kept)
            except RedisError as exc:
                self.acks.keep(kept)
                logger.warning("could not acknowledge %d message(s) in Redis (%s); will retry", len(kept), exc)

    def write_acks(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge ``deliveries`` in Redis now (``XACK`` and ``XDEL`` in one write; on
        the RESP connection their replies are read with a later command)."""
        grouped = self._by_stream(deliveries)
        if not grouped:
            return
        self.hot.ack(ack_commands(grouped))
        self.leases.remove(d.receipt for d in deliveries if isinstance(d.receipt, Receipt))

    def settle(self) -> None:
        """Read the replies of the acks written behind (an error reply is logged), so what
        this store acknowledged is seen by every other connection (a count, another
        client); acks a cut lost are sent again with the next command."""
        try:
            self.hot.settle()
        except RedisError as exc:
            logger.warning("could not confirm acknowledgements written to Redis (%s); they are sent again", exc)

    def requeue(self, deliveries: Sequence[Delivery], redelivered: bool = True) -> None:
        grouped = self._by_stream(deliveries)
        if not grouped:
            return
        pipe = self.client.pipeline(transaction=False)
        mark = "1" if redelivered else "0"
        for stream, ids in grouped.items():
            self.scripts["REQUEUE"](keys=[stream, stream], args=[GROUP, mark, *ids], client=pipe)
        pipe.execute()
        self.leases.remove(d.receipt for d in deliveries if isinstance(d.receipt, Receipt))

    def reject(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            if isinstance(delivery.receipt, Receipt):
                logger.info(
                    "message %s of queue %r rejected without requeue: dead-lettered",
                    delivery.receipt.entry_id,
                    delivery.queue,
                )
        self.dead_letters.send(deliveries, "rejected")

    # -- counting and removing ---------------------------------------------------------
    def purge(self, queue: str) -> int:
        """Remove the ready messages of ``queue`` and the delayed ones (nothing the purge
        saw arrives later); how many there were of both."""
        self.settle()
        # the delayed set first: a message moved meanwhile is in a stream, purged next
        delayed = self.delayed.purge(self.keys.delayed(queue))
        return delayed + int(self.scripts["PURGE"](keys=self.streams(queue), args=[GROUP, now_ms()]))

    def size(self, queue: str) -> int:
        self.settle()  # counted without what this store acknowledged
        spec = self.spec(queue)
        scan = spec.ttl_ms is not None or bool(self.client.hexists(self.keys.meta(queue), "expiring"))
        keep = "1" if spec.dead_letter_exchange is not None else "0"  # dead-lettered when taken
        return int(self.scripts["SIZE"](keys=self.streams(queue), args=[GROUP, now_ms(), "1" if scan else "0", keep]))

    def delete_queue(self, queue: str) -> None:
        spec = self.spec(queue)
        keys = [*self.keys.streams(queue, max(spec.max_priority, 0)), self.keys.meta(queue)]
        keys += [self.keys.delayed(queue), self.keys.schedule(queue), self.keys.dead(queue)]
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.delete(key)  # one key per command: Redis Cluster runs it as it is
        pipe.srem(self.keys.queues, queue)
        pipe.execute()
        self.forget_spec(queue)
        self.expiry.forget(queue)

    def list_queues(self) -> list[str]:
        self.expiry.sweep()  # not those that expired
        return sorted(_text(name) for name in self.client.smembers(self.keys.queues))

    # -- timed work (see .upkeep) ----------------------------------------------------------
    def taken_from(self) -> list[str]:
        """The queues this store took from: their lapsed leases are its to take back, their
        due delayed messages its to move."""
        return list(self._queues)

    def maintain(self) -> None:
        """Write the acks kept, renew the leases held, take back lapsed ones."""
        self.upkeep.maintain()

    # -- driven by an event loop ---------------------------------------------------------
    def event_fds(self) -> Sequence[Any]:
        self.upkeep.enter_loop()  # periodic() does the timed work now
        return list(self.watcher.sockets())

    def watch(self, queues: Sequence[str]) -> bool:
        self.expiry.watched = tuple(queues)
        if self.expiry.used(queues) is not None:
            self.upkeep.expiring_watched()
        if self._armed == (tuple(queues), self.due.heard_version) and self.watcher.waiting:
            # the wait sent holds: an entry it waits for would have answered it (a take
            # after the loop's timer found nothing new), so its ids are still the ones
            self.settle()
            return False
        streams, ids = self._watch_points(queues)
        self.watcher.arm(streams, ids)
        self._armed = (tuple(queues), self.due.heard_version)
        return False

    def on_readable(self, fd: int) -> bool:
        self._armed = None
        woken = bool(self.watcher.on_readable(fd))
        self._listened = time.monotonic()
        return woken

    def periodic(self) -> Sequence[tuple[float, Callable[[], float | None]]]:
        return self.upkeep.periodic()

    def periodic_due(self) -> Sequence[Callable[[], float | None]]:
        return self.upkeep.periodic_due()

    def unwatch(self) -> None:
        self._armed = None
        self.expiry.watched = ()
        self.watcher.cancel()
        self.upkeep.leave_loop()

    # -- closing -----------------------------------------------------------------------
    def _pending_here(self) -> dict[tuple[str, str], Receipt]:
        """What the group's pending lists hold for this store's consumer in the queues it
        took from: its leases, and what a take whose reply a cut lost took unseen (which
        would otherwise wait for the lease to lapse)."""
        streams = [stream for queue in list(self._queues) for stream in self.streams(queue)]
        if not streams:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for stream in streams:
            pipe.xpending_range(stream, GROUP, "-", "+", CLOSE_GIVE_BACK, consumername=self.consumer)
        found: dict[tuple[str, str], Receipt] = {}
        for stream, entries in zip(streams, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(entries, Exception):
                continue  # no stream or group (deleted meanwhile): nothing to give back
            for entry in entries:
                entry_id = _text(entry["message_id"])
                found[stream, entry_id] = Receipt(stream, entry_id, int(entry.get("times_delivered") or 0))
        return found

    def close(self) -> None:
        """Give back what is still held (marked redelivered), stop the lease work, close."""
        if self._closed:
            return
        self._closed = True
        try:
            self.upkeep.stop()
            kept = self.acks.release()
            if kept:  # acknowledged: not among what goes back
                self.write_acks(kept)
            self.hot.settle()  # every ack is in before what is pending is looked at
            held = {(r.stream, r.entry_id): r for r in self.leases.holding()}
            held.update(self._pending_here())
            if held:
                self.requeue([Delivery("", {}, receipt) for receipt in held.values()])
            self.gave_back = True
        except Exception as exc:  # the leases lapse and the messages come back anyway
            logger.warning("could not give back held messages on close (their leases will lapse): %s", exc)
        finally:
            try:
                self.bindings.close()
                self.hot.close()  # the acks written behind are settled first
            finally:
                self.watcher.close()
                self.client.close()
