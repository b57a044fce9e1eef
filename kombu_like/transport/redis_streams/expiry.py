"""Queues declared with ``x-expires`` (RabbitMQ's queue expiry): a queue unused for that
many milliseconds -- no consumer waiting on it, no get, no redeclaration -- is deleted,
messages and bindings with it.  Publishing is no use, as on RabbitMQ.

Every key of such a queue carries a Redis expiry of ``x-expires`` and a quarter more
(:data:`HEADROOM`): declaring sets it, and a use renews it once a quarter of ``x-expires``
has passed since this store last renewed it, so the keys go between ``x-expires`` and
1.25 times ``x-expires`` after the last use.  A consumer renews the queues it waits on
while it waits (the blocking API wakes up for it, an event loop's timer runs it).

What Redis cannot expire -- the queue's name among the declared queues, its bindings in
its exchanges' hashes, keys a publish through such a binding made after the queue went --
is collected by a sweep (:meth:`Expiry.sweep`): a queue listed as declared whose metadata
is gone has expired (or was deleted behind the transport's back).  Any consumer's
maintenance sweeps, at most once every ``expiry_sweep_interval`` seconds for all clients
of one Redis (a key with that expiry says one did), and listing the queues sweeps first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ...exceptions import PreconditionFailed
from .codec import QueueSpec

if TYPE_CHECKING:
    from .store import StreamsStore

__all__ = ["HEADROOM", "Expiry", "check_expires"]

logger = logging.getLogger("kombu_like.transport.redis_streams")

#: part of ``x-expires`` a queue's keys outlive it by: they are renewed this often
HEADROOM = 4

#: milliseconds the mark of a collected queue stays (``P{q}:gone``): far longer than a
#: publish in flight, from its read of the bindings to its write
GONE_FOR_MS = 10_000

#: deletes what an expired queue left (its metadata is gone: checked in the same script,
#: so a queue declared again meanwhile keeps everything), and marks it gone (last key)
COLLECT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #KEYS - 1 do redis.call('DEL', KEYS[i]) end
redis.call('SET', KEYS[#KEYS], 1, 'PX', ARGV[1])
return 1
"""

#: creates a queue's metadata unless it exists (whether it did); a queue marked gone
#: first loses what publishes through its old bindings wrote after the sweep collected it
CREATE = """
if redis.call('HSETNX', KEYS[1], 'arguments', ARGV[1]) == 0 then return 0 end
if redis.call('DEL', KEYS[2]) == 1 then
    for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
end
return 1
"""


def lifetime_ms(spec: QueueSpec) -> int | None:
    """The expiry the keys of a queue with ``spec`` get on each renewal (None: never)."""
    if spec.expires_ms is None:
        return None
    return spec.expires_ms + spec.expires_ms // HEADROOM


def check_expires(queue: str, expires: Any) -> None:
    """Refuse an ``x-expires`` that is not a positive number of milliseconds (as RabbitMQ)."""
    if expires is None:
        return
    try:
        valid = int(float(expires)) >= 1
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise PreconditionFailed(
            f"PRECONDITION_FAILED - invalid arg 'x-expires' for queue {queue!r}: {expires!r} "
            "is not a positive number of milliseconds"
        )


