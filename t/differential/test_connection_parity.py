"""Connecting, failover and retry budgets against Kombu 5.7 on the same brokers."""

from __future__ import annotations

import time
from typing import Any

import kombu
import pytest

import kombu_like
from kombu_like.exceptions import ConnectionClosed, IrrecoverableConnectionError
from t.conftest import free_port

LIBS = [kombu, kombu_like]


def dead(url: str) -> str:
    """``url`` with its port replaced by one nothing listens on."""
    for port in (":5672", ":6379"):
        url = url.replace(port, f":{free_port()}")
    return url


@pytest.fixture(params=["amqp", "redis"])
def broker_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.mark.parametrize("lib", LIBS, ids=lambda lib: lib.__name__)
@pytest.mark.parametrize("form", ["semicolon", "alternates", "list"])
def test_connect_fails_over_to_the_second_url(lib: Any, form: str, broker_url: str) -> None:
    first = dead(broker_url)
    if form == "semicolon":
        conn = lib.Connection(f"{first};{broker_url}")
    elif form == "alternates":
        conn = lib.Connection(first, alternates=[broker_url])
    else:
        conn = lib.Connection([first, broker_url])
    try:
        conn.connect()
        assert conn.connected
        assert conn.port == kombu_like.Connection(broker_url).port
    finally:
        conn.release()


def errback_trace(lib: Any, urls: list[str], max_retries: int) -> tuple[list[Any], str]:
    calls: list[Any] = []
    conn = lib.Connection(";".join(urls))
    with pytest.raises(Exception) as info:  # noqa: PT011 - the type is compared below
        conn.ensure_connection(
            errback=lambda exc, interval: calls.append(round(interval, 3)),
            max_retries=max_retries,
            interval_start=0,
            interval_step=0.01,
            interval_max=0.02,
        )
    conn.release()
    return calls, "OperationalError" if isinstance(info.value, lib.exceptions.OperationalError) else repr(info.value)


@pytest.mark.parametrize("urls", [1, 2, 3])
@pytest.mark.parametrize("max_retries", [0, 1, 2, 5])
def test_ensure_connection_calls_errback_as_kombu(amqp_url: str, urls: int, max_retries: int) -> None:
    down = [dead(amqp_url) for _ in range(urls)]
    assert errback_trace(kombu_like, down, max_retries) == errback_trace(kombu, down, max_retries)


def test_ensure_connection_errback_then_success_as_kombu(amqp_url: str) -> None:
    for lib in LIBS:
        calls: list[float] = []
        conn = lib.Connection(f"{dead(amqp_url)};{dead(amqp_url)};{amqp_url}")
        conn.ensure_connection(
            errback=lambda exc, interval: calls.append(interval),  # noqa: B023
            max_retries=5,
            interval_start=0,
            interval_step=0,
            interval_max=0,
        )
        assert conn.connected
        assert len(calls) == 2, lib
        conn.release()


def timed(fun: Any) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        fun()
    except Exception as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


def test_publish_to_an_unreachable_broker_gives_up_within_kombus_budget(broker_url: str) -> None:
    url = dead(broker_url)
    ours, our_error = timed(
        lambda: kombu_like.Producer(kombu_like.Connection(url, connect_timeout=1)).publish("x", routing_key="q")
    )
    theirs, their_error = timed(
        lambda: kombu.Producer(kombu.Connection(url, connect_timeout=1)).publish("x", routing_key="q")
    )
    assert isinstance(their_error, kombu.exceptions.OperationalError)
    assert isinstance(our_error, kombu_like.exceptions.OperationalError)
    assert "could not connect" in str(our_error) and str(url.split("@")[-1].split("/")[0]) in str(our_error)
    # Kombu: connect_timeout is the whole budget (one sleep of 2 s past it); ours stops at it
    assert ours <= theirs + 0.5


def test_publish_retry_policy_applies_to_connecting(amqp_url: str) -> None:
    url = dead(amqp_url)
    policy = {"max_retries": 1}
    ours, our_error = timed(
        lambda: kombu_like.Producer(kombu_like.Connection(url)).publish(
            "x", routing_key="q", retry=True, retry_policy=policy
        )
    )
    theirs, their_error = timed(
        lambda: kombu.Producer(kombu.Connection(url)).publish("x", routing_key="q", retry=True, retry_policy=policy)
    )
    assert isinstance(their_error, kombu.exceptions.OperationalError)
    assert isinstance(our_error, kombu_like.exceptions.OperationalError)
    assert ours <= theirs + 0.5


def test_heartbeat_none_is_accepted(amqp_url: str) -> None:
    for lib in LIBS:
        conn = lib.Connection(amqp_url, heartbeat=None)
        assert conn.heartbeat is None
        assert conn.info()["heartbeat"] is None
        conn.connect()
        assert conn.connected
        assert conn.get_heartbeat_interval() == 0
        conn.release()


def test_close_releases_the_connection_and_default_channel(broker_url: str) -> None:
    """What Celery beat relies on when it closes: channel and connection both let go."""
    seen = []
    for lib in LIBS:
        conn = lib.Connection(broker_url)
        channel = conn.default_channel
        conn.close()
        seen.append((conn.connected, conn.connection, getattr(channel, "is_open", False)))
        # and the connection can be used again, as beat does on its next tick
        assert conn.default_channel is not None
        assert conn.connected
        conn.release()
    assert seen[0] == seen[1] == (False, None, False)


def test_drain_events_after_close_says_the_connection_is_closed(broker_url: str) -> None:
    conn = kombu_like.Connection(broker_url)
    conn.connect()
    conn.close()
    with pytest.raises(ConnectionClosed, match="closed connection"):
        conn.drain_events(timeout=0.1)
    # not an error that ensure() answers by reconnecting behind the program's back
    with pytest.raises(ConnectionClosed):
        conn.ensure(conn, conn.drain_events, max_retries=3)(timeout=0.1)
    assert not conn.connected


def test_tls_to_a_plain_amqp_port_is_not_retried(amqp_url: str) -> None:
    calls: list[Any] = []
    conn = kombu_like.Connection(amqp_url.replace("amqp://", "amqps://"))
    elapsed, error = timed(lambda: conn.ensure_connection(errback=lambda *a: calls.append(a), max_retries=5))
    assert isinstance(error, IrrecoverableConnectionError)
    assert "5672" in str(error) and "guest:guest" not in str(error)
    assert calls == []
    assert elapsed < 2
    # Kombu retries the same error until connect_timeout is used up (a documented departure)
    calls.clear()
    theirs = kombu.Connection(amqp_url.replace("amqp://", "amqps://"))
    with pytest.raises(kombu.exceptions.OperationalError, match="WRONG_VERSION_NUMBER"):
        theirs.ensure_connection(
            errback=lambda *a: calls.append(a), max_retries=2, interval_start=0, interval_step=0, interval_max=0
        )
    assert len(calls) == 2
