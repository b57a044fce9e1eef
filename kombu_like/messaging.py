"""Producer.publish and Consumer: the user-facing messaging API."""

from __future__ import annotations

import datetime
import decimal
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import count
from types import TracebackType
from typing import Any

from .common import _declared_cache
from .common import maybe_declare as _maybe_declare
from .compression import DEFAULT_MAX_DECOMPRESSED_SIZE, compress
from .connection import Connection, is_connection, maybe_channel
from .entity import PERSISTENT_DELIVERY_MODE, Exchange, Queue, maybe_delivery_mode
from .exceptions import ContentDisallowed, DecodeError, EncodeError
from .message import Message
from .plan import Plan, call, run
from .serialization import check_accept, dumps, prepare_accept_content

__all__ = ["Consumer", "Producer"]

_consumer_tags = count(1)

#: transport option (and Connection-wide default) for Consumer's ``max_decompressed_size``
MAX_DECOMPRESSED_SIZE_OPTION = "max_decompressed_size"


#: ``Producer.publish``'s default priority (the cached int 0: an argument that is this
#: object is a valid priority)
_DEFAULT_PRIORITY = 0


class InvalidMessageField(EncodeError, ValueError):
    """A publish argument has a value no transport can carry (named in the message)."""


#: header value types every transport carries (AMQP tables and the JSON envelopes)
_HEADER_SCALARS = (str, int, float, bool, bytes, datetime.datetime, decimal.Decimal, type(None))
#: message properties that AMQP sends as short strings
_TEXT_PROPERTIES = ("correlation_id", "reply_to", "message_id", "type", "user_id", "app_id", "cluster_id")


