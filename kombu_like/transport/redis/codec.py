"""Small helpers shared by the Redis store's parts: JSON, reply checks, error previews."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from redis import exceptions as rexc

from ...utils import json as kjson

__all__ = ["check", "dumps", "loads", "loads_plain", "preview", "text"]

#: bytes of an undecodable message shown in an error report
PREVIEW_BYTES = 200

loads = kjson.loads


def loads_plain(data: Any) -> Any:
    """JSON without the type hooks: what was recorded, exactly as it was recorded."""
    return kjson.loads(data, object_hook=lambda obj: obj)


#: JSON with the library's type hooks, the same as the message bodies use
#: (``kjson.dumps`` with its default arguments, without the call that checks them)
dumps: Callable[[Any], str] = kjson._fast_dumps


def text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def preview(raw: Any) -> str:
    """A short, printable rendering of raw bytes for error messages."""
    data = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "replace")
    shown = repr(data[:PREVIEW_BYTES])
    return shown + (f" ... ({len(data)} bytes)" if len(data) > PREVIEW_BYTES else "")


def check(replies: Iterable[Any], what: str) -> None:
    """Raise the first error reply among ``replies``, saying what was being done."""
    for reply in replies:
        if isinstance(reply, rexc.RedisError):
            raise type(reply)(f"{what}: {reply}")
