"""The carrot-style interface Kombu keeps in ``kombu.compat``.

:class:`Publisher` and :class:`Consumer` take an exchange, a queue and a routing key as
plain names and declare what they need; :class:`ConsumerSet` consumes from several
queues at once.  New code uses :class:`~kombu_like.Producer` and
:class:`~kombu_like.Consumer` directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count
from typing import Any

from . import messaging
from .entity import Exchange, Queue

__all__ = ["Consumer", "ConsumerSet", "Publisher", "entry_to_queue"]

#: build a :class:`~kombu_like.Queue` from a name and a dict of options
entry_to_queue = Queue.from_dict


def _drain(connection: Any, consumer: Any, no_ack: bool | None, limit: int | None) -> Iterator[Any]:
    consumer.consume(no_ack=no_ack)
    done = 0
    while not limit or done < limit:
        yield connection.drain_events()
        done += 1


class Publisher(messaging.Producer):
    """A producer of one exchange, given by name (declared as ``exchange_type``)."""

    exchange: Any = ""
    exchange_type = "direct"
    routing_key = ""
    durable = True
    auto_delete = False
    _closed = False

    def __init__(
        self,
        connection: Any,
        exchange: Any = None,
        routing_key: str | None = None,
        exchange_type: str | None = None,
        durable: bool | None = None,
        auto_delete: bool | None = None,
        channel: Any = None,
        **kwargs: Any,
    ) -> None:
        self.exchange = exchange or self.exchange
        self.exchange_type = exchange_type or self.exchange_type
        self.routing_key = routing_key or self.routing_key
        if durable is not None:
            self.durable = durable
        if auto_delete is not None:
            self.auto_delete = auto_delete
        if not isinstance(self.exchange, Exchange):
            self.exchange = Exchange(
                self.exchange,
                type=self.exchange_type,
                routing_key=self.routing_key,
                durable=self.durable,
                auto_delete=self.auto_delete,
            )
        super().__init__(channel or connection, self.exchange, **kwargs)

    def send(self, *args: Any, **kwargs: Any) -> Any:
        """Carrot's name for :meth:`publish`."""
        return self.publish(*args, **kwargs)

    def close(self) -> None:
        super().close()
        self._closed = True

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def backend(self) -> Any:
        """The channel (carrot's name)."""
        return self.channel


class Consumer(messaging.Consumer):
    """A consumer of one queue bound to one exchange, given by names, on its own channel."""

    queue: Any = ""
    exchange: Any = ""
    routing_key = ""
    exchange_type = "direct"
    durable = True
    exclusive = False
    auto_delete = False
    _closed = False

    def __init__(
        self,
        connection: Any,
        queue: str | None = None,
        exchange: str | None = None,
        routing_key: str | None = None,
        exchange_type: str | None = None,
        durable: bool | None = None,
        exclusive: bool | None = None,
        auto_delete: bool | None = None,
        **kwargs: Any,
    ) -> None:
        self.backend = connection.channel()
        if durable is not None:
            self.durable = durable
        if exclusive is not None:
            self.exclusive = exclusive
        if auto_delete is not None:
            self.auto_delete = auto_delete
        self.queue = queue or self.queue
        self.exchange = exchange or self.exchange
        self.exchange_type = exchange_type or self.exchange_type
        self.routing_key = routing_key or self.routing_key
        bound_exchange = Exchange(
            self.exchange,
            type=self.exchange_type,
            routing_key=self.routing_key,
            durable=self.durable,
            auto_delete=self.auto_delete,
        )
        declared = Queue(
            self.queue,
            exchange=bound_exchange,
            routing_key=self.routing_key,
            durable=self.durable,
            exclusive=self.exclusive,
            auto_delete=self.auto_delete,
        )
        super().__init__(self.backend, declared, **kwargs)

    def revive(self, channel: Any) -> None:
        self.backend = channel
        super().revive(channel)

    def close(self) -> None:
        """Cancel consuming and close this consumer's channel."""
        self.cancel()
        self.backend.close()
        self._closed = True

    def __enter__(self) -> Consumer:  # type: ignore[override]
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        return self.iterqueue(infinite=True)

    def fetch(self, no_ack: bool | None = None, enable_callbacks: bool = False) -> Any:
        """Take one message from the queue (``None`` when empty); with
        ``enable_callbacks``, also hand it to the callbacks."""
        if no_ack is None:
            no_ack = self.no_ack
        message = self.queues[0].get(no_ack)
        if message and enable_callbacks:
            self.receive(message.payload, message)
        return message

    def process_next(self) -> Any:
        raise NotImplementedError("Use fetch(enable_callbacks=True)")

    def discard_all(self, filterfunc: Any = None) -> int:
        """Purge the queue (filters are not supported)."""
        if filterfunc is not None:
            raise NotImplementedError("discard_all does not implement filters")
        return int(self.purge())

    def iterconsume(self, limit: int | None = None, no_ack: bool | None = None) -> Iterator[Any]:
        """Start consuming, then drain events ``limit`` times (forever without one)."""
        return _drain(self.connection, self, no_ack, limit)

    def wait(self, limit: int | None = None) -> list[Any]:
        return list(self.iterconsume(limit))

    def iterqueue(self, limit: int | None = None, infinite: bool = False) -> Iterator[Any]:
        """Fetch messages one by one; stops at an empty queue unless ``infinite``."""
        for taken in count():
            item = self.fetch()
            if (not infinite and item is None) or (limit and taken >= limit):
                break
            yield item


class ConsumerSet(messaging.Consumer):
    """One consumer for the queues of several :class:`Consumer` objects and/or a dict."""

    def __init__(
        self,
        connection: Any,
        from_dict: dict[str, Any] | None = None,
        consumers: Any = None,
        channel: Any = None,
        **kwargs: Any,
    ) -> None:
        self._provided_channel = channel is not None
        self.backend = channel if channel is not None else connection.channel()
        queues: list[Queue] = []
        for consumer in consumers or ():
            queues.extend(consumer.queues)
        for name, options in (from_dict or {}).items():
            queues.append(Queue.from_dict(name, **options))
        super().__init__(self.backend, queues, **kwargs)

    def iterconsume(self, limit: int | None = None, no_ack: bool = False) -> Iterator[Any]:
        return _drain(self.connection, self, no_ack, limit)

    def discard_all(self) -> int:
        return int(self.purge())

    def add_consumer_from_dict(self, queue: str, **options: Any) -> Any:
        return self.add_queue(Queue.from_dict(queue, **options))

    def add_consumer(self, consumer: Any) -> None:
        for queue in consumer.queues:
            self.add_queue(queue)

    def revive(self, channel: Any) -> None:
        self.backend = channel
        super().revive(channel)

    def close(self) -> None:
        self.cancel()
        if not self._provided_channel:
            self.channel.close()
