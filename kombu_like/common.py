"""Common patterns built on the core API (Kombu's ``kombu.common``).

Declaring once per connection (:func:`maybe_declare`), event loops over
``drain_events`` (:func:`eventloop`, :func:`drain_consumer`, :func:`itermessages`),
request/reply helpers (:func:`send_reply`, :func:`collect_replies`), broadcast queues
(:class:`Broadcast`) and a thread-safe prefetch counter (:class:`QoS`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid as _uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from itertools import count
from typing import Any

from .entity import Exchange, Queue
from .exceptions import ChannelError

__all__ = [
    "PREFETCH_COUNT_MAX",
    "Broadcast",
    "QoS",
    "collect_replies",
    "declaration_cached",
    "drain_consumer",
    "eventloop",
    "generate_oid",
    "get_node_id",
    "ignore_errors",
    "insured",
    "itermessages",
    "maybe_declare",
    "oid_from",
    "send_reply",
    "uuid",
]

logger = logging.getLogger(__name__)

#: AMQP's ``prefetch_count`` is a 16-bit number.
PREFETCH_COUNT_MAX = 0xFFFF

_node_id_lock = threading.Lock()
_node_id: list[int] = []


def uuid(_uuid: Callable[[], Any] = _uuid.uuid4) -> str:
    """A random UUID4 string (``_uuid`` makes another kind, as in Kombu)."""
    return str(_uuid())


def get_node_id() -> int:
    """A random number identifying this process's node, the same for the whole process."""
    with _node_id_lock:
        if not _node_id:
            _node_id.append(_uuid.uuid4().int)
        return _node_id[0]


def generate_oid(node_id: int, process_id: int, thread_id: int, instance: Any) -> str:
    """A stable id for ``instance`` in this node, process and thread (Kombu's format)."""
    ent = f"{node_id:x}-{process_id:x}-{thread_id:x}-{id(instance):x}"
    try:
        return str(_uuid.uuid3(_uuid.NAMESPACE_OID, ent))
    except ValueError:  # FIPS builds refuse md5; uuid5 uses sha1
        return str(_uuid.uuid5(_uuid.NAMESPACE_OID, ent))


def oid_from(instance: Any, threads: bool = True) -> str:
    """The object id of ``instance`` (per thread unless ``threads`` is false)."""
    return generate_oid(get_node_id(), os.getpid(), threading.get_ident() if threads else 0, instance)


class Broadcast(Queue):
    """A fanout queue: every consumer gets its own auto-deleted queue bound to ``name``.

    ``Broadcast("events")`` declares a fanout exchange ``events`` and, per consumer, a
    queue ``bcast.<uuid>`` bound to it, so every consumer receives every message.
    ``queue`` names the queue instead (shared by whoever uses that name) unless
    ``unique`` is true.
    """

    def __init__(
        self,
        name: str | None = None,
        queue: str | None = None,
        unique: bool = False,
        auto_delete: bool = True,
        exchange: Exchange | None = None,
        alias: str | None = None,
        **kwargs: Any,
    ) -> None:
        if unique:
            queue = f"{queue or 'bcast'}.{uuid()}"
        else:
            queue = queue or f"bcast.{uuid()}"
        super().__init__(
            alias=alias or name,
            name=queue,
            auto_delete=auto_delete,
            exchange=exchange if exchange is not None else Exchange(name or "", type="fanout"),
            **kwargs,
        )


def _declared_cache(channel: Any) -> set[Any] | None:
    client = getattr(getattr(channel, "connection", None), "client", None)
    return getattr(client, "declared_entities", None)


def declaration_cached(entity: Any, channel: Any) -> bool:
    """True when ``entity`` was declared on ``channel``'s connection already."""
    declared = _declared_cache(channel)
    return declared is not None and hash(entity) in declared


def maybe_declare(entity: Any, channel: Any = None, retry: bool = False, **retry_policy: Any) -> bool:
    """Declare ``entity`` unless this connection already declared it; True if declared now.

    Entities that can be cached (not auto-deleted, not expiring) are remembered per
    connection; the memory is cleared whenever the connection is (re-)established.
    With ``retry`` the declaration reconnects and retries on connection loss following
    ``retry_policy`` (``max_retries``, ``interval_start``, ...).
    """
    original = entity
    if channel is None:
        if not entity.is_bound:
            raise ChannelError(f"maybe_declare: {entity!r} is not bound; pass a channel")
        channel = entity.channel
    declared = _declared_cache(channel)
    cacheable = bool(getattr(entity, "can_cache_declaration", False))
    ident = hash(entity)
    if cacheable and declared is not None and ident in declared:
        return False
    if not entity.is_bound or entity.channel is not channel:
        entity = entity.bind(channel)
    if retry:
        connection = channel.connection.client
        connection.ensure(entity, entity.declare, **retry_policy)()
        declared = _declared_cache(entity.channel)
    else:
        entity.declare()
    if cacheable and declared is not None:
        declared.add(ident)
    if original is not entity and getattr(original, "name", None) == "" and getattr(entity, "name", ""):
        # a server-named queue: let the caller's object know the name the broker chose
        original.name = entity.name
    return True


