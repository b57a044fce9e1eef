"""Small helpers shared by the Redis store's parts: JSON, reply checks, error previews."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, NamedTuple

from redis import exceptions as rexc

from ...utils import json as kjson
from ..virtual.channel import plain_envelope
from ..virtual.store import PlainShape
from .resp import with_bulk

__all__ = [
    "PLAIN_TEMPLATES",
    "PlainTemplate",
    "PlainTemplates",
    "check",
    "dumps",
    "loads",
    "loads_plain",
    "plain_template",
    "preview",
    "text",
]

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


#: plain-message templates a store keeps at most (one per queue and shape, in practice)
PLAIN_TEMPLATES = 1024


class PlainTemplates:
    """The publishes of plain messages (:meth:`~..virtual.store.QueueStore.put_plain`) as
    RESP commands: ``head(queue)`` -- a command head from :func:`~.resp.command_head`,
    short of its last argument -- completed by the envelope, filled in from a template of
    the message's shape (both kept per queue and shape)."""

    def __init__(self, head: Callable[[str], bytes], body_encoding: str | None) -> None:
        self._head = head
        self._body_encoding = body_encoding
        self._found: dict[tuple[str, PlainShape], tuple[bytes, PlainTemplate] | None] = {}

    def command(self, queue: str, body: str, delivery_tag: str, shape: PlainShape) -> bytes | None:
        """The encoded command that stores the plain message in ``queue``; None when no
        template fits its shape (the envelope is then built and encoded whole)."""
        try:
            found = self._found[queue, shape]
        except KeyError:
            found = self._make(queue, shape)
        except TypeError:  # an unhashable field: not what a plain message has
            return None
        if found is None:
            return None
        head, template = found
        return with_bulk(head, template.text(body, delivery_tag).encode())

    def _make(self, queue: str, shape: PlainShape) -> tuple[bytes, PlainTemplate] | None:
        template = plain_template(shape, self._body_encoding)
        found = None if template is None else (self._head(queue), template)
        if len(self._found) >= PLAIN_TEMPLATES:
            self._found.clear()
        self._found[queue, shape] = found
        return found
