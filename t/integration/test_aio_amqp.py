"""The asyncio API on RabbitMQ, beyond its conformance tests (AsyncAPITests, run in
test_amqp_conformance): confirms and returns, channel errors, TLS, a cut connection,
cancelled connects, closes and publishes, heartbeats, large messages."""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import uuid
from typing import Any

import pytest

from kombu_like import Connection as SyncConnection
from kombu_like import Exchange, Queue
from kombu_like.aio import Connection
from kombu_like.aio.rpc import RpcClient, RpcServer
from kombu_like.exceptions import (
    ConnectionTimeout,
    ConsumerCancelled,
    IrrecoverableConnectionError,
    MessageNacked,
    MessageReturned,
    NotFound,
)
from kombu_like.mixins import TokenBucket
from kombu_like.testing.conformance.aio import stopped
from kombu_like.transport.amqp.aio import HEARTBEAT_FRAME
from t.aio_cancellation import cancellation_seed, run_cancellations
from t.faultproxy import FaultProxy
from t.integration.test_amqp import Relay, broker_port, tls_files, tls_relay  # noqa: F401 - amqps fixtures

pytestmark = pytest.mark.amqp


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


@pytest.fixture
def name() -> str:
    return f"t-aio-{uuid.uuid4().hex[:10]}"


async def get_soon(queue: Queue, conn: Connection) -> Any:
    """``queue.get()`` until a message comes (RabbitMQ routes publishes asynchronously)."""
    for _ in range(200):
        message = await queue(conn.default_channel).get()
        if message is not None:
            return message
        await asyncio.sleep(0.005)
    raise AssertionError(f"nothing arrived on {queue.name}")


def test_confirms_and_returns(amqp_url: str, name: str) -> None:
    exchange = Exchange(f"{name}.ex", "direct", auto_delete=True)
    queue = Queue(name, exchange, routing_key="k", auto_delete=False)

    async def main() -> None:
        async with Connection(amqp_url, transport_options={"confirm_publish": True}) as conn:
            producer = conn.Producer(exchange=exchange)
            await producer.publish("stored", routing_key="k", declare=[queue])
            # confirmed: the count sees it at once
            assert (await queue(conn.default_channel).queue_declare(passive=True))[1] == 1
            with pytest.raises(MessageReturned):
                await producer.publish("nowhere", routing_key="unbound", mandatory=True)
            async with producer.batch():
                for n in range(5):
                    await producer.publish(n, routing_key="k")
            assert (await queue(conn.default_channel).queue_declare(passive=True))[1] == 6
            await queue(conn.default_channel).delete()

    run(main())


def test_channel_errors_are_the_library_s_and_the_connection_goes_on(amqp_url: str, name: str) -> None:
    async def main() -> None:
        async with Connection(amqp_url) as conn:
            with pytest.raises(NotFound):
                await Queue(f"{name}-missing")(conn.default_channel).queue_declare(passive=True)
            # the default channel was reopened
            assert await Queue(name, auto_delete=True)(conn.default_channel).declare() == name

    run(main())


def test_timeouts_around_waits(amqp_url: str, name: str) -> None:
    queue = Queue(name, auto_delete=True)

    async def main() -> None:
        async with Connection(amqp_url) as conn:
            async with conn.Consumer([queue], callbacks=[lambda body, message: None]):
                with pytest.raises(socket.timeout):
                    await conn.drain_events(timeout=0.02)
                if sys.version_info >= (3, 11):
                    with pytest.raises(TimeoutError):
                        async with asyncio.timeout(0.02):
                            await conn.drain_events()
                await conn.Producer().publish("late", routing_key=name)
                await conn.drain_events(timeout=5)

    run(main())


def test_sync_publishes_reach_an_async_consumer_with_coroutine_callbacks(amqp_url: str, name: str) -> None:
    queue = Queue(name, auto_delete=False)
    with SyncConnection(amqp_url) as sync:
        queue(sync.default_channel).declare()
        for n in range(20):
            sync.Producer().publish(n, routing_key=name)

    async def main() -> None:
        got: list[int] = []

        async def handle(body: int, message: Any) -> None:
            await asyncio.sleep(0)
            got.append(body)
            await message.ack()

        async with Connection(amqp_url) as conn:
            async with conn.Consumer([queue], callbacks=[handle], prefetch_count=5):
                while len(got) < 20:
                    await conn.drain_events(timeout=5)
            await queue(conn.default_channel).delete()
        assert got == list(range(20))

    run(main())


def test_a_cut_connection_ends_the_wait_and_publish_retry_reconnects(amqp_url: str, name: str) -> None:
    queue = Queue(name, auto_delete=False)

    async def main() -> None:
        with FaultProxy("127.0.0.1", broker_port(amqp_url)) as proxy:
            async with Connection(proxy.url_for(amqp_url)) as conn:
                await queue(conn.default_channel).declare()
                async with conn.Consumer([queue]) as consumer:
                    waiting = asyncio.ensure_future(consumer.__aiter__().__anext__())
                    await asyncio.sleep(0.05)
                    proxy.cut()
                    with pytest.raises(conn.connection_errors):
                        await asyncio.wait_for(waiting, 5)
                assert not conn.connected
                producer = conn.Producer()
                await producer.publish("after", routing_key=name, retry=True, retry_policy={"interval_start": 0})
                assert conn.connected
                message = await get_soon(queue, conn)
                assert message.payload == "after"
                await message.ack()
                await queue(conn.default_channel).delete()

    run(main())


