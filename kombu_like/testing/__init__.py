"""Helpers for testing code that uses kombu_like, and for testing transports.

:mod:`kombu_like.testing.conformance` holds the transport conformance suite: subclass
:class:`~kombu_like.testing.conformance.TransportConformance` with a transport's URL to
check that it behaves like every other transport.  Names are imported on first use, so
importing this package does not import pytest.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AckTests",
    "CompressionTests",
    "ConformanceBase",
    "DeclarationTests",
    "DecodeErrorTests",
    "ExchangeTypeTests",
    "HeadersAndPropertiesTests",
    "PriorityTests",
    "PublishConsumeTests",
    "SimpleQueueTests",
    "TTLTests",
    "TransportConformance",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import conformance

        return getattr(conformance, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
