"""Exchanges and bindings kept in Redis: one hash per exchange.

The hash holds the exchange's declaration (field ``declared``) and its bindings (one field
each, ``b:<JSON of queue, routing key, arguments>``, valued by when it was made, so they
are listed in that order).  Every command touches one key, so it works unchanged on a
Redis Cluster.  A publish reads the hash once: :meth:`StreamBindings.exchange` keeps the
bindings it read for the :meth:`StreamBindings.get_bindings` call that follows on the same
thread, and a binding made by another process is seen by the next publish.  With the
``binding_cache`` option (on a single server) what was read is kept in a
:class:`~kombu_like.transport.redis.cache.BindingCache`, which Redis's client-side caching
invalidations keep fresh, so a publish reads nothing.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from ..redis.cache import BindingCache, TrackingConnection
from ..virtual.routing import Binding, ExchangeInfo
from .keys import StreamKeys

__all__ = ["StreamBindings"]

logger = logging.getLogger("kombu_like.transport.redis_streams")

_DECLARED = b"declared"
_BINDING = "b:"


def _binding_field(binding: Binding) -> str:
    arguments = dict(binding.arguments) if binding.arguments else None
    return _BINDING + json.dumps([binding.queue, binding.routing_key, arguments], sort_keys=True, default=str)


def _parse(name: str, raw: dict[bytes, bytes]) -> tuple[ExchangeInfo | None, list[Binding]]:
    info = None
    declared = raw.get(_DECLARED)
    if declared is not None:
        try:
            data = json.loads(declared)
            info = ExchangeInfo(
                name, str(data["type"]), bool(data["durable"]), bool(data["auto_delete"]), data.get("arguments") or {}
            )
        except (ValueError, TypeError, KeyError):
            logger.warning("ignoring an unreadable declaration of exchange %r in Redis: %r", name, declared[:200])
    found: list[tuple[float, Binding]] = []
    for field, made in raw.items():
        if not field.startswith(b"b:"):
            continue
        try:
            queue, routing_key, arguments = json.loads(field[2:])
            found.append((float(made), Binding(str(queue), str(routing_key), arguments or None)))
        except (ValueError, TypeError):
            logger.warning("ignoring an unreadable binding of exchange %r in Redis: %r", name, field[:200])
    found.sort(key=lambda item: item[0])
    return info, [binding for _, binding in found]


class StreamBindings:
    """The :class:`~kombu_like.transport.virtual.store.BindingStore` of the transport.

    ``read_hash`` reads one hash (an exchange's, on every publish): the store's hot path.
    ``tracking`` -- a factory of RESP2 connections for the invalidations, the connection
    whose tracking they are redirected from, the options -- turns the cache on.
    """

    def __init__(
        self,
        client: Any,
        keys: StreamKeys,
        read_hash: Callable[[str], dict[bytes, bytes]] | None = None,
        tracking: tuple[Callable[[], Any], TrackingConnection, Any] | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self._read_hash = read_hash or client.hgetall
        self.lock = threading.RLock()
        self.cache: BindingCache | None = None
        if tracking is not None:
            factory, tracked, options = tracking
            self.cache = BindingCache(factory, tracked, keys, options, self.lock)
        self._read = threading.local()
        self._reads = itertools.count()
        self._version = 0

    @property
    def version(self) -> int:
        cache = self.cache
        if cache is not None:
            with self.lock:
                # the exchange lookup just before looked for invalidations: it stands (a
                # cache Redis refused changes version with every look: nothing is reused)
                cache.fresh(reuse=True)
                return cache.version
        # bindings are read from Redis with every exchange lookup: what a route cache
        # holds is never reused past it
        return self._version

    def _changed(self) -> None:
        """This store changed an exchange or its bindings: seen by its next publish at once."""
        self._version = next(self._reads)
        if self.cache is not None:
            with self.lock:
                self.cache.clear()

    def close(self) -> None:
        """Close the cache's invalidation connection."""
        if self.cache is not None:
            self.cache.close()

    def declare_exchange(self, info: ExchangeInfo) -> None:
        declaration = json.dumps(
            {
                "type": info.type,
                "durable": bool(info.durable),
                "auto_delete": bool(info.auto_delete),
                "arguments": dict(info.arguments or {}),
            },
            sort_keys=True,
            default=str,
        )
        self.client.hsetnx(self.keys.exchange(info.name), _DECLARED, declaration)
        self.client.sadd(self.keys.exchanges, info.name)
        self._changed()

    def _load(self, name: str) -> tuple[ExchangeInfo | None, list[Binding]]:
        return _parse(name, self._read_hash(self.keys.exchange(name)))

    def exchange(self, name: str) -> ExchangeInfo | None:
        return self.exchange_versioned(name)[0]

    def exchange_versioned(self, name: str) -> tuple[ExchangeInfo | None, int]:
        """Exchange ``name`` and the :attr:`version` of the bindings read with it, in one
        look at the cache (a publish needs both)."""
        cache = self.cache
        if cache is not None:
            with self.lock:
                caching = cache.fresh()
                if caching and name in cache.exchanges:  # every publish: nothing read
                    self._read.last = (name, cache.tables[name])
                    return cache.exchanges[name], cache.version
                info, bindings = self._load(name)
                if caching:
                    cache.exchanges[name] = info
                    cache.tables[name] = bindings
                self._read.last = (name, bindings)
                # not caching: fresh() has changed the version, what was routed goes
                return info, cache.version
        info, bindings = self._load(name)
        self._read.last = (name, bindings)
        self._version = version = next(self._reads)
        return info, version

    def delete_exchange(self, name: str) -> None:
        self.client.delete(self.keys.exchange(name))
        self.client.srem(self.keys.exchanges, name)
        self._changed()

    def bind(self, exchange: str, binding: Binding) -> None:
        self.client.hsetnx(self.keys.exchange(exchange), _binding_field(binding), repr(time.time()))
        self.client.sadd(self.keys.exchanges, exchange)
        self._changed()

    def unbind(self, exchange: str, binding: Binding) -> None:
        self.client.hdel(self.keys.exchange(exchange), _binding_field(binding))
        self._changed()

    def unbind_queue(self, queue: str) -> None:
        self.unbind_queues({queue})

    def unbind_queues(self, queues: Collection[str]) -> None:
        """Remove every binding of ``queues`` (each exchange read once)."""
        for raw in self.client.smembers(self.keys.exchanges):
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            _, bindings = self._load(name)
            gone = [_binding_field(b) for b in bindings if b.queue in queues]
            if gone:
                self.client.hdel(self.keys.exchange(name), *gone)
        self._changed()

    def get_bindings(self, exchange: str) -> list[Binding]:
        last = getattr(self._read, "last", None)
        self._read.last = None
        if last is not None and last[0] == exchange:
            return list(last[1])
        return self._load(exchange)[1]

    def all_bindings(self) -> list[tuple[str, Binding]]:
        out: list[tuple[str, Binding]] = []
        for raw in sorted(self.client.smembers(self.keys.exchanges)):
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            out.extend((name, binding) for binding in self._load(name)[1])
        return out
