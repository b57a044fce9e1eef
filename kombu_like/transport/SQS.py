"""Kombu's ``kombu.transport.SQS`` path for the SQS transport (:mod:`kombu_like.transport.sqs`).

``sqs://`` and ``SQS://`` URLs select the same transport; this module gives code that
imports from the upper-case path the same classes, and ``kombu_like.transport.SQS.exceptions``
the transport's errors under Kombu's names.  (It is a module beside the ``sqs`` package,
not a second package, so the two never collide on case-insensitive file systems.)
"""

from __future__ import annotations

import sys
from typing import Any

from .sqs import Channel, Transport
from .sqs import exceptions as exceptions
from .sqs.exceptions import (
    AccessDeniedQueueException,
    DoesNotExistQueueException,
    InvalidQueueException,
    UndefinedQueueException,
)
from .virtual import QoS

__all__ = [
    "AccessDeniedQueueException",
    "Channel",
    "DoesNotExistQueueException",
    "InvalidQueueException",
    "QoS",
    "Transport",
    "UndefinedQueueException",
    "exceptions",
    "maybe_int",
]

# a package, so ``import kombu_like.transport.SQS.exceptions`` resolves to the module above
__path__: list[str] = []
sys.modules[f"{__name__}.exceptions"] = exceptions


def maybe_int(x: Any) -> Any:
    """``x`` as an int when it is one written as text (``"10"``), else ``x`` unchanged."""
    try:
        return int(x)
    except (TypeError, ValueError):
        return x
