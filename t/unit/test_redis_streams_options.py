"""Redis Streams transport: its URL schemes, options and key names (no broker needed)."""

from __future__ import annotations

import pytest

from kombu_like import Connection
from kombu_like.exceptions import VersionMismatch
from kombu_like.transport.redis_streams import (
    SentinelTransport,
    StreamKeys,
    StreamsOptions,
    Transport,
    check_server_version,
)


@pytest.mark.parametrize("scheme", ["redis+streams", "rediss+streams"])
def test_compound_scheme_reaches_the_streams_transport(scheme: str) -> None:
    conn = Connection(f"{scheme}://user:secret@example.org:6380/3?lease=4")
    assert isinstance(conn.transport, Transport)
    assert (conn.hostname, conn.port, conn.virtual_host, conn.userid) == ("example.org", 6380, "3", "user")
    assert conn.transport.options.lease == 4.0
    assert "secret" not in conn.as_uri() and "secret" not in repr(conn)


def test_sentinel_scheme_reaches_the_sentinel_transport() -> None:
    conn = Connection("sentinel+streams://h1:26379;sentinel+streams://h2:26379")
    assert isinstance(conn.transport, SentinelTransport)


def test_other_compound_schemes_are_still_read_kombus_way() -> None:
    conn = Connection("redis+socket:///tmp/redis.sock")
    assert conn.transport_cls == "redis"
    assert conn.uri_prefix == "redis"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"lease": 0}, "lease"),
        ({"max_deliveries": 0}, "max_deliveries"),
        ({"global_keyprefix": "a{b}"}, "global_keyprefix"),
        ({"wait_replicas": -1}, "wait_replicas"),
        ({"lease": "soon"}, "lease"),
        ({"delayed_check_interval": 0}, "delayed_check_interval"),
        ({"reply_spin": -0.001}, "reply_spin"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        StreamsOptions.from_transport_options(options)


def test_options_from_url_strings() -> None:
    options = StreamsOptions.from_transport_options({"lease": "1.5", "max_deliveries": "None", "cluster": "true"})
    assert (options.lease, options.max_deliveries, options.cluster) == (1.5, None, True)
    assert options.lease_ms == 1500 and options.renew_interval == pytest.approx(0.375)
    assert options.lapse_ms == 1125


def test_every_key_of_a_queue_shares_its_hash_tag() -> None:
    keys = StreamKeys("app:")
    names = [keys.stream("q"), keys.stream("q", 3), keys.meta("q"), keys.delayed("q"), keys.dead("q")]
    assert names == ["app:{q}", "app:{q}:p3", "app:{q}:meta", "app:{q}:delayed", "app:{q}:dead"]
    assert keys.streams("q", 2) == ["app:{q}:p2", "app:{q}:p1", "app:{q}"]
    assert all(name.startswith("app:") for name in (keys.exchange("x"), keys.exchanges, keys.queues))


def test_on_a_cluster_every_key_of_any_queue_shares_a_slot_and_no_two_queues_share_keys() -> None:
    from redis.crc import key_slot

    from kombu_like.transport.redis_streams.keys import queue_of_tag

    keys = StreamKeys("app:", cluster=True)
    names = ["q", "a}b", "a{b", "", "}", "}x", "~", "~7d78", "\u00e9}"]
    for name in names:
        every = [*keys.streams(name, 2), keys.meta(name), keys.delayed(name), keys.dead(name)]
        assert len({key_slot(key.encode()) for key in every}) == 1, (name, every)
        assert queue_of_tag(keys.tag(name)) == name
    assert len({keys.stream(name) for name in names}) == len(names)
    assert keys.stream("q") == "app:{q}" and keys.stream("}x") == "app:{~7d78}"
    # one server has no slots: every name is its own tag there, as it always was
    assert StreamKeys("app:").stream("}x") == "app:{}x}"


def test_cluster_url_naming_a_database_is_refused() -> None:
    # a Redis Cluster has database 0 only: said before any node is asked
    conn = Connection("redis+streams://127.0.0.1:1/3?cluster=true")
    with pytest.raises(ValueError, match="database 0 only"):
        conn.transport.create_store()


def test_cluster_with_sentinel_is_refused() -> None:
    conn = Connection("sentinel+streams://127.0.0.1:1?cluster=true&master_name=m")
    with pytest.raises(ValueError, match="exclude each other"):
        conn.transport.create_store()


def test_wait_timeout_must_be_shorter_than_the_socket_timeout() -> None:
    with pytest.raises(ValueError, match="wait_timeout"):
        StreamsOptions.from_transport_options({"wait_replicas": 1, "wait_timeout": 5, "socket_timeout": 5})


@pytest.mark.parametrize(("version", "refused"), [("6.0.16", True), ("6.2.0", False), ("7.0.15", False)])
def test_old_servers_are_refused(version: str, refused: bool) -> None:
    if refused:
        with pytest.raises(VersionMismatch, match="6.2"):
            check_server_version(version)
    else:
        check_server_version(version)
