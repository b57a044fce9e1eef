"""Helpers for testing code that uses kombu_like, and for testing transports.

:mod:`kombu_like.testing.conformance` holds the transport conformance suite: subclass
:class:`~kombu_like.testing.conformance.TransportConformance` with a transport's URL to
check that it behaves like every other transport, and
:class:`~kombu_like.testing.hostile.HostileInputTests` to check that malformed messages
never crash its consumers.  Names are imported on first use, so
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
    "HostileInputTests",
    "PriorityTests",
    "PublishConsumeTests",
    "SeamTests",
    "SimpleQueueTests",
    "TTLTests",
    "TransportConformance",
]


def __getattr__(name: str) -> Any:
    if name == "HostileInputTests":
        from . import hostile

        return hostile.HostileInputTests
    if name in __all__:
        from . import conformance

        return getattr(conformance, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
