"""A complete queue-store transport in one file: ``toy://``, queues in process memory."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from kombu_like.exceptions import ConnectionError
from kombu_like.transport.base import Capabilities
from kombu_like.transport.virtual import Delivery, QueueStore, VirtualTransport


class ToyStore(QueueStore):
    """Named FIFO queues; a condition variable wakes consumers when a message arrives."""

    capabilities = Capabilities(exchange_types=frozenset({"direct", "topic", "fanout"}))
    body_encoding = None  # envelopes never leave the process: keep bodies as bytes

    def __init__(self) -> None:
        super().__init__()  # exchanges and bindings: InMemoryBindings, in this process
        self.queues: dict[str, deque[dict[str, Any]]] = {}
        self.ready = threading.Condition()

    def declare_queue(self, queue: str, arguments: Mapping[str, Any] | None = None) -> None:
        with self.ready:
            self.queues.setdefault(queue, deque())

    def queue_exists(self, queue: str) -> bool:
        return queue in self.queues

    def put(self, queue: str, payload: dict[str, Any], priority: int = 0) -> None:
        with self.ready:
            self.queues.setdefault(queue, deque()).append(payload)
            self.ready.notify_all()

    def get(self, queues: Sequence[str], timeout: float | None, max_count: int = 1) -> list[Delivery]:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.ready:
            while True:
                for name in queues:
                    waiting = self.queues.get(name)
                    if waiting:
                        count = min(max_count, len(waiting))
                        return [Delivery(name, waiting.popleft()) for _ in range(count)]
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                self.ready.wait(remaining)

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Nothing to do: a taken message lives only in its channel until acknowledged."""

    def requeue(self, deliveries: Sequence[Delivery], redelivered: bool = True) -> None:
        with self.ready:
            for delivery in reversed(deliveries):
                payload = delivery.payload
                if redelivered:
                    info = dict(payload["properties"].get("delivery_info") or {}, redelivered=True)
                    payload = {**payload, "properties": {**payload["properties"], "delivery_info": info}}
                self.queues.setdefault(delivery.queue, deque()).appendleft(payload)
            self.ready.notify_all()

    def purge(self, queue: str) -> int:
        with self.ready:
            waiting = self.queues.get(queue)
            count = len(waiting) if waiting else 0
            if waiting:
                waiting.clear()
            return count

    def size(self, queue: str) -> int:
        return len(self.queues.get(queue) or ())

    def delete_queue(self, queue: str) -> None:
        with self.ready:
            self.queues.pop(queue, None)

    def list_queues(self) -> list[str]:
        return sorted(self.queues)


# one store per process on purpose: that is what toy:// means, as memory:// does
_STORE = ToyStore()


class Transport(VirtualTransport):
    """``toy://``: every connection of the process shares one store."""

    driver_type = "toy"
    driver_name = "toy"
    Store = ToyStore  # the transport's capabilities are the ones ToyStore declares

    def create_store(self) -> ToyStore:
        return _STORE

    def close_store(self, store: QueueStore) -> None:
        """The store outlives connections: nothing to close."""

    def translate_error(self, exc: BaseException) -> BaseException:
        # a real driver's "connection lost" errors become the library's ConnectionError here
        if isinstance(exc, BrokenPipeError):
            return ConnectionError(f"toy store went away: {exc}")
        return super().translate_error(exc)
