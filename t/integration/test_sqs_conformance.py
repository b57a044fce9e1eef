"""The transport conformance suite on ``sqs://``, against moto's standalone SQS server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest

from kombu_like import Connection
from kombu_like.testing.conformance import AsyncAPITests, TransportConformance
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
        return Connection(f"sqs://testing:testing@{host}", transport_options=self.connection_options())

    def connection_options(self) -> dict[str, Any]:
        return dict(self.transport_options)


class TestSQSConformance(_OnMoto, TransportConformance):
    """Every conformance test, on SQS queues created for the test and deleted after it."""

    async_skips = MappingProxyType(
        {
            "test_cancelled_consumer_gets_nothing": "after its last consumer is cancelled, the connection's "
            "receive thread may receive for the queue once more, and SQS counts leave out messages in flight",
        }
    )

    def connection_options(self) -> dict[str, Any]:
        if self.current_api != "async":
            return dict(self.transport_options)
        # closing an asyncio connection waits for its receive in flight (up to
        # wait_time_seconds): short polls keep the tests' many closes quick
        return {**self.transport_options, "wait_time_seconds": 0, "polling_interval": 0.05}


class TestSQSHostileInput(_OnMoto, HostileInputTests):
    """Hostile messages, some of them sent to the SQS queue by another program."""

    # every example is a few moto round trips of ~0.1 s
    hostile_examples = 6


class TestSQSAsyncAPI(_OnMoto, AsyncAPITests):
    """The asyncio API on SQS, and interop with the blocking API over it."""

    # closing a connection waits for its receive in flight: short polls keep the many
    # connections of these scenarios quick to close
    transport_options = {"region": "us-east-1", "wait_time_seconds": 0, "polling_interval": 0.05}

    @pytest.mark.skip(
        reason="after its last consumer is cancelled, the connection's receive thread keeps "
        "receiving for the queue until the event loop takes again, and SQS counts leave out "
        "messages in flight (qsize sees 0); a standard queue also keeps no order for messages "
        "made visible again (the scenario expects both)"
    )
    def test_async_simple_queue(self) -> None:
        pass

    def test_async_close_leaves_no_thread(self) -> None:
        """The connection's worker thread and the store's receive thread end with it."""
        queue = self.new_queue("aio_threads")

        async def scenario() -> None:
            async with self.make_async_connection() as conn:
                await conn.Producer().publish("x", routing_key=queue.name, declare=[queue])
                async with conn.Consumer([queue]) as consumer:
                    async for message in consumer:
                        await message.ack()
                        break
                assert threads()

        self.run_async(scenario())
        assert threads() == []


def threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("kombu_like-sqs")]
