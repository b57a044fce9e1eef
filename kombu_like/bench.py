"""Throughput, CPU and latency benchmark: ``kombu-like bench URL [--vs kombu]``.

``extra/bench`` and ``python -m kombu_like.bench`` are the same command, with the same options.

Publishes N messages (200-byte JSON dicts) to a fresh queue, consumes them with acks,
then measures publish->receive round trips.  Besides messages per second it records the
CPU seconds the process spent per 10,000 messages in each phase (``time.process_time``: all
of the process's threads -- on memory:// the in-process broker's work too, the same for
both libraries).  With ``--vs kombu`` the same code runs on
Kombu (when installed) against the same URL in the same run, and the ratios are printed.
Both libraries are driven through the API they share, so the comparison is like for like.
On AMQP the publish time ends when the queue holds every message (RabbitMQ routes
publishes asynchronously), so a fast publisher does not leave its backlog to the consume
figure.  With ``--raw`` on an ``amqp://`` URL the plain ``amqp`` client runs the same loops (JSON
bodies, persistent messages, per-message acks), as the floor no library can beat by much.
``--api async`` runs the same loops on the asyncio API, beside the blocking one with
``--vs sync`` and aio-pika with ``--vs aio-pika`` (:mod:`kombu_like.bench_async`).
"""

from __future__ import annotations

import importlib
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

__all__ = ["BenchResult", "main", "run_bench", "run_raw_amqp"]


@dataclass
class BenchResult:
    """What one library achieved on one URL."""

    library: str
    url: str
    messages: int
    publish_per_s: float = 0.0
    consume_per_s: float = 0.0
    batch_publish_per_s: float | None = None
    rtt_p50_ms: float = 0.0
    rtt_p99_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    #: CPU seconds per 10,000 messages: publish, consume (+ ack), batch publish
    publish_cpu_s: float | None = None
    consume_cpu_s: float | None = None
    batch_publish_cpu_s: float | None = None

    def best_of(self, other: BenchResult) -> BenchResult:
        """The better figure of each measure (throughput up, latency down) of two runs."""

        def low(a: float, b: float) -> float:
            return min(a, b) if a and b else a or b

        def least(a: float | None, b: float | None) -> float | None:
            values = [v for v in (a, b) if v is not None]
            return min(values) if values else None

        batch = [v for v in (self.batch_publish_per_s, other.batch_publish_per_s) if v is not None]
        return BenchResult(
            self.library,
            self.url,
            self.messages,
            max(self.publish_per_s, other.publish_per_s),
            max(self.consume_per_s, other.consume_per_s),
            max(batch) if batch else None,
            low(self.rtt_p50_ms, other.rtt_p50_ms),
            low(self.rtt_p99_ms, other.rtt_p99_ms),
            {**other.extra, **self.extra},
            publish_cpu_s=least(self.publish_cpu_s, other.publish_cpu_s),
            consume_cpu_s=least(self.consume_cpu_s, other.consume_cpu_s),
            batch_publish_cpu_s=least(self.batch_publish_cpu_s, other.batch_publish_cpu_s),
        )


def _payload(i: int) -> dict[str, Any]:
    # about 200 bytes once JSON-encoded
    return {"id": i, "name": f"message-{i:08d}", "pad": "x" * 150}


class RequestCounter:
    """Counts the HTTP requests botocore sends (each attempt, retries included).

    The hook is installed among botocore's built-in handlers, so every botocore client
    created while the counter is active counts, whichever library created it.
    """

    def __init__(self) -> None:
        self.total = 0

    def _on_send(self, **kwargs: Any) -> None:
        self.total += 1  # returning None lets the request go out

    def __enter__(self) -> RequestCounter:
        importlib.import_module("botocore.handlers").BUILTIN_HANDLERS.append(("before-send", self._on_send))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        handlers = importlib.import_module("botocore.handlers").BUILTIN_HANDLERS
        if ("before-send", self._on_send) in handlers:
            handlers.remove(("before-send", self._on_send))


def _request_counter(url: str) -> RequestCounter | None:
    """A counter for URLs whose broker bills by request (SQS), when botocore is there."""
    if url.split("://", 1)[0].lower() != "sqs":
        return None
    try:
        importlib.import_module("botocore.handlers")
    except ImportError:
        return None
    return RequestCounter()


def _consume(lib: ModuleType, conn: Any, queue: Any, n: int, prefetch: int) -> float:
    received = 0

    def on_message(body: Any, message: Any) -> None:
        nonlocal received
        received += 1
        message.ack()

    start = time.perf_counter()
    with lib.Consumer(conn, [queue], callbacks=[on_message], prefetch_count=prefetch, accept=["json"]):
        while received < n:
            try:
                conn.drain_events(timeout=10)
            except socket.timeout:
                raise RuntimeError(f"consumed only {received} of {n} messages") from None
    # acks a transport defers (SQS deletes in batches) are part of what consuming costs
    flush_acks = getattr(conn.transport, "flush_acks", None)
    if flush_acks is not None:
        flush_acks(10)
    return time.perf_counter() - start


