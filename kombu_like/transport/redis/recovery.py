"""Giving messages back: the visibility-timeout sweep and interrupted takes.

A message a consumer took stays recorded in the unacked hash until it is acknowledged.
When the consumer dies, any consumer of the database gives it back once it is older than
``visibility_timeout``; when only the reply of a take was lost, the consumer that took it
gives it back at once (:class:`~.command.CommandConnection` does that, since its ledger
holds such takes).  Both go through :data:`.scripts.RESTORE`, which first checks the
message is still recorded -- so a message is never given back twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..virtual.routing import route
from . import scripts
from .codec import check, dumps, loads_plain, preview, text
from .command import scripts_conversation
from .conversation import Conversation, call, exchange
from .keys import KeyLayout, clamp_priority
from .options import RedisOptions

if TYPE_CHECKING:
    from .bindings import Bindings
    from .command import CommandConnection

__all__ = ["Restorer", "mark_redelivered"]

logger = logging.getLogger("kombu_like.transport.redis")

#: how many overdue unacked messages one sweep step looks at
SWEEP_CHUNK = 200

Call = tuple[scripts.Script, list[Any], list[Any]]


def mark_redelivered(payload: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``payload`` flagged as redelivered, as Kombu flags restored messages, with
    a fresh delivery tag so a late ack of the previous delivery cannot erase the new one."""
    copy = dict(payload)
    props = dict(copy.get("properties") or {})
    info = dict(props.get("delivery_info") or {})
    info["redelivered"] = True
    props["delivery_info"] = info
    props["delivery_tag"] = str(uuid.uuid4())
    copy["properties"] = props
    headers = copy.get("headers")
    copy["headers"] = dict(headers) if isinstance(headers, dict) else {}
    copy["headers"]["redelivered"] = True
    return copy


