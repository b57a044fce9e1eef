"""The transport conformance suite on ``sqs://``, against moto's standalone SQS server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kombu_like import Connection
from kombu_like.testing.conformance import TransportConformance
from kombu_like.testing.hostile import HostileInputTests

pytestmark = pytest.mark.sqs


class _OnMoto:
    """Connections to moto's standalone SQS server, waiting as long as its round trips need."""

    transport_options = {"region": "us-east-1", "wait_time_seconds": 2}
    # moto answers a ReceiveMessage or DeleteMessageBatch in about 0.12 s here, so 200
    # messages (20 receives and 20 batch deletes) take about 5 s by themselves
    wait = 20.0

    @pytest.fixture(autouse=True)
    def _endpoint(self, sqs_endpoint: str) -> Iterator[None]:
        self.endpoint = sqs_endpoint
        yield

    def make_connection(self) -> Connection:
        host = self.endpoint.split("://", 1)[1]
        return Connection(f"sqs://testing:testing@{host}", transport_options=dict(self.transport_options))


class TestSQSConformance(_OnMoto, TransportConformance):
    """Every conformance test, on SQS queues created for the test and deleted after it."""


class TestSQSHostileInput(_OnMoto, HostileInputTests):
    """Hostile messages, some of them sent to the SQS queue by another program."""

    # every example is a few moto round trips of ~0.1 s
    hostile_examples = 6
