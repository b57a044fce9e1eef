"""Messages as stream entries: envelopes to field lists and entries back to deliveries."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, NamedTuple

from ...exceptions import EncodeError
from ..redis.codec import dumps
from ..virtual import Delivery
from ..virtual.channel import plain_envelope
from ..virtual.store import PlainShape, unreadable_envelope

__all__ = [
    "PLAIN",
    "PlainTemplate",
    "QueueSpec",
    "Receipt",
    "decode_entry",
    "encode_fields",
    "envelope_text",
    "plain_template",
]

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


#: what no exchange name, content type or tag is: where a template leaves its gaps
_BODY_MARK, _TAG_MARK = "\x00kombu_like-body\x00", "\x00kombu_like-tag\x00"
_BODY_GAP, _TAG_GAP = encode_basestring_ascii(_BODY_MARK), encode_basestring_ascii(_TAG_MARK)


class PlainTemplate(NamedTuple):
    """The JSON of a plain message's envelope (:func:`~..virtual.channel.plain_envelope`),
    cut around its body and its delivery tag: the rest is the same for every message one
    producer sends along one route."""

    head: str
    middle: str
    tail: str

    def text(self, body: str, delivery_tag: str) -> str:
        """The envelope's JSON with ``body`` and ``delivery_tag`` in their places."""
        encode = encode_basestring_ascii
        return f"{self.head}{encode(body)}{self.middle}{encode(delivery_tag)}{self.tail}"


def plain_template(shape: PlainShape, body_encoding: str | None) -> PlainTemplate | None:
    """The template of plain envelopes of ``shape``; None when it cannot make one (a
    field holding one of the marks, or not JSON): such messages are encoded whole."""
    try:
        text = dumps(plain_envelope(_BODY_MARK, _TAG_MARK, shape, body_encoding))
    except (TypeError, ValueError):
        return None
    if text.count(_BODY_GAP) != 1 or text.count(_TAG_GAP) != 1 or text.index(_BODY_GAP) > text.index(_TAG_GAP):
        return None
    head, rest = text.split(_BODY_GAP)
    middle, tail = rest.split(_TAG_GAP)
    return PlainTemplate(head, middle, tail)


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
