"""Redis Streams on a Redis Cluster without a server: which cluster errors are worth a
reconnect, and where the startup nodes come from."""

from __future__ import annotations

import pytest
from redis import exceptions as rexc

from kombu_like import Connection
from kombu_like.exceptions import (
    AccessRefused,
    ChannelError,
    ConnectionError,
    IrrecoverableConnectionError,
)
from kombu_like.transport.redis_streams.cluster import startup_nodes


def translate(exc: BaseException) -> BaseException:
    conn = Connection("redis+streams://:s3cret@127.0.0.1:7000?cluster=true")
    try:
        return conn.transport.translate_error(exc)
    finally:
        conn.release()


@pytest.mark.parametrize(
    "error",
    [
        rexc.MovedError("3999 127.0.0.1:7001"),
        rexc.AskError("3999 127.0.0.1:7001"),
        rexc.TryAgainError("TRYAGAIN"),
        rexc.ClusterDownError("CLUSTERDOWN The cluster is down"),
        rexc.MasterDownError("MASTERDOWN"),
        rexc.ClusterError("TTL exhausted."),
        rexc.SlotNotCoveredError('Slot "3999" is not covered by the cluster.'),
        rexc.RedisClusterException("Redis Cluster cannot be connected. Please provide at least one reachable node"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_what_a_failover_raises_is_worth_a_reconnect(error: BaseException) -> None:
    translated = translate(error)
    assert type(translated) is ConnectionError
    conn = Connection("redis+streams://")
    assert isinstance(translated, tuple(conn.recoverable_connection_errors))  # ensure() reconnects
    conn.release()


def test_a_server_that_is_no_cluster_node_is_refused_for_good() -> None:
    translated = translate(rexc.RedisClusterException("Cluster mode is not enabled on this node"))
    assert isinstance(translated, IrrecoverableConnectionError)
    assert "cluster option" in str(translated)


def test_refused_credentials_are_access_refused_and_never_shown() -> None:
    error = rexc.RedisClusterException("Redis Cluster cannot be connected: invalid password s3cret")
    error.__cause__ = rexc.AuthenticationError("invalid username-password pair")
    translated = translate(error)
    assert isinstance(translated, AccessRefused)
    assert "s3cret" not in str(translated)


def test_a_cross_slot_command_is_a_channel_error_not_a_reconnect() -> None:
    translated = translate(rexc.ClusterCrossSlotError("CROSSSLOT Keys in request don't hash to the same slot"))
    assert isinstance(translated, ChannelError)


def test_startup_nodes_are_every_url_given_once() -> None:
    urls = ["redis+streams://a:7000", "redis+streams://b", "redis+streams://a:7000"]
    assert startup_nodes(urls, "a", 7000, 6379) == [("a", 7000), ("b", 6379)]
    assert startup_nodes([], None, None, 6379) == [("127.0.0.1", 6379)]
