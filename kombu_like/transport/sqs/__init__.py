"""Amazon SQS transport on boto3: ``sqs://``.

URL forms::

    sqs://                         credentials from boto3's default chain (environment,
                                   shared config/profile, container or instance role)
    sqs://KEY:SECRET@              these credentials (URL-quote a secret containing '/')
    sqs://KEY:SECRET@host:port     an SQS-compatible server (http, or https with is_secure)

Transport options use Kombu's names: ``region``, ``queue_name_prefix``,
``predefined_queues``, ``visibility_timeout``, ``wait_time_seconds``, ``polling_interval``,
``sqs_base64_encoding``, ``is_secure``, ``endpoint_url``, ``client-config``,
``sqs-creation-attributes``, ``queue_tags``, ``fetch_message_attributes``; plus
``max_message_size`` and ``ack_flush_interval``.  See ``docs/transports/sqs.rst``.

Messages are Kombu's virtual-transport envelope (base64-encoded JSON by default), so a
Kombu process and a kombu_like process consume each other's messages from the same queue.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...exceptions import (
    AccessRefused,
    ChannelError,
    ConnectionError,
    ConnectionTimeout,
    KombuError,
    MessageTooLarge,
    NotFound,
    OperationalError,
    PreconditionFailed,
)
from ..virtual import VirtualChannel, VirtualConnection, VirtualTransport
from ..virtual.routing import ExchangeInfo
from .acks import AckBuffer
from .client import Clients, Settings, SQSOptions, import_boto3
from .codec import sqs_queue_name
from .exceptions import AccessDeniedQueueException, DoesNotExistQueueException
from .shared import shared_state
from .store import SQSStore

if TYPE_CHECKING:
    from ...connection import Connection

__all__ = ["Channel", "SQSOptions", "SQSStore", "Settings", "Transport", "sqs_queue_name"]

logger = logging.getLogger(__name__)

#: exchange types the virtual layer can route within one process
_ROUTABLE = frozenset({"direct", "topic", "fanout", "headers"})

_NOT_FOUND = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"})
_DENIED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "InvalidSecurity",
        "OptInRequired",
        "KMS.AccessDeniedException",
        "KmsAccessDenied",
        "RequestExpired",
    }
)
_EXPIRED = frozenset({"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired"})
_THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
        "RequestLimitExceeded",
        "KMS.ThrottlingException",
        "KmsThrottled",
        "PriorRequestNotComplete",
    }
)
_UNAVAILABLE = frozenset(
    {"ServiceUnavailable", "InternalError", "InternalFailure", "RequestTimeout", "RequestTimeoutException"}
)
_TOO_LARGE = frozenset({"BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong"})
_CONFLICT = {
    "QueueAlreadyExists": "the queue exists with other attributes",
    "QueueNameExists": "the queue exists with other attributes",
    "AWS.SimpleQueueService.QueueDeletedRecently": "SQS refuses to recreate a queue within 60 s of deleting it",
    "QueueDeletedRecently": "SQS refuses to recreate a queue within 60 s of deleting it",
    "AWS.SimpleQueueService.PurgeQueueInProgress": "SQS allows one purge of a queue every 60 s",
    "PurgeQueueInProgress": "SQS allows one purge of a queue every 60 s",
}


class Channel(VirtualChannel):
    """The SQS channel.

    Only direct exchanges are advertised (``implements.exchange_type``), as by Kombu's SQS
    transport; declaring another type still works as it does with Kombu, routing among the
    queues bound in this process, and says so in a warning the first time.
    """

    def exchange_declare(
        self,
        exchange: str = "",
        type: str = "direct",
        durable: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
        nowait: bool = False,
        passive: bool = False,
        **kwargs: Any,
    ) -> None:
        """Declare an exchange; non-direct types route only among this process's bindings."""
        if type in self.seam.capabilities.exchange_types or type not in _ROUTABLE:
            super().exchange_declare(exchange, type, durable, auto_delete, arguments, nowait, passive, **kwargs)
            return
        self._check_open()
        existing = self.seam.bindings.exchange(exchange)
        if passive:
            if existing is None:
                raise NotFound(f"NOT_FOUND - no exchange {exchange!r}")
            return
        if existing is not None and existing.type != type:
            raise PreconditionFailed(
                f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange {exchange!r}: "
                f"received {type!r} but current is {existing.type!r}"
            )
        if existing is None:
            logger.warning(
                "%s exchange %r on SQS routes only to queues bound in this process: SQS has no "
                "exchanges, so bindings are kept client-side (as with Kombu)",
                type,
                exchange,
            )
        self.seam.bindings.declare_exchange(ExchangeInfo(exchange, type, durable, auto_delete, dict(arguments or {})))


