"""Request/reply over a queue: :class:`RpcServer` and :class:`RpcClient`.

A server consumes requests from a queue and answers each with the handler's return
value; a client sends a request and waits for the answer::

    # server process
    def add(payload):
        return payload["a"] + payload["b"]

    server = RpcServer(Connection("amqp://"), "math.add", add)
    server.run()                  # until server.should_stop = True (from another thread)

    # client process
    with RpcClient(Connection("amqp://")) as client:
        assert client.call("math.add", {"a": 1, "b": 2}, timeout=5) == 3

On RabbitMQ replies use direct reply-to (``amq.rabbitmq.reply-to``: no reply queue is
declared); on other transports each client declares one exclusive reply queue.  An
exception raised by the handler comes back as :class:`RemoteError` carrying the remote
exception's type and message; no reply within ``timeout`` raises :class:`RpcTimeout` on
every transport.  Where the broker reports that no queue took the request (RabbitMQ
returns a mandatory message), that comes sooner, as :class:`RpcNoRoute` -- an
:class:`RpcTimeout` that also says why.  Replies that arrive after their call gave up
are dropped (logged at debug level).

Wire format: the request is the serialized payload with ``reply_to`` and
``correlation_id`` properties and an ``x-rpc-deadline`` header (epoch seconds); the reply
is ``{"result": value}`` or ``{"error": {"type": "module.Class", "message": "..."}}`` with
the request's ``correlation_id``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from .common import uuid
from .connection import Connection
from .entity import Queue
from .exceptions import EncodeError, KombuError, MessageReturned
from .message import Message
from .messaging import Consumer, Producer
from .mixins import ConsumerProducerMixin, preview
from .plan import Plan, call, run

__all__ = ["DIRECT_REPLY_TO", "RemoteError", "RpcClient", "RpcNoRoute", "RpcServer", "RpcTimeout"]

logger = logging.getLogger(__name__)

#: RabbitMQ's pseudo-queue for replies without a reply queue
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
#: header carrying the caller's deadline (seconds since the epoch)
DEADLINE_HEADER = "x-rpc-deadline"
#: seconds a call waits for its reply when no timeout is given
DEFAULT_TIMEOUT = 30.0


class RemoteError(KombuError):
    """The server's handler raised: ``exc_type`` and ``exc_message`` say what it raised."""

    def __init__(self, exc_type: str, exc_message: str, queue: str | None = None) -> None:
        self.exc_type = exc_type
        self.exc_message = exc_message
        self.queue = queue
        where = f" (raised by the server of queue {queue!r})" if queue else ""
        super().__init__(f"{exc_type}: {exc_message}{where}")


class RpcTimeout(KombuError, TimeoutError):
    """No reply arrived within the call's timeout."""


class RpcNoRoute(RpcTimeout, MessageReturned):
    """No reply will come: the broker returned the request because no queue took it.

    Raised as soon as the broker returns the request (RabbitMQ does), where other
    transports, which cannot tell, wait for the timeout and raise :class:`RpcTimeout`.
    Being an :class:`RpcTimeout`, one ``except RpcTimeout`` handles both everywhere.
    """


def _qualified_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"


def _error_reply(exc: BaseException) -> dict[str, Any]:
    return {"error": {"type": _qualified_name(exc), "message": str(exc)}}


def _uses_direct_reply_to(connection: Connection) -> bool:
    transport = connection.transport
    extra = transport.capabilities.extra or {}
    if "direct_reply_to" in extra:
        return bool(extra["direct_reply_to"])
    return transport.driver_type == "amqp"


