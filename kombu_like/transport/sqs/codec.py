"""What travels to and from SQS, as plain functions that never do I/O.

* Queue names are sanitized exactly as Kombu sanitizes them, so both libraries find the
  same SQS queue for the same AMQP queue name.
* An outgoing message is the virtual-transport envelope as JSON, base64-encoded unless
  ``sqs_base64_encoding`` is off.  FIFO group and deduplication ids, the per-message delay
  and SQS message attributes are taken from the message properties, as Kombu takes them.
* An incoming body is turned back into an envelope whether it is base64 or plain JSON,
  written by Kombu, by this library or by something else entirely (which is delivered as
  text, never dropped).
"""

from __future__ import annotations

import base64
import binascii
import logging
import string
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...utils.json import dumps, loads

__all__ = [
    "MAX_BATCH",
    "MAX_DELAY_SECONDS",
    "Outgoing",
    "chunks",
    "decode",
    "encode",
    "is_fifo",
    "message_size",
    "preview",
    "sqs_queue_name",
]

logger = logging.getLogger(__name__)

#: most entries SQS takes in one batch request (and messages in one receive)
MAX_BATCH = 10
#: longest per-message delay SQS accepts, in seconds
MAX_DELAY_SECONDS = 900
#: bytes of a body quoted in error messages
PREVIEW_BYTES = 80

# Kombu's table: dots become dashes, dashes and underscores stay, any other punctuation
# becomes an underscore.  Both libraries must agree on it or they use different queues.
_NAME_TABLE = {ord(c): ord("_") for c in string.punctuation if c not in "-_."}
_NAME_TABLE[ord(".")] = ord("-")
_FIFO_SUFFIX = ".fifo"


def sqs_queue_name(name: str, prefix: str = "") -> str:
    """The SQS queue name for the AMQP queue ``name`` (Kombu's ``canonical_queue_name``)."""
    full = prefix + name
    if full.endswith(_FIFO_SUFFIX):
        return full[: -len(_FIFO_SUFFIX)].translate(_NAME_TABLE) + _FIFO_SUFFIX
    return full.translate(_NAME_TABLE)


def is_fifo(name: str) -> bool:
    """True for FIFO queues, which SQS requires to be named ``*.fifo``."""
    return name.endswith(_FIFO_SUFFIX)


def preview(raw: str | bytes) -> bytes:
    """The first bytes of ``raw``, for error messages."""
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else bytes(raw)
    return data[:PREVIEW_BYTES]


@dataclass(slots=True)
class Outgoing:
    """One message ready for ``SendMessage``: its request parameters and billed size."""

    queue: str
    params: dict[str, Any]
    size: int


def message_size(body: str, attributes: Mapping[str, Any] | None) -> int:
    """Bytes SQS counts against its size limit: the body plus every message attribute's
    name, data type and value."""
    size = len(body.encode("utf-8")) if not body.isascii() else len(body)
    for name, attribute in (attributes or {}).items():
        size += len(str(name).encode("utf-8"))
        if not isinstance(attribute, Mapping):
            continue
        size += len(str(attribute.get("DataType", "")).encode("utf-8"))
        if "StringValue" in attribute:
            size += len(str(attribute["StringValue"]).encode("utf-8"))
        if "BinaryValue" in attribute:
            value = attribute["BinaryValue"]
            size += len(value) if isinstance(value, bytes | bytearray) else len(str(value).encode("utf-8"))
    return size


def delay_seconds(properties: Mapping[str, Any], queue: str) -> int | None:
    """The per-message delay asked for in ``delay_seconds`` or ``DelaySeconds`` (Kombu's
    spellings), clamped to what SQS accepts; ``None`` when none was asked for."""
    for key in ("delay_seconds", "DelaySeconds"):
        value = properties.get(key)
        if value is None:
            continue
        try:
            delay = int(value)
        except (TypeError, ValueError, OverflowError):
            logger.warning("SQS queue %r: delay %r is not a number; publishing without a delay", queue, value)
            return None
        if delay < 0:
            logger.warning("SQS queue %r: delay %s is negative; publishing without a delay", queue, delay)
            return None
        if delay > MAX_DELAY_SECONDS:
            logger.warning(
                "SQS queue %r: delay %s exceeds SQS's maximum of %s seconds; using the maximum",
                queue,
                delay,
                MAX_DELAY_SECONDS,
            )
            delay = MAX_DELAY_SECONDS
        return delay
    return None


