"""AMQP semantics emulated for stores that only have queues.

A store (Redis, SQS, sqlite, process memory) implements :class:`QueueStore`; this package
gives it exchanges (direct, topic, fanout, headers), bindings, prefetch, unacked tracking,
redelivery and Kombu's JSON envelope.
"""

from .channel import QoS, VirtualChannel, decode_body, encode_body
from .routing import Binding, ExchangeInfo, route, topic_matches
from .store import BindingTable, Delivery, QueueStore
from .transport import VirtualConnection, VirtualTransport

Channel = VirtualChannel
Transport = VirtualTransport

__all__ = [
    "Binding",
    "BindingTable",
    "Channel",
    "Delivery",
    "ExchangeInfo",
    "QoS",
    "QueueStore",
    "Transport",
    "VirtualChannel",
    "VirtualConnection",
    "VirtualTransport",
    "decode_body",
    "encode_body",
    "route",
    "topic_matches",
]
