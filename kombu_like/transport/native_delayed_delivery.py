"""RabbitMQ "native delayed delivery" topology (Kombu's
``kombu.transport.native_delayed_delivery``), used by Celery for ETA/countdown tasks on
quorum queues.

A delay of up to ``2**28 - 1`` seconds is written in binary into the routing key
(``"0.0.1. ... .1.<original key>"``, one bit per level, most significant first).  Level
``n`` is a topic exchange and a queue of the same name (``celery_delayed_<n>``) whose
messages expire after ``2**n`` seconds into the next level's exchange; a message whose bit
for a level is 0 skips that level's queue.  After level 0 it reaches the delivery exchange
(``celery_delayed_delivery``), bound to the original exchanges.  The names and routing keys
are Kombu's, so Kombu and kombu_like processes share the same topology.
"""

from __future__ import annotations

import re

from ..connection import Connection
from ..entity import Exchange, Queue, binding
from ..log import get_logger

__all__ = [
    "CELERY_DELAYED_DELIVERY_EXCHANGE",
    "MAX_LEVEL",
    "MAX_NUMBER_OF_BITS_TO_USE",
    "bind_queue_to_native_delayed_delivery_exchange",
    "calculate_routing_key",
    "declare_native_delayed_delivery_exchanges_and_queues",
    "level_name",
]

logger = get_logger(__name__)

MAX_NUMBER_OF_BITS_TO_USE = 28
MAX_LEVEL = MAX_NUMBER_OF_BITS_TO_USE - 1
CELERY_DELAYED_DELIVERY_EXCHANGE = "celery_delayed_delivery"

# the bits a previous delay put in front of a routing key (a retried task carries it)
_DELAY_PREFIX = re.compile(rf"^(?:[01]\.){{{MAX_NUMBER_OF_BITS_TO_USE}}}")


def level_name(level: int, prefix: str | None = None) -> str:
    """Name of the exchange and queue of ``level`` (``[<prefix>_]celery_delayed_<level>``)."""
    if level < 0:
        raise ValueError("level must be a non-negative number")
    name = f"celery_delayed_{level}"
    return f"{prefix}_{name}" if prefix else name


def _delivery_exchange_name(prefix: str | None = None) -> str:
    return f"{prefix}_{CELERY_DELAYED_DELIVERY_EXCHANGE}" if prefix else CELERY_DELAYED_DELIVERY_EXCHANGE


def _level_key(level: int, bit: str) -> str:
    # a level sees its own bit after (MAX_LEVEL - level) higher bits
    return "*." * (MAX_LEVEL - level) + f"{bit}.#"


def declare_native_delayed_delivery_exchanges_and_queues(
    connection: Connection, queue_type: str, prefix: str | None = None
) -> None:
    """Declare every level's exchange and queue, and the delivery exchange.

    ``queue_type`` is ``"classic"`` or ``"quorum"`` (the type of the delay queues).
    """
    if queue_type not in ("classic", "quorum"):
        raise ValueError("queue_type must be either classic or quorum")
    channel = connection.channel()
    for level in range(MAX_LEVEL, -1, -1):
        name = level_name(level, prefix)
        Exchange(name, type="topic").bind(channel).declare()
        arguments: dict[str, object] = {
            "x-queue-type": queue_type,
            "x-overflow": "reject-publish",
            "x-message-ttl": (2**level) * 1000,
            "x-dead-letter-exchange": level_name(level - 1, prefix) if level else _delivery_exchange_name(prefix),
        }
        if queue_type == "quorum":
            arguments["x-dead-letter-strategy"] = "at-least-once"
        queue = Queue(name, queue_arguments=arguments).bind(channel)
        queue.declare()
        queue.bind_to(name, _level_key(level, "1"))
    # a 0 bit skips the level: its exchange forwards straight to the next level's
    for level in range(MAX_LEVEL, 0, -1):
        Exchange(level_name(level - 1, prefix), type="topic").bind(channel).bind_to(
            level_name(level, prefix), _level_key(level, "0")
        )
    delivery = Exchange(_delivery_exchange_name(prefix), type="topic").bind(channel)
    delivery.declare()
    delivery.bind_to(level_name(0, prefix), _level_key(0, "0"))


def bind_queue_to_native_delayed_delivery_exchange(
    connection: Connection, queue: Queue, prefix: str | None = None
) -> None:
    """Route messages leaving the delay levels back to ``queue`` through its exchanges.

    Direct exchanges cannot take the bit prefix of the routing key; they are skipped with
    a warning (ETA tasks sent through them wait in the worker instead).
    """
    channel = connection.channel()
    queue = queue.bind(channel)
    bindings: set[binding] = set()
    if queue.exchange:
        bindings.add(binding(queue.exchange, routing_key=queue.routing_key, arguments=queue.binding_arguments))
    elif queue.bindings:
        bindings = set(queue.bindings)
    for entry in bindings:
        if entry.exchange is None:
            continue
        exchange = entry.exchange.bind(channel)
        if exchange.type == "direct":
            # the wording (and line break) is Kombu's: Celery's test suite compares the text
            logger.warning(
                "Exchange %s is a direct exchange and native delayed delivery do not support direct "
                "exchanges.\nETA tasks published to this exchange will block the worker until the ETA arrives.",
                exchange.name,
            )
            continue
        key = entry.routing_key or ""
        routing_key = key if key.startswith("#") else f"#.{key}"
        exchange.bind_to(_delivery_exchange_name(prefix), routing_key=routing_key)
        queue.bind_to(exchange.name, routing_key=routing_key)


def calculate_routing_key(countdown: int, routing_key: str) -> str:
    """The routing key delaying a message by ``countdown`` seconds (at least 1)."""
    if countdown < 1:
        raise ValueError("countdown must be a positive number")
    if not routing_key:
        raise ValueError("routing_key must be non-empty")
    routing_key = _DELAY_PREFIX.sub("", routing_key, count=1)
    bits = ".".join(f"{countdown:0{MAX_NUMBER_OF_BITS_TO_USE}b}")
    return f"{bits}.{routing_key}"
