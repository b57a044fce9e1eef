"""Application events: publish to a topic exchange, subscribe as a group or as broadcast.

An event has a type (``"order.created"``: the routing key) and a payload.  Publishers
send events to a topic exchange (``events`` by default); subscribers run handlers for
the types they match (``"order.*"``, ``"order.#"``), in one of two ways:

* **group** (the default): every instance of a service shares one queue per handler, so
  exactly one instance handles each event (competing consumers);
* **broadcast**: every instance has its own queue, so every instance handles every event.

::

    publisher = EventPublisher(Connection("amqp://"))
    publisher.publish("order.created", {"id": 42})

    subscriber = EventSubscriber(Connection("amqp://"), service="billing")

    @subscriber.handler("order.*")
    def bill(event):
        print(event.type, event.payload)

    @subscriber.handler("config.changed", broadcast=True)
    def reload(event):
        ...

    subscriber.run()     # until subscriber.should_stop = True

Events are published whether or not anybody subscribed: an event matching no queue is
dropped by the broker.  Declare the group queues ahead (:meth:`EventSubscriber.declare`)
to keep events published before the first subscriber starts.  A handler that raises gets
its event rejected (dead-lettered where the queue has a dead-letter exchange) and logged,
or requeued with ``requeue_on_error=True``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .common import uuid
from .connection import Connection
from .entity import Exchange, Queue
from .message import Message
from .messaging import Consumer, Producer
from .mixins import ConsumerMixin

__all__ = ["DEFAULT_EXCHANGE", "Event", "EventPublisher", "EventSubscriber", "Subscription"]

logger = logging.getLogger(__name__)

#: name of the topic exchange events go through unless told otherwise
DEFAULT_EXCHANGE = "events"
#: header naming the service that published an event
SOURCE_HEADER = "x-event-source"

_unsafe = re.compile(r"[^A-Za-z0-9_.\-]")


def _exchange(exchange: str | Exchange) -> Exchange:
    if isinstance(exchange, Exchange):
        return exchange
    return Exchange(exchange, type="topic", durable=True)


@dataclass(frozen=True)
class Event:
    """An event as a handler receives it."""

    #: the event type (its routing key), e.g. ``"order.created"``
    type: str
    #: the decoded payload
    payload: Any
    #: the message headers
    headers: Mapping[str, Any]
    #: the publisher's event id (the message id)
    id: str | None
    #: when it was published (seconds since the epoch), if the publisher said
    timestamp: float | None
    #: the message itself (for ack state, properties, delivery info)
    message: Message = field(repr=False)


class EventPublisher:
    """Publishes events to a topic exchange (thread-safe: publishes are serialized).

    ``source`` (for example the service name) travels in the ``x-event-source`` header.
    """

    def __init__(
        self,
        connection: Connection,
        exchange: str | Exchange = DEFAULT_EXCHANGE,
        serializer: str | None = None,
        source: str | None = None,
    ) -> None:
        self.connection = connection
        self.exchange = _exchange(exchange)
        self.serializer = serializer
        self.source = source
        self._lock = threading.Lock()
        self._producer: Producer | None = None

    def publish(
        self,
        event_type: str,
        payload: Any,
        headers: Mapping[str, Any] | None = None,
        retry: bool = True,
        retry_policy: Mapping[str, Any] | None = None,
        **properties: Any,
    ) -> str:
        """Publish one event; return its id.

        ``retry`` (on by default) reconnects and retries on connection loss following
        ``retry_policy``; other keyword arguments are message properties.
        """
        if not event_type:
            raise ValueError("an event needs a type (its routing key), e.g. 'order.created'")
        event_id = properties.pop("message_id", None) or uuid()
        event_headers = dict(headers or {})
        if self.source:
            event_headers.setdefault(SOURCE_HEADER, self.source)
        with self._lock:
            if self._producer is None:
                self._producer = Producer(self.connection, serializer=self.serializer)
            self._producer.publish(
                payload,
                exchange=self.exchange,
                routing_key=event_type,
                headers=event_headers,
                message_id=event_id,
                timestamp=properties.pop("timestamp", None) or time.time(),
                type=event_type,
                retry=retry,
                retry_policy=retry_policy,
                **properties,
            )
        return event_id


@dataclass
class Subscription:
    """One handler's subscription: its pattern, mode and queue."""

    pattern: str
    handler: Callable[[Event], Any]
    broadcast: bool
    queue: Queue


