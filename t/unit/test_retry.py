"""The retry loop (retry_over_time), Connection.ensure/ensure_connection/autoretry, failover."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest.mock import Mock

import pytest

import kombu_like.retry as retry_module
import kombu_like.transport as transport_registry
from kombu_like import Connection, Exchange, Message, Producer, Queue
from kombu_like.exceptions import ChannelError, ConnectionError, OperationalError
from kombu_like.retry import RetryPolicy, fxrange, intervals, retry_over_time
from kombu_like.transport import memory
from kombu_like.transport.memory import Broker

NO_WAIT = {"interval_start": 0, "interval_step": 0, "interval_max": 0}


class Flaky:
    """A callable failing ``failures`` times with ``error`` before returning ``result``."""

    def __init__(self, failures: int, error: type[BaseException] = ConnectionError, result: Any = "done") -> None:
        self.failures = failures
        self.error = error
        self.result = result
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        if len(self.calls) <= self.failures:
            raise self.error(f"failure {len(self.calls)}")
        return self.result

    __name__ = "flaky_operation"


class FlakyTransport(memory.Transport):
    """The memory transport, failing to connect to a host while the test's plan says so."""

    def establish_connection(self) -> Any:
        plan = self.client.transport_options["connect_failures"]
        host = self.client.hostname
        if plan.get(host, 0) > 0:
            plan[host] -= 1
            raise ConnectionError(f"cannot reach {host}")
        return super().establish_connection()


