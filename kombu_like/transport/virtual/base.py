"""Kombu's ``kombu.transport.virtual.base`` names, over kombu_like's virtual layer.

kombu_like's virtual transports are built from a :class:`~.store.QueueStore` and one
channel class (see :mod:`kombu_like.transport.virtual`); this module gives code written
against Kombu's module the names it imports: the envelope :class:`Message`, the
:class:`Base64` body codec, :class:`BrokerState`, the binding tuples, the errors and
warnings, :class:`Management` and the abstract channel Kombu's transports subclass.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Iterator, Mapping
from queue import Empty
from typing import Any, NamedTuple

from ...message import Message as BaseMessage
from ...utils.encoding import bytes_to_str, str_to_bytes
from .. import base
from .channel import NotEquivalentError, QoS, VirtualChannel, decode_body, encode_body
from .transport import VirtualTransport

__all__ = [
    "AbstractChannel",
    "Base64",
    "BrokerState",
    "Channel",
    "Empty",
    "Management",
    "Message",
    "NotEquivalentError",
    "QoS",
    "Transport",
    "UndeliverableWarning",
    "binding_key_t",
    "queue_binding_t",
]

Channel = VirtualChannel
Transport = VirtualTransport


class binding_key_t(NamedTuple):  # noqa: N801 - Kombu's name
    """Key of one binding in :attr:`BrokerState.bindings`."""

    queue: str
    exchange: str
    routing_key: str


class queue_binding_t(NamedTuple):  # noqa: N801 - Kombu's name
    """One binding of a queue, as :meth:`BrokerState.queue_bindings` yields it."""

    exchange: str
    routing_key: str
    arguments: Any


class UndeliverableWarning(UserWarning):
    """A message could not be delivered to any queue."""


class Base64:
    """The ``base64`` body encoding of Kombu's envelope."""

    def encode(self, s: Any) -> str:
        """``s`` (text or bytes) as base64 text."""
        return str(bytes_to_str(base64.b64encode(str_to_bytes(s))))

    def decode(self, s: Any) -> bytes:
        """The bytes base64 text ``s`` stands for."""
        return base64.b64decode(str_to_bytes(s))


class BrokerState:
    """Exchanges and bindings of a virtual broker, indexed by queue.

    ``exchanges`` maps a name to its declaration, ``bindings`` maps each
    :class:`binding_key_t` to its arguments and ``queue_index`` a queue to its binding keys.
    """

    def __init__(self, exchanges: dict[str, Any] | None = None) -> None:
        self.exchanges: dict[str, Any] = {} if exchanges is None else exchanges
        self.bindings: dict[binding_key_t, Any] = {}
        self.queue_index: defaultdict[str, set[binding_key_t]] = defaultdict(set)

    def clear(self) -> None:
        """Forget every exchange and binding."""
        self.exchanges.clear()
        self.bindings.clear()
        self.queue_index.clear()

    def has_binding(self, queue: str, exchange: str, routing_key: str) -> bool:
        return binding_key_t(queue, exchange, routing_key) in self.bindings

    def binding_declare(self, queue: str, exchange: str, routing_key: str, arguments: Any) -> None:
        """Add a binding (declaring it again keeps the first arguments)."""
        key = binding_key_t(queue, exchange, routing_key)
        self.bindings.setdefault(key, arguments)
        self.queue_index[queue].add(key)

    def binding_delete(self, queue: str, exchange: str, routing_key: str) -> None:
        """Remove a binding; an unknown one is ignored."""
        key = binding_key_t(queue, exchange, routing_key)
        if self.bindings.pop(key, _MISSING) is not _MISSING:
            self.queue_index[queue].discard(key)

    def queue_bindings_delete(self, queue: str) -> None:
        """Remove every binding of ``queue``."""
        for key in self.queue_index.pop(queue, set()):
            self.bindings.pop(key, None)

    def queue_bindings(self, queue: str) -> Iterator[queue_binding_t]:
        """The bindings of ``queue``."""
        return (queue_binding_t(key.exchange, key.routing_key, self.bindings[key]) for key in self.queue_index[queue])


_MISSING = object()


class Message(BaseMessage):
    """A message built from a virtual transport's envelope (``payload``)."""

    def __init__(self, payload: Mapping[str, Any], channel: Any = None, **kwargs: Any) -> None:
        properties = payload["properties"]
        body = payload.get("body")
        encoding = properties.get("body_encoding")
        if body:
            decode = getattr(channel, "decode_body", decode_body)
            body = decode(body, encoding)
        super().__init__(
            body=body,
            channel=channel,
            delivery_tag=properties.get("delivery_tag"),
            content_type=payload.get("content-type"),
            content_encoding=payload.get("content-encoding"),
            headers=payload.get("headers"),
            properties=properties,
            delivery_info=properties.get("delivery_info"),
            postencode="utf-8",
            raw=payload,
            **kwargs,
        )

    def serializable(self) -> dict[str, Any]:
        """The envelope again, ready to be stored (without the ``compression`` header)."""
        props = self.properties
        body = encode_body(self.body, props.get("body_encoding"))
        headers = dict(self.headers)
        headers.pop("compression", None)
        return {
            "body": body,
            "properties": props,
            "content-type": self.content_type,
            "content-encoding": self.content_encoding,
            "headers": headers,
        }


class AbstractChannel:
    """The queue primitives of Kombu's virtual channels, for code that subclasses it.

    kombu_like's own transports implement :class:`~kombu_like.transport.virtual.QueueStore`
    instead; these are the operations a Kombu-style channel must provide.
    """

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        raise NotImplementedError("Virtual channels must implement _get")

    def _put(self, queue: str, message: Any) -> None:
        raise NotImplementedError("Virtual channels must implement _put")

    def _purge(self, queue: str) -> int:
        raise NotImplementedError("Virtual channels must implement _purge")

    def _size(self, queue: str) -> int:
        return 0

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        self._purge(queue)

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        """Create ``queue`` where the store needs it created (nothing by default)."""

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return True

    def _poll(self, cycle: Any, callback: Any, timeout: float | None = None) -> Any:
        return cycle.get(callback)

    def _get_and_deliver(self, queue: str, callback: Any) -> None:
        message = self._get(queue)
        callback(message, queue)


class Management(base.Management):
    """Lists the bindings of a virtual broker: ``destination``, ``source``, ``routing_key``."""

    def __init__(self, transport: Any) -> None:
        super().__init__(transport)
        self.channel = transport.client.channel()

    def get_bindings(self) -> list[dict[str, Any]]:
        seam = getattr(self.channel, "seam", None)
        if seam is None:
            raise NotImplementedError(f"{type(self.channel).__name__} cannot list bindings")
        return [
            {"destination": binding.queue, "source": exchange, "routing_key": binding.routing_key}
            for exchange, binding in seam.bindings.all_bindings()
        ]

    def close(self) -> None:
        self.channel.close()
