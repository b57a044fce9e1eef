"""Kombu's Redis key layout, as plain functions and one small object.

Every name here is part of the wire format shared with Kombu 5 (``kombu.transport.redis``):

* a queue is a list per priority step: ``<queue>`` holds priorities below the second step,
  ``<queue><sep><step>`` the others (``sep`` is ``"\\x06\\x16"``, steps ``0, 3, 6, 9``);
  producers ``LPUSH``, consumers pop from the right;
* bindings of an exchange are the set ``_kombu.binding.<exchange>`` whose members are
  ``<routing key><sep><pattern><sep><queue>``; Kombu also lists bindings of queues without
  ``x-expires`` in ``_kombu.binding_permanent.<exchange>``;
* delivered, unacknowledged messages are the hash ``unacked`` (delivery tag ->
  ``[envelope, exchange, routing key]`` as JSON) and the sorted set ``unacked_index``
  (delivery tag scored by delivery time in seconds since the epoch);
* fanout messages are published on the channel ``/<db>.<exchange>`` (with
  ``fanout_patterns``: ``/<db>.<exchange>/<routing key>``);
* ``global_keyprefix`` is prepended to every key and pub/sub channel name.

Keys that only this library writes live under ``_kombu_like.``: the exchange declarations
(a hash), the declared queues (a hash) and the dead-letter lists of undecodable messages.

The *cluster* layout (``key_layout="cluster"``) departs from Kombu's so that every key one
script or multi-key command touches hashes to one Redis Cluster slot: each queue's keys
carry the hash tag ``{<queue>}`` (``<prefix>{<queue>}`` and its priority lists, its own
unacked hash ``<prefix>{<queue>}:<unacked>`` and index ``<prefix>{<queue>}:<unacked_index>``,
its dead-letter list ``<prefix><deadletter_prefix>{<queue>}``), each exchange's binding
sets and binding deadlines the tag ``{<exchange>}``.  Kombu does not read these keys.
"""

from __future__ import annotations

from bisect import bisect
from collections.abc import Sequence
from typing import Any

__all__ = [
    "DEFAULT_PRIORITY_STEPS",
    "DEFAULT_SEP",
    "KEY_LAYOUTS",
    "KeyLayout",
    "clamp_priority",
    "topic_pattern",
]

DEFAULT_SEP = "\x06\x16"
DEFAULT_PRIORITY_STEPS = (0, 3, 6, 9)
#: ``"kombu"``: Kombu's key names; ``"cluster"``: every queue's keys in one cluster slot
KEY_LAYOUTS = ("kombu", "cluster")

#: Kombu clamps message priorities into this range before choosing a step
MIN_PRIORITY = 0
MAX_PRIORITY = 9


def clamp_priority(value: Any) -> int:
    """The priority Kombu files a message under (0..9; anything unreadable is 0)."""
    try:
        return max(min(int(value), MAX_PRIORITY), MIN_PRIORITY)
    except (TypeError, ValueError):
        return 0


def _escape_regex(text: str, keep: str) -> str:
    out = []
    for char in text:
        if char.isalnum() or char in keep:
            out.append(char)
        elif char == "\000":
            out.append("\\000")
        else:
            out.append("\\" + char)
    return "".join(out)


def topic_pattern(routing_key: str) -> str:
    """The regular expression Kombu stores next to a topic binding's routing key.

    Kombu matches topic messages against it (``*`` -> ``[^.]+``, ``#`` -> ``.*?``), so a
    binding made here routes Kombu's publishes the way Kombu would route them.
    """
    words = _escape_regex(routing_key, ".#*").split(".")
    wildcards = {"*": r"[^\.]+", "#": r".*?"}
    return "^{}$".format(r"\.".join(wildcards.get(word, word) for word in words))


