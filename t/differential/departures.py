"""The deliberate departures from Kombu 5.7 the differential tests accept, and nothing else.

Each entry is documented in ``docs/migrating-from-kombu.rst`` under "Deliberate departures"
(the ``doc`` field names the paragraph).  A difference the harness finds that no entry
matches fails the test: it is either a bug to fix or a departure to document here and there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kombu_like.exceptions

#: Kombu lets a driver's exception through where kombu_like raises one of its own tree
#: ("Driver exceptions are translated").  Only the class *name* is compared, so a Kombu
#: ``amqp.exceptions.NotFound`` and our ``kombu_like.exceptions.NotFound`` are the same.
DRIVER_EXCEPTIONS: dict[str, str] = {
    # redis-py's errors surface from Kombu's redis transport unchanged
    "redis.exceptions.ConnectionError": "OperationalError",
    "redis.exceptions.TimeoutError": "OperationalError",
    "redis.exceptions.ResponseError": "ChannelError",
    # botocore's from Kombu's SQS transport
    "botocore.exceptions.ClientError": "ChannelError",
}


def exception_name(exc: BaseException) -> str:
    """The name a differential comparison uses for ``exc``.

    Exceptions of either library, of py-amqp and the builtins compare by class name; a
    driver exception Kombu lets through is given the name of the class kombu_like raises in
    its place (:data:`DRIVER_EXCEPTIONS`).
    """
    cls = type(exc)
    qualified = f"{cls.__module__}.{cls.__qualname__}"
    for klass in cls.__mro__:
        mapped = DRIVER_EXCEPTIONS.get(f"{klass.__module__}.{klass.__qualname__}")
        if mapped:
            return mapped
    if qualified.startswith("socket.") or cls is TimeoutError:
        return "timeout"
    return cls.__name__


@dataclass(frozen=True)
class Departure:
    """One documented difference: where it applies and how to recognise it."""

    key: str
    doc: str
    matches: Callable[[str, Any, Any], bool]


def _operation(name: str) -> Callable[[str], bool]:
    return lambda operation: operation.split(":", 1)[1] == name


def _narrower_exception(operation: str, theirs: Any, ours: Any) -> bool:
    # kombu_like raises a subclass of the class Kombu raises: every ``except`` clause
    # written for Kombu still catches it
    if not (theirs.kind == ours.kind == "raised"):
        return False
    wider = getattr(kombu_like.exceptions, theirs.value, None)
    narrower = getattr(kombu_like.exceptions, ours.value, None)
    return isinstance(wider, type) and isinstance(narrower, type) and issubclass(narrower, wider)


def _delete_returns_count(operation: str, theirs: Any, ours: Any) -> bool:
    # Kombu's virtual transports return None from queue_delete; RabbitMQ (and kombu_like
    # on every transport) the number of messages deleted with the queue
    return (
        _operation("delete")(operation)
        and not operation.startswith("amqp:")
        and theirs.kind == ours.kind == "ok"
        and theirs.value is None
        and isinstance(ours.value, int)
    )


def _sqs_purge_count(operation: str, theirs: Any, ours: Any) -> bool:
    # Kombu 5.7's SQS purge adds the queue size up ten times before purging
    return (
        operation == "sqs:purge"
        and theirs.kind == ours.kind == "ok"
        and isinstance(ours.value, int)
        and theirs.value == 10 * ours.value
    )


def _without(view: Any, keys: tuple[str, ...]) -> Any:
    """A message view (or list of them) without the delivery_info ``keys`` (and flags)."""
    if isinstance(view, list):
        return [_without(v, keys) for v in view]
    if isinstance(view, dict) and "delivery_info_keys" in view:
        view = dict(view, delivery_info_keys=[k for k in view["delivery_info_keys"] if k not in keys])
        for key in keys:
            view.pop(key, None)
    return view


#: delivery_info keys kombu_like adds on Kombu's virtual transports, per operation:
#: "redelivered" (Kombu's virtual transports never set it; kombu_like does as RabbitMQ
#: does, on SQS from ApproximateReceiveCount) and a consumer's "consumer_tag"
_EXTRA_DELIVERY_INFO = {
    f"{transport}:{operation}": keys
    for transport in ("memory", "redis", "sqs")
    for operation, keys in (("get", ("redelivered",)), ("consume", ("redelivered", "consumer_tag")))
}


def _extra_delivery_info(operation: str, theirs: Any, ours: Any) -> bool:
    keys = _EXTRA_DELIVERY_INFO.get(operation)
    return (
        keys is not None
        and theirs.kind == ours.kind == "ok"
        and _without(theirs.value, keys) == _without(ours.value, keys)
    )


def _redis_empty_queue_exists(operation: str, theirs: Any, ours: Any) -> bool:
    # Kombu's Redis transport says a declared queue with no messages does not exist
    # (its list key is gone); kombu_like answers a passive declare with its size, 0
    return (
        operation.startswith("redis:size of ")
        and theirs == type(theirs)("raised", "ChannelError")
        and ours == type(ours)("ok", 0)
    )


def _amqp_empty_reply(operation: str, theirs: Any, ours: Any) -> bool:
    # py-amqp returns an empty tuple for a method whose reply carries nothing (bind.ok),
    # and its internal promise from basic_publish
    return (
        (operation in ("amqp:bind", "amqp:unbind") and theirs == type(theirs)("ok", ()))
        or (operation == "amqp:publish" and theirs == type(theirs)("ok", "promise"))
    ) and ours == type(ours)("ok", None)


def _redis_stale_bindings(operation: str, theirs: Any, ours: Any) -> bool:
    # Kombu removes a deleted queue's bindings only if this connection declared them
    # (it reads them from its in-process state); kombu_like removes them from Redis
    return (
        operation == "redis:redis bindings" and theirs.value["live"] == ours.value["live"] and not ours.value["stale"]
    )


def _all_redelivered(view: Any) -> bool:
    views = view if isinstance(view, list) else [view]
    return bool(views) and all(isinstance(v, dict) and v.get("redelivered") is True for v in views)


def _redis_restore_order(operation: str, theirs: Any, ours: Any) -> bool:
    # messages a closed channel gave back come out in delivery order on kombu_like, in
    # reverse on Kombu's Redis transport: the same kind of redelivered message, another one
    if operation not in ("redis:get", "redis:consume") or not (theirs.kind == ours.kind == "ok"):
        return False
    if not (_all_redelivered(theirs.value) and _all_redelivered(ours.value)):
        return False
    keys = ("redelivered", "consumer_tag")

    def shape(view: Any) -> Any:
        # what the message says of itself (body, headers, properties) is another message's
        views = view if isinstance(view, list) else [view]
        own = ("payload", "headers", "properties")
        return [{k: v for k, v in _without(item, keys).items() if k not in own} for item in views]

    return bool(shape(theirs.value) == shape(ours.value))


DEPARTURES: tuple[Departure, ...] = (
    Departure("narrower-exception", "Exceptions are at least as specific", _narrower_exception),
    Departure("delete-returns-count", "Queue.delete() returns a count", _delete_returns_count),
    Departure("sqs-purge-count", "SQS purge() counts each message once", _sqs_purge_count),
    Departure("redis-empty-queue-exists", "An empty queue exists on Redis", _redis_empty_queue_exists),
    Departure("amqp-empty-reply", "AMQP methods without a reply value return None", _amqp_empty_reply),
    Departure("redis-stale-bindings", "Deleting a queue removes its bindings", _redis_stale_bindings),
    Departure(
        "redis-restore-order",
        "Messages given back by a closed channel keep their order on Redis",
        _redis_restore_order,
    ),
    Departure(
        "delivery-info",
        "Deliveries say whether they are redelivered / Deliveries name their consumer tag",
        _extra_delivery_info,
    ),
)


def accepted(operation: str, theirs: Any, ours: Any) -> Departure | None:
    """The documented departure that explains ``theirs != ours`` for ``operation``, if any."""
    for departure in DEPARTURES:
        if departure.matches(operation, theirs, ours):
            return departure
    return None