class Expiry:
    """Renewals of the expiring queues ``store`` uses, and the sweep of expired ones."""

    def __init__(self, store: StreamsStore) -> None:
        self.store = store
        #: queue -> monotonic time this store next renews it
        self._due: dict[str, float] = {}
        #: the queues an event loop waits on (renewed by its timer)
        self.watched: tuple[str, ...] = ()
        self._next_sweep = 0.0
        self._collect = store.client.register_script(COLLECT)
        self._create = store.client.register_script(CREATE)

    def keys_of(self, queue: str, spec: QueueSpec) -> list[str]:
        """Every key of ``queue`` (the metadata first)."""
        keys = self.store.keys
        return [
            keys.meta(queue),
            *keys.streams(queue, spec.max_priority),
            keys.delayed(queue),
            keys.schedule(queue),
            keys.dead(queue),
        ]

    def create(self, queue: str, spec: QueueSpec, arguments: str) -> bool:
        """Create ``queue``'s metadata (its declared ``arguments``, JSON) unless it
        exists; whether it did not.  A publish that read a binding of the queue before the
        sweep removed it may have written its stream after the sweep collected it: a queue
        declared again starts empty all the same (what it left at priority levels ``spec``
        does not have stays unseen)."""
        keys = self.store.keys
        created = self._create(
            keys=[
                keys.meta(queue),
                keys.gone(queue),
                *keys.streams(queue, spec.max_priority),
                keys.delayed(queue),
                keys.schedule(queue),
                keys.dead(queue),
            ],
            args=[arguments],
        )
        return bool(created)

    def renewal(self, queue: str, spec: QueueSpec) -> list[tuple[Any, ...]]:
        """The commands renewing ``queue``'s expiry now (none if it has none); the next
        renewal by :meth:`used` is due a quarter of ``x-expires`` from now."""
        ttl = lifetime_ms(spec)
        if ttl is None or spec.expires_ms is None:
            return []
        self._due[queue] = time.monotonic() + spec.expires_ms / 1000 / HEADROOM
        return [("PEXPIRE", key, ttl) for key in self.keys_of(queue, spec)]

    def used(self, queues: Iterable[str]) -> float | None:
        """``queues`` are used now: renew the expiry of those due a renewal; seconds until
        the next of theirs is due (None: none of them expires)."""
        now = time.monotonic()
        commands: list[tuple[Any, ...]] = []
        soonest: float | None = None
        for queue in queues:
            spec = self.store.spec(queue)
            if spec.expires_ms is None:
                continue
            due = self._due.get(queue, 0.0)
            if due <= now:
                commands += self.renewal(queue, spec)
                due = self._due[queue]
            soonest = due if soonest is None else min(soonest, due)
        if commands:
            pipe = self.store.client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            try:
                pipe.execute()
            except BaseException:
                for queue in queues:  # not renewed: the next use tries again
                    self._due.pop(queue, None)
                raise
        return None if soonest is None else max(soonest - now, 0.0)

    def renew_watched(self) -> float | None:
        """An event loop's timer: renew the queues it waits on; seconds until the next is due."""
        return self.used(self.watched) if self.watched else None

    def consumed(self, queues: Iterable[str]) -> None:
        """Only ``queues`` are consumed now: an event loop stops renewing the others."""
        wanted = set(queues)
        self.watched = tuple(queue for queue in self.watched if queue in wanted)

    def forget(self, queue: str) -> None:
        self._due.pop(queue, None)

    # -- the sweep ----------------------------------------------------------------------------
    def sweep_due(self) -> None:
        """Sweep if this Redis was not swept for ``expiry_sweep_interval`` seconds."""
        interval = self.store.options.expiry_sweep_interval
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + interval
        keys = self.store.keys
        if self.store.client.set(keys.expiry_sweep, self.store.consumer, nx=True, px=max(int(interval * 1000), 1)):
            self.sweep()

    def sweep(self) -> list[str]:
        """Collect what the queues that expired left behind; returns their names."""
        store = self.store
        keys = store.keys
        names = sorted(_text(name) for name in store.client.smembers(keys.queues))
        if not names:
            return []
        pipe = store.client.pipeline(transaction=False)
        for name in names:
            pipe.exists(keys.meta(name))
        gone = [name for name, exists in zip(names, pipe.execute(), strict=True) if not exists]
        # the keys go first, the queue marked gone with them; a publish through a binding
        # before it went writes a stream again: the keys go once more after the bindings,
        # and a declaration while the queue is marked deletes what comes later (CREATE)
        specs = {name: store.forget_spec(name) or QueueSpec() for name in gone}
        collected = [name for name in gone if self._collect_keys(name, specs[name])]
        if not collected:
            return []
        store.bindings.unbind_queues(set(collected))
        for name in collected:
            self._collect_keys(name, specs[name])
        store.client.srem(keys.queues, *collected)
        pipe = store.client.pipeline(transaction=False)
        for name in collected:
            pipe.exists(keys.meta(name))
        again = [name for name, exists in zip(collected, pipe.execute(), strict=True) if exists]
        if again:
            # declared again while their bindings went: listed again (a binding made in
            # that moment is lost, as if made before the queue expired)
            store.client.sadd(keys.queues, *again)
        logger.info("%d expired queue(s) collected: %s", len(collected), ", ".join(map(repr, collected[:20])))
        return collected

    def _collect_keys(self, queue: str, spec: QueueSpec) -> bool:
        """Delete what is left of ``queue`` unless it was declared again, and mark it
        gone; whether it was not declared again."""
        self.forget(queue)
        keys = [*self.keys_of(queue, spec), self.store.keys.gone(queue)]
        return bool(self._collect(keys=keys, args=[GONE_FOR_MS]))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
