"""Messages as stream entries: envelopes to field lists and entries back to deliveries."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ...exceptions import EncodeError
from ..redis.codec import dumps
from ..virtual import Delivery
from ..virtual.store import unreadable_envelope

__all__ = ["PLAIN", "QueueSpec", "Receipt", "decode_entry", "encode_fields", "envelope_text"]

logger = logging.getLogger("kombu_like.transport.redis_streams")

#: bytes of an unreadable entry quoted in its error header


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """The declared queue arguments that change how messages are stored and dropped."""

    declared: bool = False
    max_priority: int = 0
    ttl_ms: int | None = None
    max_length: int | None = None
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    #: ``x-expires``: the queue is deleted once unused this long (see :mod:`.expiry`)
    expires_ms: int | None = None

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any] | None) -> QueueSpec:
        """The spec of a queue declared with AMQP ``arguments``."""
        arguments = arguments or {}
        ttl = arguments.get("x-message-ttl")
        length = arguments.get("x-max-length")
        exchange = arguments.get("x-dead-letter-exchange")
        routing_key = arguments.get("x-dead-letter-routing-key")
        expires = arguments.get("x-expires")
        return cls(
            True,
            max(0, min(int(arguments.get("x-max-priority") or 0), 255)),
            int(float(ttl)) if ttl is not None else None,
            int(length) if length is not None else None,
            str(exchange) if exchange is not None else None,
            str(routing_key) if routing_key is not None else None,
            int(float(expires)) if expires is not None else None,
        )

    @classmethod
    def from_meta(cls, meta: Mapping[bytes, bytes]) -> QueueSpec:
        """The spec kept in a queue's metadata hash (an empty one: not declared)."""
        if not meta:
            return PLAIN
        raw = meta.get(b"arguments")
        return cls.from_arguments(json.loads(raw) if raw else {})


PLAIN = QueueSpec()


class Receipt(NamedTuple):
    """Where a delivered entry is: its stream, its id, and the deliveries counted so far."""

    stream: str
    entry_id: str
    deliveries: int


def envelope_text(queue: str, payload: dict[str, Any]) -> str:
    """``payload`` (a message's envelope) as the JSON of its entry's ``payload`` field."""
    try:
        return dumps(payload)
    except (TypeError, ValueError) as exc:
        raise EncodeError(
            f"cannot store a message for queue {queue!r} in a Redis stream: its headers and "
            f"properties must be JSON-serializable ({exc})"
        ) from exc


def encode_fields(queue: str, spec: QueueSpec, payload: dict[str, Any], now_ms: int) -> list[Any]:
    """The field list of the entry ``payload`` becomes in ``queue``."""
    fields: list[Any] = ["payload", envelope_text(queue, payload)]
    limits = []
    expiration = payload["properties"].get("expiration")
    if expiration is not None:
        try:
            limits.append(int(float(expiration)))
        except (TypeError, ValueError):
            pass  # as on RabbitMQ's side, an unreadable expiration means none
    if spec.ttl_ms is not None:
        limits.append(spec.ttl_ms)
    if limits:
        fields += ["exp", now_ms + min(limits)]
    return fields


def level_of(spec: QueueSpec, priority: Any) -> int:
    """The priority level stream a message of ``priority`` goes to."""
    if not spec.max_priority or not priority:
        return 0
    try:
        return max(0, min(int(priority), spec.max_priority))
    except (TypeError, ValueError):
        return 0


def decode_entry(queue: str, stream: str, entry_id: bytes | str, raw_fields: Any) -> Delivery:
    """The delivery of an entry; one that is no envelope is delivered as opaque bytes with
    the problem in a header, never dropped."""
    entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    fields = _fields(raw_fields)
    deliveries = int(fields.get(b"n") or 0)
    text = fields.get(b"payload", b"")
    try:
        payload = json.loads(text)
        props = payload["properties"]
        if fields.get(b"r") == b"1":
            props.setdefault("delivery_info", {})["redelivered"] = True
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        payload = _unreadable(queue, entry, text, exc)
    return Delivery(queue, payload, Receipt(stream, entry, deliveries))


def _fields(raw: Any) -> dict[bytes, bytes]:
    if isinstance(raw, dict):
        return {_b(k): _b(v) for k, v in raw.items()}
    items = list(raw or ())
    return {_b(items[i]): _b(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def _b(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def _unreadable(queue: str, entry: str, text: bytes, exc: BaseException) -> dict[str, Any]:
    return unreadable_envelope(f"entry {entry} of queue {queue!r}", queue, text, exc, f"stream-{entry}")
