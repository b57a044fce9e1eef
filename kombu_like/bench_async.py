"""The benchmark's asyncio side: ``kombu-like bench URL --api async [--vs sync] [--vs aio-pika]``.

The loops of :func:`kombu_like.bench.run_bench` -- publish N 200-byte JSON messages to a
fresh queue, consume them with acks at the same prefetch, batch publish, publish->receive
round trips -- awaited on :mod:`kombu_like.aio`, and on aio-pika (``amqp://`` only) as the
asyncio library users compare with.  Each publish is awaited before the next one, as a
loop of ``await producer.publish(...)`` is written; with confirms that is one broker round
trip per publish on every library, which bounds the rate whatever the client costs.
``inflight=N`` (``--inflight N``) awaits N publishes together instead, as asyncio code
publishing with confirms does to keep the broker busy.  Consuming is ``async for message in ...: await message.ack()``
with the body decoded, the same work the blocking benchmark's callback does.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .bench import BenchResult, _payload, _routes_asynchronously, run_bench

__all__ = ["LIBRARIES", "run_aio_pika", "run_async_bench", "run_library"]

#: the libraries the benchmark runs, by the name its table shows -> the module they need
LIBRARIES = {"kombu_like": "kombu_like", "kombu_like.aio": "kombu_like.aio", "kombu": "kombu", "aio-pika": "aio_pika"}

#: seconds a phase may go without a delivery before the benchmark gives up
STALL_TIMEOUT = 10.0


def run_library(
    library: str,
    url: str,
    messages: int = 10000,
    roundtrips: int = 1000,
    prefetch: int = 200,
    batch: bool = True,
    transport_options: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    inflight: int = 1,
) -> BenchResult:
    """One run of ``library`` (a key of :data:`LIBRARIES`) on ``url``.

    ``transport_options={"confirm_publish": True}`` turns publisher confirms on for every
    library (aio-pika: ``channel(publisher_confirms=True)``).  ``inflight`` publishes are
    awaited together on the asyncio libraries (the blocking ones publish one at a time).
    """
    options = dict(transport_options or {})
    if library == "kombu_like.aio":
        return asyncio.run(
            run_async_bench(url, messages, roundtrips, prefetch, batch, options, progress, inflight=inflight)
        )
    if library == "aio-pika":
        confirms = bool(options.get("confirm_publish"))
        return asyncio.run(run_aio_pika(url, messages, roundtrips, prefetch, confirms, progress, inflight=inflight))
    return run_bench(library, url, messages, roundtrips, prefetch, batch, options, progress)


async def _wait_stored(count: Callable[[], Awaitable[int]], messages: int, timeout: float = 60.0) -> None:
    """Wait until the queue holds ``messages`` messages (RabbitMQ routes publishes
    asynchronously: the publish figure includes the routing, as the blocking one does)."""
    deadline = time.monotonic() + timeout
    while await count() < messages:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the broker stored fewer than {messages} messages within {timeout}s")
        await asyncio.sleep(0.005)


async def _publish_all(publish: Callable[[Any], Awaitable[Any]], payloads: list[Any], inflight: int) -> None:
    """Await each publish before the next, or ``inflight`` at a time (``asyncio.gather``:
    with confirms, the broker confirms a window of publishes per round trip)."""
    if inflight <= 1:
        for body in payloads:
            await publish(body)
        return
    gather = asyncio.gather
    for first in range(0, len(payloads), inflight):
        await gather(*[publish(body) for body in payloads[first : first + inflight]])


class _Stall:
    """Fails the phase running in the current task when ``progress`` stops moving for
    :data:`STALL_TIMEOUT` seconds: one timer per phase, not a timeout (a task) per message,
    which would cost more than what is measured."""

    def __init__(self, what: str, n: int) -> None:
        self.what = what
        self.n = n
        self.progress = 0
        self._seen = -1
        self._stalled = False

    def _check(self) -> None:
        if self.progress == self._seen:
            self._stalled = True
            self._task.cancel()
        else:
            self._seen = self.progress
            self._handle = self._loop.call_later(STALL_TIMEOUT, self._check)

    async def __aenter__(self) -> _Stall:
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._handle = self._loop.call_later(STALL_TIMEOUT, self._check)
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._handle.cancel()
        if self._stalled and exc_type is asyncio.CancelledError:
            uncancel = getattr(self._task, "uncancel", None)  # Python 3.11
            if uncancel is not None:
                uncancel()
            raise RuntimeError(f"{self.what} only {self.progress} of {self.n} messages") from None


def _percentiles(result: BenchResult, samples: list[float]) -> None:
    samples.sort()
    result.rtt_p50_ms = statistics.median(samples) * 1000
    result.rtt_p99_ms = samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000


async def run_async_bench(
    url: str,
    messages: int = 10000,
    roundtrips: int = 1000,
    prefetch: int = 200,
    batch: bool = True,
    transport_options: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    inflight: int = 1,
) -> BenchResult:
    """:func:`kombu_like.bench.run_bench`'s loops on :mod:`kombu_like.aio`."""
    from . import Exchange, Queue
    from .aio import Connection

    say = progress or (lambda text: None)
    result = BenchResult("kombu_like.aio", url, messages)
    name = f"bench-aio-{uuid.uuid4().hex[:8]}"
    per_10k = 10000 / messages
    async with Connection(url, transport_options=transport_options or {}) as conn:
        exchange = Exchange(name, type="direct", durable=False)
        queue = Queue(name, exchange, routing_key=name, durable=False, auto_delete=False)
        producer = conn.Producer(exchange=exchange, routing_key=name, serializer="json")
        bound = queue(conn.default_channel)
        await bound.declare()
        payloads = [_payload(i) for i in range(messages)]

        async def stored() -> int:
            return int((await bound.queue_declare(passive=True))[1])

        async def consume(n: int) -> float:
            start = time.perf_counter()
            async with _Stall("consumed", n) as stall:
                async with conn.Consumer([queue], prefetch_count=prefetch, accept=["json"]) as consumer:
                    async for message in consumer:
                        message.payload  # noqa: B018 -- decoded, as the blocking benchmark's callback gets it
                        await message.ack()
                        stall.progress += 1
                        if stall.progress == n:
                            break
            return time.perf_counter() - start

        say("publish")
        publish = producer.publish
        start, cpu = time.perf_counter(), time.process_time()
        await _publish_all(publish, payloads, inflight)
        if not _routes_asynchronously(url):
            # publishes handed to an I/O thread (redis, sqlite, sqs) are all written once a
            # round trip made after them answers: that time and CPU is publishing too
            await stored()
        result.publish_cpu_s = (time.process_time() - cpu) * per_10k
        if _routes_asynchronously(url):
            await _wait_stored(stored, messages)
        result.publish_per_s = messages / (time.perf_counter() - start)

        say("consume")
        cpu = time.process_time()
        result.consume_per_s = messages / await consume(messages)
        result.consume_cpu_s = (time.process_time() - cpu) * per_10k

        if batch:
            say("batch publish")
            start, cpu = time.perf_counter(), time.process_time()
            async with producer.batch():
                for body in payloads:
                    await publish(body)
            result.batch_publish_per_s = messages / (time.perf_counter() - start)
            result.batch_publish_cpu_s = (time.process_time() - cpu) * per_10k
            await consume(messages)

        say("round trips")
        samples: list[float] = []
        async with _Stall("received", roundtrips) as stall:
            async with conn.Consumer([queue], prefetch_count=prefetch, accept=["json"]) as consumer:
                iterator = aiter(consumer)
                for i in range(roundtrips):
                    t0 = time.perf_counter()
                    await publish(payloads[i % messages])
                    message = await anext(iterator)
                    message.payload  # noqa: B018
                    await message.ack()
                    samples.append(time.perf_counter() - t0)
                    stall.progress += 1
        _percentiles(result, samples)
        try:
            await bound.delete()
        except Exception:  # clean-up only; the numbers are what matters
            pass
    return result


