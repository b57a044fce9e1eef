"""AMQP semantics emulated for stores that only have queues.

A store (Redis, SQS, sqlite, process memory) implements :class:`QueueStore` (and, to share
exchanges and bindings between processes, a :class:`BindingStore`); this package
gives it exchanges (direct, topic, fanout, headers), bindings, prefetch, unacked tracking,
redelivery and Kombu's JSON envelope.
"""

from .base import (
    AbstractChannel,
    Base64,
    BrokerState,
    Empty,
    Management,
    Message,
    NotEquivalentError,
    UndeliverableWarning,
    binding_key_t,
    queue_binding_t,
)
from .channel import QoS, VirtualChannel, decode_body, encode_body
from .routing import Binding, ExchangeInfo, route, topic_matches
from .store import BindingStore, BindingTable, Delivery, GuardedStore, InMemoryBindings, QueueStore
from .transport import VirtualConnection, VirtualTransport

Channel = VirtualChannel
Transport = VirtualTransport

__all__ = [
    "AbstractChannel",
    "Base64",
    "Binding",
    "BindingStore",
    "BindingTable",
    "BrokerState",
    "Channel",
    "Delivery",
    "Empty",
    "ExchangeInfo",
    "GuardedStore",
    "InMemoryBindings",
    "Management",
    "Message",
    "NotEquivalentError",
    "QoS",
    "QueueStore",
    "Transport",
    "UndeliverableWarning",
    "VirtualChannel",
    "VirtualConnection",
    "VirtualTransport",
    "binding_key_t",
    "decode_body",
    "encode_body",
    "queue_binding_t",
    "route",
    "topic_matches",
]