def test_tls(request: pytest.FixtureRequest, name: str) -> None:
    relay: Relay = request.getfixturevalue("tls_relay")
    cert, _ = request.getfixturevalue("tls_files")
    queue = Queue(name, auto_delete=True)

    async def main() -> None:
        ssl_options = {"ca_certs": cert, "cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "localhost"}
        async with Connection(f"amqps://guest:guest@localhost:{relay.port}//", ssl=ssl_options) as conn:
            async with conn.SimpleQueue(queue) as simple:
                await simple.put({"over": "tls"})
                message = await simple.get(timeout=5)
                assert message.payload == {"over": "tls"}
                await message.ack()
        untrusted = Connection(
            f"amqps://guest:guest@localhost:{relay.port}//",
            ssl={"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "localhost"},
        )
        with pytest.raises(IrrecoverableConnectionError) as info:
            await untrusted.connect()
        assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) and "guest:guest" not in str(info.value)

    run(main())


def test_refusals_and_cancels_from_the_broker(amqp_url: str, name: str) -> None:
    full = Queue(name, auto_delete=False, max_length=1, queue_arguments={"x-overflow": "reject-publish"})
    other = Queue(f"{name}-other", auto_delete=False)

    async def main() -> None:
        async with Connection(amqp_url, transport_options={"confirm_publish": True}) as conn:
            producer = conn.Producer()
            await producer.publish("fits", routing_key=name, declare=[full])
            with pytest.raises(MessageNacked):
                await producer.publish("overflows", routing_key=name)
            await full(conn.default_channel).delete()
            # a queue deleted by another connection ends its consumers there
            await other(conn.default_channel).declare()
            async with conn.Consumer([other], callbacks=[lambda body, message: None]):
                with SyncConnection(amqp_url) as sync:
                    other(sync.default_channel).delete()
                with pytest.raises(ConsumerCancelled):
                    await conn.drain_events(timeout=5)

    run(main())


def test_a_failing_low_level_callback_is_raised_from_the_next_wait(amqp_url: str, name: str) -> None:
    queue = Queue(name, auto_delete=True)

    def boom(raw: Any) -> None:
        raise ValueError("callback failed")

    async def main() -> None:
        async with Connection(amqp_url) as conn:
            channel = conn.default_channel
            await queue(channel).declare()
            await channel.basic_consume(queue=name, callback=boom)
            await conn.Producer().publish("x", routing_key=name)
            with pytest.raises(ValueError, match="callback failed"):
                await conn.drain_events(timeout=5)
            # the connection read on: it still answers
            assert (await queue(channel).queue_declare(passive=True)).queue == name

    run(main())


def test_large_messages_properties_and_channels(amqp_url: str, name: str) -> None:
    queue = Queue(name, auto_delete=False)
    big = "x" * 300_000  # several body frames each way

    async def main() -> None:
        async with Connection(amqp_url) as conn:
            channel = await conn.channel()
            producer = conn.Producer(channel)
            await producer.publish(
                {"big": big},
                routing_key=name,
                declare=[queue],
                headers={"h": "é", "n": 1},
                correlation_id="c-1",
                priority=3,
            )
            await channel.close()
            assert not channel.is_open
        with SyncConnection(amqp_url) as sync:
            message = queue(sync.default_channel).get()
            assert message is not None and message.payload == {"big": big}
            assert message.headers == {"h": "é", "n": 1}
            assert message.properties["correlation_id"] == "c-1" and message.properties["priority"] == 3
            message.ack()
            queue(sync.default_channel).delete()

    run(main())


def test_heartbeats_are_sent(amqp_url: str) -> None:
    async def main() -> None:
        async with Connection(amqp_url, heartbeat=1) as conn:
            protocol = conn._driver.protocol
            assert protocol.heartbeat == 1
            sent: list[bytes] = []
            write = protocol.write
            protocol.write = lambda data: (sent.append(data), write(data))[1]
            await asyncio.sleep(0.6)
            assert HEARTBEAT_FRAME in sent

    run(main())


def test_a_cancelled_close_still_closes(amqp_url: str) -> None:
    async def main() -> None:
        conn = Connection(amqp_url)
        await conn.connect()
        protocol = conn._driver.protocol
        closing = asyncio.ensure_future(conn.close())
        await asyncio.sleep(0)  # the close-ok is on its way
        closing.cancel()
        await asyncio.wait([closing])
        assert not protocol.is_open and not conn.connected

    run(main())


def test_a_connect_cancelled_anywhere_leaves_a_usable_connection(amqp_url: str) -> None:
    async def main() -> None:
        conn = Connection(amqp_url)
        completed = 0
        for step in range(20):  # from at once to after the whole handshake (a few ms here)
            attempt = asyncio.ensure_future(conn.connect())
            await asyncio.sleep(step * 0.0005)
            attempt.cancel()
            await asyncio.wait([attempt])
            if not attempt.cancelled():
                assert conn.connected and conn.default_channel.is_open
                completed += 1
                await conn.close()
            assert not conn.connected
        assert 0 < completed < 20  # cancelled at every stage, not only before or after
        async with conn:
            assert conn.default_channel.is_open

    run(main())


def test_publishes_cancelled_while_waiting_for_buffer_room_arrive_whole(amqp_url: str, name: str) -> None:
    queue = Queue(name, auto_delete=False)
    body = b"x" * 300_000

    async def main() -> None:
        async with Connection(amqp_url) as conn:
            await queue(conn.default_channel).declare()
            stream = conn._driver.protocol.stream
            # a small socket buffer and no room above it: every large publish waits
            stream.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            stream.set_write_buffer_limits(high=1)
            producer = conn.Producer()
            waited = 0
            for _ in range(6):
                publishing = asyncio.ensure_future(
                    producer.publish(body, routing_key=name, content_type="application/octet-stream")
                )
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                waited += not publishing.done()
                publishing.cancel()
                await asyncio.wait([publishing])
            assert waited  # cancelled while waiting for room, after their frames were written
            # whole frames only: the broker took every message and kept the connection
            assert (await queue(conn.default_channel).queue_declare(passive=True)).message_count == 6
            assert conn.connected
            await queue(conn.default_channel).delete()

    run(main())


def test_confirm_timeouts_fail_each_publish_at_its_own_deadline(amqp_url: str, name: str) -> None:
    queue = Queue(name, auto_delete=False)

    async def main() -> None:
        with FaultProxy("127.0.0.1", broker_port(amqp_url)) as proxy:
            options = {"confirm_publish": True, "confirm_timeout": 30}
            async with Connection(proxy.url_for(amqp_url), transport_options=options) as conn:
                producer = conn.Producer()
                await producer.publish("ok", routing_key=name, declare=[queue])
                proxy.stall(True)
                patient = asyncio.ensure_future(producer.publish("patient", routing_key=name))
                await asyncio.sleep(0)
                with pytest.raises(ConnectionTimeout) as info:  # the later, shorter wait ends first
                    await producer.publish("hasty", routing_key=name, confirm_timeout=0.2)
                assert "confirm" in str(info.value)
                assert not patient.done()
                patient.cancel()
                await asyncio.wait([patient])
                proxy.stall(False)
                # the confirms nobody waits for any more are dropped; the channel goes on
                await producer.publish("after", routing_key=name)
                assert (await queue(conn.default_channel).queue_declare(passive=True)).message_count == 4
                await queue(conn.default_channel).delete()

    run(main())


def test_a_consumer_cancelled_100_times_loses_nothing(amqp_url: str, name: str) -> None:
    """10,000 messages, 100 cancellations in every consumer state (t/aio_cancellation.py),
    at full size as on memory://: each message acked exactly once, none left.  A new seed
    each run, named by any failure; ``KOMBU_LIKE_CANCEL_SEED`` replays its choices (the
    broker's timing varies)."""
    seed = cancellation_seed()
    queue = Queue(name, auto_delete=False)  # outlives the consumers that come and go

    async def main() -> None:
        try:
            await run_cancellations(lambda: Connection(amqp_url), queue, seed)
        finally:
            async with Connection(amqp_url) as conn:
                await queue(conn.default_channel).delete()

    asyncio.run(asyncio.wait_for(main(), 60))


class _QuickRestarts(RpcServer):
    """Restarts as often as the test needs (the default is one a second)."""

    restart_limit = TokenBucket(100, capacity=10)


def test_an_rpc_server_reconnects_after_its_connection_is_cut(amqp_url: str, name: str) -> None:
    async def main() -> None:
        with FaultProxy("127.0.0.1", broker_port(amqp_url)) as proxy:
            pacing = {"interval_start": 0.02, "interval_step": 0, "interval_max": 0.02}
            server_conn = Connection(proxy.url_for(amqp_url), transport_options=pacing)
            server = _QuickRestarts(server_conn, name, lambda payload: payload * 2)
            refused = asyncio.Event()
            server.on_connection_error = lambda exc, interval: refused.set()  # type: ignore[method-assign]
            await server.declare()
            serving = asyncio.ensure_future(server.run())
            try:
                async with Connection(amqp_url) as conn, RpcClient(conn) as client:
                    assert await client.call(name, 1, timeout=5) == 2
                    proxy.refuse()
                    proxy.cut()
                    await asyncio.wait_for(refused.wait(), 5)  # retried, as the policy says
                    proxy.refuse(False)
                    assert await client.call(name, 2, timeout=5) == 4
                    assert not serving.done()
                    await Queue(name)(conn.default_channel).delete()
            finally:
                await stopped(serving)
                await server_conn.close()

    run(main())