def encode(queue: str, payload: dict[str, Any], base64_encoding: bool = True) -> Outgoing:
    """Turn the envelope ``payload`` for AMQP queue ``queue`` into SendMessage parameters."""
    properties = payload.get("properties") or {}
    attributes = properties.get("message_attributes")
    if attributes is not None:
        # attributes travel beside the body, not inside it (as with Kombu)
        payload = dict(payload)
        payload["properties"] = {k: v for k, v in properties.items() if k != "message_attributes"}
    text = dumps(payload)
    body = base64.b64encode(text.encode("utf-8")).decode("ascii") if base64_encoding else text
    params: dict[str, Any] = {"MessageBody": body}
    if attributes:
        params["MessageAttributes"] = attributes
    group = properties.get("MessageGroupId")
    if group is not None:
        # fair queues take a group id on standard queues too
        params["MessageGroupId"] = str(group)
    delay = delay_seconds(properties, queue)
    if is_fifo(queue):
        params.setdefault("MessageGroupId", "default")
        # The envelope's tag is unique per publish, so a send that botocore retries after
        # a lost response is deduplicated by SQS instead of stored twice.
        dedup = properties.get("MessageDeduplicationId") or properties.get("delivery_tag") or uuid.uuid4().hex
        params["MessageDeduplicationId"] = str(dedup)
        if delay is not None:
            logger.warning("SQS FIFO queue %r takes no per-message delay; ignoring a delay of %s s", queue, delay)
    elif delay is not None:
        params["DelaySeconds"] = delay
    return Outgoing(queue, params, message_size(body, attributes))


def _envelope_text(body: str) -> str | None:
    """The JSON text of an SQS body that holds an envelope, base64 or not; else None."""
    stripped = body.strip()
    if stripped.startswith("{"):
        # JSON objects are never valid base64 ('{' is not in its alphabet)
        return stripped
    try:
        return base64.b64decode(stripped, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def _is_envelope(payload: Any) -> bool:
    if not isinstance(payload, dict) or not isinstance(payload.get("properties"), dict):
        return False
    properties = payload["properties"]
    if not isinstance(properties.get("delivery_info", {}), dict):
        return False
    if properties.get("body_encoding") == "base64" and payload.get("body"):
        body = payload["body"]
        if not isinstance(body, str):
            return False
        try:
            base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return False
    return True


def decode(queue: str, message: Mapping[str, Any], queue_url: str) -> dict[str, Any]:
    """Turn one message of a ReceiveMessage answer back into an envelope.

    The SQS message itself is kept in ``delivery_info['sqs_message']`` and the queue URL in
    ``delivery_info['sqs_queue']``, where Kombu keeps them; message attributes also appear
    as ``properties['message_attributes']``, the property they are published from.
    """
    raw = message.get("Body") or ""
    text = _envelope_text(raw)
    payload: Any = None
    if text is not None:
        try:
            payload = loads(text)
        except ValueError:
            payload = None
    if not _is_envelope(payload):
        looks_like_one = isinstance(payload, dict) and "properties" in payload
        payload = _unreadable(queue, raw, message) if looks_like_one else _foreign(queue, raw)
    properties = payload["properties"]
    info = properties.get("delivery_info")
    info = dict(info) if isinstance(info, dict) else {}
    info.setdefault("exchange", "")
    info.setdefault("routing_key", queue)
    info["sqs_message"] = dict(message)
    info["sqs_queue"] = queue_url
    properties["delivery_info"] = info
    attributes = message.get("MessageAttributes")
    if attributes:
        properties["message_attributes"] = attributes
    return payload  # type: ignore[no-any-return]


def _unreadable(queue: str, raw: str, message: Mapping[str, Any]) -> dict[str, Any]:
    """An envelope around a Kombu-style envelope that is broken (say, a body that is not
    the base64 its ``body_encoding`` claims): delivered, never dropped, with a content type
    no consumer accepts by accident and the problem in a header."""
    problem = (
        f"message {message.get('MessageId')!r} of SQS queue {queue!r} is a malformed Kombu envelope; "
        f"raw bytes: {preview(raw)!r}"
    )
    # the consumer reports it, with this text, in its one line per bad message
    logger.debug("%s", problem)
    envelope = _foreign(queue, raw)
    envelope["content-type"] = "application/x-kombu-like-unreadable"
    envelope["headers"] = {"x-kombu-like-error": problem}
    return envelope


def _foreign(queue: str, raw: str) -> dict[str, Any]:
    """An envelope around a body that no Kombu-style producer wrote.

    It is delivered as text (JSON when it parses as JSON) so the consumer decides what to
    do with it; a consumer that does not accept the content type gets an error naming it.
    """
    try:
        loads(raw)
        content_type = "application/json"
    except ValueError:
        content_type = "text/plain"
    logger.debug(
        "SQS queue %r: message is not a Kombu envelope; delivering it as %s: %r", queue, content_type, preview(raw)
    )
    return {
        "body": raw,
        "content-type": content_type,
        "content-encoding": "utf-8",
        "headers": {},
        "properties": {
            "body_encoding": None,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "delivery_mode": 2,
            "priority": 0,
        },
    }


def chunks(messages: Sequence[Outgoing], limit: int) -> Iterator[list[Outgoing]]:
    """Batches of at most ten messages whose sizes add up to at most ``limit`` bytes."""
    chunk: list[Outgoing] = []
    size = 0
    for message in messages:
        if chunk and (len(chunk) >= MAX_BATCH or size + message.size > limit):
            yield chunk
            chunk, size = [], 0
        chunk.append(message)
        size += message.size
    if chunk:
        yield chunk