class KeyLayout:
    """Every Redis key name of one connection's configuration.

    With ``cluster`` the names of one queue (or one exchange's bindings) share a hash tag,
    so what the transport does in one script or one command stays in one slot.
    """

    def __init__(
        self,
        prefix: str = "",
        sep: str = DEFAULT_SEP,
        priority_steps: Sequence[int] = DEFAULT_PRIORITY_STEPS,
        unacked: str = "unacked",
        unacked_index: str = "unacked_index",
        fanout_prefix: str = "/0.",
        deadletter_prefix: str = "_kombu_like.deadletter.",
        lowest_priority_first: bool = True,
        cluster: bool = False,
    ) -> None:
        if cluster and "{" in prefix:
            # the first "{" of a key opens its hash tag: the prefix's would put every key
            # in one slot, or split a queue's keys across slots
            raise ValueError(f"global_keyprefix must not contain '{{' with the cluster key layout, got {prefix!r}")
        steps = sorted({int(step) for step in priority_steps})
        if not steps or steps[0] != 0:
            raise ValueError(f"priority_steps must start at 0, got {list(priority_steps)!r}")
        self.prefix = prefix
        self.sep = sep
        self.steps = steps
        # the order in which a consumer looks at the priority lists of a queue
        self.consume_steps = steps if lowest_priority_first else steps[::-1]
        self.unacked = prefix + unacked
        self.unacked_index = prefix + unacked_index
        self.fanout_prefix = prefix + fanout_prefix
        self.deadletter_prefix = prefix + deadletter_prefix
        self.exchanges = prefix + "_kombu_like.exchanges"
        self.queues = prefix + "_kombu_like.queues"
        self.binding_prefix = prefix + "_kombu.binding."
        self.permanent_prefix = prefix + "_kombu.binding_permanent."
        self.binding_deadlines = prefix + "_kombu.binding_deadlines"
        self._list_cache: dict[tuple[str, int], str] = {}
        self.cluster = cluster
        self._unacked_name = unacked
        self._unacked_index_name = unacked_index
        #: the dead-letter list of a queue is ``deadletter_head + queue + deadletter_tail``
        self.deadletter_head = self.deadletter_prefix + ("{" if cluster else "")
        self.deadletter_tail = "}" if cluster else ""
        self._bookkeeping_suffixes = (f"}}:{unacked}".encode(), f"}}:{unacked_index}".encode())
        self._bookkeeping = frozenset((self.unacked.encode(), self.unacked_index.encode()))

    # -- queues ------------------------------------------------------------------------
    def step(self, priority: Any) -> int:
        """The priority step a message of ``priority`` is filed under."""
        steps = self.steps
        return steps[bisect(steps, clamp_priority(priority)) - 1]

    def _queue_key(self, queue: str) -> str:
        # the name every key of the queue starts with
        if not self.cluster:
            return f"{self.prefix}{queue}"
        if not queue:
            # Redis hashes the whole key when the tag "{}" is empty: its keys would scatter
            raise ValueError("a queue needs a name with the cluster key layout (its name is its keys' hash tag)")
        return f"{self.prefix}{{{queue}}}"

    def list_key(self, queue: str, priority: Any = 0) -> str:
        """The list holding ``queue``'s messages of ``priority``."""
        step = self.step(priority) if priority else 0
        cache_key = (queue, step)
        key = self._list_cache.get(cache_key)
        if key is None:
            base = self._queue_key(queue)
            key = f"{base}{self.sep}{step}" if step else base
            if len(self._list_cache) < 10_000:
                self._list_cache[cache_key] = key
        return key

    def list_keys(self, queue: str) -> list[str]:
        """All priority lists of ``queue``, in the order a consumer pops them."""
        base = self._queue_key(queue)
        return [f"{base}{self.sep}{step}" if step else base for step in self.consume_steps]

    def deadletter(self, queue: str) -> str:
        """Where undecodable entries found in ``queue`` are kept."""
        return self.deadletter_head + queue + self.deadletter_tail

    # -- the unacked store -------------------------------------------------------------
    def unacked_of(self, queue: str) -> str:
        """The unacked hash recording ``queue``'s deliveries (the one global hash in
        Kombu's layout)."""
        return f"{self._queue_key(queue)}:{self._unacked_name}" if self.cluster else self.unacked

    def unacked_index_of(self, queue: str) -> str:
        """The sorted set of ``queue``'s delivery tags by delivery time."""
        return f"{self._queue_key(queue)}:{self._unacked_index_name}" if self.cluster else self.unacked_index

    def is_bookkeeping(self, key: bytes) -> bool:
        """Whether ``key`` is an unacked hash or index (a change to it is no message)."""
        if self.cluster:
            return key.endswith(self._bookkeeping_suffixes)
        return key in self._bookkeeping

    # -- bindings ----------------------------------------------------------------------
    def _exchange_name(self, exchange: str) -> str:
        return f"{{{exchange}}}" if self.cluster else exchange

    def table(self, exchange: str) -> str:
        """The set of ``exchange``'s bindings."""
        return self.binding_prefix + self._exchange_name(exchange)

    def permanent(self, exchange: str) -> str:
        """The set of ``exchange``'s bindings of queues that do not expire."""
        return self.permanent_prefix + self._exchange_name(exchange)

    def deadlines(self, exchange: str) -> str:
        """The sorted set holding when ``exchange``'s binding table may be swept (Kombu's
        one global set; in the cluster layout one per exchange, in its table's slot)."""
        return f"{self.binding_deadlines}.{{{exchange}}}" if self.cluster else self.binding_deadlines

    def member(self, routing_key: str, pattern: str, queue: str) -> str:
        """A binding as Kombu stores it in the exchange's set."""
        return self.sep.join([routing_key or "", pattern or "", queue or ""])

    def parse_member(self, member: str) -> tuple[str, str, str] | None:
        parts = member.split(self.sep)
        if len(parts) != 3:
            return None
        return parts[0], parts[1], parts[2]

    # -- fanout --------------------------------------------------------------------
    def fanout_channel(self, exchange: str, routing_key: str, patterns: bool) -> str:
        """The pub/sub channel (or pattern) of a fanout exchange, as Kombu names it."""
        if routing_key and patterns:
            return f"{self.fanout_prefix}{exchange}/{routing_key}"
        return f"{self.fanout_prefix}{exchange}"
