"""kombu_like: messaging in the Kombu tradition.

``Connection`` / ``Producer`` / ``Consumer`` over pluggable transports (AMQP, Redis, SQS,
memory), with serializer and compression registries and one exception tree.  Code written
against Kombu 5's public API runs with ``import kombu_like as kombu``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .common import eventloop, uuid
    from .connection import BrokerConnection, Connection
    from .entity import Exchange, Queue, binding
    from .message import Message
    from .messaging import Consumer, Producer
    from .pools import connections, producers
    from .serialization import disable_insecure_serializers, enable_insecure_serializers
    from .utils.url import parse_url

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


#: public name -> the module that defines it.  Nothing is imported until a name is first
#: used, so ``import kombu_like`` stays cheap (as ``import kombu`` is): a program that only
#: needs the exceptions or a transport does not pay for the rest.
_LAZY = {
    "BrokerConnection": ".connection",
    "Connection": ".connection",
    "Consumer": ".messaging",
    "Exchange": ".entity",
    "Message": ".message",
    "Producer": ".messaging",
    "Queue": ".entity",
    "binding": ".entity",
    "connections": ".pools",
    "disable_insecure_serializers": ".serialization",
    "enable_insecure_serializers": ".serialization",
    "eventloop": ".common",
    "parse_url": ".utils.url",
    "producers": ".pools",
    "uuid": ".common",
}


def __getattr__(name: str) -> Any:
    from importlib import import_module

    module = _LAZY.get(name)
    if module is None:
        # ``kombu_like.exceptions`` after a bare ``import kombu_like``: the submodule, as
        # when this file still imported every module up front
        if not name.startswith("_"):
            try:
                return import_module(f"{__name__}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{__name__}.{name}":
                    raise
        raise AttributeError(f"module 'kombu_like' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    if name not in ("connections", "producers"):
        globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
