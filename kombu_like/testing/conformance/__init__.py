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

Every test written against the ``conn`` fixture runs on both APIs, parametrized by the
``api`` fixture: ``[sync]`` on the blocking API (:class:`kombu_like.Connection`) and
``[async]`` on the asyncio API (:mod:`kombu_like.aio`), the same test body with every
operation carried out by the asyncio API on an event loop of the test class's own
(:mod:`.bridge`).  The ``[async]`` runs skip, naming the scheme, on a transport the
asyncio API does not drive.  Class attributes choose:

* ``apis = ("sync",)`` runs the blocking API only;
* ``async_skips = {"test_name": "why"}`` skips a test's ``[async]`` run, where what it
  checks is not what the asyncio API does on the transport (a documented difference);
* ``async_gaps = {"test_name": "what is missing"}`` marks a test's ``[async]`` run as an
  expected failure, strictly: once the asyncio API passes it, the entry must go.

Tests about the blocking API alone (:class:`EventLoopTests`: a Hub; the thread-based
ones) do not use ``conn`` and run once.

One module per topic: :mod:`.base` (connections, names, clean-up, waits, the API
parameter), :mod:`.publish`, :mod:`.routing`, :mod:`.acks`, :mod:`.simple`,
:mod:`.encoding`, :mod:`.capabilities` and :mod:`.eventloop`; :mod:`.aio`
(:class:`AsyncAPITests`) covers what only the asyncio API has -- coroutine callbacks,
``async for``, cancellation, interop of the two APIs -- mixed in where
:mod:`kombu_like.aio` drives the transport.
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
