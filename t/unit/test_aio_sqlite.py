"""The asyncio API on sqlite:// beyond the conformance suite's scenarios: the worker
thread per connection (kombu_like.aio.threaded) -- cancelled calls complete there and are
dealt with, no thread is left behind."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from kombu_like import Connection as SyncConnection
from kombu_like import Exchange, Queue
from kombu_like.aio import Connection
from kombu_like.exceptions import OperationalError


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'aio.db'}"


def workers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("kombu_like-sqlite")]


def run(coro: Any) -> Any:
    result = asyncio.run(asyncio.wait_for(coro, 10))
    assert workers() == []  # every connection's thread ended with its close
    return result


def test_ack_reject_requeue_within_the_prefetch_window(url: str) -> None:
    queue = Queue("q-acks")

    async def main() -> None:
        async with Connection(url) as conn:
            assert workers()  # the connection's own thread
            producer = conn.Producer()
            for body in ("a", "b", "c", "d"):
                await producer.publish(body, routing_key="q-acks", declare=[queue])
            seen: list[str] = []
            async with conn.Consumer([queue], prefetch_count=2) as consumer:
                async for message in consumer:
                    seen.append(message.payload)
                    if message.payload == "a":
                        await message.ack()
                    elif message.payload == "b":
                        await message.reject()  # dropped
                    elif message.payload == "c" and not message.delivery_info.get("redelivered"):
                        await message.requeue()
                    else:
                        await message.ack()
                    if len(seen) == 5:
                        break
            assert sorted(seen) == ["a", "b", "c", "c", "d"]
            assert (await queue(conn.default_channel).queue_declare(passive=True))[1] == 0

    run(main())


def test_a_cancelled_get_gives_its_message_back(url: str) -> None:
    queue = Queue("q-get")

    async def main() -> None:
        async with Connection(url) as conn:
            await queue(conn.default_channel).declare()
            await conn.Producer().publish("only", routing_key="q-get")
            # cancelled while the worker fetches: the fetched message goes back
            task = asyncio.ensure_future(queue(conn.default_channel).get())
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # given back by the worker before the calls made once it answered
            await queue(conn.default_channel).queue_declare(passive=True)
            message = await queue(conn.default_channel).get()
            assert message is not None and message.payload == "only"
            await message.ack()
            assert await queue(conn.default_channel).get() is None

    run(main())


def test_publishes_handed_over_are_made_in_order_before_the_close(url: str) -> None:
    queue = Queue("q-pub")

    async def main() -> None:
        async with Connection(url) as conn:
            await queue(conn.default_channel).declare()
            producer = conn.Producer()
            for n in range(50):
                await producer.publish(n, routing_key="q-pub")  # handed to the I/O thread
            # a publisher cancelled after its publish returned: the message is made all the same
            task = asyncio.ensure_future(producer.publish("last", routing_key="q-pub"))
            await asyncio.sleep(0)
            task.cancel()
            await asyncio.wait([task])
        with SyncConnection(url) as sync:
            got = []
            while (message := queue(sync.default_channel).get()) is not None:
                got.append(message.payload)
                message.ack()
            assert got == [*range(50), "last"]

    run(main())


def test_returned_messages_reach_their_handler_on_the_loop_s_thread(url: str) -> None:
    exchange = Exchange("x-nowhere", "direct")
    returned: list[tuple[str, bool]] = []

    def on_return(exc: BaseException, exchange: str, routing_key: str, message: Any) -> None:
        returned.append((routing_key, threading.current_thread() is threading.main_thread()))

    async def main() -> None:
        async with Connection(url) as conn:
            producer = conn.Producer(exchange=exchange, on_return=on_return)
            await producer.publish("lost", routing_key="nobody", mandatory=True, declare=[exchange])
            assert returned == [("nobody", True)]

    run(main())


def test_timeouts_around_waits(url: str) -> None:
    queue = Queue("q-timeouts")

    async def main() -> None:
        async with Connection(url) as conn:
            async with conn.Consumer([queue], callbacks=[lambda body, message: None]):
                with pytest.raises(socket.timeout):
                    await conn.drain_events(timeout=0.01)
                if sys.version_info >= (3, 11):
                    with pytest.raises(TimeoutError):
                        async with asyncio.timeout(0.01):
                            await conn.drain_events()
                # still consuming after the cancelled waits
                await conn.Producer().publish("late", routing_key="q-timeouts")
                await conn.drain_events(timeout=5)

    run(main())


def test_unacked_messages_come_back_when_the_connection_closes(url: str) -> None:
    queue = Queue("q-restore")

    async def main() -> None:
        async with Connection(url) as conn:
            await conn.Producer().publish("once", routing_key="q-restore", declare=[queue])
            async with conn.Consumer([queue]) as consumer:
                async for message in consumer:
                    assert message.payload == "once"
                    break  # not acked
        async with Connection(url) as conn:
            message = await queue(conn.default_channel).get()
            assert message.payload == "once" and message.delivery_info["redelivered"]
            await message.ack()

    run(main())


def test_a_failed_connect_leaves_no_thread(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(OperationalError):
            await Connection(f"sqlite:///{tmp_path / 'missing' / 'x.db'}").connect()

    run(main())
