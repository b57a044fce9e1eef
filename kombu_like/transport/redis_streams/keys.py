"""Every Redis key name of the Redis Streams transport (nobody else builds key strings).

Cluster-safe: every key of queue ``q`` carries the hash tag ``{q}``, so a queue's streams,
its metadata and its delayed and dead-letter keys live in one slot and a script may touch
them together.  ``global_keyprefix`` ``P`` stays outside the braces::

    P{q}            the queue's stream (priority level 0)
    P{q}:p<level>   the stream of priority level ``level`` (1 .. x-max-priority)
    P{q}:meta       hash: the queue's declared arguments
    P{q}:delayed    sorted set: messages not due yet (score: due time, ms)
    P{q}:sched      stream: one short entry (field ``due``, ms) each time a message is
                    scheduled due before every other one waiting; consumers wait on it
    P{q}:dead       stream: messages rejected without a dead-letter exchange, or
                    delivered ``max_deliveries`` times
    P{q}:gone       string: there a while after the sweep collected the expired queue
                    (see :mod:`.expiry`)

Redis hashes the part between the first ``{`` and the next ``}``, and the whole key when
that part is empty: on a cluster (``StreamKeys(cluster=True)``) a queue whose name is
empty or starts with ``}`` would have its keys in different slots, so its tag is
``~`` and the name's UTF-8 bytes in hex instead (``}x`` -> ``P{~7d78}``), and so is the
tag of a name starting with ``~`` (no encoded tag is another queue's name).  Every other
name is its own tag, on a cluster and on one server alike.

Exchanges and bindings: one hash per exchange, ``P{_kls.exchange.<name>}`` (declaration
and bindings together, so each command touches one key), with the names of declared
exchanges and queues in ``P{_kls}.exchanges`` and ``P{_kls}.queues``;
``P{_kls}.expiry-sweep`` is there while a sweep of expired queues is recent.
"""

from __future__ import annotations

__all__ = ["GROUP", "StreamKeys", "cluster_tag", "queue_of_tag"]

#: the consumer group every queue's streams have (one group per queue)
GROUP = "kombu_like"

#: first character of a hex-encoded hash tag (cluster only)
_ENCODED = "~"


def cluster_tag(queue: str) -> str:
    """What goes between the braces of ``queue``'s keys on a Redis Cluster: the name, or
    where Redis would read an empty hash tag from it (``""``, ``}...``) ``~`` and the
    name in hex (and so for names starting with ``~``, so no two queues share keys)."""
    if queue and queue[0] not in "}" + _ENCODED:
        return queue
    return _ENCODED + queue.encode("utf-8", "surrogatepass").hex()


def queue_of_tag(key: str) -> str:
    """The queue name inside a key's ``{...}`` (decoded where it is hex-encoded)."""
    start = key.find("{")
    end = key.rfind("}")
    tag = key[start + 1 : end] if start >= 0 and end > start else key
    if tag.startswith(_ENCODED):
        try:
            return bytes.fromhex(tag[1:]).decode("utf-8", "surrogatepass")
        except ValueError:
            return tag
    return tag


class StreamKeys:
    """Key names under one ``global_keyprefix``; ``cluster``: of a Redis Cluster (where
    a queue's keys must share a slot, whatever its name)."""

    __slots__ = ("prefix", "cluster", "_streams")

    def __init__(self, prefix: str = "", *, cluster: bool = False) -> None:
        self.prefix = prefix
        self.cluster = cluster
        self._streams: dict[tuple[str, int], str] = {}

    def tag(self, queue: str) -> str:
        """``P{q}``: the start every key of ``queue`` shares."""
        return f"{self.prefix}{{{cluster_tag(queue) if self.cluster else queue}}}"

    def stream(self, queue: str, level: int = 0) -> str:
        """The stream of ``queue`` holding priority ``level``."""
        cached = self._streams.get((queue, level))
        if cached is None:
            cached = self.tag(queue) if not level else f"{self.tag(queue)}:p{level}"
            if len(self._streams) < 10_000:
                self._streams[queue, level] = cached
        return cached

    def streams(self, queue: str, max_priority: int = 0) -> list[str]:
        """Every level stream of ``queue``, highest priority first (the order of takes)."""
        return [self.stream(queue, level) for level in range(max_priority, -1, -1)]

    def meta(self, queue: str) -> str:
        """Hash of ``queue``'s declared arguments."""
        return f"{self.tag(queue)}:meta"

    def delayed(self, queue: str) -> str:
        """Sorted set of ``queue``'s messages not due yet."""
        return f"{self.tag(queue)}:delayed"

    def schedule(self, queue: str) -> str:
        """Stream telling ``queue``'s consumers of delayed messages due sooner than the others."""
        return f"{self.tag(queue)}:sched"

    def dead(self, queue: str) -> str:
        """Stream of ``queue``'s dead-lettered messages (no dead-letter exchange)."""
        return f"{self.tag(queue)}:dead"

    def gone(self, queue: str) -> str:
        """String there a while after the sweep collected ``queue`` (it expired)."""
        return f"{self.tag(queue)}:gone"

    def exchange(self, name: str) -> str:
        """Hash of exchange ``name``: its declaration and its bindings."""
        return f"{self.prefix}{{_kls.exchange.{name}}}"

    @property
    def binding_prefix(self) -> str:
        """The start of every exchange's hash (what the binding cache watches)."""
        return f"{self.prefix}{{_kls.exchange."

    @property
    def exchanges(self) -> str:
        """Set of the declared exchanges' names."""
        return f"{self.prefix}{{_kls}}.exchanges"

    @property
    def queues(self) -> str:
        """Set of the declared queues' names."""
        return f"{self.prefix}{{_kls}}.queues"

    @property
    def expiry_sweep(self) -> str:
        """String expiring once the next sweep of expired queues is due (see :mod:`.expiry`)."""
        return f"{self.prefix}{{_kls}}.expiry-sweep"
