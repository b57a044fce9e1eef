"""Message as received: body, headers, properties, acknowledgement and decoding."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .compression import DEFAULT_MAX_DECOMPRESSED_SIZE, decompress
from .exceptions import DecodeError, MessageStateError, reraise
from .serialization import check_accept, loads

__all__ = ["Message"]

logger = logging.getLogger(__name__)

ACK_STATES = frozenset({"ACK", "REJECTED", "REQUEUED"})
IS_PYPY = hasattr(sys, "pypy_version_info")


class Message:
    """A message received from a queue.

    ``body`` is the raw (decompressed) payload; :meth:`decode` (or :attr:`payload`)
    deserializes it according to ``content_type`` and the consumer's ``accept`` list.  A
    message is acknowledged exactly once: ``ack``, ``reject`` or ``requeue``; a second call
    raises :class:`~kombu_like.exceptions.MessageStateError`.

    Building a message never raises, whatever the broker handed over: an envelope field of
    the wrong type (``headers``, ``properties`` or ``delivery_info`` that are not mappings,
    a content type that is not text, a ``compression`` header that is not a name...) is
    replaced by an empty value and recorded in :attr:`errors` as a
    :class:`~kombu_like.exceptions.DecodeError` naming the field, so the consumer passes
    the message to ``on_decode_error`` (or raises) instead of failing inside
    ``drain_events``.

    A compressed body is decompressed when first needed (reading :attr:`body`, or
    :meth:`decode` after its ``accept`` check), never to more than
    :attr:`max_decompressed_size` bytes; past that it is left compressed and the
    :class:`~kombu_like.exceptions.DecodeError` naming the limit is recorded in
    :attr:`errors`.
    """

    MessageStateError = MessageStateError

    __slots__ = (
        "_body",
        "_compression",
        "_decoded_cache",
        "_state",
        "accept",
        "max_decompressed_size",
        "channel",
        "content_encoding",
        "content_type",
        "delivery_info",
        "delivery_tag",
        "_errors",
        "headers",
        "properties",
        "_raw",
        "__dict__",
    )

    def __init__(
        self,
        body: Any = None,
        delivery_tag: Any = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
        delivery_info: dict[str, Any] | None = None,
        properties: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        postencode: str | None = None,
        accept: Iterable[str] | None = None,
        channel: Any = None,
        raw: Any = None,
        **kwargs: Any,
    ) -> None:
        self._errors: list[tuple[type[BaseException], BaseException, Any]] = []
        self.channel = channel
        self.delivery_tag = delivery_tag
        # every message passes here: the checks call out only for unusual values
        self.content_type = (
            content_type
            if type(content_type) is str or content_type is None
            else self._text_field("content_type", content_type)
        )
        self.content_encoding = (
            content_encoding
            if type(content_encoding) is str or content_encoding is None
            else self._text_field("content_encoding", content_encoding)
        )
        self.delivery_info = (
            delivery_info if type(delivery_info) is dict else self._mapping_field("delivery_info", delivery_info)
        )
        if type(headers) is not dict:
            headers = self._mapping_field("headers", headers)
        self.headers = headers
        self.properties = properties if type(properties) is dict else self._mapping_field("properties", properties)
        self.accept = accept
        #: the most bytes a compressed body may decompress to (``None``: no limit)
        self.max_decompressed_size: int | None = DEFAULT_MAX_DECOMPRESSED_SIZE
        self._decoded_cache: Any = None
        self._state = "RECEIVED"
        self._raw = raw
        self._compression: str | None = None
        compression = headers.get("compression")
        if compression and body is not None:
            compression = self._text_field("compression header", compression)
            # decompressed on first use, after the accept check (see the class docstring)
            self._compression = compression
        elif postencode and isinstance(body, str):
            try:
                body = body.encode(postencode)
            except UnicodeError as exc:
                self._record(f"the body is not encodable as {postencode}: {exc}")
        self._body = body

    def _record(self, problem: str) -> None:
        error = DecodeError(f"Malformed message: {problem}")
        self._errors.append((DecodeError, error, None))

    def _mapping_field(self, name: str, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if isinstance(value, dict):
            return value
        if isinstance(value, Mapping):
            return dict(value)
        self._record(f"{name} must be a mapping, not {type(value).__name__} ({_short_repr(value)})")
        return {}

    def _text_field(self, name: str, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        self._record(f"{name} must be text, not {type(value).__name__} ({_short_repr(value)})")
        return None

    @property
    def errors(self) -> list[tuple[type[BaseException], BaseException, Any]]:
        """Problems found in the message (``(type, exception, traceback)``), which
        :meth:`decode` raises; reading it first decompresses a body still compressed."""
        if self._compression is not None:
            self._inflate()
        return self._errors

    @property
    def body(self) -> Any:
        """The payload, decompressed (on first access) when it was sent compressed."""
        if self._compression is not None:
            self._inflate()
        return self._body

    @body.setter
    def body(self, value: Any) -> None:
        self._compression = None
        self._body = value

    def _inflate(self) -> None:
        compression, self._compression = self._compression, None
        if compression is None:
            return
        try:
            self._body = decompress(self._body, compression, self.max_decompressed_size)
        except Exception as exc:
            # the body stays compressed, as Kombu leaves it when decompression fails
            self._errors.append((type(exc), exc, exc.__traceback__))
            logger.debug("could not decompress message: %r", exc)

    # -- acknowledgement -------------------------------------------------------------
    def _require_unacked(self, action: str) -> None:
        if self.channel is None:
            raise self.MessageStateError(f"This message does not have a receiving channel ({action})")
        if self._state in ACK_STATES:
            raise self.MessageStateError(f"Message already acknowledged with state: {self._state} (cannot {action})")

    def ack(self, multiple: bool = False) -> None:
        """Acknowledge the message: the broker may now forget it.

        Does nothing for messages received with ``no_ack`` (the broker already forgot them).
        """
        channel = self.channel
        if channel is None:
            raise self.MessageStateError("This message does not have a receiving channel")
        no_ack_consumers = getattr(channel, "no_ack_consumers", None)
        if no_ack_consumers:
            consumer_tag = self.delivery_info.get("consumer_tag")
            if consumer_tag and consumer_tag in no_ack_consumers:
                return
        if self._state in ACK_STATES:
            self._require_unacked("ack")  # raises, naming the state
        channel.basic_ack(self.delivery_tag, multiple=multiple)
        self._state = "ACK"

    def ack_log_error(
        self, logger: logging.Logger, errors: tuple[type[BaseException], ...], multiple: bool = False
    ) -> None:
        """Acknowledge, logging (instead of raising) any of ``errors``."""
        try:
            self.ack(multiple=multiple)
        except BrokenPipeError:
            logger.critical("Couldn't ack %r, reason: broken pipe", self.delivery_tag, exc_info=True)
        except errors:
            logger.critical("Couldn't ack %r", self.delivery_tag, exc_info=True)

    def reject_log_error(
        self, logger: logging.Logger, errors: tuple[type[BaseException], ...], requeue: bool = False
    ) -> None:
        """Reject, logging (instead of raising) any of ``errors``."""
        try:
            self.reject(requeue=requeue)
        except errors:
            logger.critical("Couldn't reject %r", self.delivery_tag, exc_info=True)

    def reject(self, requeue: bool = False) -> None:
        """Reject the message; with ``requeue`` it goes back to its queue."""
        self._require_unacked("reject")
        assert self.channel is not None
        self.channel.basic_reject(self.delivery_tag, requeue=requeue)
        self._state = "REJECTED"

    def requeue(self) -> None:
        """Reject the message and put it back on its queue for redelivery."""
        self._require_unacked("requeue")
        assert self.channel is not None
        self.channel.basic_reject(self.delivery_tag, requeue=True)
        self._state = "REQUEUED"

    # -- decoding --------------------------------------------------------------------
    def _reraise_error(self, callback: Callable[[Message, BaseException], Any] | None = None) -> Any:
        try:
            reraise(*self._errors[0])
        except Exception as exc:
            if not callback:
                raise
            return callback(self, exc)

    def _raise_if_unreadable(self) -> None:
        """Raise the first problem found in the message, as :meth:`decode` would.

        A compressed body is decompressed for this only when its content type is
        accepted: content the consumer refuses is never decompressed.
        """
        if not self._errors and self._compression is not None:
            try:
                check_accept(self.content_type, self.accept)
            except Exception:
                return  # decode() refuses it, before decompressing anything
            self._inflate()
        if self._errors:
            self._reraise_error()

    def decode(self) -> Any:
        """Deserialize the body (cached after the first call)."""
        if self._decoded_cache is None:
            if self._errors or self._compression is not None:
                self._decoded_cache = self._decode()
            else:  # _decode's last step, which is all it does for most messages
                self._decoded_cache = loads(self._body, self.content_type, self.content_encoding, self.accept)
        return self._decoded_cache

    def _decode(self) -> Any:
        if self._errors:
            self._reraise_error()
        if self._compression is not None:
            # refuse content the consumer does not accept before decompressing anything
            check_accept(self.content_type, self.accept)
            self._inflate()
            if self._errors:
                self._reraise_error()
        return loads(
            self._body,
            self.content_type,
            self.content_encoding,
            accept=self.accept,
        )

    @property
    def payload(self) -> Any:
        """The decoded body."""
        return self.decode()

    @property
    def acknowledged(self) -> bool:
        """True once the message was acked, rejected or requeued."""
        return self._state in ACK_STATES

    @property
    def redelivered(self) -> bool:
        """True when the broker delivered this message before."""
        return bool(self.delivery_info.get("redelivered"))

    @property
    def state(self) -> str:
        """One of RECEIVED, ACK, REJECTED, REQUEUED."""
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        self._state = value

    def __repr__(self) -> str:
        info = self.delivery_info
        return (
            f"<{type(self).__name__} object at {id(self):#x} with details "
            f"{{'state': {self._state!r}, 'content_type': {self.content_type!r}, "
            f"'delivery_tag': {self.delivery_tag!r}, 'body_length': "
            f"{_length(self._body)}, "
            f"'properties': {dict(self.properties)!r}, "
            f"'delivery_info': {{'exchange': {info.get('exchange')!r}, "
            f"'routing_key': {info.get('routing_key')!r}}}}}>"
        )


def _length(body: Any) -> int:
    try:
        return len(body) if body is not None else 0
    except TypeError:
        return 0


def _short_repr(value: Any, size: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= size else f"{text[:size]}..."


def received(
    message_class: type[Message],
    body: Any,
    delivery_tag: Any,
    content_type: str | None,
    content_encoding: str | None,
    delivery_info: Any,
    properties: Any,
    headers: Any,
    postencode: str | None,
    channel: Any,
    raw: Any,
) -> Message:
    """A delivered message of ``message_class``, as transports build one per message.

    :class:`Message` (or a subclass keeping its constructor, such as the asyncio API's)
    gets its arguments by position: matching ten keywords against a signature with
    ``**kwargs`` costs as much as the rest of its construction.  A substitute class with
    a constructor of its own is only known to take them as keywords.
    """
    if message_class is Message or message_class.__init__ is _MESSAGE_INIT:
        return message_class(
            body,
            delivery_tag,
            content_type,
            content_encoding,
            delivery_info,
            properties,
            headers,
            postencode,
            None,
            channel,
            raw,
        )
    return message_class(
        body=body,
        delivery_tag=delivery_tag,
        content_type=content_type,
        content_encoding=content_encoding,
        delivery_info=delivery_info,
        properties=properties,
        headers=headers,
        postencode=postencode,
        channel=channel,
        raw=raw,
    )


_MESSAGE_INIT = Message.__init__
