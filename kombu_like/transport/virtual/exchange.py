"""Exchange types of the virtual transports, in Kombu's class form.

kombu_like routes with :func:`kombu_like.transport.virtual.route`; these classes give
code written against Kombu's ``kombu.transport.virtual.exchange`` the same lookups over a
binding table of ``(routing_key, pattern, queue)`` rows.  Topic keys follow RabbitMQ's
rules (``*`` one word, ``#`` zero or more words).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .routing import topic_matches

__all__ = ["DirectExchange", "ExchangeType", "FanoutExchange", "TopicExchange"]

#: one binding row: (routing key, compiled-pattern text or None, queue)
TableRow = tuple[str, Any, str]


class ExchangeType:
    """What an exchange type does with a routing key; subclasses implement :meth:`lookup`."""

    type: str | None = None

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def lookup(self, table: Iterable[TableRow], exchange: str, routing_key: str, default: Any) -> set[str]:
        """The queues of ``table`` a message with ``routing_key`` goes to."""
        raise NotImplementedError("subclass responsibility")

    def prepare_bind(
        self, queue: str, exchange: str, routing_key: str, arguments: Mapping[str, Any] | None
    ) -> TableRow:
        """The ``(routing_key, pattern, queue)`` row a binding is stored as."""
        return routing_key, None, queue

    def equivalent(
        self,
        prev: Mapping[str, Any],
        exchange: str,
        type: str,
        durable: bool,
        auto_delete: bool,
        arguments: Mapping[str, Any] | None,
    ) -> bool:
        """True when a new declaration matches the previous one, ``prev`` (a dict)."""
        return (
            type == prev["type"]
            and durable == prev["durable"]
            and auto_delete == prev["auto_delete"]
            and dict(arguments or {}) == dict(prev["arguments"] or {})
        )

    def deliver(self, message: Any, exchange: str, routing_key: str, **kwargs: Any) -> None:
        """Put ``message`` into every queue the channel routes it to."""
        queues = self.channel.lookup(exchange, routing_key)
        self.channel.store.put_many([(queue, message, 0) for queue in queues])


class DirectExchange(ExchangeType):
    """Routes to the queues bound with exactly the message's routing key."""

    type = "direct"

    def lookup(self, table: Iterable[TableRow], exchange: str, routing_key: str, default: Any) -> set[str]:
        return {queue for key, _, queue in table if key == routing_key}


class TopicExchange(ExchangeType):
    """Routes by dotted words: ``*`` matches one word, ``#`` zero or more."""

    type = "topic"

    #: regular expression text of each wildcard (used by :meth:`key_to_pattern`)
    wildcards = {"*": r"[^\.]+", "#": r".*?"}

    def lookup(self, table: Iterable[TableRow], exchange: str, routing_key: str, default: Any) -> set[str]:
        return {queue for key, _, queue in table if topic_matches(key, routing_key)}

    def prepare_bind(
        self, queue: str, exchange: str, routing_key: str, arguments: Mapping[str, Any] | None
    ) -> TableRow:
        return routing_key, self.key_to_pattern(routing_key), queue

    def key_to_pattern(self, rkey: str) -> str:
        """A regular expression for the binding key ``rkey`` (Kombu's form)."""
        words = (self.wildcards.get(word) or re.escape(word) for word in rkey.split("."))
        return "^{}$".format(r"\.".join(words))


class FanoutExchange(ExchangeType):
    """Routes to every bound queue, whatever the routing key."""

    type = "fanout"

    def lookup(self, table: Iterable[TableRow], exchange: str, routing_key: str, default: Any) -> set[str]:
        return {queue for _, _, queue in table}


#: exchange type name -> class
STANDARD_EXCHANGE_TYPES: dict[str, type[ExchangeType]] = {
    "direct": DirectExchange,
    "topic": TopicExchange,
    "fanout": FanoutExchange,
}