def run_bench(
    library: str,
    url: str,
    messages: int = 10000,
    roundtrips: int = 1000,
    prefetch: int = 200,
    batch: bool = True,
    transport_options: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    """Run the benchmark with ``library`` (``"kombu_like"`` or ``"kombu"``) on ``url``."""
    lib = importlib.import_module(library)
    say = progress or (lambda text: None)
    result = BenchResult(library, url, messages)
    name = f"bench-{library}-{uuid.uuid4().hex[:8]}"
    counter = _request_counter(url)
    if counter is not None:
        counter.__enter__()
    requests: dict[str, float] = {}

    def count_requests(phase: str, since: int, per: int) -> int:
        if counter is not None:
            requests[phase] = (counter.total - since) / per
            return counter.total
        return 0

    conn = lib.Connection(url, transport_options=transport_options or {})
    try:
        exchange = lib.Exchange(name, type="direct", durable=False)
        queue = lib.Queue(name, exchange, routing_key=name, durable=False, auto_delete=False)
        producer = lib.Producer(conn, exchange=exchange, routing_key=name, serializer="json")
        queue(conn.default_channel).declare()
        payloads = [_payload(i) for i in range(messages)]

        say("publish")
        publish = producer.publish
        mark = count_requests("setup", 0, 1)
        per_10k = 10000 / messages
        start, cpu = time.perf_counter(), time.process_time()
        for body in payloads:
            publish(body)
        result.publish_cpu_s = (time.process_time() - cpu) * per_10k  # before waiting on the broker
        if _routes_asynchronously(url):
            _wait_stored(lambda: queue(conn.default_channel).queue_declare(passive=True)[1], messages)
        result.publish_per_s = messages / (time.perf_counter() - start)
        mark = count_requests("publish", mark, messages)

        say("consume")
        cpu = time.process_time()
        result.consume_per_s = messages / _consume(lib, conn, queue, messages, prefetch)
        result.consume_cpu_s = (time.process_time() - cpu) * per_10k
        mark = count_requests("consume + ack", mark, messages)
        if counter is not None:
            requests["publish + consume + ack"] = requests["publish"] + requests["consume + ack"]

        if batch and hasattr(producer, "batch"):
            say("batch publish")
            start, cpu = time.perf_counter(), time.process_time()
            with producer.batch():
                for body in payloads:
                    publish(body)
            result.batch_publish_per_s = messages / (time.perf_counter() - start)
            result.batch_publish_cpu_s = (time.process_time() - cpu) * per_10k
            mark = count_requests("batch publish", mark, messages)
            _consume(lib, conn, queue, messages, prefetch)
            mark = count_requests("consume + ack (batch)", mark, messages)

        say("round trips")
        samples: list[float] = []
        got: list[Any] = []

        def on_rtt(body: Any, message: Any) -> None:
            got.append(body)
            message.ack()

        with lib.Consumer(conn, [queue], callbacks=[on_rtt], prefetch_count=prefetch, accept=["json"]):
            for i in range(roundtrips):
                got.clear()
                t0 = time.perf_counter()
                publish(payloads[i % messages])
                while not got:
                    conn.drain_events(timeout=10)
                samples.append(time.perf_counter() - t0)
            flush_acks = getattr(conn.transport, "flush_acks", None)
            if flush_acks is not None:
                flush_acks(10)
        count_requests("roundtrip", mark, roundtrips)
        samples.sort()
        result.rtt_p50_ms = statistics.median(samples) * 1000
        result.rtt_p99_ms = samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000
        try:
            queue(conn.default_channel).delete()
        except Exception:  # clean-up only; the numbers are what matters
            pass
    finally:
        conn.release()
        if counter is not None:
            counter.__exit__(None, None, None)
            result.extra["requests_per_message"] = requests
    return result


def _routes_asynchronously(url: str) -> bool:
    # RabbitMQ may still be routing a burst when the publish loop returns; counting that
    # time as publishing keeps the consume figure free of it (and the publish one honest)
    return url.split("://", 1)[0] in ("amqp", "pyamqp", "amqps")


def _wait_stored(count: Callable[[], int], messages: int, timeout: float = 60.0) -> None:
    """Wait until the queue holds ``messages`` messages."""
    deadline = time.monotonic() + timeout
    while count() < messages:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the broker stored fewer than {messages} messages within {timeout}s")
        time.sleep(0.005)


def run_raw_amqp(url: str, messages: int = 10000, roundtrips: int = 1000, prefetch: int = 200) -> BenchResult:
    """The publish, consume and round-trip loops of :func:`run_bench` on the plain ``amqp``
    client: what RabbitMQ and the driver reach with no library on top."""
    import json

    import amqp

    from .utils.url import parse_url

    parts = parse_url(url)
    host = parts["hostname"] or "127.0.0.1"
    conn = amqp.Connection(
        f"{'127.0.0.1' if host == 'localhost' else host}:{parts['port'] or 5672}",
        userid=parts["userid"] or "guest",
        password=parts["password"] or "guest",
        virtual_host=parts["virtual_host"] or "/",
    )
    conn.connect()
    result = BenchResult("amqp (raw)", url, messages)
    name = f"bench-raw-{uuid.uuid4().hex[:8]}"
    try:
        channel = conn.channel()
        channel.exchange_declare(name, "direct", durable=False, auto_delete=False)
        channel.queue_declare(name, durable=False, auto_delete=False)
        channel.queue_bind(name, name, name)
        payloads = [_payload(i) for i in range(messages)]

        def publish(body: Any) -> None:
            message = amqp.Message(
                json.dumps(body).encode(),
                content_type="application/json",
                content_encoding="utf-8",
                application_headers={},
                delivery_mode=2,
                priority=0,
            )
            channel.basic_publish(message, exchange=name, routing_key=name)

        start = time.perf_counter()
        for body in payloads:
            publish(body)
        _wait_stored(lambda: channel.queue_declare(name, passive=True).message_count, messages)
        result.publish_per_s = messages / (time.perf_counter() - start)

        got: list[Any] = []

        def on_message(message: Any) -> None:
            got.append(json.loads(message.body))
            channel.basic_ack(message.delivery_tag)

        channel.basic_qos(0, prefetch, False)
        tag = channel.basic_consume(name, callback=on_message)
        start = time.perf_counter()
        while len(got) < messages:
            conn.drain_events(timeout=10)
        result.consume_per_s = messages / (time.perf_counter() - start)

        samples: list[float] = []
        for i in range(roundtrips):
            got.clear()
            t0 = time.perf_counter()
            publish(payloads[i % messages])
            while not got:
                conn.drain_events(timeout=10)
            samples.append(time.perf_counter() - t0)
        channel.basic_cancel(tag)
        samples.sort()
        result.rtt_p50_ms = statistics.median(samples) * 1000
        result.rtt_p99_ms = samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000
        channel.queue_delete(name)
        channel.exchange_delete(name)
    finally:
        conn.close()
    return result


def format_table(results: list[BenchResult]) -> str:
    """Results side by side, with the first library's ratio against each of the others."""
    rows = [("", *[r.library for r in results])]

    def fmt(v: float | None, unit: str) -> str:
        return "-" if v is None else f"{v:,.0f}{unit}" if unit == "/s" else f"{v:.3f}{unit}"

    metrics = [
        ("publish", "publish_per_s", "/s"),
        ("consume", "consume_per_s", "/s"),
        ("batch publish", "batch_publish_per_s", "/s"),
        ("CPU s/10k publish", "publish_cpu_s", " s"),
        ("CPU s/10k consume", "consume_cpu_s", " s"),
        ("CPU s/10k batch publish", "batch_publish_cpu_s", " s"),
        ("roundtrip p50", "rtt_p50_ms", " ms"),
        ("roundtrip p99", "rtt_p99_ms", " ms"),
    ]
    for label, attr, unit in metrics:
        values = [getattr(r, attr) for r in results]
        row = [label, *[fmt(v, unit) for v in values]]
        for other in values[1:]:
            a = values[0]
            row.append(f"x{(a / other) if unit == '/s' else (other / a):.2f}" if a and other else "-")
        rows.append(tuple(row))
    phases = [p for r in results for p in r.extra.get("requests_per_message", {}) if p != "setup"]
    for phase in dict.fromkeys(phases):
        values = [r.extra.get("requests_per_message", {}).get(phase) for r in results]
        row = [f"requests/msg {phase}", *["-" if v is None else f"{v:.3f}" for v in values]]
        for other in values[1:]:
            a = values[0]
            row.append(f"x{other / a:.2f}" if a and other else "-")
        rows.append(tuple(row))
    if len(results) == 2:
        rows[0] = (*rows[0], "ratio")
    elif len(results) > 2:
        rows[0] = (*rows[0], *[f"vs {r.library}" for r in results[1:]])
    widths = [max(len(str(row[i])) if i < len(row) else 0 for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(cell).rjust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``kombu-like bench ARGV``: one benchmark command, whichever way it is started."""
    from .cli import main as cli_main

    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