class RpcServer(ConsumerProducerMixin):
    """Answers requests from ``queue`` with ``handler(payload)``.

    ``queue`` is a queue name (a durable queue of that name on the default exchange) or
    a :class:`~kombu_like.Queue`.  Several servers on one queue share the requests;
    ``prefetch_count`` (1 by default) is how many each takes at a time.  Run it with
    :meth:`run` (reconnects after connection loss) until ``should_stop`` is set, or
    :meth:`consume` for a bounded number of rounds.

    A request is acknowledged after its reply was published, so a server that dies while
    handling it leaves it to another server.  Requests whose caller's deadline has passed
    are acknowledged without calling the handler.
    """

    def __init__(
        self,
        connection: Connection,
        queue: str | Queue,
        handler: Callable[[Any], Any],
        accept: Iterable[str] | None = None,
        serializer: str | None = None,
        prefetch_count: int = 1,
    ) -> None:
        self.connection = connection
        self.queue = queue if isinstance(queue, Queue) else Queue(queue, routing_key=queue)
        self.handler = handler
        self.accept = list(accept) if accept is not None else None
        self.serializer = serializer
        self.prefetch_count = prefetch_count

    def get_consumers(self, Consumer: Callable[..., Consumer], channel: Any) -> list[Consumer]:  # noqa: N803
        return [
            Consumer(
                queues=[self.queue],
                on_message=self.on_request,
                accept=self.accept,
                prefetch_count=self.prefetch_count,
            )
        ]

    def declare(self) -> None:
        """Declare the request queue now (requests sent before the server starts wait there)."""
        with self.connection.clone() as conn:
            self.queue(conn.default_channel).declare()

    def on_request(self, message: Message) -> Any:
        """Handle one request message: decode, call the handler, reply, acknowledge.

        A plan (:mod:`kombu_like.plan`): on an asyncio channel the result is awaitable,
        and the handler may be a coroutine function."""
        return run(message.channel, self._request_plan(message))

    def _request_plan(self, message: Message) -> Plan[None]:
        properties = message.properties or {}
        deadline = (message.headers or {}).get(DEADLINE_HEADER)
        if deadline and time.time() > float(deadline):
            logger.info(
                "RPC %s: request %s arrived after its caller's deadline; not handled",
                self.queue.name,
                properties.get("correlation_id"),
            )
            yield from call(message, "ack")
            return
        try:
            payload = message.decode()
        except Exception as exc:
            yield from self._decode_error_plan(message, exc)
            return
        try:
            reply = {"result": (yield from call(self, "handler", payload))}
        except Exception as exc:
            logger.exception("RPC %s: handler raised for request %s", self.queue.name, properties.get("correlation_id"))
            reply = _error_reply(exc)
        yield from self._reply_plan(message, reply)
        yield from call(message, "ack")

    def on_decode_error(self, message: Message, exc: BaseException) -> Any:
        """An undecodable request: log it, tell the caller, reject it (dead-letter)."""
        return run(message.channel, self._decode_error_plan(message, exc))

    def _decode_error_plan(self, message: Message, exc: BaseException) -> Plan[None]:
        logger.error(
            "RPC %s: cannot decode request %s (content type %r, encoding %r): %s; raw body: %s; rejecting it",
            self.queue.name,
            (message.properties or {}).get("correlation_id"),
            message.content_type,
            message.content_encoding,
            exc,
            preview(message.body),
        )
        yield from self._reply_plan(message, _error_reply(exc))
        errors = (*self.connection.connection_errors, *self.connection.channel_errors)
        yield from call(message, "reject_log_error", logger, errors)

    def _reply(self, request: Message, reply: dict[str, Any]) -> Any:
        return run(request.channel, self._reply_plan(request, reply))

    def _reply_plan(self, request: Message, reply: dict[str, Any]) -> Plan[None]:
        properties = request.properties or {}
        reply_to = properties.get("reply_to")
        if not reply_to:
            return
        deadline = (request.headers or {}).get(DEADLINE_HEADER)
        options: dict[str, Any] = {}
        if deadline:
            # a reply nobody waits for any more expires in the reply queue
            options["expiration"] = max(float(deadline) - time.time(), 0.001)
        producer = self.producer
        correlation_id = properties.get("correlation_id")
        try:
            yield from call(
                producer,
                "publish",
                reply,
                exchange="",
                routing_key=reply_to,
                correlation_id=correlation_id,
                serializer=self.serializer,
                retry=True,
                **options,
            )
        except EncodeError as exc:
            logger.error("RPC %s: cannot encode the reply: %s", self.queue.name, exc)
            yield from call(
                producer,
                "publish",
                _error_reply(exc),
                exchange="",
                routing_key=reply_to,
                correlation_id=correlation_id,
                retry=True,
                **options,
            )