async def run_aio_pika(
    url: str,
    messages: int = 10000,
    roundtrips: int = 1000,
    prefetch: int = 200,
    confirms: bool = False,
    progress: Callable[[str], None] | None = None,
    inflight: int = 1,
) -> BenchResult:
    """The same loops on aio-pika (``amqp://`` URLs): the same JSON bodies and properties
    (persistent, content type and encoding), publisher confirms only with ``confirms``."""
    aio_pika = importlib.import_module("aio_pika")
    from .utils.url import parse_url

    say = progress or (lambda text: None)
    parts = parse_url(url)
    host = parts["hostname"] or "127.0.0.1"
    connection = await aio_pika.connect(
        host="127.0.0.1" if host == "localhost" else host,
        port=parts["port"] or 5672,
        login=parts["userid"] or "guest",
        password=parts["password"] or "guest",
        virtualhost=parts["virtual_host"] or "/",
    )
    result = BenchResult("aio-pika", url, messages)
    name = f"bench-aio-pika-{uuid.uuid4().hex[:8]}"
    per_10k = 10000 / messages
    try:
        channel = await connection.channel(publisher_confirms=confirms)
        await channel.set_qos(prefetch_count=prefetch)
        exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.DIRECT, durable=False)
        queue = await channel.declare_queue(name, durable=False, auto_delete=False)
        await queue.bind(exchange, name)
        payloads = [_payload(i) for i in range(messages)]
        persistent = aio_pika.DeliveryMode.PERSISTENT
        message_class = aio_pika.Message

        async def publish(body: Any) -> None:
            message = message_class(
                json.dumps(body).encode(),
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=persistent,
                priority=0,
            )
            await exchange.publish(message, routing_key=name)

        async def stored() -> int:
            declared = await channel.declare_queue(name, passive=True)
            return int(declared.declaration_result.message_count or 0)

        say("publish")
        start, cpu = time.perf_counter(), time.process_time()
        await _publish_all(publish, payloads, inflight)
        result.publish_cpu_s = (time.process_time() - cpu) * per_10k
        await _wait_stored(stored, messages)
        result.publish_per_s = messages / (time.perf_counter() - start)

        say("consume")
        start, cpu = time.perf_counter(), time.process_time()
        async with _Stall("consumed", messages) as stall:
            async with queue.iterator() as iterator:
                async for message in iterator:
                    json.loads(message.body)
                    await message.ack()
                    stall.progress += 1
                    if stall.progress == messages:
                        break
        result.consume_per_s = messages / (time.perf_counter() - start)
        result.consume_cpu_s = (time.process_time() - cpu) * per_10k

        say("round trips")
        samples: list[float] = []
        async with _Stall("received", roundtrips) as stall:
            async with queue.iterator() as iterator:
                for i in range(roundtrips):
                    t0 = time.perf_counter()
                    await publish(payloads[i % messages])
                    message = await anext(iterator)
                    json.loads(message.body)
                    await message.ack()
                    samples.append(time.perf_counter() - t0)
                    stall.progress += 1
        _percentiles(result, samples)
        await queue.delete(if_unused=False, if_empty=False)
        await exchange.delete()
    finally:
        await connection.close()
    return result
