"""What a queue store implements.

A queue store is a place that can hold named queues of messages: a Redis server, SQS, an
sqlite file, process memory.  The virtual channel gives it exchanges, bindings, prefetch,
acknowledgement bookkeeping and redelivery; the store only moves envelopes in and out.

Envelopes are Kombu's virtual-transport JSON envelope, as plain dicts::

    {"body": "<encoded>", "content-type": "application/json", "content-encoding": "utf-8",
     "headers": {...},
     "properties": {"delivery_mode": 2, "priority": 0, "body_encoding": "base64",
                    "delivery_info": {"exchange": "...", "routing_key": "..."},
                    "delivery_tag": "<uuid>", ...}}

A store that serializes them (Redis, SQS, sqlite) uses JSON, so a Kombu process reads them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..base import Capabilities
from .routing import Binding, ExchangeInfo

__all__ = ["BindingTable", "Delivery", "QueueStore"]


@dataclass(slots=True)
class Delivery:
    """One envelope taken from a queue and not yet acknowledged.

    ``receipt`` is whatever the store needs to acknowledge or restore it later (a Redis
    unacked-hash key, an SQS receipt handle, a row id); the virtual layer never looks in it.
    """

    queue: str
    payload: dict[str, Any]
    receipt: Any = None


class BindingTable:
    """Exchanges and bindings kept in process memory, guarded by a lock.

    Stores without a shared place for bindings use this; ``version`` changes on every
    binding change so routing caches know when to drop what they cached.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exchanges: dict[str, ExchangeInfo] = {}
        self.bindings: dict[str, list[Binding]] = {}
        self.version = 0

    def declare_exchange(self, info: ExchangeInfo) -> None:
        with self._lock:
            self.exchanges.setdefault(info.name, info)

    def exchange(self, name: str) -> ExchangeInfo | None:
        return self.exchanges.get(name)

    def delete_exchange(self, name: str) -> None:
        with self._lock:
            self.exchanges.pop(name, None)
            self.bindings.pop(name, None)
            self.version += 1

    def bind(self, exchange: str, binding: Binding) -> None:
        with self._lock:
            current = self.bindings.setdefault(exchange, [])
            if binding not in current:
                current.append(binding)
                self.version += 1

    def unbind(self, exchange: str, binding: Binding) -> None:
        with self._lock:
            current = self.bindings.get(exchange, [])
            if binding in current:
                current.remove(binding)
                self.version += 1

    def unbind_queue(self, queue: str) -> None:
        with self._lock:
            for exchange, current in self.bindings.items():
                self.bindings[exchange] = [b for b in current if b.queue != queue]
            self.version += 1

    def get_bindings(self, exchange: str) -> list[Binding]:
        return list(self.bindings.get(exchange, ()))

    def all_bindings(self) -> list[tuple[str, Binding]]:
        with self._lock:
            return [(ex, b) for ex, items in self.bindings.items() for b in items]


class QueueStore:
    """The small interface a queue store implements.

    Every method may be called from several threads of one process, one Connection's
    channels share one store object, and every blocking call honours its timeout.
    Errors are raised as the driver raises them; the transport's ``translate_error`` maps
    them onto the library's exception tree.
    """

    #: what the store does natively (priority, ttl, batch_publish, fanout ...)
    capabilities: Capabilities = Capabilities()
    #: how message bodies are encoded inside the envelope (Kombu's default is base64);
    #: ``None`` keeps bytes as they are, for stores that never serialize the envelope
    body_encoding: str | None = "base64"

    def __init__(self) -> None:
        self.table = BindingTable()

    # -- queues (must implement) ------------------------------------------------------
    def declare_queue(self, queue: str, arguments: Mapping[str, Any] | None = None) -> None:
        """Create ``queue`` if it does not exist; ``arguments`` are the AMQP ``x-`` args."""
        raise NotImplementedError

    def queue_exists(self, queue: str) -> bool:
        """True when ``queue`` exists (or the store cannot tell a missing queue apart)."""
        raise NotImplementedError

    def put(self, queue: str, payload: dict[str, Any], priority: int = 0) -> None:
        """Append ``payload`` to ``queue``."""
        raise NotImplementedError

    def put_many(self, items: Sequence[tuple[str, dict[str, Any], int]]) -> None:
        """Append many ``(queue, payload, priority)``; stores batch this in one round trip."""
        for queue, payload, priority in items:
            self.put(queue, payload, priority)

    def get(self, queues: Sequence[str], timeout: float | None, max_count: int = 1) -> list[Delivery]:
        """Take up to ``max_count`` envelopes from the first of ``queues`` that has any.

        Wait at most ``timeout`` seconds (``None``: forever, ``0``: do not wait) for one to
        arrive, and return ``[]`` when none did.  Taken envelopes stay recoverable until
        :meth:`ack` (at-least-once).
        """
        raise NotImplementedError

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Forget ``deliveries`` for good."""
        raise NotImplementedError

    def reject(self, deliveries: Sequence[Delivery]) -> None:
        """Discard ``deliveries`` rejected without requeue.

        Same as :meth:`ack` unless the store dead-letters natively (an SQS redrive policy).
        """
        self.ack(deliveries)

    def requeue(self, deliveries: Sequence[Delivery], redelivered: bool = True) -> None:
        """Put ``deliveries`` back at the head of their queues, marking them redelivered."""
        raise NotImplementedError

    def purge(self, queue: str) -> int:
        """Remove every ready message of ``queue`` and return how many there were."""
        raise NotImplementedError

    def size(self, queue: str) -> int:
        """Number of ready messages in ``queue``."""
        raise NotImplementedError

    def delete_queue(self, queue: str) -> None:
        """Delete ``queue`` and its messages."""
        raise NotImplementedError

    # -- optional ------------------------------------------------------------------
    def list_queues(self) -> list[str]:
        raise NotImplementedError(f"{type(self).__name__} cannot list queues")

    def consumer_count(self, queue: str) -> int:
        return 0

    def put_fanout(self, exchange: str, payload: dict[str, Any], routing_key: str) -> bool:
        """Broadcast to a fanout exchange natively; return False to let the virtual layer
        put a copy into every bound queue instead."""
        return False

    def close(self) -> None:
        """Release connections held by the store."""

    # -- exchanges and bindings: in-process by default --------------------------------
    def declare_exchange(self, info: ExchangeInfo) -> None:
        self.table.declare_exchange(info)

    def exchange(self, name: str) -> ExchangeInfo | None:
        return self.table.exchange(name)

    def delete_exchange(self, name: str) -> None:
        self.table.delete_exchange(name)

    def bind(self, exchange: str, binding: Binding) -> None:
        self.table.bind(exchange, binding)

    def unbind(self, exchange: str, binding: Binding) -> None:
        self.table.unbind(exchange, binding)

    def get_bindings(self, exchange: str) -> list[Binding]:
        return self.table.get_bindings(exchange)

    @property
    def bindings_version(self) -> Any:
        """Changes whenever bindings change, so routing caches can be dropped."""
        return self.table.version
