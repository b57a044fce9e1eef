"""Dead-lettering: messages rejected without requeue, delivered ``max_deliveries`` times,
or expired in a queue with a dead-letter exchange.

A queue declared with ``x-dead-letter-exchange`` (and optionally
``x-dead-letter-routing-key``) sends them there, as RabbitMQ does: a copy is routed through
the exchange's bindings with an ``x-death`` header naming the queue and the reason
(``rejected``, ``delivery_limit``, ``expired``), then the original is acknowledged.  A
copy loses its per-message ``expiration`` (kept in ``x-death`` as
``original-expiration``), as on RabbitMQ.  Any other queue, and a dead-letter exchange
that routes a message nowhere, keep rejected and spent messages in the queue's ``:dead``
stream (one script: copied with a ``reason`` field, then acknowledged and deleted), with a
log line naming queue and message id.  Expired messages of a queue without a dead-letter
exchange are dropped where a take, a count or a publish finds them, as on RabbitMQ.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..virtual import Delivery
from ..virtual.routing import route
from .codec import QueueSpec, Receipt
from .delayed import DELAY_HEADER
from .keys import GROUP

if TYPE_CHECKING:
    from .store import StreamsStore

__all__ = ["DeadLetters"]

logger = logging.getLogger("kombu_like.transport.redis_streams")


class DeadLetters:
    """Where a store's dead letters go."""

    def __init__(self, store: StreamsStore) -> None:
        self.store = store

    def send(self, deliveries: Sequence[Delivery], reason: str) -> None:
        """Send ``deliveries`` to their queue's dead-letter exchange where it declares one,
        else to its ``:dead`` stream (a copy first, then the original goes)."""
        store = self.store
        by_queue: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            by_queue[delivery.queue].append(delivery)
        for queue, items in by_queue.items():
            spec = store.spec(queue)
            if spec.dead_letter_exchange is not None:
                unrouted = self._to_exchange(queue, spec, items, reason)
                store.write_acks([d for d in items if d not in unrouted])
                items = unrouted
            grouped = store._by_stream(items)
            if not grouped:
                continue
            pipe = store.client.pipeline(transaction=False)
            for stream, ids in grouped.items():
                store.scripts["DEAD"](keys=[stream, store.keys.dead(queue)], args=[GROUP, reason, *ids], client=pipe)
            pipe.execute()
            store.leases.remove(d.receipt for d in items if isinstance(d.receipt, Receipt))

    def _to_exchange(self, queue: str, spec: QueueSpec, items: list[Delivery], reason: str) -> list[Delivery]:
        """Publish copies of ``items`` to ``queue``'s dead-letter exchange; the ones no
        queue is bound for are returned (they go to the ``:dead`` stream)."""
        store = self.store
        exchange = spec.dead_letter_exchange or ""
        info = store.bindings.exchange(exchange) if exchange else None
        bindings = store.bindings.get_bindings(exchange) if exchange else []
        out: list[tuple[str, dict[str, Any], int]] = []
        unrouted: list[Delivery] = []
        for delivery in items:
            payload = delivery.payload
            props = dict(payload.get("properties") or {})
            original = dict(props.get("delivery_info") or {})
            routing_key = spec.dead_letter_routing_key or str(original.get("routing_key") or "")
            headers = dict(payload.get("headers") or {})
            # delayed once already: a dead letter is routed now, not delayed again
            headers.pop(DELAY_HEADER, None)
            if exchange:
                targets = route(info.type if info else "direct", bindings, routing_key, headers)
            else:
                targets = [routing_key] if routing_key else []
            if not targets:
                logger.warning(
                    "message %s of queue %r: dead-letter exchange %r routes it nowhere; kept in %r",
                    getattr(delivery.receipt, "entry_id", "?"),
                    queue,
                    exchange,
                    store.keys.dead(queue),
                )
                unrouted.append(delivery)
                continue
            death = {"queue": queue, "reason": reason, "count": 1, "exchange": original.get("exchange", "")}
            if props.get("expiration") is not None:
                # as RabbitMQ: the copy does not expire again where it is dead-lettered to
                death["original-expiration"] = props.pop("expiration")
            deaths = list(headers.get("x-death") or [])
            deaths.insert(0, death)
            headers["x-death"] = deaths
            props["delivery_info"] = {"exchange": exchange, "routing_key": routing_key}
            copy = {**payload, "headers": headers, "properties": props}
            out.extend((target, copy, int(props.get("priority") or 0)) for target in targets)
        if out:
            store.put_many(out)
        return unrouted