def eventloop(
    conn: Any, limit: int | None = None, timeout: float | None = None, ignore_timeouts: bool = False
) -> Iterator[Any]:
    """Call ``conn.drain_events(timeout=timeout)`` ``limit`` times (forever if ``None``).

    Yields after each call that delivered events.  A call that timed out raises
    :class:`socket.timeout` unless ``ignore_timeouts`` is true, in which case it just
    counts as one of the ``limit`` calls.
    """
    for _ in count() if limit is None else range(limit):
        try:
            yield conn.drain_events(timeout=timeout)
        except socket.timeout:
            if timeout and not ignore_timeouts:
                raise


def drain_consumer(
    consumer: Any,
    limit: int | None = 1,
    timeout: float | None = None,
    callbacks: Iterable[Callable[[Any, Any], Any]] | None = None,
) -> Iterator[tuple[Any, Any]]:
    """Consume with ``consumer`` and yield ``(body, message)`` for every message received.

    ``limit`` is the number of ``drain_events`` calls (``None``: no end), each waiting up
    to ``timeout`` seconds; a call that times out ends nothing, it just counts.  Every
    message a call delivered is yielded, so none is dropped on the floor.  The consumer's
    callbacks are replaced by the collector followed by ``callbacks``.
    """
    received: deque[tuple[Any, Any]] = deque()

    def on_message(body: Any, message: Any) -> None:
        received.append((body, message))

    consumer.callbacks = [on_message, *(callbacks or [])]
    connection = consumer.channel.connection.client
    with consumer:
        for _ in eventloop(connection, limit=limit, timeout=timeout, ignore_timeouts=True):
            while received:
                yield received.popleft()
        while received:
            yield received.popleft()


def itermessages(
    conn: Any,
    channel: Any,
    queue: Any,
    limit: int | None = 1,
    timeout: float | None = None,
    callbacks: Iterable[Callable[[Any, Any], Any]] | None = None,
    **kwargs: Any,
) -> Iterator[tuple[Any, Any]]:
    """Yield ``(body, message)`` from ``queue`` (see :func:`drain_consumer`).

    ``kwargs`` go to the :class:`~kombu_like.Consumer` (``no_ack``, ``accept`` ...).
    """
    return drain_consumer(
        conn.Consumer(queues=[queue], channel=channel, **kwargs),
        limit=limit,
        timeout=timeout,
        callbacks=callbacks,
    )


def send_reply(
    exchange: Exchange | str,
    req: Any,
    msg: Any,
    producer: Any = None,
    retry: bool = False,
    retry_policy: Mapping[str, Any] | None = None,
    **props: Any,
) -> Any:
    """Publish ``msg`` as the reply to the request message ``req``.

    The reply goes to ``exchange`` with the request's ``reply_to`` as routing key, its
    ``correlation_id``, and the serializer the request was sent with; ``props`` override
    any of these.
    """
    from .serialization import registry

    if producer is None:
        raise ValueError("send_reply: a producer is required")
    reply_to = req.properties.get("reply_to")
    if not reply_to:
        raise ValueError(f"send_reply: request {req.properties.get('correlation_id')!r} has no reply_to property")
    options: dict[str, Any] = {
        "routing_key": reply_to,
        "correlation_id": req.properties.get("correlation_id"),
        "serializer": registry.type_to_name.get(req.content_type or "", None),
    }
    options.update(props)
    return producer.publish(msg, exchange=exchange, retry=retry, retry_policy=retry_policy, **options)


