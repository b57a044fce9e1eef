"""Remote control of many processes (Kombu's ``kombu.pidbox``).

A :class:`Mailbox` is an exchange named ``<namespace>.pidbox``; every process runs a
:class:`Node` with a queue bound to it and handlers for commands.  A client broadcasts a
command and collects the replies that arrive within a timeout::

    mailbox = Mailbox("myapp")

    # in every worker process
    node = mailbox(worker_connection).Node("worker1@host", state=app_state)

    @node.handler
    def ping(state):
        return "pong"

    node.listen()          # then keep calling worker_connection.drain_events()

    # in the client
    replies = mailbox(client_connection).multi_call("ping", timeout=1)
    # [{"worker1@host": "pong"}, ...]

The messages (body, ``clock``/``expires``/``ticket`` headers, queue and exchange names)
are Kombu's, so kombu_like and Kombu processes control each other.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from copy import copy
from fnmatch import fnmatch
from typing import Any

from . import messaging
from .clocks import LamportClock
from .common import maybe_declare, oid_from, uuid
from .entity import Exchange, Queue
from .exceptions import InconsistencyError
from .messaging import Consumer, Producer
from .utils.objects import cached_property

__all__ = ["LamportClock", "Mailbox", "Node", "match"]

logger = logging.getLogger(__name__)

#: seconds a client waits for replies when no timeout is given
DEFAULT_TIMEOUT = 1.0
#: seconds to wait for a producer from ``producer_pool`` before giving up
POOL_ACQUIRE_TIMEOUT = 10.0

W_PIDBOX_IN_USE = (
    "A node named {hostname} is already using this process mailbox! Maybe you forgot to "
    "shut down the other node, or you meant to start several nodes on this host: give "
    "each a unique node name."
)

_MATCHERS: dict[str, Callable[[str, str], bool]] = {
    "glob": lambda data, pattern: fnmatch(data, pattern),
    "pcre": lambda data, pattern: re.match(pattern, data) is not None,
}


def match(data: str, pattern: str, matcher: str | None = None) -> bool:
    """True when ``data`` (a node name) matches ``pattern`` with ``matcher`` (glob or pcre)."""
    try:
        fun = _MATCHERS[matcher or "glob"]
    except KeyError:
        raise KeyError(f"No matcher installed for {matcher!r} (known: {', '.join(sorted(_MATCHERS))})") from None
    return fun(data, pattern)


class Node:
    """One process's end of a :class:`Mailbox`: receives commands and answers them.

    ``handlers`` maps command names to ``handler(state, **arguments)``; register more
    with the :meth:`handler` decorator.  A handler's return value is sent back to the
    caller as ``{hostname: value}``; an exception is sent back as
    ``{hostname: {"error": "<repr of the exception>"}}``.
    """

    def __init__(
        self,
        hostname: str,
        state: Any = None,
        channel: Any = None,
        handlers: dict[str, Callable[..., Any]] | None = None,
        mailbox: Mailbox | None = None,
    ) -> None:
        if mailbox is None:
            raise ValueError("Node needs its mailbox: use mailbox.Node(hostname)")
        self.channel = channel
        self.mailbox = mailbox
        self.hostname = hostname
        self.state = state
        self.adjust_clock = mailbox.clock.adjust
        self.handlers: dict[str, Callable[..., Any]] = {} if handlers is None else handlers

    def _channel(self) -> Any:
        if self.channel is None:
            if self.mailbox.connection is None:
                raise ValueError("Node has no channel: bind the mailbox to a connection or pass channel=")
            self.channel = self.mailbox.connection.default_channel
        return self.channel

    def Consumer(  # noqa: N802
        self, channel: Any = None, no_ack: bool = True, accept: Any = None, **options: Any
    ) -> messaging.Consumer:
        """A consumer of this node's queue (warns when another node already uses it)."""
        queue = self.mailbox.get_queue(self.hostname)

        def verify_exclusive(name: str, messages: int, consumers: int) -> None:
            if consumers:
                warnings.warn(W_PIDBOX_IN_USE.format(hostname=self.hostname), stacklevel=2)

        queue.on_declared = verify_exclusive
        conn = self.mailbox.connection
        channel_errors = conn.channel_errors if conn is not None else ()
        try:
            return Consumer(
                channel or self._channel(),
                [queue],
                no_ack=no_ack,
                accept=self.mailbox.accept if accept is None else accept,
                **options,
            )
        except channel_errors as exc:
            if getattr(exc, "reply_code", None) == 405 or getattr(exc, "code", None) == 405:
                raise InconsistencyError(W_PIDBOX_IN_USE.format(hostname=self.hostname)) from exc
            raise

    def handler(self, fun: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: register ``fun`` as the handler of the command named like it."""
        self.handlers[fun.__name__] = fun
        return fun

    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        """A command could not be decoded: log it (the message was not acked: no_ack)."""
        logger.error(
            "pidbox %s: cannot decode command (content type %r): %s; raw body: %r",
            self.hostname,
            message.content_type,
            exc,
            (message.body or b"")[:64],
        )

    def listen(self, channel: Any = None, callback: Callable[..., Any] | None = None) -> messaging.Consumer:
        """Start consuming commands; they are handled while the connection drains events."""
        consumer = self.Consumer(
            channel=channel, callbacks=[callback or self.handle_message], on_decode_error=self.on_decode_error
        )
        consumer.consume()
        return consumer

    def dispatch(
        self,
        method: str,
        arguments: Mapping[str, Any] | None = None,
        reply_to: Mapping[str, str] | None = None,
        ticket: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run the handler for ``method`` and reply if the caller asked for a reply."""
        arguments = arguments or {}
        logger.debug("pidbox received method %s(%r) [reply_to:%s ticket:%s]", method, arguments, reply_to, ticket)
        handle = self.handle_call if reply_to else self.handle_cast
        try:
            reply = handle(method, arguments)
        except SystemExit:
            raise
        except Exception as exc:
            logger.error("pidbox command error: %r", exc, exc_info=True)
            reply = {"error": repr(exc)}
        if reply_to:
            self.reply(
                {self.hostname: reply},
                exchange=reply_to["exchange"],
                routing_key=reply_to["routing_key"],
                ticket=ticket,
            )
        return reply

    def handle(self, method: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Call the handler of ``method`` with the node's state and ``arguments``."""
        try:
            handler = self.handlers[method]
        except KeyError:
            raise KeyError(f"no handler for command {method!r} on node {self.hostname!r}") from None
        return handler(self.state, **(arguments or {}))

    def handle_call(self, method: str, arguments: Mapping[str, Any]) -> Any:
        return self.handle(method, arguments)

    def handle_cast(self, method: str, arguments: Mapping[str, Any]) -> Any:
        return self.handle(method, arguments)

    def handle_message(self, body: Mapping[str, Any], message: Any = None) -> Any:
        """Dispatch a received command if it is meant for this node and not expired."""
        if message is not None:
            headers = message.headers or {}
            self.adjust_clock(headers.get("clock") or 0)
            expires = headers.get("expires")
            if expires and time.time() > float(expires):
                # the sender stopped waiting for it: running it now would surprise everyone
                logger.warning(
                    "pidbox %s: dropping command %r that expired %.3fs ago",
                    self.hostname,
                    body.get("method"),
                    time.time() - float(expires),
                )
                return None
        destination = body.get("destination")
        pattern = body.get("pattern")
        matcher = body.get("matcher")
        if destination:
            run = self.hostname in destination
        elif pattern and matcher:
            run = match(self.hostname, pattern, matcher)
        else:
            run = True
        if run:
            return self.dispatch(**body)
        return None

    dispatch_from_message = handle_message

    def reply(self, data: Any, exchange: str, routing_key: str, ticket: str | None, **kwargs: Any) -> None:
        """Send ``data`` to the caller's reply queue."""
        self.mailbox._publish_reply(
            data, exchange, routing_key, ticket, channel=self._channel(), serializer=self.mailbox.serializer
        )

    def __repr__(self) -> str:
        return f"<pidbox.Node {self.hostname!r} of {self.mailbox.namespace!r}>"


class Mailbox:
    """A broadcast mailbox: ``call``/``cast`` commands to nodes, ``multi_call`` all of them.

    Arguments:
        namespace: application name; the exchange is ``<namespace>.pidbox``.
        type: exchange type, ``direct`` (default) or ``fanout``.
        connection: bind to a connection (or bind later: ``mailbox(connection)``).
        accept: content types accepted in replies (json by default).
        serializer: serializer for commands and replies.
        producer_pool: publish through this :class:`~kombu_like.pools.ProducerPool` (or a
            callable returning one).
        queue_ttl, queue_expires: ``message_ttl``/``expires`` of node queues (seconds).
        queue_durable, queue_exclusive: node queue flags (exclusive by default).
        reply_queue_ttl, reply_queue_expires: the same for reply queues.
    """

    node_cls = Node
    exchange_fmt = "%s.pidbox"
    reply_exchange_fmt = "reply.%s.pidbox"

    def __init__(
        self,
        namespace: str,
        type: str = "direct",
        connection: Any = None,
        clock: LamportClock | None = None,
        accept: Sequence[str] | None = None,
        serializer: str | None = None,
        producer_pool: Any = None,
        queue_ttl: float | None = None,
        queue_expires: float | None = None,
        queue_durable: bool = False,
        queue_exclusive: bool = True,
        reply_queue_ttl: float | None = None,
        reply_queue_expires: float | None = 10.0,
        default_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if queue_exclusive and queue_durable:
            raise ValueError(
                "queue_exclusive and queue_durable cannot both be True "
                "(exclusive queues are deleted with their connection and cannot be durable)."
            )
        self.namespace = namespace
        self.connection = connection
        self.type = type
        self.clock = LamportClock() if clock is None else clock
        self.exchange = self._get_exchange(namespace, type)
        self.reply_exchange = self._get_reply_exchange(namespace)
        self.accept: list[str] = list(accept) if accept is not None else ["json"]
        self.serializer = serializer
        self.queue_ttl = queue_ttl
        self.queue_expires = queue_expires
        self.queue_durable = queue_durable
        self.queue_exclusive = queue_exclusive
        self.reply_queue_ttl = reply_queue_ttl
        self.reply_queue_expires = reply_queue_expires
        self.default_timeout = default_timeout
        self._producer_pool = producer_pool
        # replies that arrived for another call still waiting for them (shared by the
        # bound copies of this mailbox); replies for calls nobody waits for are dropped
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self.unclaimed: defaultdict[str, list[Any]] = defaultdict(list)

    def __call__(self, connection: Any) -> Mailbox:
        """A copy of this mailbox bound to ``connection``."""
        bound = copy(self)
        bound.connection = connection
        return bound

    def Node(  # noqa: N802
        self,
        hostname: str | None = None,
        state: Any = None,
        channel: Any = None,
        handlers: dict[str, Callable[..., Any]] | None = None,
    ) -> Node:
        """A node named ``hostname`` (default: this host's name)."""
        return self.node_cls(hostname or socket.gethostname(), state, channel, handlers, mailbox=self)

    # -- sending --------------------------------------------------------------------------
    def call(
        self,
        destination: Sequence[str],
        command: str,
        kwargs: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        callback: Callable[[Any], Any] | None = None,
        channel: Any = None,
    ) -> list[Any]:
        """Send ``command`` to the nodes in ``destination``; return their replies.

        Waits until every destination answered or ``timeout`` seconds passed
        (``None``: :attr:`default_timeout`).
        """
        return (
            self._broadcast(
                command, kwargs or {}, destination, reply=True, timeout=timeout, callback=callback, channel=channel
            )
            or []
        )

    def cast(self, destination: Sequence[str], command: str, kwargs: Mapping[str, Any] | None = None) -> None:
        """Send ``command`` to the nodes in ``destination`` without waiting for replies."""
        self._broadcast(command, kwargs or {}, destination, reply=False)

    def abcast(self, command: str, kwargs: Mapping[str, Any] | None = None) -> None:
        """Send ``command`` to every node without waiting for replies."""
        self._broadcast(command, kwargs or {}, reply=False)

    def multi_call(
        self,
        command: str,
        kwargs: Mapping[str, Any] | None = None,
        timeout: float | None = 1,
        limit: int | None = None,
        callback: Callable[[Any], Any] | None = None,
        channel: Any = None,
    ) -> list[Any]:
        """Send ``command`` to every node; return the replies received within ``timeout``
        seconds (or once ``limit`` replies came)."""
        return (
            self._broadcast(
                command, kwargs or {}, reply=True, timeout=timeout, limit=limit, callback=callback, channel=channel
            )
            or []
        )

    # -- queues and exchanges ----------------------------------------------------------------
    def get_reply_queue(self) -> Queue:
        """The reply queue of this mailbox object in this thread."""
        oid = self.oid
        return Queue(
            f"{oid}.{self.reply_exchange.name}",
            exchange=self.reply_exchange,
            routing_key=oid,
            durable=self.queue_durable,
            exclusive=self.queue_exclusive,
            auto_delete=not self.queue_durable,
            expires=self.reply_queue_expires,
            message_ttl=self.reply_queue_ttl,
        )

    @property
    def reply_queue(self) -> Queue:
        return self.get_reply_queue()

    def get_queue(self, hostname: str) -> Queue:
        """The command queue of node ``hostname``."""
        return Queue(
            f"{hostname}.{self.namespace}.pidbox",
            exchange=self.exchange,
            durable=self.queue_durable,
            exclusive=self.queue_exclusive,
            auto_delete=not self.queue_durable,
            expires=self.queue_expires,
            message_ttl=self.queue_ttl,
        )

    # cached, not replaced: ``del mailbox.producer_pool`` (Celery does it after a fork)
    # makes the next use evaluate the lazy pool again in the child
    @cached_property
    def producer_pool(self) -> Any:
        pool = self._producer_pool
        if callable(pool) and not hasattr(pool, "acquire"):
            pool = pool()
        return pool

    @contextmanager
    def producer_or_acquire(self, producer: Producer | None = None, channel: Any = None) -> Iterator[Producer]:
        """``producer``, one from the producer pool, or a new one on ``channel``."""
        if producer is not None:
            yield producer
        elif self.producer_pool is not None:
            with self.producer_pool.acquire(block=True, timeout=POOL_ACQUIRE_TIMEOUT) as pooled:
                yield pooled
        else:
            yield Producer(channel, auto_declare=False)

    def _publish_reply(
        self,
        reply: Any,
        exchange: str,
        routing_key: str,
        ticket: str | None,
        channel: Any = None,
        producer: Producer | None = None,
        **opts: Any,
    ) -> None:
        chan = channel or self.connection.default_channel
        reply_exchange = Exchange(exchange, type="direct", delivery_mode="transient", durable=False)
        with self.producer_or_acquire(producer, chan) as producer:
            try:
                producer.publish(
                    reply,
                    exchange=reply_exchange,
                    routing_key=routing_key,
                    declare=[reply_exchange],
                    headers={"ticket": ticket, "clock": self.clock.forward()},
                    retry=True,
                    **opts,
                )
            except InconsistencyError:
                # the reply queue is gone: nobody waits for this reply any more
                logger.debug("pidbox: reply for ticket %s dropped, its queue is gone", ticket)

    def _publish(
        self,
        type: str,
        arguments: Mapping[str, Any],
        destination: Sequence[str] | None = None,
        reply_ticket: str | None = None,
        channel: Any = None,
        timeout: float | None = None,
        serializer: str | None = None,
        producer: Producer | None = None,
        pattern: str | None = None,
        matcher: str | None = None,
    ) -> None:
        message: dict[str, Any] = {
            "method": type,
            "arguments": dict(arguments),
            "destination": list(destination) if destination is not None else None,
            "pattern": pattern,
            "matcher": matcher,
        }
        chan = channel or self.connection.default_channel
        if reply_ticket:
            maybe_declare(self.reply_queue(chan))
            message.update(
                ticket=reply_ticket,
                reply_to={"exchange": self.reply_exchange.name, "routing_key": self.oid},
            )
        with self.producer_or_acquire(producer, chan) as producer:
            producer.publish(
                message,
                exchange=self.exchange.name,
                declare=[self.exchange],
                headers={"clock": self.clock.forward(), "expires": time.time() + timeout if timeout else 0},
                serializer=serializer or self.serializer,
                retry=True,
            )

    def _broadcast(
        self,
        command: str,
        arguments: Mapping[str, Any] | None = None,
        destination: Sequence[str] | None = None,
        reply: bool = False,
        timeout: float | None = 1,
        limit: int | None = None,
        callback: Callable[[Any], Any] | None = None,
        channel: Any = None,
        serializer: str | None = None,
        pattern: str | None = None,
        matcher: str | None = None,
    ) -> list[Any] | None:
        if destination is not None and not isinstance(destination, list | tuple):
            raise ValueError(f"destination must be a list/tuple not {type(destination)}")
        if (
            pattern is not None
            and not isinstance(pattern, str)
            and matcher is not None
            and not isinstance(matcher, str)
        ):
            raise ValueError(f"pattern and matcher must be strings not {type(pattern)}, {type(matcher)}")
        if reply and timeout is None:
            timeout = self.default_timeout
        ticket = uuid() if reply else None
        chan = channel or self.connection.default_channel
        if limit is None and destination:
            limit = len(destination)
        if ticket:
            with self._lock:
                self._pending.add(ticket)
        try:
            self._publish(
                command,
                arguments or {},
                destination=destination,
                reply_ticket=ticket,
                channel=chan,
                timeout=timeout,
                serializer=serializer or self.serializer,
                pattern=pattern,
                matcher=matcher,
            )
            if ticket:
                return self._collect(ticket, limit=limit, timeout=timeout, callback=callback, channel=chan)
            return None
        finally:
            if ticket:
                with self._lock:
                    self._pending.discard(ticket)
                    self.unclaimed.pop(ticket, None)

    def _collect(
        self,
        ticket: str,
        limit: int | None = None,
        timeout: float | None = 1,
        callback: Callable[[Any], Any] | None = None,
        channel: Any = None,
        accept: Sequence[str] | None = None,
    ) -> list[Any]:
        """Replies with ``ticket`` arriving within ``timeout`` seconds (at most ``limit``)."""
        chan = channel or self.connection.default_channel
        queue = self.reply_queue
        with self._lock:
            responses: list[Any] = self.unclaimed.pop(ticket, [])
        if callback:
            for body in responses:
                callback(body)
        adjust_clock = self.clock.adjust

        def on_message(body: Any, message: Any) -> None:
            headers = message.headers or {}
            adjust_clock(headers.get("clock") or 0)
            expires = headers.get("expires")
            if expires and time.time() > float(expires):
                return
            this_ticket = headers.get("ticket", ticket)
            if this_ticket == ticket:
                if callback:
                    callback(body)
                responses.append(body)
                return
            with self._lock:
                if this_ticket in self._pending:
                    self.unclaimed[this_ticket].append(body)
                    return
            logger.debug("pidbox: dropping late reply for ticket %s", this_ticket)

        consumer = Consumer(chan, [queue], accept=self.accept if accept is None else accept, no_ack=True)
        consumer.register_callback(on_message)
        connection = chan.connection.client
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with consumer:
                while limit is None or len(responses) < limit:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    try:
                        connection.drain_events(timeout=remaining)
                    except socket.timeout:
                        break
            return responses
        finally:
            done = getattr(chan, "after_reply_message_received", None)
            if done is not None:
                try:
                    done(queue.name)
                except Exception:  # best effort: the queue also expires on its own
                    logger.debug("pidbox: could not remove reply queue %s", queue.name, exc_info=True)

    def _get_exchange(self, namespace: str, type: str) -> Exchange:
        return Exchange(self.exchange_fmt % namespace, type=type, durable=False, delivery_mode="transient")

    def _get_reply_exchange(self, namespace: str) -> Exchange:
        return Exchange(self.reply_exchange_fmt % namespace, type="direct", durable=False, delivery_mode="transient")

    @property
    def oid(self) -> str:
        """Id of this mailbox object in this process and thread (names the reply queue)."""
        return oid_from(self)

    def __repr__(self) -> str:
        return f"<Mailbox {self.namespace!r} ({self.type})>"