class EventSubscriber(ConsumerMixin):
    """Runs handlers for events of the patterns they subscribed to.

    ``service`` names the group: instances with the same service name share group
    subscriptions.  Each :meth:`subscribe` gets its own queue, bound to the exchange with
    the pattern (topic syntax: ``*`` is one word, ``#`` any number of words)::

        group:      <exchange>.<service>.<name>            durable, shared
        broadcast:  <exchange>.<service>.<name>.<unique>   auto-deleted, this instance's

    ``name`` defaults to the handler's module and qualified name.  Events are
    acknowledged after the handler returns.  Run with :meth:`run` or :meth:`consume`.
    """

    def __init__(
        self,
        connection: Connection,
        service: str,
        exchange: str | Exchange = DEFAULT_EXCHANGE,
        accept: Iterable[str] | None = None,
        prefetch_count: int | None = 10,
        requeue_on_error: bool = False,
    ) -> None:
        if not service:
            raise ValueError("EventSubscriber needs a service name (it names the shared queues)")
        self.connection = connection
        self.service = service
        self.exchange = _exchange(exchange)
        self.accept = list(accept) if accept is not None else None
        self.prefetch_count = prefetch_count
        self.requeue_on_error = requeue_on_error
        self.instance_id = uuid().replace("-", "")[:12]
        self.subscriptions: list[Subscription] = []

    def subscribe(
        self,
        pattern: str,
        handler: Callable[[Event], Any],
        broadcast: bool = False,
        name: str | None = None,
    ) -> Subscription:
        """Run ``handler(event)`` for events whose type matches ``pattern``."""
        label = name or f"{getattr(handler, '__module__', 'handler')}.{getattr(handler, '__qualname__', 'handler')}"
        base = f"{self.exchange.name}.{self.service}.{_unsafe.sub('_', label)}"
        if broadcast:
            queue = Queue(
                f"{base}.{self.instance_id}", self.exchange, routing_key=pattern, durable=False, auto_delete=True
            )
        else:
            queue = Queue(base, self.exchange, routing_key=pattern, durable=True)
        for existing in self.subscriptions:
            if existing.queue.name == queue.name and existing.pattern != pattern:
                raise ValueError(
                    f"queue {queue.name!r} is already subscribed to {existing.pattern!r}; "
                    f"pass name= to subscribe {pattern!r} with the same handler"
                )
        subscription = Subscription(pattern, handler, broadcast, queue)
        self.subscriptions.append(subscription)
        return subscription

    def handler(
        self, pattern: str, broadcast: bool = False, name: str | None = None
    ) -> Callable[[Callable[[Event], Any]], Callable[[Event], Any]]:
        """Decorator form of :meth:`subscribe`."""

        def decorate(fun: Callable[[Event], Any]) -> Callable[[Event], Any]:
            self.subscribe(pattern, fun, broadcast=broadcast, name=name)
            return fun

        return decorate

    def declare(self) -> None:
        """Declare the exchange and every subscription queue and binding now."""
        with self.connection.clone() as conn:
            channel = conn.default_channel
            for subscription in self.subscriptions:
                subscription.queue(channel).declare()

    def get_consumers(self, Consumer: Callable[..., Consumer], channel: Any) -> list[Consumer]:  # noqa: N803
        if not self.subscriptions:
            raise ValueError(f"EventSubscriber {self.service!r} has no subscriptions")
        return [
            Consumer(
                queues=[subscription.queue],
                on_message=self._on_message_for(subscription),
                accept=self.accept,
                prefetch_count=self.prefetch_count,
            )
            for subscription in self.subscriptions
        ]

    def _on_message_for(self, subscription: Subscription) -> Callable[[Message], None]:
        def on_message(message: Message) -> None:
            self.handle(subscription, message)

        return on_message

    def handle(self, subscription: Subscription, message: Message) -> None:
        """Decode ``message``, run the subscription's handler, acknowledge."""
        try:
            payload = message.decode()
        except Exception as exc:
            self.on_decode_error(message, exc)
            return
        info = message.delivery_info or {}
        properties = message.properties or {}
        event = Event(
            type=str(info.get("routing_key") or properties.get("type") or ""),
            payload=payload,
            headers=message.headers or {},
            id=properties.get("message_id"),
            timestamp=properties.get("timestamp"),
            message=message,
        )
        try:
            subscription.handler(event)
        except Exception:
            logger.exception(
                "event handler for %r failed on event %s (%s) from queue %r; %s",
                subscription.pattern,
                event.id,
                event.type,
                subscription.queue.name,
                "requeueing it" if self.requeue_on_error else "rejecting it",
            )
            if not message.acknowledged:
                errors = (*self.connection.connection_errors, *self.connection.channel_errors)
                message.reject_log_error(logger, errors, requeue=self.requeue_on_error)
            return
        if not message.acknowledged:
            message.ack()