def collect_replies(conn: Any, channel: Any, queue: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
    """Yield reply bodies arriving on ``queue`` (see :func:`itermessages` for arguments).

    Replies are consumed with ``no_ack=True`` unless told otherwise (then each is acked
    once yielded).  When at least one reply came, the channel is told the reply queue is
    done with (virtual transports delete it).
    """
    no_ack = kwargs.setdefault("no_ack", True)
    received = False
    try:
        for body, message in itermessages(conn, channel, queue, *args, **kwargs):
            if not no_ack:
                message.ack()
            received = True
            yield body
    finally:
        if received:
            done = getattr(channel, "after_reply_message_received", None)
            if done is not None:
                done(queue.name)


@contextmanager
def _ignore(conn: Any) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        # looked up only when something failed: conn may be a stand-in without a transport
        if isinstance(exc, (*conn.connection_errors, *conn.channel_errors)):
            logger.debug("ignored error: %r", exc, exc_info=True)
        else:
            raise


def ignore_errors(conn: Any, fun: Callable[..., Any] | None = None, *args: Any, **kwargs: Any) -> Any:
    """Run ``fun(*args, **kwargs)`` ignoring ``conn``'s connection and channel errors.

    Without ``fun`` it returns a context manager doing the same for a block.  Only for
    clean-up (closing after a connection was lost, shutdown): real errors must be handled.
    """
    if fun is None:
        return _ignore(conn)
    with _ignore(conn):
        return fun(*args, **kwargs)
    return None


def _ensure_errback(exc: BaseException, interval: float) -> None:
    logger.error("Connection error: %r. Retry in %ss", exc, interval, exc_info=True)


def revive_connection(connection: Any, channel: Any, on_revive: Callable[[Any], Any] | None = None) -> None:
    """Called by :func:`insured` after reconnecting."""
    if on_revive:
        on_revive(channel)


def insured(
    pool: Any,
    fun: Callable[..., Any],
    args: Iterable[Any],
    kwargs: Mapping[str, Any],
    errback: Callable[[BaseException, float], Any] | None = None,
    on_revive: Callable[[Any], Any] | None = None,
    **opts: Any,
) -> Any:
    """Call ``fun`` on a connection from ``pool``, reconnecting on connection errors.

    ``fun(*args, channel=..., connection=..., **kwargs)`` is retried with a fresh channel
    after a reconnect; what it returns is returned.
    """
    errback = errback or _ensure_errback
    with pool.acquire(block=True) as conn:
        conn.ensure_connection(errback=errback)
        channel = conn.default_channel

        def revive(new_channel: Any) -> None:
            revive_connection(conn, new_channel, on_revive=on_revive)

        call = conn.autoretry(fun, channel, errback=errback, on_revive=revive, **opts)
        retval, _ = call(*args, **dict(kwargs, connection=conn))
        return retval


class QoS:
    """A prefetch count changed from any thread and applied from one.

    ``callback(prefetch_count=n)`` applies a value (``consumer.qos``,
    ``channel.basic_qos``).  Other threads call :meth:`increment_eventually` /
    :meth:`decrement_eventually`; the consuming thread calls :meth:`update` to apply the
    change.  A value of 0 means unlimited and is never changed by increments; values
    above :data:`PREFETCH_COUNT_MAX` are applied as 0 (unlimited), as AMQP cannot carry
    them.
    """

    prev: int | None = None

    def __init__(self, callback: Callable[..., Any], initial_value: int, max_prefetch: int | None = None) -> None:
        self.callback = callback
        self._mutex = threading.RLock()
        self.value = initial_value or 0
        self.max_prefetch = max_prefetch

    def increment_eventually(self, n: int = 1) -> int:
        """Raise the value by ``n`` (not above ``max_prefetch``) without applying it."""
        with self._mutex:
            if self.value:
                value = self.value + max(n, 0)
                if self.max_prefetch is not None:
                    value = min(value, self.max_prefetch)
                self.value = value
            return self.value

    def decrement_eventually(self, n: int = 1) -> int:
        """Lower the value by ``n`` (never below 1) without applying it."""
        with self._mutex:
            if self.value:
                self.value = max(self.value - n, 1)
            return self.value

    def set(self, pcount: int) -> int:
        """Apply ``pcount`` now (if it differs from the last applied value)."""
        if pcount != self.prev:
            value = pcount
            if pcount > PREFETCH_COUNT_MAX:
                logger.warning("QoS: prefetch_count %d exceeds %d; applying no limit", pcount, PREFETCH_COUNT_MAX)
                value = 0
            logger.debug("basic.qos: prefetch_count->%s", value)
            self.callback(prefetch_count=value)
            self.prev = pcount
        return pcount

    def update(self) -> int:
        """Apply the current value."""
        with self._mutex:
            return self.set(self.value)