def request_arguments(
    queue: str | Queue,
    reply_to: str,
    correlation_id: str,
    timeout: float,
    headers: dict[str, Any] | None,
    properties: dict[str, Any],
) -> dict[str, Any]:
    """The ``Producer.publish`` keyword arguments of a request (the wire format above)."""
    request_headers = dict(headers or {})
    request_headers[DEADLINE_HEADER] = time.time() + timeout
    target: dict[str, Any]
    if isinstance(queue, Queue):
        target = {"exchange": queue.exchange, "routing_key": queue.routing_key or queue.name, "declare": [queue]}
    else:
        target = {"exchange": "", "routing_key": queue, "mandatory": True}
    return {
        "reply_to": reply_to,
        "correlation_id": correlation_id,
        "expiration": timeout,
        "headers": request_headers,
        **target,
        **properties,
    }


def reply_outcome(message: Message) -> tuple[str, Any]:
    """``("reply", decoded body)``, or ``("error", exc)`` for a reply that does not decode."""
    try:
        return ("reply", message.decode())
    except Exception as exc:
        logger.error(
            "RpcClient: cannot decode reply %s (content type %r): %s; raw body: %s",
            (message.properties or {}).get("correlation_id"),
            message.content_type,
            exc,
            preview(message.body),
        )
        return ("error", exc)


def no_route(exchange: str, routing_key: str) -> RpcNoRoute:
    """The error of a request the broker returned."""
    return RpcNoRoute(
        f"no reply from RPC queue {routing_key!r}: the broker returned the request, no queue "
        f"named {routing_key!r} exists (exchange {exchange!r}); is the RPC server running?"
    )


def call_result(outcome: tuple[str, Any] | None, queue: str | Queue, timeout: float) -> Any:
    """What a call returns for ``outcome`` (``None``: no reply came), or the error it raises."""
    name = queue.name if isinstance(queue, Queue) else queue
    if outcome is None:
        raise RpcTimeout(f"no reply from RPC queue {name!r} within {timeout:g}s")
    kind, value = outcome
    if kind != "reply":
        raise value
    if isinstance(value, dict) and "error" in value and "result" not in value:
        error = value["error"] or {}
        raise RemoteError(str(error.get("type", "Exception")), str(error.get("message", "")), name)
    if not isinstance(value, dict) or "result" not in value:
        raise RemoteError("ProtocolError", f"unexpected reply {value!r:.200}", name)
    return value["result"]