class Transport(VirtualTransport):
    """The ``sqs://`` transport."""

    Channel = Channel

    driver_type = "sqs"
    driver_name = "sqs"
    default_port = None
    #: drain_events hands out all of each receive, as Kombu's SQS transport does
    batch_per_drain = True
    Store = SQSStore
    Options = SQSOptions

    connection_errors: tuple[type[BaseException], ...] = (ConnectionError, ConnectionTimeout, OperationalError)
    channel_errors: tuple[type[BaseException], ...] = (ChannelError,)
    # Throttling, 5xx answers, network failures and expired credentials are worth another
    # try (botocore has already retried with backoff; a reconnect re-reads credentials).
    # Missing queues, refused access and bad parameters are not.
    recoverable_connection_errors: tuple[type[BaseException], ...] = (ConnectionError, ConnectionTimeout)
    recoverable_channel_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, client: Connection, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        # read on first use, so that printing a Connection never fails on a bad option
        self._settings: Settings | None = None
        self._acks: AckBuffer | None = None
        self._secrets: tuple[str, ...] = tuple(
            s for s in (client.userid, client.password) if isinstance(s, str) and len(s) >= 4
        )

    @property
    def settings(self) -> Settings:
        """The transport options, checked (:class:`ValueError` names a bad one)."""
        if self._settings is None:
            self._settings = Settings.from_options(self.transport_options, self.client.hostname, self.client.port)
        return self._settings

    @property
    def acks(self) -> AckBuffer:
        """Acknowledged receipt handles not deleted yet; they outlive reconnects."""
        if self._acks is None:
            self._acks = AckBuffer(self.settings.ack_flush_interval)
        return self._acks

    def check_options(self) -> SQSOptions | None:
        """Options are checked as part of :attr:`settings` (which reads the URL too)."""
        self.settings  # noqa: B018 - reading them is the check
        return None

    def create_store(self) -> SQSStore:
        client = self.client
        clients = Clients(self.settings, client.userid, client.password, client.connect_timeout)
        self._secrets = tuple(dict.fromkeys((*self._secrets, *clients.secrets())))
        key = (
            clients.settings.endpoint_url or "",
            clients.region,
            self.settings.queue_name_prefix,
            client.userid or "",
        )
        return SQSStore(self.settings, clients, self.acks, shared_state(key), self.translate_error)

    @property
    def polling_interval(self) -> float:
        """Seconds between polls when long polling is off (Kombu's transport attribute)."""
        return self.settings.polling_interval

    def collect_connection(self, connection: VirtualConnection) -> None:
        """Forget ``connection`` after an error, sending nothing to SQS.

        Its channels' unacknowledged messages stay in flight: acknowledging them later
        still works (receipt handles outlive the connection), and otherwise SQS delivers
        them again after their visibility timeout.  Acknowledgements not yet deleted wait
        in :attr:`acks` for the next connection.  So a throttled publish retried with
        ``retry=True`` never makes a consumer's messages visible again.
        """
        connection.is_open = False
        store = connection.store
        if isinstance(store, SQSStore):
            store.abandon()
        try:
            # out of the event loop, without waiting for the receive thread's long poll
            connection.unregister_from_event_loop()
        except Exception:  # broken already; nothing more to do about it
            logger.debug("error leaving the event loop with a broken SQS connection", exc_info=True)

    def flush_acks(self, timeout: float | None = None) -> int:
        """Delete acknowledged messages now instead of on the timer.

        Returns how many acknowledged messages are still not deleted after ``timeout``
        seconds (``None``: as long as it takes).
        """
        return self.acks.flush(timeout)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "**")
        return text

    def translate_store_error(self, exc: BaseException, queue: str | None = None) -> BaseException:
        """Errors of store calls name the queue they were about."""
        return self.translate_error(exc, queue)

    def translate_error(self, exc: BaseException, queue: str | None = None) -> BaseException:
        """Map botocore's errors onto the library's exception tree (the one place).

        ``queue`` (the AMQP queue name) is named in the message when known.
        """
        if isinstance(exc, KombuError | socket.timeout):
            return exc
        try:
            from botocore import exceptions as boto
        except ImportError:  # pragma: no cover - without botocore nothing raises its errors
            return super().translate_error(exc)
        where = ""
        if queue is not None:
            name = sqs_queue_name(queue, self.settings.queue_name_prefix)
            where = f" for SQS queue {name!r}" + (f" (queue {queue!r})" if name != queue else "")
        if isinstance(exc, boto.ClientError):
            return self._translate_client_error(exc, where)
        text = self._scrub(f"{type(exc).__name__}{where}: {exc}")
        if isinstance(exc, boto.ConnectTimeoutError | boto.ReadTimeoutError):
            return ConnectionTimeout(f"SQS did not answer in time: {text}")
        if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError | boto.ProfileNotFound):
            return AccessRefused(
                f"no usable AWS credentials: {text}; give them in the URL (sqs://KEY:SECRET@), "
                f"the environment, a profile, or an IAM role"
            )
        if isinstance(exc, boto.ParamValidationError):
            return ChannelError(f"botocore refused the request parameters before sending: {text}")
        if isinstance(exc, boto.BotoCoreError):
            # endpoint unreachable, connection reset, credential refresh failed ...
            return ConnectionError(f"SQS request failed: {text}")
        return super().translate_error(exc)

    def _translate_client_error(self, exc: Any, where: str) -> BaseException:
        error = exc.response.get("Error") or {}
        codes = {error.get("Code"), error.get("QueryErrorCode")} - {None}
        code = error.get("Code") or error.get("QueryErrorCode") or "Unknown"
        status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        operation = getattr(exc, "operation_name", "request")
        text = self._scrub(f"SQS {operation} failed{where}: {code}: {error.get('Message') or exc}")
        if codes & _NOT_FOUND:
            return DoesNotExistQueueException(text)
        if codes & _DENIED:
            return AccessDeniedQueueException(
                f"{text} (check the credentials and the IAM permissions the SQS transport needs)"
            )
        if codes & _EXPIRED:
            return ConnectionError(f"{text} (the credentials expired; reconnecting reads them again)")
        if codes & _THROTTLED:
            return ConnectionError(f"{text} (throttled by SQS, still after botocore's retries with backoff)")
        if codes & _TOO_LARGE:
            return MessageTooLarge(text)
        conflict = next((_CONFLICT[c] for c in codes if c in _CONFLICT), None)
        if conflict is not None:
            return PreconditionFailed(f"{text} ({conflict})")
        if "OverLimit" in codes:
            return ChannelError(
                f"{text} (too many messages in flight: acknowledge messages or lower the prefetch count)"
            )
        if codes & _UNAVAILABLE or status >= 500:
            return ConnectionError(text)
        return ChannelError(text, reply_code=status or None)

    def driver_version(self) -> str:
        return str(import_boto3().__version__)

    @property
    def default_connection_params(self) -> dict[str, Any]:
        return {}
