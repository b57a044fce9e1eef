"""kombu_like: messaging in the Kombu tradition.

``Connection`` / ``Producer`` / ``Consumer`` over pluggable transports (AMQP, Redis, SQS,
memory), with serializer and compression registries and one exception tree.  Code written
against Kombu 5's public API runs with ``import kombu_like as kombu``.
"""

from __future__ import annotations

import logging
from typing import Any

from .common import eventloop, uuid
from .connection import BrokerConnection, Connection
from .entity import Exchange, Queue, binding
from .message import Message
from .messaging import Consumer, Producer
from .serialization import disable_insecure_serializers, enable_insecure_serializers
from .utils.url import parse_url

# a library's loggers stay silent until the application configures logging
logging.getLogger(__name__).addHandler(logging.NullHandler())

#: Kombu-compatible version: frameworks branch on ``kombu.__version__``.
__version__ = "5.7.0"
VERSION = version_info = (5, 7, 0)
__author__ = "kombu_like developers"
__homepage__ = "https://pypi.org/project/kombu_like/"
__docformat__ = "restructuredtext en"

__all__ = [
    "BrokerConnection",
    "Connection",
    "Consumer",
    "Exchange",
    "Message",
    "Producer",
    "Queue",
    "binding",
    "connections",
    "disable_insecure_serializers",
    "enable_insecure_serializers",
    "eventloop",
    "parse_url",
    "producers",
    "uuid",
]


def __getattr__(name: str) -> Any:
    # the global pools import lazily: most programs never use them
    if name in ("connections", "producers"):
        from . import pools

        return getattr(pools, name)
    raise AttributeError(f"module 'kombu_like' has no attribute {name!r}")