class RpcClient:
    """Calls :class:`RpcServer` queues: ``client.call(queue, payload, timeout)``.

    One client makes one call at a time (concurrent calls from several threads wait
    for each other); give each thread its own client for parallel calls.  The client
    opens a channel of its own on ``connection`` and keeps its reply consumer for its
    lifetime: :meth:`close` it (or use it as a context manager).

    ``direct_reply_to`` forces (or forbids) RabbitMQ direct reply-to; by default it is
    used on the AMQP transport.
    """

    def __init__(
        self,
        connection: Connection,
        serializer: str | None = None,
        accept: Iterable[str] | None = None,
        direct_reply_to: bool | None = None,
    ) -> None:
        self.connection = connection
        self.serializer = serializer
        self.accept = list(accept) if accept is not None else None
        self._direct = direct_reply_to
        self._lock = threading.RLock()
        self._channel: Any = None
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self.reply_queue: Queue | None = None
        self._waiting: str | None = None
        self._outcome: tuple[str, Any] | None = None

    # -- set-up -------------------------------------------------------------------------
    def _ready(self) -> tuple[Producer, Queue]:
        channel = self._channel
        if channel is not None and getattr(channel, "is_open", True) and self.connection.connected:
            assert self._producer is not None and self.reply_queue is not None
            return self._producer, self.reply_queue
        self._reset()
        if not self.connection.connected:
            # lost or closed: connect again (one attempt; the caller decides about more)
            self.connection.connect()
        direct = _uses_direct_reply_to(self.connection) if self._direct is None else self._direct
        channel = self.connection.channel()
        if direct:
            queue = Queue(DIRECT_REPLY_TO, no_declare=True, no_ack=True)
        else:
            queue = Queue(f"rpc.reply.{uuid()}", durable=False, exclusive=True, auto_delete=True, no_ack=True)
        accept = self.accept
        if accept is not None and self.serializer and self.serializer not in accept:
            accept = [*accept, self.serializer]
        consumer = Consumer(channel, [queue], no_ack=True, on_message=self._on_reply, accept=accept)
        consumer.consume()
        self.reply_queue = consumer.queues[0]
        self._producer = Producer(channel, serializer=self.serializer, on_return=self._on_return)
        self._consumer = consumer
        self._channel = channel
        return self._producer, self.reply_queue

    def _reset(self) -> None:
        channel, self._channel = self._channel, None
        self._producer = self._consumer = None
        if channel is not None:
            try:
                channel.close()
            except Exception:  # the channel died with its connection
                logger.debug("RpcClient: error closing channel", exc_info=True)

    # -- replies --------------------------------------------------------------------------
    def _on_reply(self, message: Message) -> None:
        correlation_id = (message.properties or {}).get("correlation_id")
        if correlation_id is None or correlation_id != self._waiting:
            logger.debug("RpcClient: dropping reply %s that no call waits for", correlation_id)
            return
        self._outcome = reply_outcome(message)

    def _on_return(self, exc: BaseException, exchange: str, routing_key: str, message: Any) -> None:
        correlation_id = (getattr(message, "properties", None) or {}).get("correlation_id")
        if correlation_id is not None and correlation_id == self._waiting:
            self._outcome = ("returned", no_route(exchange, routing_key))

    # -- calling -------------------------------------------------------------------------
    def call(
        self,
        queue: str | Queue,
        payload: Any,
        timeout: float = DEFAULT_TIMEOUT,
        headers: dict[str, Any] | None = None,
        **properties: Any,
    ) -> Any:
        """Send ``payload`` to ``queue`` and return the server's answer.

        ``queue`` is a queue name (sent through the default exchange) or a
        :class:`~kombu_like.Queue` (declared once, sent to its exchange and routing
        key).  Raises :class:`RpcTimeout` when no answer came within ``timeout`` seconds
        (its subclass :class:`RpcNoRoute` sooner, where the broker returned the request)
        and :class:`RemoteError` when the handler raised.
        """
        if timeout is None or timeout <= 0:
            raise ValueError("RpcClient.call needs a positive timeout")
        with self._lock:
            correlation_id = uuid()
            deadline = time.monotonic() + timeout
            self._waiting, self._outcome = correlation_id, None
            try:
                reply_queue = self._send(queue, payload, timeout, correlation_id, headers, properties)
                return self._wait(queue, reply_queue, deadline, timeout)
            finally:
                self._waiting = None
                self._outcome = None

    def _send(
        self,
        queue: str | Queue,
        payload: Any,
        timeout: float,
        correlation_id: str,
        headers: dict[str, Any] | None,
        properties: dict[str, Any],
    ) -> Queue:
        attempts = 2  # the request was not sent when the first attempt failed: safe to repeat
        for attempt in range(attempts):
            producer, reply_queue = self._ready()
            arguments = request_arguments(queue, reply_queue.name, correlation_id, timeout, headers, properties)
            try:
                producer.publish(payload, **arguments)
                return reply_queue
            except self.connection.recoverable_connection_errors:
                self._reset()
                self.connection.collect()
                if attempt + 1 == attempts:
                    raise
        raise AssertionError("unreachable")

    def _wait(self, queue: str | Queue, reply_queue: Queue, deadline: float, timeout: float) -> Any:
        connection = self.connection
        while self._outcome is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                connection.drain_events(timeout=remaining)
            except socket.timeout:
                break
            except connection.recoverable_connection_errors:
                self._reset()
                raise
        return call_result(self._outcome, queue, timeout)

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Stop consuming replies and close the client's channel."""
        with self._lock:
            consumer = self._consumer
            if consumer is not None:
                try:
                    consumer.cancel()
                except Exception:  # the channel may be gone already
                    logger.debug("RpcClient: error cancelling reply consumer", exc_info=True)
            self._reset()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
