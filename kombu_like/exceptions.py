"""The library's one exception tree.

Every transport translates its driver's errors (``amqp``, ``redis``, ``botocore``,
``socket``/``OSError``, ``ssl``) into these classes at the transport seam, keeping the
original as ``__cause__``.  The retry loop decides by class alone::

    KombuError
     +-- OperationalError                 broker unreachable / gave up retrying
     |    +-- ConnectionError             the connection is broken: reconnect
     |    |    +-- InconsistencyError     broker state found inconsistent
     |    +-- ConnectionTimeout           connect or a broker round trip timed out
     |    +-- IrrecoverableConnectionError  connecting cannot succeed as configured
     +-- ConnectionClosed                 used after close(): never reconnected behind the back
     +-- ChannelError                     the channel is unusable: open a new one
     |    +-- NotFound                    404: exchange/queue does not exist
     |    +-- PreconditionFailed          406: redeclared with other arguments
     |    +-- AccessRefused               403: not allowed
     |    +-- ResourceLocked              405: exclusive queue used elsewhere
     |    +-- ConsumerCancelled           the broker cancelled a consumer
     |    +-- MessageNacked               publisher confirm came back negative
     |    +-- MessageReturned             mandatory message was unroutable
     +-- SerializationError
     |    +-- EncodeError
     |    |    +-- MessageTooLarge
     |    +-- DecodeError
     +-- SerializerNotInstalled
     |    +-- ContentDisallowed
     +-- NotBoundError, MessageStateError, VersionMismatch, BatchPublishError
     +-- LimitExceeded
          +-- ConnectionLimitExceeded, ChannelLimitExceeded

``TimeoutError`` is :class:`socket.timeout` (the builtin ``TimeoutError``), raised by
``drain_events`` when nothing arrives in time, as in Kombu.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from socket import timeout as TimeoutError  # noqa: N812 - Kombu's public name
from types import TracebackType
from typing import Any, TypeVar

# The library's loggers stay silent until the application configures logging (no
# tracebacks on stderr through Python's last-resort handler).  Set here because every
# module that logs imports the exception tree, while ``import kombu_like`` stays free of
# ``logging``.
logging.getLogger("kombu_like").addHandler(logging.NullHandler())

__all__ = (
    "AccessRefused",
    "BatchPublishError",
    "ChannelError",
    "ChannelLimitExceeded",
    "ConnectionClosed",
    "ConnectionError",
    "ConnectionLimitExceeded",
    "ConnectionTimeout",
    "ConsumerCancelled",
    "ContentDisallowed",
    "DecodeError",
    "EncodeError",
    "HttpError",
    "InconsistencyError",
    "IrrecoverableConnectionError",
    "KombuError",
    "LimitExceeded",
    "MessageNacked",
    "MessageReturned",
    "MessageStateError",
    "MessageTooLarge",
    "NotBoundError",
    "NotFound",
    "OperationalError",
    "PreconditionFailed",
    "ResourceError",
    "ResourceLocked",
    "SerializationError",
    "SerializerNotInstalled",
    "TimeoutError",
    "VersionMismatch",
    "reraise",
)

_E = TypeVar("_E", bound=BaseException)


def reraise(tp: type[_E], value: _E, tb: TracebackType | None = None) -> _E:
    """Raise ``value`` with traceback ``tb`` (Kombu compatibility helper)."""
    if value.__traceback__ is not tb:
        raise value.with_traceback(tb)
    raise value


class KombuError(Exception):
    """Base class of every error raised by this library."""


class OperationalError(KombuError):
    """The broker could not be reached or an operation gave up after retrying."""


class ConnectionError(OperationalError):  # noqa: A001 - Kombu's public name
    """The connection to the broker is broken; reconnecting may help."""

    #: AMQP-style reply code when the broker closed the connection, else None.
    reply_code: int | None = None
    #: the AMQP method that failed, when known (py-amqp's name, read by Kombu-era code)
    method_name: str | None = None

    @property
    def code(self) -> int | None:
        """py-amqp's name for :attr:`reply_code`."""
        return self.reply_code


class ConnectionTimeout(OperationalError):
    """Connecting, or a round trip to the broker, took longer than its timeout."""


class IrrecoverableConnectionError(OperationalError):
    """Connecting can never succeed as configured; retrying would only waste time.

    For example TLS spoken to a plain-TCP port (``amqps://`` to 5672, ``rediss://`` to a
    plain Redis), a certificate that does not verify, or a virtual host the AMQP broker
    does not have (``kombu_like.transport.amqp.NotAllowed``, a subclass, as Kombu raises
    py-amqp's ``NotAllowed``).  The retry engine gives up on it at once (see
    :data:`kombu_like.retry.NEVER_RETRIED`); refused credentials raise
    :class:`AccessRefused`, which is not retried either.
    """


