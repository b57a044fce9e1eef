"""Exchanges and bindings kept in Redis.

Bindings live in Kombu's sets (``_kombu.binding.<exchange>``), so Kombu routes to queues
bound here and the other way round.  Exchange declarations live in a hash of their own
(Kombu keeps them in process memory only), so a process routes by the type another one
declared.  Both are read through :class:`~.cache.BindingCache`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..virtual.routing import Binding, ExchangeInfo
from . import scripts
from .cache import BindingCache
from .codec import check, text
from .command import script_conversation
from .conversation import Conversation, call, exchange
from .keys import KeyLayout, topic_pattern
from .options import RedisOptions

if TYPE_CHECKING:
    from .command import CommandConnection
    from .fanout import FanoutListener

__all__ = ["Bindings"]

logger = logging.getLogger("kombu_like.transport.redis")

#: Kombu keeps binding tables of expiring queues at least this long (milliseconds)
MIN_BINDING_TTL_MS = 60 * 60 * 1000


def encode_exchange(info: ExchangeInfo) -> str:
    return json.dumps(
        {
            "type": info.type,
            "durable": bool(info.durable),
            "auto_delete": bool(info.auto_delete),
            "arguments": dict(info.arguments or {}),
        },
        sort_keys=True,
    )


def decode_exchange(name: str, raw: Any) -> ExchangeInfo | None:
    try:
        data = json.loads(raw)
        return ExchangeInfo(
            name,
            str(data["type"]),
            bool(data.get("durable")),
            bool(data.get("auto_delete")),
            data.get("arguments") or {},
        )
    except (ValueError, TypeError, KeyError):
        logger.warning("ignoring an unreadable declaration of exchange %r in Redis: %r", name, raw[:200])
        return None


def binding_pattern(exchange_type: str, binding: Binding) -> str:
    """The middle field of a binding member: Kombu's regex for topic exchanges, the
    binding arguments (JSON) for headers exchanges, empty otherwise."""
    if exchange_type == "topic":
        return topic_pattern(binding.routing_key or "")
    if exchange_type == "headers":
        return json.dumps(dict(binding.arguments or {}), sort_keys=True, default=str)
    return ""


def binding_ttl(expires: int) -> int:
    """How long Kombu keeps the binding table of a queue expiring after ``expires`` ms."""
    return max(expires * 2, MIN_BINDING_TTL_MS)


class Bindings:
    """Exchange declarations and bindings of one store, through its command connection.

    ``expires`` is the store's queue -> ``x-expires`` map (read, never written here);
    ``fanout`` hears of fanout bindings.  A lock of its own keeps the cache and the tables
    it was read from in step; it is taken before the command connection's, never after.
    """

    def __init__(
        self,
        connection_factory: Callable[[], Any],
        cmd: CommandConnection,
        keys: KeyLayout,
        options: RedisOptions,
        expires: Mapping[str, int],
        fanout: FanoutListener,
    ) -> None:
        self.cmd = cmd
        self.keys = keys
        self.expires = expires
        self.fanout = fanout
        self.lock = threading.RLock()
        self.cache = BindingCache(connection_factory, cmd, keys, options, self.lock)
        # queue -> exchanges it was bound to through this store
        self._bound: dict[str, set[str]] = {}

    # -- reading ---------------------------------------------------------------------
    def _parse(self, members: Any) -> list[Binding]:
        out: list[Binding] = []
        for raw in members or ():
            parsed = self.keys.parse_member(text(raw))
            if parsed is None:
                continue
            routing_key, pattern, queue = parsed
            arguments = None
            if pattern.startswith("{"):
                try:
                    arguments = json.loads(pattern)
                except ValueError:
                    arguments = None
            out.append(Binding(queue, routing_key, arguments))
        return out

    def _infer_type(self, members: Any) -> str | None:
        # an exchange never declared through this library: Kombu's topic bindings carry a
        # regex, headers bindings made here carry JSON arguments
        for raw in members or ():
            parsed = self.keys.parse_member(text(raw))
            if parsed is None:
                continue
            if parsed[1].startswith("^"):
                return "topic"
            if parsed[1].startswith("{"):
                return "headers"
        return None

    def exchange(self, name: str) -> ExchangeInfo | None:
        with self.lock:
            cache = self.cache
            if cache.fresh() and name in cache.exchanges:  # every publish: no conversation
                return cache.exchanges[name]
            return self.cmd.converse(self.exchange_conversation(name))

    def exchange_conversation(self, name: str) -> Conversation[ExchangeInfo | None]:
        cache = self.cache
        caching = cache.fresh()
        if caching and name in cache.exchanges:
            return cache.exchanges[name]
        raw, members = yield from exchange([("HGET", self.keys.exchanges, name), ("SMEMBERS", self.keys.table(name))])
        check((raw, members), f"looking up exchange {name!r}")
        info = decode_exchange(name, raw) if raw is not None else None
        if info is None:
            inferred = self._infer_type(members)
            if inferred is not None:
                info = ExchangeInfo(name, inferred)
        if caching:
            cache.exchanges[name] = info
            cache.tables[name] = self._parse(members)
        return info

    def get_bindings(self, exchange: str) -> list[Binding]:
        with self.lock:
            cache = self.cache
            if cache.fresh():
                found = cache.tables.get(exchange)
                if found is not None:
                    return list(found)
            return self.cmd.converse(self.get_bindings_conversation(exchange))

    def get_bindings_conversation(self, name: str) -> Conversation[list[Binding]]:
        cache = self.cache
        caching = cache.fresh()
        if caching:
            found = cache.tables.get(name)
            if found is not None:
                return list(found)
        members = yield from call("SMEMBERS", self.keys.table(name))
        bindings = self._parse(members)
        if caching:
            cache.tables[name] = bindings
        return list(bindings)

    def all_bindings(self) -> list[tuple[str, Binding]]:
        with self.lock:
            return self.cmd.converse(self.all_bindings_conversation())

    def all_bindings_conversation(self) -> Conversation[list[tuple[str, Binding]]]:
        exchanges = [text(name) for name in (yield from call("HKEYS", self.keys.exchanges))]
        found: list[tuple[str, Binding]] = []
        for name in sorted(exchanges):
            found += [(name, binding) for binding in (yield from self.get_bindings_conversation(name))]
        return found

    @property
    def version(self) -> int:
        with self.lock:
            self.cache.fresh(reuse=True)
            return self.cache.version

    # -- writing ---------------------------------------------------------------------
    def declare_exchange(self, info: ExchangeInfo) -> None:
        with self.lock:
            self.cmd.converse(self.declare_exchange_conversation(info))

    def declare_exchange_conversation(self, info: ExchangeInfo) -> Conversation[None]:
        created, current = yield from exchange(
            [
                ("HSETNX", self.keys.exchanges, info.name, encode_exchange(info)),
                ("HGET", self.keys.exchanges, info.name),
            ]
        )
        check((created, current), f"declaring exchange {info.name!r}")
        if self.cache.fresh():
            self.cache.exchanges[info.name] = decode_exchange(info.name, current) if current else info

    def delete_exchange(self, name: str) -> None:
        with self.lock:
            self.cmd.converse(self.delete_exchange_conversation(name))

    def delete_exchange_conversation(self, name: str) -> Conversation[None]:
        keys = self.keys
        replies = yield from exchange(
            [
                ("HDEL", keys.exchanges, name),
                ("DEL", keys.table(name), keys.permanent(name)),
                ("ZREM", keys.deadlines(name), name),
            ]
        )
        self.cache.clear()
        check(replies, f"deleting exchange {name!r}")

    def member_conversation(self, exchange_name: str, binding: Binding) -> Conversation[tuple[str, str]]:
        """The exchange's type and the binding's member as Kombu stores it."""
        info = yield from self.exchange_conversation(exchange_name)
        exchange_type = info.type if info is not None else "direct"
        pattern = binding_pattern(exchange_type, binding)
        return exchange_type, self.keys.member(binding.routing_key, pattern, binding.queue)

    def bind(self, exchange: str, binding: Binding) -> None:
        with self.lock:
            exchange_type = self.cmd.converse(self.bind_conversation(exchange, binding))
        if exchange_type == "fanout":
            self.fanout.bound(binding.queue, exchange, binding.routing_key or "")

    def bind_conversation(self, exchange_name: str, binding: Binding) -> Conversation[str]:
        """Bind; the exchange's type (a fanout binding is the caller's to subscribe to)."""
        keys = self.keys
        exchange_type, member = yield from self.member_conversation(exchange_name, binding)
        self._bound.setdefault(binding.queue, set()).add(exchange_name)
        table = keys.table(exchange_name)
        expires = self.expires.get(binding.queue)
        if expires:
            # Kombu's way for expiring queues: the table lives while it is refreshed
            ttl = binding_ttl(expires)
            yield from script_conversation(
                scripts.REFRESH_BINDING, [table, keys.deadlines(exchange_name)], [member, exchange_name, ttl]
            )
        else:
            # Kombu's sweep keeps a table while its permanent set has members
            commands = [("SADD", table, member), ("SADD", keys.permanent(exchange_name), member)]
            check((yield from exchange(commands)), f"binding queue {binding.queue!r} to exchange {exchange_name!r}")
        self.cache.clear()
        return exchange_type

    def unbind(self, exchange: str, binding: Binding) -> None:
        with self.lock:
            self.cmd.converse(self.unbind_conversation(exchange, binding))

    def unbind_conversation(self, exchange_name: str, binding: Binding) -> Conversation[None]:
        keys = self.keys
        exchange_type, member = yield from self.member_conversation(exchange_name, binding)
        if exchange_type == "fanout":
            self.fanout.unbound(binding.queue, exchange_name, binding.routing_key or "")
        commands = [("SREM", keys.table(exchange_name), member), ("SREM", keys.permanent(exchange_name), member)]
        check((yield from exchange(commands)), f"unbinding queue {binding.queue!r} from exchange {exchange_name!r}")
        self.cache.clear()

    def unbind_queue(self, queue: str) -> None:
        """Remove every binding of ``queue``: those made here and those in the tables of
        exchanges declared through this library."""
        with self.lock:
            self.cmd.converse(self.unbind_queue_conversation(queue))

    def unbind_queue_conversation(self, queue: str) -> Conversation[None]:
        keys = self.keys
        self.fanout.unbound(queue)
        declared = [text(name) for name in (yield from call("HKEYS", keys.exchanges))]
        exchanges = sorted(set(declared) | self._bound.pop(queue, set()))
        if not exchanges:
            return
        tables = yield from exchange([("SMEMBERS", keys.table(name)) for name in exchanges])
        commands: list[tuple[Any, ...]] = []
        for name, members in zip(exchanges, tables, strict=True):
            if isinstance(members, Exception):
                continue
            doomed = [m for m in members if (keys.parse_member(text(m)) or ("", "", ""))[2] == queue]
            if doomed:
                commands += [("SREM", keys.table(name), *doomed), ("SREM", keys.permanent(name), *doomed)]
        if commands:
            check((yield from exchange(commands)), f"removing the bindings of queue {queue!r}")
        self.cache.clear()

    def refresh_conversation(self, queue: str, expires: int) -> Conversation[list[tuple[Any, ...]]]:
        """Commands that keep the binding tables of an expiring queue alive (Kombu's way)."""
        keys = self.keys
        script = scripts.REFRESH_BINDING
        commands: list[tuple[Any, ...]] = []
        for name in list(self._bound.get(queue, ())):
            for binding in (yield from self.get_bindings_conversation(name)):
                if binding.queue == queue:
                    _, member = yield from self.member_conversation(name, binding)
                    table_keys = [keys.table(name), keys.deadlines(name)]
                    commands.append(
                        ("EVALSHA", script.sha, len(table_keys), *table_keys, member, name, binding_ttl(expires))
                    )
        return commands

    def close(self) -> None:
        self.cache.close()
