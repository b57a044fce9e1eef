"""Message as received: body, headers, properties, acknowledgement and decoding."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

from .compression import decompress
from .exceptions import MessageStateError, reraise
from .serialization import loads

__all__ = ["Message"]

logger = logging.getLogger(__name__)

ACK_STATES = frozenset({"ACK", "REJECTED", "REQUEUED"})
IS_PYPY = hasattr(sys, "pypy_version_info")


class Message:
    """A message received from a queue.

    ``body`` is the raw (already decompressed) payload; :meth:`decode` (or :attr:`payload`)
    deserializes it according to ``content_type`` and the consumer's ``accept`` list.  A
    message is acknowledged exactly once: ``ack``, ``reject`` or ``requeue``; a second call
    raises :class:`~kombu_like.exceptions.MessageStateError`.
    """

    MessageStateError = MessageStateError

    __slots__ = (
        "_decoded_cache",
        "_state",
        "accept",
        "body",
        "channel",
        "content_encoding",
        "content_type",
        "delivery_info",
        "delivery_tag",
        "errors",
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
        self.errors: list[tuple[type[BaseException], BaseException, Any]] = []
        self.channel = channel
        self.delivery_tag = delivery_tag
        self.content_type = content_type
        self.content_encoding = content_encoding
        self.delivery_info = delivery_info if delivery_info is not None else {}
        self.headers = headers if headers is not None else {}
        self.properties = properties if properties is not None else {}
        self.accept = accept
        self._decoded_cache: Any = None
        self._state = "RECEIVED"
        self._raw = raw
        compression = self.headers.get("compression")
        if compression and body is not None:
            try:
                body = decompress(body, compression)
            except Exception as exc:
                self.errors.append(sys.exc_info())  # type: ignore[arg-type]
                logger.debug("could not decompress message: %r", exc)
        if postencode and isinstance(body, str):
            body = body.encode(postencode)
        self.body = body

    # -- acknowledgement -------------------------------------------------------------
    def _require_unacked(self, action: str) -> None:
        if self.channel is None:
            raise self.MessageStateError(f"This message does not have a receiving channel ({action})")
        if self._state in ACK_STATES:
            raise self.MessageStateError(
                f"Message already acknowledged with state: {self._state} (cannot {action})"
            )

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
        self._require_unacked("ack")
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
            reraise(*self.errors[0])
        except Exception as exc:
            if not callback:
                raise
            return callback(self, exc)

    def decode(self) -> Any:
        """Deserialize the body (cached after the first call)."""
        if self._decoded_cache is None:
            self._decoded_cache = self._decode()
        return self._decoded_cache

    def _decode(self) -> Any:
        if self.errors:
            self._reraise_error()
        return loads(
            self.body,
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
            f"{len(self.body) if self.body is not None else 0}, "
            f"'properties': {dict(self.properties)!r}, "
            f"'delivery_info': {{'exchange': {info.get('exchange')!r}, "
            f"'routing_key': {info.get('routing_key')!r}}}}}>"
        )
