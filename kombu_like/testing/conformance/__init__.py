"""Transport conformance tests: the behaviour every transport must show.

A transport is done when a subclass of :class:`TransportConformance` passes on it::

    from kombu_like.testing.conformance import TransportConformance

    class TestMyTransport(TransportConformance):
        url = "mytransport://localhost"
        transport_options = {"visibility_timeout": 5}

The topic classes (:class:`PublishConsumeTests`, :class:`AckTests`, ...) can also be mixed
in one by one.  Everything goes through the public API (``Connection``, ``Producer``,
``Consumer``, ``Queue``, ``Exchange``, ``SimpleQueue``), every wait is a
``drain_events(timeout=...)`` and every entity name is unique per test, so the suite can
run against a shared broker.  Entities a test declares are deleted when it ends.

Tests that need an optional capability (priority, TTL, an exchange type) skip with a
reason naming it when ``connection.transport.capabilities`` does not declare it.

One module per topic: :mod:`.base` (connections, names, clean-up, waits), :mod:`.publish`,
:mod:`.routing`, :mod:`.acks`, :mod:`.simple`, :mod:`.encoding`, :mod:`.capabilities` and
:mod:`.eventloop`; :mod:`.aio` (:class:`AsyncAPITests`) runs the asyncio API on the
transport, mixed in where :mod:`kombu_like.aio` drives it (memory://, amqp://).
"""

from __future__ import annotations

from .acks import AckTests
from .aio import AsyncAPITests
from .base import COMPRESSION_METHODS as COMPRESSION_METHODS
from .base import ConformanceBase
from .base import drain_until as drain_until
from .capabilities import PriorityTests, TTLTests
from .encoding import CompressionTests, DecodeErrorTests
from .eventloop import EventLoopTests
from .publish import HeadersAndPropertiesTests, PublishConsumeTests
from .routing import DeclarationTests, ExchangeTypeTests, SeamTests
from .simple import SimpleQueueTests

__all__ = [
    "AckTests",
    "AsyncAPITests",
    "CompressionTests",
    "ConformanceBase",
    "DeclarationTests",
    "DecodeErrorTests",
    "EventLoopTests",
    "ExchangeTypeTests",
    "HeadersAndPropertiesTests",
    "PriorityTests",
    "PublishConsumeTests",
    "SeamTests",
    "SimpleQueueTests",
    "TTLTests",
    "TransportConformance",
]


class TransportConformance(
    PublishConsumeTests,
    ExchangeTypeTests,
    AckTests,
    SimpleQueueTests,
    DecodeErrorTests,
    CompressionTests,
    HeadersAndPropertiesTests,
    DeclarationTests,
    PriorityTests,
    TTLTests,
    SeamTests,
    EventLoopTests,
):
    """Every conformance test; subclass it as ``Test...`` with the transport's ``url``."""