def _check_header_value(value: Any, where: str, depth: int = 0) -> None:
    if isinstance(value, _HEADER_SCALARS):
        return
    if depth > 32:
        raise InvalidMessageField(f"headers: {where} nests deeper than 32 levels")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidMessageField(f"headers: {where} has a key that is not a string: {key!r}")
            _check_header_value(item, f"{where}[{key!r}]", depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_header_value(item, f"{where}[{index}]", depth + 1)
    else:
        raise InvalidMessageField(
            f"headers: {where} has type {type(value).__name__}, which cannot be sent in a message header "
            f"(use str, int, float, bool, bytes, None, datetime, Decimal, lists or mappings)"
        )


def _checked_headers(headers: Any) -> dict[str, Any]:
    """``headers`` as the dict the transports take, or InvalidMessageField naming the problem."""
    if not isinstance(headers, Mapping):
        raise InvalidMessageField(f"headers must be a mapping, not {type(headers).__name__}: {headers!r:.80}")
    if not isinstance(headers, dict):
        headers = dict(headers)
    for key, value in headers.items():
        if not isinstance(key, str):
            raise InvalidMessageField(f"headers: every key must be a string, not {key!r:.80}")
        if not isinstance(value, _HEADER_SCALARS):
            _check_header_value(value, repr(key))
    return headers


def _check_text(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise InvalidMessageField(f"{name} must be a string, not {type(value).__name__}: {value!r:.80}")


def _check_publish_arguments(
    routing_key: Any,
    priority: Any,
    content_type: Any,
    content_encoding: Any,
    serializer: Any,
    compression: Any,
    properties: Mapping[str, Any],
) -> None:
    _check_text("routing_key", routing_key)
    _check_text("content_type", content_type)
    _check_text("content_encoding", content_encoding)
    _check_text("serializer", serializer)
    _check_text("compression", compression)
    if priority is not None and (not isinstance(priority, int) or not 0 <= priority <= 255):
        raise InvalidMessageField(f"priority must be an integer from 0 to 255, not {priority!r:.80}")
    for name in _TEXT_PROPERTIES:
        if name in properties:
            _check_text(name, properties[name])


def _publish_options(immediate: bool, timeout: float | None, confirm_timeout: float | None) -> dict[str, Any]:
    """The ``basic_publish`` keyword arguments beyond routing, only those that are set."""
    options: dict[str, Any] = {}
    if immediate:
        options["immediate"] = True
    if timeout is not None:
        options["timeout"] = timeout
    if confirm_timeout is not None:
        options["confirm_timeout"] = confirm_timeout
    return options


class _BatchLocal(threading.local):
    """The batch open in this thread, if any (a class default: reading it never raises)."""

    current: _Batch | None = None


class _Batch:
    """Messages collected by :meth:`Producer.batch`, sent on flush."""

    def __init__(self, producer: Producer, max_size: int | None) -> None:
        self.producer = producer
        self.max_size = max_size
        #: (message, exchange, routing_key, mandatory): what ``publish_batch`` takes
        self.items: list[tuple[Any, str, str, bool]] = []
        #: basic_publish options the batch call has no place for, by item index
        self.options: dict[int, dict[str, Any]] = {}
        self.active = False

    def add(self, message: Any, exchange: str, routing_key: str, mandatory: bool, options: dict[str, Any]) -> None:
        if options:
            self.options[len(self.items)] = options
        self.items.append((message, exchange or "", routing_key or "", mandatory))
        if self.max_size and len(self.items) >= self.max_size:
            self.flush()

    def flush(self) -> None:
        """Send what was collected so far (one round trip where the transport can)."""
        items, self.items = self.items, []
        options, self.options = self.options, {}
        if not items:
            return
        channel = self.producer.channel
        publish_batch = getattr(channel, "publish_batch", None)
        if publish_batch is not None:
            publish_batch(items)
            return
        for index, (message, exchange, routing_key, mandatory) in enumerate(items):
            channel.basic_publish(message, exchange, routing_key, mandatory, **options.get(index, {}))

    def discard(self) -> None:
        self.items.clear()
        self.options.clear()

    def __enter__(self) -> _Batch:
        local = self.producer._batch_local
        if local.current is not None:
            raise RuntimeError("Producer.batch() cannot be nested")
        local.current = self
        self.active = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.producer._batch_local.current = None
        self.active = False
        if exc_type is None:
            self.flush()
        else:
            self.discard()


class Producer:
    """Publishes messages to an exchange.

    Arguments:
        channel: a channel or a :class:`~kombu_like.Connection` (its default channel).
        exchange: default exchange (an :class:`Exchange` or a name; ``""`` by default).
        routing_key: default routing key.
        serializer: default serializer (``"json"``).
        compression: default compression method (none).
        auto_declare: declare the default exchange when bound (True).
        on_return: ``callback(exception, exchange, routing_key, message)`` for mandatory
            messages the broker could not route.
    """

    exchange: Exchange
    routing_key = ""
    serializer: str | None = None
    compression: str | None = None
    auto_declare = True
    on_return: Callable[..., Any] | None = None

    def __init__(
        self,
        channel: Any,
        exchange: Exchange | str | None = None,
        routing_key: str | None = None,
        serializer: str | None = None,
        auto_declare: bool | None = None,
        compression: str | None = None,
        on_return: Callable[..., Any] | None = None,
    ) -> None:
        self._channel = channel
        self._lazy = False
        self.__connection__: Connection | None = None
        self.exchange = Exchange(exchange) if isinstance(exchange, str) else (exchange or Exchange(""))
        self.routing_key = routing_key or self.routing_key
        self.serializer = serializer or self.serializer
        self.compression = compression or self.compression
        self.on_return = on_return or self.on_return
        self._batch_local = _BatchLocal()
        #: (channel, exchange, its name, the connection's declaration cache, the exchange's
        #: hash) of the last successful lookup, so a publish checks the cache with one
        #: set membership test
        self._declared_memo: tuple[Any, Exchange, str, set[Any], int] | None = None
        if auto_declare is not None:
            self.auto_declare = auto_declare
        if self._channel is not None:
            self.revive(self._channel)

    # -- channel ------------------------------------------------------------------
    def revive(self, channel: Any) -> None:
        """Re-bind to ``channel`` (a channel or Connection) after connection loss."""
        if is_connection(channel):
            self.__connection__ = channel
            self._channel = None
            self._lazy = True
        else:
            self._channel = channel
            self._lazy = False
            self._bind_channel(channel)

    def _bind_channel(self, channel: Any) -> None:
        self.exchange = self.exchange(channel)
        # an exchange bound before keeps its old channel (e.g. one lost with its connection)
        self.exchange.revive(channel)
        if self.on_return:
            channel.events["basic_return"].add(self.on_return)
        if self.auto_declare and self.exchange.name:
            self.declare()

    @property
    def channel(self) -> Any:
        """The channel used to publish (the connection's default channel if lazy)."""
        if self._channel is None or (self._lazy and not getattr(self._channel, "is_open", True)):
            assert self.__connection__ is not None
            channel = self.__connection__.default_channel
            self._channel = channel
            self._bind_channel(channel)
        return self._channel

    @channel.setter
    def channel(self, channel: Any) -> None:
        self._channel = channel

    @property
    def connection(self) -> Connection | None:
        """The connection this producer publishes on."""
        if self.__connection__ is not None:
            return self.__connection__
        try:
            return self.channel.connection.client  # type: ignore[no-any-return]
        except AttributeError:
            return None

    def declare(self) -> None:
        """Declare the default exchange (done automatically with ``auto_declare``)."""
        if self.exchange.name:
            self.exchange.declare()

    def _exchange_declared(self) -> bool:
        """True when this connection's declaration cache holds the producer's exchange:
        the common publish then skips the declaration machinery altogether."""
        exchange = self.exchange
        channel = self._channel
        memo = self._declared_memo
        if memo is None or memo[0] is not channel or memo[1] is not exchange or memo[2] != exchange.name:
            if channel is None or not exchange.can_cache_declaration:
                return False
            declared = _declared_cache(channel)
            if declared is None:
                return False
            memo = self._declared_memo = (channel, exchange, exchange.name, declared, hash(exchange))
        return memo[4] in memo[3]

    def maybe_declare(self, entity: Any, retry: bool = False, **retry_policy: Any) -> bool:
        """Declare ``entity`` unless this connection declared it already."""
        if entity:
            return _maybe_declare(entity, self.channel, retry, **retry_policy)
        return False

    # -- publishing -------------------------------------------------------------------
    def _prepare(
        self,
        body: Any,
        serializer: str | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
        compression: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> tuple[Any, str | None, str | None]:
        if not content_type:
            content_type, content_encoding, body = dumps(body, serializer=serializer or self.serializer)
        elif isinstance(body, str):
            content_encoding = content_encoding or "utf-8"
            try:
                body = body.encode(content_encoding)
            except (LookupError, UnicodeError) as exc:
                raise InvalidMessageField(
                    f"body: cannot encode it as content_encoding {content_encoding!r}: {exc}"
                ) from exc
        elif not isinstance(body, bytes | bytearray | memoryview):
            raise InvalidMessageField(
                f"body must be bytes or str when content_type is given (it is sent as it is), not {type(body).__name__}"
            )
        elif not content_encoding:
            content_encoding = "binary"
        if compression:
            assert headers is not None
            body, headers["compression"] = compress(body, compression)
        return body, content_type, content_encoding

    def publish(
        self,
        body: Any,
        routing_key: str | None = None,
        delivery_mode: int | str | None = None,
        mandatory: bool = False,
        immediate: bool = False,
        priority: int = 0,
        content_type: str | None = None,
        content_encoding: str | None = None,
        serializer: str | None = None,
        headers: dict[str, Any] | None = None,
        compression: str | None = None,
        exchange: Exchange | str | None = None,
        retry: bool = False,
        retry_policy: Mapping[str, Any] | None = None,
        declare: Sequence[Any] | None = None,
        expiration: float | None = None,
        timeout: float | None = None,
        confirm_timeout: float | None = None,
        **properties: Any,
    ) -> Any:
        """Serialize, compress and publish ``body``.

        ``routing_key``/``exchange`` default to the producer's; ``declare`` lists entities
        to declare first (once per connection); ``retry=True`` reconnects and retries on
        connection errors following ``retry_policy`` (``max_retries``,
        ``interval_start``, ``interval_step``, ``interval_max``); ``expiration`` is in
        seconds; other keyword arguments become message properties (``correlation_id``,
        ``reply_to``, ``message_id``, ``timestamp``, ``type``, ``user_id``, ``app_id`` ...).
        """
        # This is the hot path of every publish: keep it to plain attribute and dict work.
        if headers is None:
            headers = {}
            own_headers = True
        else:
            own_headers = False
        if routing_key is None:
            routing_key = self.routing_key
        if compression is None:
            compression = self.compression
        declare = list(declare) if declare else ()
        own = self.exchange
        if self.auto_declare and own.name:
            # as Kombu: the producer's own exchange is declared; an exchange passed to
            # publish() is not (publishing to one that does not exist is a broker error,
            # NOT_FOUND on AMQP, never a silent declaration)
            if declare:
                if own not in declare:
                    declare = [*declare, own]
            elif not self._exchange_declared():
                declare = [own]
        if exchange is None:
            exchange_name = own.name
            mode = delivery_mode or own.delivery_mode
        elif isinstance(exchange, Exchange):
            # as Kombu: the messages take the delivery mode of the exchange they go to
            exchange_name = exchange.name
            mode = delivery_mode or exchange.delivery_mode
        else:
            exchange_name = exchange
            mode = delivery_mode or own.delivery_mode
        # maybe_delivery_mode(mode), called only for a name: unset is persistent
        properties["delivery_mode"] = (
            (mode if type(mode) is int else maybe_delivery_mode(mode)) if mode else PERSISTENT_DELIVERY_MODE
        )
        if expiration is not None:
            properties["expiration"] = str(int(expiration * 1000))
        if "reply_to" in properties and isinstance(properties["reply_to"], Queue):
            properties["reply_to"] = properties["reply_to"].name
        if (
            not own_headers
            and (type(headers) is not dict or headers)
            or type(routing_key) is not str
            # the default priority is the int 0 itself: nothing to check then
            or (priority is not _DEFAULT_PRIORITY and (type(priority) is not int or not 0 <= priority <= 255))
            or len(properties) > 1
            or (content_type is not None and type(content_type) is not str)
            or (content_encoding is not None and type(content_encoding) is not str)
            or (serializer is not None and type(serializer) is not str)
            or (compression is not None and type(compression) is not str)
        ):
            try:
                headers = _checked_headers(headers)
                _check_publish_arguments(
                    routing_key, priority, content_type, content_encoding, serializer, compression, properties
                )
            except InvalidMessageField as exc:
                raise InvalidMessageField(
                    f"{exc} (publishing to exchange {exchange_name!r} with routing key {routing_key!r})"
                ) from None
        if content_type is None and compression is None:
            content_type, content_encoding, body = dumps(body, serializer or self.serializer)
            if (
                own_headers
                and priority is _DEFAULT_PRIORITY
                and len(properties) == 1
                and not (declare or immediate)
                and timeout is None
                and confirm_timeout is None
                and self._batch_local.current is None
            ):
                # a plain message (no headers, priority or property but delivery_mode): a
                # virtual transport's channel routes and stores it without an envelope first.
                # (The channel is only looked at: binding or reviving one connects, which
                # the long way does inside the retry policy.)
                if getattr(type(self._channel), "publishes_plain", False):
                    plain = (body, content_type, content_encoding, properties["delivery_mode"])
                    if retry:
                        connection = self.connection
                        assert connection is not None
                        again = connection.ensure(self, self._publish_plain, **dict(retry_policy or {}))
                        return again(*plain, exchange_name, routing_key, mandatory)
                    channel = self._channel
                    if self._lazy and not channel.is_open:
                        channel = self.channel  # revived, as _publish would have it
                    return channel.publish_plain(*plain, exchange_name, routing_key, mandatory)
        else:
            try:
                body, content_type, content_encoding = self._prepare(
                    body, serializer, content_type, content_encoding, compression, headers
                )
            except InvalidMessageField as exc:
                raise InvalidMessageField(
                    f"{exc} (publishing to exchange {exchange_name!r} with routing key {routing_key!r})"
                ) from exc.__cause__
        _publish = self._publish
        if retry:
            connection = self.connection
            assert connection is not None
            policy = dict(retry_policy or {})
            _publish = connection.ensure(self, _publish, **policy)
        return _publish(
            body,
            priority,
            content_type,
            content_encoding,
            headers,
            properties,
            routing_key,
            mandatory,
            immediate,
            exchange_name,
            declare,
            timeout,
            confirm_timeout,
            retry,
            retry_policy,
        )

    def _publish(
        self,
        body: Any,
        priority: int,
        content_type: str | None,
        content_encoding: str | None,
        headers: dict[str, Any],
        properties: dict[str, Any],
        routing_key: str,
        mandatory: bool,
        immediate: bool,
        exchange: str,
        declare: Sequence[Any],
        timeout: float | None = None,
        confirm_timeout: float | None = None,
        retry: bool = False,
        retry_policy: Mapping[str, Any] | None = None,
    ) -> Any:
        channel = self.channel
        for entity in declare:
            self.maybe_declare(entity)
        message = channel.prepare_message(body, priority, content_type, content_encoding, headers, properties)
        batch = self._batch_local.current
        if batch is None and timeout is None and confirm_timeout is None:
            return channel.basic_publish(message, exchange, routing_key, mandatory, immediate)
        options = _publish_options(immediate, timeout, confirm_timeout)
        if batch is not None:
            batch.add(message, exchange, routing_key, mandatory, options)
            return None
        return channel.basic_publish(message, exchange, routing_key, mandatory, **options)

    def _publish_plain(self, *args: Any) -> Any:
        # retried after a reconnection: on the channel revive() bound
        return self.channel.publish_plain(*args)

    def batch(self, max_size: int | None = None) -> _Batch:
        """Group publishes: ``with producer.batch(): producer.publish(...)``.

        Messages are sent when the block ends (and whenever ``max_size`` are waiting), in
        one round trip on transports that declare ``batch_publish``; an exception inside
        the block discards what was not sent yet.  On the virtual transports (memory,
        Redis, sqlite, SQS) a batch is routed as one send: against the bindings as they are
        when it is sent, once per exchange and routing key.
        """
        return _Batch(self, max_size)

    # -- context --------------------------------------------------------------------
    def release(self) -> None:
        """Nothing to release; kept for Kombu compatibility."""

    close = release

    def __enter__(self) -> Producer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Producer: {self._channel!r}>"

    def __reduce__(self) -> Any:
        raise TypeError("a Producer cannot be pickled; pickle its connection instead")


class Consumer:
    """Receives messages from one or more queues and calls ``callbacks(body, message)``.

    Arguments:
        channel: a channel or a :class:`~kombu_like.Connection` (its default channel).
        queues: a :class:`Queue` or a list of them.
        no_ack: let the broker forget messages as soon as they are delivered.
        auto_declare: declare the queues (and their exchanges/bindings) when bound.
        callbacks: functions called with ``(body, message)`` for every message.
        on_message: a function called with the undecoded ``message`` instead of callbacks.
        on_decode_error: ``callback(message, exc)`` for messages that cannot be decoded; by
            default the error is raised from ``drain_events`` with the message left unacked.
        accept: content types or serializer names allowed (default: json only unless
            insecure serializers were enabled).  Listing ``pickle`` (or ``yaml``) here is
            enough for the consumer to decode it, as in Kombu: only list it when every
            producer is trusted, since unpickling runs code chosen by the sender.
        prefetch_count: how many unacknowledged messages may be outstanding.
        tag_prefix: prefix for generated consumer tags.
        max_decompressed_size: the most bytes a compressed body may decompress to; a
            larger one goes to ``on_decode_error`` as a
            :class:`~kombu_like.exceptions.DecodeError` naming the limit.  By default the
            connection's ``max_decompressed_size`` transport option, else 64 MiB
            (:data:`~kombu_like.compression.DEFAULT_MAX_DECOMPRESSED_SIZE`); ``None``
            means no limit.

    Whatever a message holds, a broken envelope, a body that does not decompress or
    decode, a content type not accepted, it reaches ``on_decode_error`` (or is raised
    from ``drain_events`` naming the queue), never anything else.
    """

    ContentDisallowed = ContentDisallowed

    def __init__(
        self,
        channel: Any,
        queues: Queue | Sequence[Queue] | None = None,
        no_ack: bool | None = None,
        auto_declare: bool | None = None,
        callbacks: list[Callable[[Any, Message], Any]] | None = None,
        on_decode_error: Callable[[Message, BaseException], Any] | None = None,
        on_message: Callable[[Message], Any] | None = None,
        accept: Iterable[str] | None = None,
        prefetch_count: int | None = None,
        tag_prefix: str | None = None,
        max_decompressed_size: int | None | object = ...,
    ) -> None:
        self._max_decompressed_size_option = max_decompressed_size
        self.max_decompressed_size: int | None = DEFAULT_MAX_DECOMPRESSED_SIZE
        self.channel = channel
        if isinstance(queues, Queue):
            queues = [queues]
        self._queues: dict[str, Queue] = {q.name: q for q in (queues or [])}
        self.no_ack = bool(no_ack) if no_ack is not None else False
        self.auto_declare = True if auto_declare is None else auto_declare
        self.callbacks: list[Callable[[Any, Message], Any]] = list(callbacks) if callbacks else []
        self.on_message = on_message
        self.on_decode_error = on_decode_error
        self.accept = prepare_accept_content(accept)
        self.prefetch_count = prefetch_count
        self.tag_prefix = tag_prefix or ""
        self._resolve_max_decompressed_size()
        self._active_tags: dict[str, str] = {}
        self._active_no_ack: dict[str, bool] = {}
        # what a revive must resume until one succeeds (a revive can itself be cut short)
        self._resume: dict[str, bool] = {}
        if self.channel:
            self.revive(self.channel)

    @property
    def queues(self) -> list[Queue]:
        return list(self._queues.values())

    @queues.setter
    def queues(self, queues: Sequence[Queue]) -> None:
        self._queues = {q.name: q for q in queues}

    def revive(self, channel: Any) -> Any:
        """Re-bind to ``channel`` after connection loss and resume what was consuming."""
        previous = self._resume = {**self._resume, **self._active_no_ack}
        self._active_tags.clear()
        self._active_no_ack.clear()
        self.channel = channel = maybe_channel(channel)
        self._resolve_max_decompressed_size()
        for name, queue in list(self._queues.items()):
            self._queues.pop(name, None)
            bound = queue(channel)
            # a copy of a queue bound before keeps its old channel; point it at the new one
            bound.revive(channel)
            self._queues[bound.name] = bound
        return run(channel, self._revive_plan(previous))

    def _revive_plan(self, previous: Mapping[str, bool]) -> Plan[None]:
        # through the methods, as Kombu's revive: a subclass's declare/qos take part
        if self.auto_declare:
            yield from call(self, "declare")
        if self.prefetch_count is not None:
            yield from call(self, "qos", prefetch_count=self.prefetch_count)
        if previous:
            yield from call(self, "_consume", previous)
        self._resume = {}

    def _resolve_max_decompressed_size(self) -> None:
        limit = self._max_decompressed_size_option
        if limit is ...:
            connection = self.connection
            options = getattr(connection, "transport_options", None)
            if not isinstance(options, Mapping):  # a stand-in connection (a test double) has none
                options = {}
            limit = options.get(MAX_DECOMPRESSED_SIZE_OPTION, DEFAULT_MAX_DECOMPRESSED_SIZE)
        if limit is not None:
            try:
                limit = int(limit)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ValueError(f"max_decompressed_size must be a number of bytes or None, not {limit!r}") from None
            if limit < 0:
                raise ValueError(f"max_decompressed_size must not be negative, got {limit!r}")
        self.max_decompressed_size = limit  # type: ignore[assignment]

    def declare(self) -> Any:
        """Declare the queues, their exchanges and bindings."""
        return run(self.channel, self._declare_plan())

    def _declare_plan(self) -> Plan[None]:
        for name, queue in list(self._queues.items()):
            yield from call(queue, "declare")  # a Queue subclass's declare takes part
            if queue.name != name:  # server-named queue
                self._queues.pop(name, None)
                self._queues[queue.name] = queue

    def register_callback(self, callback: Callable[[Any, Message], Any]) -> None:
        """Add a ``callback(body, message)``."""
        self.callbacks.append(callback)

    def add_queue(self, queue: Queue) -> Queue:
        """Add a queue (declaring it with ``auto_declare``); call :meth:`consume` to start."""
        queue = queue(self.channel)
        if self.auto_declare:
            queue.declare()
        self._queues[queue.name] = queue
        return queue

    def consume(self, no_ack: bool | None = None) -> Any:
        """Start consuming from every queue not consumed yet."""
        no_ack = self.no_ack if no_ack is None else no_ack
        return run(self.channel, self._consume_plan({name: no_ack or q.no_ack for name, q in self._queues.items()}))

    def _consume(self, no_ack_by_queue: Mapping[str, bool]) -> Any:
        return run(self.channel, self._consume_plan(no_ack_by_queue))

    def _consume_plan(self, no_ack_by_queue: Mapping[str, bool]) -> Plan[None]:
        for name, queue in list(self._queues.items()):
            if name not in no_ack_by_queue or name in self._active_tags:
                continue
            tag = f"{self.tag_prefix}{next(_consumer_tags)}"
            no_ack = no_ack_by_queue[name]
            self._active_tags[name] = tag
            self._active_no_ack[name] = no_ack
            yield from call(queue, "consume", tag, self._receive_callback, no_ack=no_ack)

    def cancel(self) -> Any:
        """Stop all consumers (delivered, unacked messages stay unacked)."""
        return run(self.channel, self._cancel_plan())

    def _cancel_plan(self) -> Plan[None]:
        tags = list(self._active_tags.values())
        self._active_tags.clear()
        self._active_no_ack.clear()
        self._resume = {}
        for tag in tags:
            yield from call(self.channel, "basic_cancel", tag)

    close = cancel

    def cancel_by_queue(self, queue: Queue | str) -> Any:
        """Stop consuming from ``queue`` and forget it."""
        name = queue.name if isinstance(queue, Queue) else queue
        self._active_no_ack.pop(name, None)
        self._resume.pop(name, None)
        tag = self._active_tags.pop(name, None)
        self._queues.pop(name, None)
        return run(self.channel, call(self.channel, "basic_cancel", tag) if tag is not None else _nothing())

    def consuming_from(self, queue: Queue | str) -> bool:
        """True when currently consuming from ``queue``."""
        name = queue.name if isinstance(queue, Queue) else queue
        return name in self._active_tags

    def purge(self) -> Any:
        """Delete all ready messages of every queue; return how many."""
        return run(self.channel, self._purge_plan())

    def _purge_plan(self) -> Plan[int]:
        total = 0
        for queue in list(self._queues.values()):
            total += (yield from call(queue, "purge")) or 0
        return total

    def flow(self, active: bool) -> None:
        self.channel.flow(active)

    def qos(self, prefetch_size: int = 0, prefetch_count: int = 0, apply_global: bool = False) -> Any:
        """Limit unacknowledged messages outstanding on the channel."""
        return self.channel.basic_qos(prefetch_size, prefetch_count, apply_global)

    def recover(self, requeue: bool = False) -> Any:
        """Ask the broker to redeliver every unacknowledged message of the channel."""
        return self.channel.basic_recover(requeue=requeue)

    def receive(self, body: Any, message: Message) -> None:
        """Call every callback with ``(body, message)``."""
        callbacks = self.callbacks
        if not callbacks:
            raise NotImplementedError("Consumer does not have any callbacks")
        for callback in callbacks:
            callback(body, message)

    def _receive_callback(self, message: Any) -> Any:
        accept = self.accept
        on_message = self.on_message
        channel = self.channel
        decoded = None
        try:
            m2p = getattr(channel, "message_to_python", None)
            if m2p is not None:
                try:
                    message = m2p(message)
                except Exception as exc:
                    message = _unconvertible(channel, message, exc)
            if accept is not None:
                message.accept = accept
            message.max_decompressed_size = self.max_decompressed_size
            # _errors, not errors: reading errors would decompress before the accept check
            if message._errors:
                return message._reraise_error(self.on_decode_error)
            if on_message is None:
                decoded = message.decode()
            elif message._compression is not None and _accepted(message.content_type, accept):
                # on_message gets the body decompressed, as it would from Kombu; content
                # that is not accepted stays compressed until someone asks for it
                message._inflate()
                if message._errors:
                    return message._reraise_error(self.on_decode_error)
        except Exception as exc:
            if not self.on_decode_error:
                raise _annotate(exc, message, self._queue_of(message)) from exc
            self.on_decode_error(message, exc)
            return None
        if on_message is not None:
            return on_message(message)
        return self.receive(decoded, message)

    def _queue_of(self, message: Any) -> str | None:
        tag = (getattr(message, "delivery_info", None) or {}).get("consumer_tag")
        for name, active in self._active_tags.items():
            if active == tag:
                return name
        return None

    @property
    def connection(self) -> Connection | None:
        try:
            return self.channel.connection.client  # type: ignore[no-any-return]
        except AttributeError:
            return None

    def __enter__(self) -> Consumer:
        self.consume()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        connection = self.connection
        if connection is not None and exc is not None and isinstance(exc, connection.connection_errors):
            return
        try:
            self.cancel()
        except Exception:  # the channel may be gone already; nothing left to cancel
            pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.queues}>"


def _nothing() -> Plan[None]:
    return None
    yield  # pragma: no cover - makes this a plan


def _accepted(content_type: str | None, accept: Any) -> bool:
    try:
        check_accept(content_type, accept)
    except ContentDisallowed:
        return False
    return True


def _unconvertible(channel: Any, raw: Any, exc: BaseException) -> Message:
    """A :class:`Message` for a driver message the channel could not convert: it carries
    the error, so it reaches ``on_decode_error`` and can still be acked or rejected."""
    info = getattr(raw, "delivery_info", None)
    info = dict(info) if isinstance(info, Mapping) else {}
    body = getattr(raw, "body", None)
    message = Message(
        body=body if isinstance(body, bytes | bytearray | memoryview | str) else None,
        delivery_tag=info.get("delivery_tag"),
        delivery_info=info,
        channel=channel,
        raw=raw,
    )
    error = DecodeError(f"Malformed message: the transport could not read it: {exc!r}")
    error.__cause__ = exc
    message._errors.insert(0, (DecodeError, error, None))
    return message


def _annotate(exc: BaseException, message: Any, queue: str | None) -> BaseException:
    """Re-create a decode error with the queue and content type in its message."""
    info = getattr(message, "delivery_info", {}) or {}
    headers = getattr(message, "headers", None)
    detail = headers.get("x-kombu-like-error") if isinstance(headers, dict) else None
    if isinstance(detail, str) and detail:
        exc_text = f"{exc}: {detail}"
    else:
        exc_text = str(exc)
    text = (
        f"{exc_text} (message on queue {queue!r} from exchange {info.get('exchange')!r}, "
        f"routing key {info.get('routing_key')!r}, "
        f"content type {getattr(message, 'content_type', None)!r}; the message was left "
        f"unacknowledged - pass on_decode_error to handle such messages)"
    )
    try:
        return type(exc)(text)
    except Exception:
        return exc