#: OpenSSL reasons meaning the two ends cannot agree on TLS at all: one side does not
#: speak it on this port, or no protocol version both accept
_TLS_MISMATCH_REASONS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "UNKNOWN_PROTOCOL",
        "HTTP_REQUEST",
        "HTTPS_PROXY_REQUEST",
        "UNSUPPORTED_PROTOCOL",
        "NO_PROTOCOLS_AVAILABLE",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "RECORD_LAYER_FAILURE",
        "PACKET_LENGTH_TOO_LONG",
    }
)


def is_irrecoverable_tls_error(exc: BaseException | None) -> bool:
    """True for a TLS failure that no retry can cure: a protocol mismatch (TLS spoken to
    a plain port) or a certificate that does not verify.  For transports' error mapping."""
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        return True
    return isinstance(exc, ssl.SSLError) and getattr(exc, "reason", None) in _TLS_MISMATCH_REASONS


class ConnectionClosed(KombuError):
    """The connection was closed by the program (``close()``/``release()``) and then used.

    Not an :class:`OperationalError`: ``ensure``/``autoretry`` do not answer it by
    reconnecting; call ``connect()`` or ``ensure_connection()`` to open it again.
    """


class InconsistencyError(ConnectionError):
    """Data or environment was found to be inconsistent; retrying may help."""


class ChannelError(KombuError):
    """The channel failed; the connection is fine and a new channel can be opened."""

    #: AMQP-style reply code (404, 406, 403, ...) when known.
    reply_code: int | None = None
    #: the AMQP method that failed, when known (py-amqp's name, read by Kombu-era code)
    method_name: str | None = None

    @property
    def code(self) -> int | None:
        """py-amqp's name for :attr:`reply_code`."""
        return self.reply_code

    def __init__(self, message: str = "", reply_code: int | None = None) -> None:
        super().__init__(message)
        if reply_code is not None:
            self.reply_code = reply_code


class NotFound(ChannelError):
    """The exchange or queue does not exist (AMQP 404)."""

    reply_code = 404


class PreconditionFailed(ChannelError):
    """An entity was redeclared with different arguments (AMQP 406)."""

    reply_code = 406


class AccessRefused(ChannelError):
    """The user is not allowed to do this (AMQP 403)."""

    reply_code = 403


class ResourceLocked(ChannelError):
    """The resource is locked, e.g. an exclusive queue of another connection (AMQP 405)."""

    reply_code = 405


#: Kombu's name for broker-side resource errors.
ResourceError = ResourceLocked


class ConsumerCancelled(ChannelError):
    """The broker cancelled a consumer (for example its queue was deleted)."""


class MessageNacked(ChannelError):
    """The broker answered a publisher confirm with a negative acknowledgement."""


class MessageReturned(ChannelError):
    """A mandatory message could not be routed to any queue (AMQP 312 NO_ROUTE)."""

    reply_code = 312


class SerializationError(KombuError):
    """Content could not be serialized or deserialized."""


class EncodeError(SerializationError):
    """An object could not be encoded."""


class MessageTooLarge(EncodeError):
    """The encoded message exceeds what the transport accepts."""


class DecodeError(SerializationError):
    """A message body could not be decoded."""


class SerializerNotInstalled(KombuError):
    """The serializer (or compression method) asked for is not installed."""


class ContentDisallowed(SerializerNotInstalled):
    """The consumer does not accept this content type."""


class NotBoundError(KombuError):
    """A channel-dependent method was called on an entity not bound to a channel."""


class MessageStateError(KombuError):
    """The message was already acknowledged, rejected or requeued."""


class BatchPublishError(KombuError):
    """Part of a batch publish failed; which messages were delivered is uncertain."""


class VersionMismatch(KombuError):
    """A dependency has an unsupported version."""


class LimitExceeded(KombuError):
    """A resource limit was exceeded."""


class ConnectionLimitExceeded(LimitExceeded):
    """The pool's maximum number of connections is in use."""


class ChannelLimitExceeded(LimitExceeded):
    """The pool's maximum number of channels is in use."""


class HttpError(Exception):
    """An HTTP request to the broker failed."""

    def __init__(self, code: int, message: str | None = None, response: Any = None) -> None:
        self.code = code
        self.message = message
        self.response = response
        super().__init__(code, message, response)

    def __str__(self) -> str:
        return f"HTTP {self.code}: {self.message}"


@contextmanager
def _wrap_errors(wrapper: type[Exception], message: str) -> Iterator[None]:
    """Raise any error in the block as ``wrapper`` (an encode or decode error) saying
    ``message``, the original kept as ``__cause__``."""
    try:
        yield
    except SerializerNotInstalled:
        # A missing optional package must reach the caller as itself, not as bad data.
        raise
    except Exception as exc:
        raise wrapper(f"{message}: {exc!r}") from exc
