"""Errors that can never succeed are not retried, on every broker transport."""

from __future__ import annotations

import time
from typing import Any

import pytest

from kombu_like import Connection, Producer
from kombu_like.exceptions import AccessRefused, IrrecoverableConnectionError, KombuError


def attempt(url: str, **kwargs: Any) -> tuple[BaseException, list[Any], float]:
    """ensure_connection with retries allowed; return the error, errback calls, seconds."""
    calls: list[Any] = []
    conn = Connection(url, **kwargs)
    started = time.monotonic()
    try:
        with pytest.raises(KombuError) as info:
            conn.ensure_connection(
                errback=lambda *args: calls.append(args),
                max_retries=5,
                interval_start=0.5,
                interval_step=0.5,
                interval_max=1,
            )
    finally:
        conn.release()
    return info.value, calls, time.monotonic() - started


@pytest.mark.parametrize(
    ("url", "error", "text"),
    [
        ("amqps://guest:guest@127.0.0.1:5672//", IrrecoverableConnectionError, "WRONG_VERSION_NUMBER"),
        ("amqp://guest:not-the-password@127.0.0.1:5672//", AccessRefused, "ACCESS_REFUSED"),
        ("amqp://guest:guest@127.0.0.1:5672/no-such-vhost", IrrecoverableConnectionError, "no-such-vhost"),
    ],
)
def test_amqp(amqp_url: str, url: str, error: type[BaseException], text: str) -> None:
    exc, calls, elapsed = attempt(url)
    assert isinstance(exc, error)
    assert text in str(exc)
    assert "not-the-password" not in str(exc)
    assert calls == []
    assert elapsed < 2


def test_redis_tls_to_a_plain_port_hints_at_tls(redis_url: str) -> None:
    exc, calls, elapsed = attempt(redis_url.replace("redis://", "rediss://"), connect_timeout=1)
    assert isinstance(exc, IrrecoverableConnectionError)
    assert "TLS may be the cause" in str(exc)
    assert calls == []
    assert elapsed < 4


def test_redis_refused_credentials(redis_url: str) -> None:
    url = redis_url.replace("redis://", "redis://nobody:not-the-password@")
    exc, calls, elapsed = attempt(url)
    assert isinstance(exc, AccessRefused)
    assert "not-the-password" not in str(exc)
    assert calls == []
    assert elapsed < 2


def test_publish_does_not_retry_what_cannot_succeed(amqp_url: str) -> None:
    conn = Connection("amqps://guest:guest@127.0.0.1:5672//")
    started = time.monotonic()
    with pytest.raises(IrrecoverableConnectionError):
        Producer(conn).publish("x", routing_key="nowhere", retry=True, retry_policy={"max_retries": 5})
    assert time.monotonic() - started < 2
    conn.release()


def test_amqp_unknown_vhost_is_not_allowed_as_on_kombu(amqp_url: str) -> None:
    import amqp.exceptions
    import kombu

    url = "amqp://guest:guest@127.0.0.1:5672/no-such-vhost"
    raised = []
    for connection_class in (kombu.Connection, Connection):
        conn = connection_class(url, connect_timeout=3)
        try:
            with pytest.raises(Exception) as info:
                conn.connect()
            raised.append((conn, info.value))
        finally:
            conn.release()
    (theirs_conn, theirs), (ours_conn, ours) = raised
    assert type(theirs) is amqp.exceptions.NotAllowed  # what Kombu-era code catches
    assert isinstance(ours, amqp.exceptions.NotAllowed)
    assert isinstance(ours, IrrecoverableConnectionError)
    assert type(ours).__name__ == type(theirs).__name__
    assert ours.reply_code == theirs.reply_code == 530
    assert ours.method_sig == theirs.method_sig
    assert "no-such-vhost" in str(ours) and str(theirs) in str(ours)
    assert isinstance(ours, ours_conn.connection_errors) == isinstance(theirs, theirs_conn.connection_errors)
