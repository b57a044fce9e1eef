"""The transport conformance suite on RabbitMQ (``amqp://``), plain and with publisher
confirms, so every behaviour holds in both publishing modes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import pytest

from kombu_like import Connection
from kombu_like.testing.conformance import AsyncAPITests, TransportConformance
from kombu_like.testing.hostile import HostileInputTests

pytestmark = pytest.mark.amqp


class SocketFault:
    """The seam experiments on RabbitMQ: the next frame written to the socket fails as the
    kernel fails it when the peer resets the connection."""

    # the asyncio driver writes through an asyncio transport, flushed by the loop: a cut
    # connection ends the next wait, and publish(retry=True) reconnects (test_aio_amqp)
    async_skips = MappingProxyType(
        {
            name: "a socket fault is raised by the connection's next wait, not by the publish"
            for name in (
                "test_store_error_is_translated_with_the_original_as_cause",
                "test_publish_with_retry_survives_a_store_error",
            )
        }
    )

    @contextlib.contextmanager
    def failing_put(self, conn: Connection, error: Exception, times: int = 1) -> Iterator[list[Exception]]:
        conn.connect()
        _ = conn.default_channel  # opened before the fault, so the fault hits the publish
        socket_transport = conn.connection.transport
        original = socket_transport._write
        raised: list[Exception] = []

        def write(data: Any) -> None:
            if len(raised) < times:
                raised.append(error)
                raise error
            original(data)

        socket_transport._write = write
        try:
            yield raised
        finally:
            with contextlib.suppress(AttributeError):
                del socket_transport._write


class TestAMQPConformance(SocketFault, TransportConformance, AsyncAPITests):
    @pytest.fixture(autouse=True)
    def _broker(self, amqp_url: str) -> None:
        self.url = amqp_url


class TestAMQPConformanceWithConfirms(SocketFault, TransportConformance, AsyncAPITests):
    transport_options: Mapping[str, Any] = MappingProxyType({"confirm_publish": True, "confirm_timeout": 10})

    @pytest.fixture(autouse=True)
    def _broker(self, amqp_url: str) -> None:
        self.url = amqp_url


class TestAMQPHostileInput(HostileInputTests):
    """Hostile messages, some of them published with odd properties by the ``amqp`` package."""

    @pytest.fixture(autouse=True)
    def _broker(self, amqp_url: str) -> None:
        self.url = amqp_url