@pytest.fixture
def flaky_scheme(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(transport_registry.TRANSPORT_ALIASES, "flaky", f"{__name__}:FlakyTransport")
    return "flaky"


@pytest.fixture
def flaky_connection(flaky_scheme: str, broker: Broker) -> Iterator[Callable[..., Connection]]:
    made: list[Connection] = []

    def factory(url: str = "flaky://localhost/", failures: dict[str, int] | None = None, **options: Any) -> Connection:
        conn = Connection(
            url, transport_options={"broker": broker, "connect_failures": dict(failures or {}), **options}
        )
        made.append(conn)
        return conn

    yield factory
    for conn in made:
        conn.release()


class TestRetryOverTime:
    def test_succeeds_after_failures(self) -> None:
        fun = Flaky(3)
        errors: list[tuple[BaseException, float]] = []
        result = retry_over_time(fun, (ConnectionError,), errback=lambda e, i: errors.append((e, i)), **NO_WAIT)
        assert result == "done"
        assert len(fun.calls) == 4
        assert [str(e) for e, _ in errors] == ["failure 1", "failure 2", "failure 3"]

    def test_passes_arguments(self) -> None:
        fun = Flaky(1)
        retry_over_time(fun, (ConnectionError,), args=(1, 2), kwargs={"k": "v"}, **NO_WAIT)
        assert fun.calls == [((1, 2), {"k": "v"}), ((1, 2), {"k": "v"})]

    def test_max_retries_exhausted_raises_last_error(self) -> None:
        fun = Flaky(10)
        with pytest.raises(ConnectionError, match="failure 3"):
            retry_over_time(fun, (ConnectionError,), max_retries=2, **NO_WAIT)
        assert len(fun.calls) == 3

    def test_max_retries_zero_tries_once(self) -> None:
        fun = Flaky(1)
        with pytest.raises(ConnectionError):
            retry_over_time(fun, (ConnectionError,), max_retries=0, **NO_WAIT)
        assert len(fun.calls) == 1

    def test_other_errors_are_not_retried(self) -> None:
        fun = Flaky(1, error=ValueError)
        with pytest.raises(ValueError):
            retry_over_time(fun, (ConnectionError,), max_retries=5, **NO_WAIT)
        assert len(fun.calls) == 1

    def test_sleeps_grow_to_the_maximum(self, monkeypatch: pytest.MonkeyPatch) -> None:
        slept: list[float] = []
        monkeypatch.setattr(retry_module.time, "sleep", slept.append)
        retry_over_time(Flaky(5), (ConnectionError,), interval_start=1, interval_step=2, interval_max=4)
        assert slept == [1, 3, 4, 4, 4]

    def test_errback_gets_the_interval(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(retry_module.time, "sleep", lambda seconds: None)
        seen: list[float] = []
        retry_over_time(
            Flaky(2),
            (ConnectionError,),
            errback=lambda e, i: seen.append(i),
            interval_start=0.5,
            interval_step=0.5,
            interval_max=5,
        )
        assert seen == [0.5, 1.0]

    def test_errback_can_choose_the_interval(self, monkeypatch: pytest.MonkeyPatch) -> None:
        slept: list[float] = []
        monkeypatch.setattr(retry_module.time, "sleep", slept.append)
        retry_over_time(Flaky(2), (ConnectionError,), errback=lambda e, i: 0.25, interval_start=10)
        assert slept == [0.25, 0.25]

    def test_timeout_bounds_the_whole_attempt(self) -> None:
        fun = Flaky(10**9)
        started = time.monotonic()
        with pytest.raises(ConnectionError):
            retry_over_time(
                fun, (ConnectionError,), interval_start=0.02, interval_step=0, interval_max=0.02, timeout=0.2
            )
        assert time.monotonic() - started < 5
        assert len(fun.calls) >= 2

    def test_callback_runs_while_sleeping(self) -> None:
        ticks: list[int] = []
        retry_over_time(
            Flaky(1),
            (ConnectionError,),
            callback=lambda: ticks.append(1),
            interval_start=0.01,
            interval_step=0,
            interval_max=0.01,
        )
        assert ticks


class TestPolicyHelpers:
    def test_intervals(self) -> None:
        gen = intervals(1, 2, 6)
        assert [next(gen) for _ in range(5)] == [1, 3, 5, 6, 6]

    def test_fxrange(self) -> None:
        assert list(fxrange(1.0, 3.0, 0.5)) == [1.0, 1.5, 2.0, 2.5, 3.0]
        gen = fxrange(1.0, 2.0, 1.0, repeatlast=True)
        assert [next(gen) for _ in range(4)] == [1.0, 2.0, 2.0, 2.0]

    def test_retry_policy_from_options(self) -> None:
        policy = RetryPolicy.from_options({"max_retries": 7, "interval_start": 1, "unknown": "ignored"})
        assert policy.max_retries == 7
        assert policy.interval_start == 1
        assert policy.interval_max == RetryPolicy().interval_max


class TestEnsure:
    def test_retries_connection_errors_and_revives(self, conn: Connection) -> None:
        fun = Flaky(2, result=42)
        obj = Mock(spec=["revive"])
        errors: list[BaseException] = []
        revived: list[Any] = []
        ensured = conn.ensure(
            obj, fun, errback=lambda e, i: errors.append(e), on_revive=revived.append, max_retries=5, **NO_WAIT
        )
        assert ensured("a", k=1) == 42
        assert fun.calls == [(("a",), {"k": 1})] * 3
        assert len(errors) == 2
        assert obj.revive.call_count == 2
        assert obj.revive.call_args.args[0] is conn.default_channel
        assert len(revived) == 2
        assert revived[-1] is conn.default_channel
        assert conn.connected

    def test_exhausted_raises_operational_error_with_masked_url(self, connect: Callable[..., Connection]) -> None:
        conn = connect("memory://user:s3cret@localhost/")
        fun = Flaky(10**9)
        ensured = conn.ensure(Mock(spec=["revive"]), fun, max_retries=2, **NO_WAIT)
        with pytest.raises(OperationalError) as excinfo:
            ensured()
        message = str(excinfo.value)
        assert "s3cret" not in message
        assert "user:**@localhost" in message
        assert isinstance(excinfo.value.__cause__, ConnectionError)
        assert len(fun.calls) == 3

    def test_other_errors_surface_at_once(self, conn: Connection) -> None:
        fun = Flaky(1, error=KeyError)
        with pytest.raises(KeyError):
            conn.ensure(Mock(spec=["revive"]), fun, max_retries=5, **NO_WAIT)()
        assert len(fun.calls) == 1

    def test_channel_errors_are_not_connection_errors(self, conn: Connection) -> None:
        obj = Mock(spec=["revive"])
        fun = Flaky(1, error=ChannelError)
        with pytest.raises(ChannelError):
            conn.ensure(obj, fun, max_retries=5, **NO_WAIT)()
        obj.revive.assert_not_called()

    def test_a_revive_cut_short_is_retried_and_resumes_consuming(self, conn: Connection) -> None:
        from kombu_like import Consumer

        got: list[Any] = []

        def on_message(body: Any, message: Message) -> None:
            got.append(body)
            message.ack()

        consumer = Consumer(conn, [Queue("revive_cut")], callbacks=[on_message])
        consumer.consume()
        real_declare = consumer.declare
        cuts = [ConnectionError("connection lost while redeclaring")]

        def declare() -> None:
            if cuts:
                raise cuts.pop()
            real_declare()

        consumer.declare = declare  # type: ignore[method-assign]
        lost_once = Flaky(1)

        def drain() -> None:
            lost_once()
            conn.drain_events(timeout=1)

        Producer(conn).publish("after the cuts", routing_key="revive_cut")
        conn.ensure(consumer, drain, max_retries=5, **NO_WAIT)()
        assert got == ["after the cuts"]
        assert consumer.consuming_from("revive_cut")

    def test_py_amqp_errors_belong_to_the_tree_as_in_kombu(self, conn: Connection) -> None:
        # Kombu's ChannelError/ConnectionError are py-amqp's classes; code written for it
        # raises py-amqp's and catches them with the connection's error tuples
        import amqp.exceptions

        with pytest.raises(conn.channel_errors):
            raise amqp.exceptions.NotFound("queue gone")
        with pytest.raises(conn.connection_errors):
            raise amqp.exceptions.ConnectionForced("closed")
        assert not issubclass(OSError, conn.connection_errors)  # memory has no sockets

    def test_extra_retry_errors(self, conn: Connection) -> None:
        fun = Flaky(2, error=LookupError)
        ensured = conn.ensure(Mock(spec=["revive"]), fun, retry_errors=(LookupError,), max_retries=3, **NO_WAIT)
        assert ensured() == "done"
        assert len(fun.calls) == 3

    def test_ensured_function_keeps_its_name(self, conn: Connection) -> None:
        def publish_thing() -> None:
            """Doc."""

        ensured = conn.ensure(Mock(spec=["revive"]), publish_thing)
        assert "publish_thing" in ensured.__name__
        assert ensured.__doc__ == "Doc."

    def test_reconnects_the_connection(self, conn: Connection) -> None:
        first_channel = conn.default_channel
        conn.ensure(Mock(spec=["revive"]), Flaky(1), max_retries=1, **NO_WAIT)()
        assert conn.connected
        assert conn.default_channel is not first_channel
        assert not first_channel.is_open


def fail_next_publish(monkeypatch: pytest.MonkeyPatch, channel: Any) -> list[int]:
    """Make ``channel.basic_publish`` raise a connection error once."""
    calls: list[int] = []
    real = channel.basic_publish

    def broken(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("connection reset by peer")
        return real(*args, **kwargs)

    monkeypatch.setattr(channel, "basic_publish", broken)
    return calls


class TestPublishRetry:
    def test_publish_retry_reconnects(
        self, conn: Connection, monkeypatch: pytest.MonkeyPatch, collect: Callable[..., list[Message]]
    ) -> None:
        queue = Queue("retry_publish")
        queue(conn).declare()
        producer = Producer(conn)
        fail_next_publish(monkeypatch, producer.channel)
        policy = {"max_retries": 2, **NO_WAIT}
        producer.publish("survived", routing_key="retry_publish", retry=True, retry_policy=policy)
        assert [m.payload for m in collect(conn, queue)] == ["survived"]

    def test_publish_retry_with_named_exchange(
        self, conn: Connection, monkeypatch: pytest.MonkeyPatch, collect: Callable[..., list[Message]]
    ) -> None:
        exchange = Exchange("retry_ex")
        queue = Queue("retry_ex_q", exchange, "k")
        queue(conn).declare()
        producer = Producer(conn, exchange=exchange, routing_key="k")
        fail_next_publish(monkeypatch, producer.channel)
        producer.publish("survived", retry=True, retry_policy={"max_retries": 2, **NO_WAIT})
        assert [m.payload for m in collect(conn, queue)] == ["survived"]

    def test_publish_without_retry_raises(self, conn: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
        producer = Producer(conn)
        fail_next_publish(monkeypatch, producer.channel)
        with pytest.raises(ConnectionError):
            producer.publish("lost", routing_key="nowhere")

    def test_publish_retry_gives_up(self, connect: Callable[..., Connection], monkeypatch: pytest.MonkeyPatch) -> None:
        conn = connect("memory://user:s3cret@localhost/")
        producer = Producer(conn)

        def always_broken(*args: Any, **kwargs: Any) -> None:
            raise ConnectionError("down")

        monkeypatch.setattr(memory.Transport.Channel, "basic_publish", always_broken)
        with pytest.raises(OperationalError) as excinfo:
            producer.publish("x", routing_key="q", retry=True, retry_policy={"max_retries": 1, **NO_WAIT})
        assert "s3cret" not in str(excinfo.value)


class TestAutoretry:
    def test_autoretry_passes_a_fresh_channel(self, conn: Connection) -> None:
        channels: list[Any] = []

        def operation(value: int, channel: Any = None) -> int:
            channels.append(channel)
            if len(channels) == 1:
                raise ConnectionError("lost")
            return value * 2

        wrapped = conn.autoretry(operation, max_retries=2, **NO_WAIT)
        result, last_channel = wrapped(21)  # Kombu's (retval, channel)
        assert result == 42
        assert last_channel is channels[1]
        assert channels[0] is not None
        assert channels[1] is conn.default_channel
        assert channels[1] is not channels[0]


class TestEnsureConnection:
    def test_connects_after_failures(self, flaky_connection: Callable[..., Connection]) -> None:
        conn = flaky_connection(failures={"localhost": 2})
        errors: list[BaseException] = []
        assert conn.ensure_connection(errback=lambda e, i: errors.append(e), max_retries=5, **NO_WAIT) is conn
        assert conn.connected
        assert len(errors) == 2

    def test_gives_up_with_masked_url_and_attempts(self, flaky_connection: Callable[..., Connection]) -> None:
        conn = flaky_connection("flaky://user:s3cret@localhost/", failures={"localhost": 10})
        with pytest.raises(OperationalError) as excinfo:
            conn.ensure_connection(max_retries=1, **NO_WAIT)
        message = str(excinfo.value)
        assert "s3cret" not in message
        assert "user:**@localhost" in message
        assert "2 attempts" in message
        assert not conn.connected

    def test_connect_tries_once(self, flaky_connection: Callable[..., Connection]) -> None:
        conn = flaky_connection(failures={"localhost": 1})
        with pytest.raises(OperationalError):
            conn.connect()
        assert conn.connect().connected

    def test_callback_is_called_while_waiting(self, flaky_connection: Callable[..., Connection]) -> None:
        conn = flaky_connection(failures={"localhost": 1})
        ticks: list[int] = []
        conn.ensure_connection(
            callback=lambda: ticks.append(1), max_retries=2, interval_start=0.01, interval_step=0, interval_max=0.01
        )
        assert ticks and conn.connected

    def test_timeout(self, flaky_connection: Callable[..., Connection]) -> None:
        conn = flaky_connection(failures={"localhost": 10**9})
        started = time.monotonic()
        with pytest.raises(OperationalError):
            conn.ensure_connection(timeout=0.2, interval_start=0.02, interval_step=0, interval_max=0.02)
        assert time.monotonic() - started < 5

    def test_default_channel_retries_with_transport_options(self, flaky_connection: Callable[..., Connection]) -> None:
        conn = flaky_connection(failures={"localhost": 2}, max_retries=3, **NO_WAIT)
        assert conn.default_channel is not None
        assert conn.connected

    def test_default_channel_gives_up_after_connect_retries_timeout(
        self, flaky_connection: Callable[..., Connection]
    ) -> None:
        conn = flaky_connection(
            failures={"localhost": 10**9},
            connect_retries_timeout=0.2,
            interval_start=0.02,
            interval_step=0,
            interval_max=0.02,
        )
        started = time.monotonic()
        with pytest.raises(OperationalError):
            conn.default_channel  # noqa: B018
        assert time.monotonic() - started < 5

    def test_failover_to_next_url(self, flaky_connection: Callable[..., Connection]) -> None:
        conn = flaky_connection("flaky://first/;flaky://second/", failures={"first": 10**9})
        conn.ensure_connection(max_retries=3, **NO_WAIT)
        assert conn.connected
        assert conn.hostname == "second"

    def test_failover_wraps_around(self, flaky_connection: Callable[..., Connection]) -> None:
        conn = flaky_connection("flaky://first/;flaky://second/", failures={"first": 1, "second": 1})
        conn.ensure_connection(max_retries=3, **NO_WAIT)
        assert conn.connected
        assert conn.hostname == "first"

    def test_declared_entities_forgotten_after_reconnect(self, conn: Connection) -> None:
        Producer(conn).maybe_declare(Queue("cached"))
        assert conn.declared_entities
        conn.ensure(Mock(spec=["revive"]), Flaky(1), max_retries=1, **NO_WAIT)()
        assert not conn.declared_entities
