"""Messages as the file stores them: envelopes to rows and rows back to deliveries."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...exceptions import EncodeError
from ..virtual import Delivery
from ..virtual.store import UNREADABLE_PREVIEW, unreadable_envelope

__all__ = ["PLAIN", "PREVIEW_BYTES", "QueueSpec", "decode_delivery", "encode_row"]

logger = logging.getLogger("kombu_like.transport.sqlite")

#: bytes of an unreadable row quoted in errors
PREVIEW_BYTES = UNREADABLE_PREVIEW


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """The queue arguments that change how messages are stored."""

    max_priority: int = 0
    ttl: float | None = None
    max_length: int | None = None

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any] | None) -> QueueSpec:
        arguments = arguments or {}
        ttl = arguments.get("x-message-ttl")
        length = arguments.get("x-max-length")
        return cls(
            int(arguments.get("x-max-priority") or 0),
            float(ttl) / 1000.0 if ttl is not None else None,
            int(length) if length is not None else None,
        )


PLAIN = QueueSpec()


def encode_row(
    path: str, queue: str, spec: QueueSpec, payload: dict[str, Any], priority: int, now: float
) -> tuple[Any, ...]:
    """The ``kl_messages`` row (queue, priority, payload, expires) of a message put on ``queue``."""
    limits = []
    expiration = payload["properties"].get("expiration")
    if expiration is not None:
        try:
            limits.append(float(expiration) / 1000.0)
        except (TypeError, ValueError):
            pass  # as on RabbitMQ's side, an unreadable expiration means none
    if spec.ttl is not None:
        limits.append(spec.ttl)
    level = max(0, min(int(priority or 0), spec.max_priority)) if spec.max_priority else 0
    try:
        text = json.dumps(payload, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise EncodeError(
            f"cannot store a message for queue {queue!r} in {path!r}: its headers and "
            f"properties must be JSON-serializable ({exc})"
        ) from exc
    return (queue, level, text, now + min(limits) if limits else None)


def decode_delivery(path: str, queue: str, lease: str, row: tuple[Any, ...]) -> Delivery:
    """The delivery of a row leased as ``lease``; a row that is no envelope is delivered as
    opaque bytes with the problem in a header, never dropped."""
    rowid, _priority, text, redelivered = row
    try:
        payload = json.loads(text)
        props = payload["properties"]
        if redelivered:
            info = props.setdefault("delivery_info", {})
            info["redelivered"] = True
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        payload = _unreadable(path, queue, rowid, text, exc)
    return Delivery(queue, payload, (rowid, lease))


def _unreadable(path: str, queue: str, rowid: int, text: Any, exc: BaseException) -> dict[str, Any]:
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else bytes(text)
    return unreadable_envelope(f"message {rowid} of queue {queue!r} in {path!r}", queue, raw, exc, f"sqlite-{rowid}")
