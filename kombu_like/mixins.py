"""Consumer programs that survive connection loss (Kombu's ``kombu.mixins``).

A worker subclasses :class:`ConsumerMixin`, sets ``self.connection`` and returns its
consumers from :meth:`~ConsumerMixin.get_consumers`; :meth:`~ConsumerMixin.run` then
consumes until ``should_stop`` is set, reconnecting (through the connection's retry loop)
whenever the broker connection is lost::

    class Worker(ConsumerMixin):
        def __init__(self, connection):
            self.connection = connection

        def get_consumers(self, Consumer, channel):
            return [Consumer(queues=[task_queue], callbacks=[self.on_task])]

        def on_task(self, body, message):
            print(body)
            message.ack()

    Worker(Connection("amqp://")).run()
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from functools import partial
from itertools import count
from typing import Any

from . import messaging
from .common import ignore_errors
from .connection import Connection
from .message import Message
from .messaging import Producer

__all__ = ["ConsumerMixin", "ConsumerProducerMixin"]

logger = logging.getLogger(__name__)

W_CONN_LOST = "Connection to broker lost, trying to re-establish connection..."
W_CONN_ERROR = "Broker connection error, trying again in %s seconds: %r."

#: bytes of an undecodable body shown in the log
PREVIEW_BYTES = 64

_event_lock = threading.Lock()


class _StopRequested(Exception):
    """Raised inside the reconnect loop when ``should_stop`` was set meanwhile."""


class TokenBucket:
    """At most ``capacity`` tokens, refilled at ``fill_rate`` tokens a second."""

    def __init__(self, fill_rate: float, capacity: float = 1) -> None:
        self.fill_rate = float(fill_rate)
        self.capacity = float(capacity)
        self._tokens = float(capacity)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.fill_rate)
        self._stamp = now

    def can_consume(self, tokens: float = 1) -> bool:
        """Take ``tokens`` if there are that many; True when taken."""
        with self._lock:
            self._refill()
            if tokens <= self._tokens:
                self._tokens -= tokens
                return True
            return False

    def expected_time(self, tokens: float = 1) -> float:
        """Seconds until ``tokens`` are available."""
        with self._lock:
            self._refill()
            missing = max(tokens - self._tokens, 0.0)
            return missing / self.fill_rate if self.fill_rate else float("inf")


def preview(body: Any, size: int = PREVIEW_BYTES) -> str:
    """A short, printable preview of a raw message body for error messages (one line)."""
    if body is None:
        return "None"
    try:
        length = len(body)
    except TypeError:
        length = 0
    shown = bytes(body[:size]) if isinstance(body, bytearray | memoryview) else body
    if isinstance(shown, bytes | str):
        shown = shown[:size]
    text = repr(shown)
    if len(text) > 4 * size:  # anything else is shown by its repr, cut short too
        text = text[: 4 * size] + "..."
    more = f"... ({length} bytes)" if length > size else ""
    return f"{text}{more}"


#: header in which a transport explains why it could not read a message as an envelope
TRANSPORT_ERROR_HEADER = "x-kombu-like-error"


def decode_error_reason(message: Any, exc: BaseException) -> str:
    """One line saying why ``message`` could not be decoded (with the transport's own
    explanation when it wrapped an unreadable entry)."""
    reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    headers = getattr(message, "headers", None)
    detail = headers.get(TRANSPORT_ERROR_HEADER) if isinstance(headers, dict) else None
    if isinstance(detail, str) and detail:
        reason = f"{reason} ({' '.join(detail.split())})"
    return reason


def raw_body(message: Any) -> Any:
    """The body as received, without decompressing it just to show it."""
    if isinstance(message, Message):
        return message._body
    return getattr(message, "body", None)


class ConsumerMixin:
    """Base for consumer programs: subclasses provide ``connection`` and
    :meth:`get_consumers`; :meth:`run` consumes until :attr:`should_stop` is set.

    Every (re)start clones ``connection`` and connects with
    :meth:`~kombu_like.Connection.ensure_connection` (retrying as the connection's retry
    policy says, :meth:`on_connection_error` called before each retry); a connection or
    channel error while consuming ends that round and :meth:`run` starts a new one, at
    most one restart a second.

    Hooks, all optional: :meth:`on_connection_revived`, :meth:`on_consume_ready`,
    :meth:`on_consume_end`, :meth:`on_iteration`, :meth:`on_decode_error`,
    :meth:`on_connection_error`, :meth:`extra_context`.
    """

    #: the connection to clone for every consuming round (set by the subclass)
    connection: Connection
    #: reconnect attempts per round before giving up (``None``: keep trying)
    connect_max_retries: int | None = None

    # -- stopping ------------------------------------------------------------------------
    def _stop_event(self) -> threading.Event:
        event: threading.Event | None = self.__dict__.get("_mixin_stop_event")
        if event is None:
            with _event_lock:
                event = self.__dict__.setdefault("_mixin_stop_event", threading.Event())
        return event

    @property
    def should_stop(self) -> bool:
        """Set to True (from any thread) to make :meth:`run` / :meth:`consume` return.

        The consumer notices within ``safety_interval`` seconds (1 by default).
        """
        return self._stop_event().is_set()

    @should_stop.setter
    def should_stop(self, value: bool) -> None:
        event = self._stop_event()
        if value:
            event.set()
        else:
            event.clear()

    def _check_stop(self) -> None:
        if self.should_stop:
            raise _StopRequested()

    # -- hooks ---------------------------------------------------------------------------
    def get_consumers(self, Consumer: Callable[..., messaging.Consumer], channel: Any) -> Sequence[messaging.Consumer]:  # noqa: N803
        """Return the consumers to run, built with ``Consumer(queues=..., callbacks=...)``."""
        raise NotImplementedError("Subclass responsibility")

    def on_connection_revived(self) -> None:
        """Called after every (re)connect, before the consumers are created."""

    def on_consume_ready(
        self, connection: Connection, channel: Any, consumers: Sequence[messaging.Consumer], **kwargs: Any
    ) -> None:
        """Called when the consumers are consuming (``kwargs`` are those of :meth:`consume`)."""

    def on_consume_end(self, connection: Connection, channel: Any) -> None:
        """Called after the consumers were cancelled."""

    def on_iteration(self) -> None:
        """Called before every ``drain_events``."""

    def on_decode_error(self, message: Message, exc: BaseException) -> None:
        """A message could not be decoded: log what it was and reject it.

        One log line (level ERROR) names the queue, exchange, routing key, content type and
        encoding, the reason, and shows the start of the raw body.  The message is rejected
        without requeue (dead lettered where the queue has a dead-letter exchange) so one
        bad message cannot block the queue; override to keep it instead.
        """
        info = message.delivery_info if isinstance(message.delivery_info, dict) else {}
        logger.error(
            "Can't decode message body from queue %r (exchange %r, routing key %r, content type "
            "%r, encoding %r): %s; raw body: %s; rejecting it",
            self._queue_name_of(message),
            info.get("exchange"),
            info.get("routing_key"),
            message.content_type,
            message.content_encoding,
            decode_error_reason(message, exc),
            preview(raw_body(message)),
        )
        errors = (*self.connection.connection_errors, *self.connection.channel_errors)
        message.reject_log_error(logger, errors)

    def _queue_name_of(self, message: Message) -> str | None:
        for consumer in self.__dict__.get("_mixin_consumers", ()):
            name = consumer._queue_of(message)
            if name is not None:
                return str(name)
        return None

    def on_connection_error(self, exc: BaseException, interval: float) -> None:
        """Connecting failed; the next try is in ``interval`` seconds."""
        logger.warning(W_CONN_ERROR, interval, exc, exc_info=True)

    @contextmanager
    def extra_context(self, connection: Connection, channel: Any) -> Iterator[None]:
        """A context entered after the consumers are set up (override to add one)."""
        yield

    # -- running -------------------------------------------------------------------------
    @property
    def restart_limit(self) -> TokenBucket:
        """Rate limit of restarts after errors (one a second)."""
        bucket: TokenBucket | None = self.__dict__.get("_mixin_restart_limit")
        if bucket is None:
            bucket = self.__dict__.setdefault("_mixin_restart_limit", TokenBucket(1))
        return bucket

    def run(self, _tokens: int = 1, **kwargs: Any) -> None:
        """Consume until :attr:`should_stop`, reconnecting after connection loss."""
        errors = (*self.connection.connection_errors, *self.connection.channel_errors)
        stop = self._stop_event()
        while not self.should_stop:
            try:
                if self.restart_limit.can_consume(_tokens):
                    for _ in self.consume(limit=None, **kwargs):
                        pass
                else:
                    stop.wait(self.restart_limit.expected_time(_tokens))
            except errors:
                if not self.should_stop:
                    logger.warning(W_CONN_LOST, exc_info=True)

    @contextmanager
    def consumer_context(self, **kwargs: Any) -> Iterator[tuple[Connection, Any, Sequence[messaging.Consumer]]]:
        """Connect, start the consumers and the extra context; yield ``(conn, channel, consumers)``."""
        with self.Consumer() as (connection, channel, consumers):
            with self.extra_context(connection, channel):
                self.on_consume_ready(connection, channel, consumers, **kwargs)
                yield connection, channel, consumers

    def consume(
        self, limit: int | None = None, timeout: float | None = None, safety_interval: float = 1, **kwargs: Any
    ) -> Iterator[None]:
        """Consume, yielding after each ``drain_events`` that delivered something.

        ``limit`` bounds the number of yields; ``timeout`` raises :class:`socket.timeout`
        after that many seconds without events; ``safety_interval`` is how long one
        ``drain_events`` waits, and so how quickly :attr:`should_stop` is noticed.
        """
        elapsed = 0.0
        try:
            with self.consumer_context(**kwargs) as (conn, _channel, _consumers):
                for _ in count() if limit is None else range(limit):
                    if self.should_stop:
                        break
                    self.on_iteration()
                    try:
                        conn.drain_events(timeout=safety_interval)
                    except socket.timeout:
                        conn.heartbeat_check()
                        elapsed += safety_interval
                        if timeout and elapsed >= timeout:
                            raise
                    except OSError:
                        if not self.should_stop:
                            raise
                    else:
                        yield
                        elapsed = 0
        except _StopRequested:
            pass  # stopped while waiting to reconnect
        logger.debug("consume exiting")

    def maybe_conn_error(self, fun: Callable[[], Any]) -> Any:
        """Call ``fun`` ignoring connection errors (use :func:`~kombu_like.common.ignore_errors`)."""
        return ignore_errors(self, fun)

    def create_connection(self) -> Connection:
        """A new connection for a consuming round (a clone of :attr:`connection`)."""
        return self.connection.clone()

    @contextmanager
    def establish_connection(self) -> Iterator[Connection]:
        """Connect a new connection, retrying (with :meth:`on_connection_error` as errback).

        The pause between attempts follows the connection's ``interval_start``,
        ``interval_step`` and ``interval_max`` transport options (2, 2 and 30 seconds by
        default); :attr:`connect_max_retries` bounds the attempts.
        """
        with self.create_connection() as conn:
            self._connect(conn)
            yield conn

    def _connect(self, conn: Connection) -> None:
        conn.ensure_connection(callback=self._check_stop, **self._connect_policy(conn))

    def _connect_policy(self, conn: Any) -> dict[str, Any]:
        """``ensure_connection``'s arguments for connecting ``conn``: :meth:`on_connection_error`
        as errback, :attr:`connect_max_retries` attempts, and the pauses of the transport
        options that pace ``Connection.default_channel``'s retries too."""
        options = conn.transport_options
        return {
            "errback": self.on_connection_error,
            "max_retries": self.connect_max_retries,
            "interval_start": options.get("interval_start", 2),
            "interval_step": options.get("interval_step", 2),
            "interval_max": options.get("interval_max", 30),
        }

    @contextmanager
    def Consumer(self) -> Iterator[tuple[Connection, Any, Sequence[messaging.Consumer]]]:  # noqa: N802
        """Connect and start the consumers from :meth:`get_consumers`."""
        with self.establish_connection() as conn:
            self.on_connection_revived()
            logger.info("Connected to %s", conn.as_uri())
            channel = conn.default_channel
            factory = partial(messaging.Consumer, channel, on_decode_error=self.on_decode_error)
            consumers = list(self.get_consumers(factory, channel))
            self.__dict__["_mixin_consumers"] = consumers
            try:
                with self._consume_from(*consumers):
                    yield conn, channel, consumers
            finally:
                self.__dict__["_mixin_consumers"] = []
            logger.debug("Consumers cancelled")
            self.on_consume_end(conn, channel)
        logger.debug("Connection closed")

    @contextmanager
    def _consume_from(self, *consumers: messaging.Consumer) -> Iterator[list[messaging.Consumer]]:
        with ExitStack() as stack:
            yield [stack.enter_context(consumer) for consumer in consumers]

    @property
    def connection_errors(self) -> tuple[type[BaseException], ...]:
        """The connection's connection errors."""
        return self.connection.connection_errors

    @property
    def channel_errors(self) -> tuple[type[BaseException], ...]:
        """The connection's channel errors."""
        return self.connection.channel_errors


class ConsumerProducerMixin(ConsumerMixin):
    """A :class:`ConsumerMixin` that also publishes, on a connection of its own.

    Publishing on a separate connection keeps a consumer from blocking on broker flow
    control of its own publishes.  :attr:`producer` publishes on that connection; it is
    opened on first use and closed when a consuming round ends.
    """

    @property
    def producer_connection(self) -> Connection:
        """The publishing connection (connected on first use)."""
        conn: Connection | None = self.__dict__.get("_mixin_producer_connection")
        if conn is None:
            conn = self.connection.clone()
            self._connect(conn)
            self.__dict__["_mixin_producer_connection"] = conn
        return conn

    @property
    def producer(self) -> Producer:
        """A producer on :attr:`producer_connection`."""
        producer: Producer | None = self.__dict__.get("_mixin_producer")
        conn = self.producer_connection
        if producer is None or producer.__connection__ is not conn:
            producer = self.__dict__["_mixin_producer"] = Producer(conn)
        return producer

    def on_consume_end(self, connection: Connection, channel: Any) -> None:
        conn = self.__dict__.pop("_mixin_producer_connection", None)
        self.__dict__.pop("_mixin_producer", None)
        if conn is not None:
            conn.close()
