"""The transport conformance suite on RabbitMQ (``amqp://``), plain and with publisher
confirms, so every behaviour holds in both publishing modes."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest

from kombu_like.testing.conformance import TransportConformance
from kombu_like.testing.hostile import HostileInputTests

pytestmark = pytest.mark.amqp


class TestAMQPConformance(TransportConformance):
    @pytest.fixture(autouse=True)
    def _broker(self, amqp_url: str) -> None:
        self.url = amqp_url


class TestAMQPConformanceWithConfirms(TransportConformance):
    transport_options: Mapping[str, Any] = MappingProxyType({"confirm_publish": True, "confirm_timeout": 10})

    @pytest.fixture(autouse=True)
    def _broker(self, amqp_url: str) -> None:
        self.url = amqp_url


class TestAMQPHostileInput(HostileInputTests):
    """Hostile messages, some of them published with odd properties by the ``amqp`` package."""

    @pytest.fixture(autouse=True)
    def _broker(self, amqp_url: str) -> None:
        self.url = amqp_url