class Restorer:
    """Puts recorded messages back on their queues for one store; ``bindings`` routes
    again the messages Kombu recorded by exchange and routing key."""

    def __init__(self, cmd: CommandConnection, keys: KeyLayout, options: RedisOptions, bindings: Bindings) -> None:
        self.cmd = cmd
        self.keys = keys
        self.options = options
        self.bindings = bindings

    def sweep(self, queues: Sequence[str] = ()) -> int:
        """Give back every message unacknowledged for longer than ``visibility_timeout``
        (with the cluster layout: of the declared queues and ``queues``)."""
        return self.cmd.converse_in_steps(self.sweep_conversation(queues), self.bindings.lock)

    def sweep_conversation(self, queues: Sequence[str] = ()) -> Conversation[int]:
        """The sweep; with the cluster layout it looks at the unacked index of every queue
        declared in the database (a dead consumer's included) and of ``queues``."""
        keys = self.keys
        limit = self.options.unacked_restore_limit
        owners: list[str | None] = [None]
        if keys.cluster:
            declared = yield from call("HKEYS", keys.queues)
            owners = list(
                (yield from self._owners_due(sorted({text(name) for name in declared} | set(queues))))
            )  # Kombu's one unacked store
        restored = 0
        for owner in owners:
            if limit is not None and restored >= limit:
                break
            restored += yield from self._sweep_store(owner, None if limit is None else limit - restored)
        if restored:
            logger.info(
                "restored %d message(s) left unacknowledged for more than %ss",
                restored,
                self.options.visibility_timeout,
            )
        return restored

    def _owners_due(self, names: list[str]) -> Conversation[list[str]]:
        """Those of queues ``names`` whose unacked store holds an overdue message, looked
        up in one round trip (one command per queue: each index is in its own slot)."""
        if not names:
            return []
        ceiling = repr(time.time() - self.options.visibility_timeout)
        index = self.keys.unacked_index_of
        firsts = yield from exchange(
            [("ZRANGE", index(name), "-inf", ceiling, "BYSCORE", "LIMIT", 0, 1) for name in names]
        )
        for reply in firsts:
            if isinstance(reply, Exception):
                raise reply
        return [name for name, first in zip(names, firsts, strict=True) if first]

    def _sweep_store(self, owner: str | None, limit: int | None) -> Conversation[int]:
        """Sweep one unacked store: Kombu's (``owner`` None) or queue ``owner``'s."""
        keys = self.keys
        unacked = keys.unacked if owner is None else keys.unacked_of(owner)
        index = keys.unacked_index if owner is None else keys.unacked_index_of(owner)
        restored = 0
        while limit is None or restored < limit:
            ceiling = time.time() - self.options.visibility_timeout
            chunk = SWEEP_CHUNK if limit is None else min(SWEEP_CHUNK, limit - restored)
            [tags] = yield from exchange([("ZRANGE", index, "-inf", repr(ceiling), "BYSCORE", "LIMIT", 0, chunk)])
            if isinstance(tags, Exception):
                raise tags
            if not tags:
                break
            values = yield from call("HMGET", unacked, *tags)
            # each script checks its message is still recorded: no lock held across these
            calls = []
            for tag, value in zip(tags, values, strict=True):
                calls.append((yield from self._restore_call(text(tag), value, owner)))
            replies = yield from scripts_conversation(calls)
            check(replies, "restoring unacknowledged messages")
            restored += sum(1 for reply in replies if reply == 1)
            if len(tags) < chunk:
                break
        return restored

    def _restore_call(self, tag: str, value: Any, owner: str | None) -> Conversation[Call]:
        keys = self.keys
        if owner is None:
            index = [keys.unacked, keys.unacked_index]
        else:
            index = [keys.unacked_of(owner), keys.unacked_index_of(owner)]
        if value is None:
            return scripts.RESTORE, index, [tag, "", "head", "1"]  # drops a stale index entry
        try:
            payload, exchange_name, routing_key = loads_plain(value)
            if not isinstance(payload, dict):
                raise TypeError("the envelope is not an object")
            if owner is not None:
                # the cluster layout: back to the queue whose store recorded it (its slot)
                queues = [owner]
            elif not exchange_name:
                queues = [routing_key]
            else:
                queues = yield from self._route_back(exchange_name, routing_key, payload)
        except Exception as exc:  # written by another program, or damaged
            return self._unreadable(tag, value, exc, index, owner)
        if not queues:
            dead = keys.deadletter(f"{exchange_name}:{routing_key}")
            logger.error(
                "No queue is bound to exchange %r with routing key %r any more; the restored message is kept "
                "in the Redis list %r",
                exchange_name,
                routing_key,
                dead,
            )
            return scripts.RESTORE, [*index, dead], [tag, value, "tail", "1"]
        fresh = mark_redelivered(payload)
        priority = clamp_priority(fresh["properties"].get("priority"))
        lists = [keys.list_key(queue, priority) for queue in queues]
        return scripts.RESTORE, [*index, *lists], [tag, dumps(fresh), "head", "1"]

    def _unreadable(self, tag: str, value: Any, exc: BaseException, index: list[str], owner: str | None) -> Call:
        dead = self.keys.deadletter("unacked" if owner is None else owner)
        logger.error(
            "Cannot read unacked entry %r (%s); moved it to the Redis list %r: %s", tag, exc, dead, preview(value)
        )
        return scripts.RESTORE, [*index, dead], [tag, value, "tail", "1"]

    def _route_back(self, exchange_name: str, routing_key: str, payload: dict[str, Any]) -> Conversation[list[str]]:
        # Kombu records the exchange and routing key, not the queue: route it again
        bindings = self.bindings
        info = yield from bindings.exchange_conversation(exchange_name)
        exchange_type = info.type if info is not None else "direct"
        headers = payload.get("headers") if exchange_type == "headers" else None
        table = yield from bindings.get_bindings_conversation(exchange_name)
        return route(exchange_type, table, routing_key, headers)
