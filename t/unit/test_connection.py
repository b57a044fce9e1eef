"""Connection: URLs, masking, lifecycle, channels, drain_events, factories, failover."""

from __future__ import annotations

import pickle
import socket
from collections.abc import Callable
from typing import Any

import pytest

from kombu_like import BrokerConnection, Connection, Consumer, Exchange, Message, Producer, Queue
from kombu_like.simple import SimpleBuffer, SimpleQueue
from kombu_like.transport import memory
from kombu_like.transport.base import Transport


class TestURLParsing:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("amqp://user:pass@host:5672/%2F", ("amqp", "host", 5672, "user", "pass", "/")),
            ("amqp://user:pass@host:5672//", ("amqp", "host", 5672, "user", "pass", "/")),
            ("amqp://user:pass@host:5672/vh", ("amqp", "host", 5672, "user", "pass", "vh")),
            ("amqp://user:pass@host:5672/a%2Fb", ("amqp", "host", 5672, "user", "pass", "a/b")),
            ("amqp://user:pass@host:5672", ("amqp", "host", 5672, "user", "pass", "/")),
            ("amqp://u:p%40ss%3Aw@host:5672//", ("amqp", "host", 5672, "u", "p@ss:w", "/")),
            ("pyamqp://guest:guest@localhost:5672//", ("pyamqp", "localhost", 5672, "guest", "guest", "/")),
            ("amqps://u:p@broker.example:5671/prod", ("amqps", "broker.example", 5671, "u", "p", "prod")),
            ("redis://:secret@localhost:6379/0", ("redis", "localhost", 6379, None, "secret", "0")),
            ("redis://localhost:6379/2", ("redis", "localhost", 6379, None, None, "2")),
            ("rediss://user:pw@cache:6380/1", ("rediss", "cache", 6380, "user", "pw", "1")),
            # as in Kombu: no host in the URL leaves hostname None (the transport's
            # default applies when connecting and in info()/as_uri())
            ("sqs://AKIA:se%2Fcret@", ("sqs", None, None, "AKIA", "se/cret", "/")),
            ("sqs://", ("sqs", None, None, None, None, "/")),
            ("memory://", ("memory", None, None, None, None, "/")),
        ],
    )
    def test_url_components(self, url: str, expected: tuple[Any, ...]) -> None:
        conn = Connection(url)
        assert (conn.transport_cls, conn.hostname, conn.port, conn.userid, conn.password, conn.virtual_host) == expected

    def test_keyword_form(self) -> None:
        conn = Connection(hostname="h", userid="u", password="p", virtual_host="v", port=1234, transport="redis")
        assert (conn.transport_cls, conn.hostname, conn.port) == ("redis", "h", 1234)
        assert (conn.userid, conn.password) == ("u", "p")
        assert conn.virtual_host == "v"
        assert conn.as_uri() == "redis://u:**@h:1234/v"

    def test_keyword_form_defaults_to_amqp(self) -> None:
        conn = Connection(hostname="rabbit", port=5672)
        assert conn.transport_cls == "amqp"
        assert conn.virtual_host == "/"

    def test_url_values_win_over_missing_keywords(self) -> None:
        conn = Connection("amqp://h:5672//", userid="kw_user", password="kw_pass")
        assert (conn.userid, conn.password) == ("kw_user", "kw_pass")

    def test_query_options_become_transport_options(self) -> None:
        conn = Connection("redis://localhost:6379/0?visibility_timeout=10&prefix=app&ratio=1.5&flag=true")
        assert conn.transport_options == {"visibility_timeout": 10, "prefix": "app", "ratio": 1.5, "flag": True}

    def test_explicit_transport_options_win_over_query(self) -> None:
        conn = Connection("redis://localhost:6379/0?visibility_timeout=10", transport_options={"visibility_timeout": 3})
        assert conn.transport_options["visibility_timeout"] == 3

    def test_ssl_query_options(self) -> None:
        import ssl

        conn = Connection("rediss://localhost:6380/0?ssl_cert_reqs=required")
        assert conn.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}

    def test_ssl_keyword(self) -> None:
        assert Connection("amqp://guest:guest@localhost:5672//", ssl=True).ssl is True

    def test_transport_options_are_copied(self) -> None:
        options = {"a": 1}
        conn = Connection("memory://", transport_options=options)
        conn.transport_options["b"] = 2
        assert options == {"a": 1}

    def test_broker_connection_alias(self) -> None:
        assert BrokerConnection is Connection


class TestURIAndMasking:
    def test_as_uri_masks_password(self) -> None:
        conn = Connection("amqp://user:s3cret@host:5672//")
        assert conn.as_uri() == "amqp://user:**@host:5672//"

    def test_as_uri_include_password(self) -> None:
        conn = Connection("amqp://user:s3cret@host:5672//")
        assert conn.as_uri(include_password=True) == "amqp://user:s3cret@host:5672//"

    def test_as_uri_custom_mask(self) -> None:
        assert Connection("amqp://u:p@h:5672//").as_uri(mask="XX") == "amqp://u:XX@h:5672//"

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("amqp://u:p@h//", "amqp://u:**@h:5672//"),
            ("amqps://u:p@h//", "amqps://u:**@h:5671//"),
            ("redis://:p@h/0", "redis://:**@h:6379/0"),
        ],
    )
    def test_as_uri_adds_default_port(self, url: str, expected: str) -> None:
        assert Connection(url).as_uri() == expected

    def test_as_uri_virtual_host(self) -> None:
        assert Connection("amqp://u:p@h:5672/prod").as_uri() == "amqp://u:**@h:5672/prod"

    def test_as_uri_redis_password_only(self) -> None:
        assert Connection("redis://:secret@localhost:6379/0").as_uri() == "redis://:**@localhost:6379/0"

    def test_as_uri_sqs(self) -> None:
        assert Connection("sqs://AKIA:secret@").as_uri() == "sqs://AKIA:**@localhost//"

    def test_pyamqp_prints_as_amqp(self) -> None:
        # Kombu prints the pyamqp alias with its canonical scheme
        assert Connection("pyamqp://u:p@h:5672//").as_uri() == "amqp://u:**@h:5672//"

    def test_password_with_special_characters_round_trips(self) -> None:
        conn = Connection("amqp://u:p%40ss%2Fw@h:5672//")
        assert conn.password == "p@ss/w"
        assert Connection(conn.as_uri(include_password=True)).password == "p@ss/w"

    @pytest.mark.parametrize(
        "url",
        [
            "amqp://user:topsecret@host:5672//",
            "redis://:topsecret@localhost:6379/0",
            "sqs://AKIA:topsecret@",
            "memory://user:topsecret@localhost/",
        ],
    )
    def test_repr_never_contains_password(self, url: str) -> None:
        conn = Connection(url)
        assert "topsecret" not in repr(conn)
        assert "topsecret" not in str(conn)
        assert repr(conn).startswith("<Connection: ")

    def test_repr_of_failover_connection_masks(self) -> None:
        conn = Connection("amqp://u:topsecret@a:5672//;amqp://u:topsecret@b:5672//")
        assert "topsecret" not in repr(conn)

    def test_info(self) -> None:
        info = Connection("amqp://user:pw@host:5673/vh", heartbeat=10).info()
        assert info["hostname"] == "host"
        assert info["userid"] == "user"
        assert info["password"] == "pw"
        assert info["virtual_host"] == "vh"
        assert info["port"] == 5673
        assert info["transport"] == "amqp"
        assert info["heartbeat"] == 10
        assert info["transport_options"] == {}
        for key in ("insist", "ssl", "connect_timeout", "login_method", "uri_prefix", "failover_strategy"):
            assert key in info
        assert info["alternates"] == []

    def test_host(self) -> None:
        assert Connection("amqp://u:p@h:5673//").host == "h:5673"


class TestClone:
    def test_clone_is_new_and_unconnected(self, conn: Connection) -> None:
        conn.connect()
        clone = conn.clone()
        assert clone is not conn
        assert not clone.connected
        assert clone.as_uri(include_password=True) == conn.as_uri(include_password=True)
        assert clone.transport_options["broker"] is conn.transport_options["broker"]
        assert clone.transport_options is not conn.transport_options

    def test_clone_keeps_settings(self) -> None:
        conn = Connection("amqp://u:p@h:5672/vh", heartbeat=5, connect_timeout=3, transport_options={"a": 1})
        clone = conn.clone()
        assert clone.as_uri(include_password=True) == "amqp://u:p@h:5672/vh"
        assert clone.heartbeat == 5
        assert clone.connect_timeout == 3
        assert clone.transport_options == {"a": 1}

    @pytest.mark.parametrize(
        ("override", "expected"),
        [
            ({"virtual_host": "other"}, "amqp://u:p@h:5672/other"),
            ({"hostname": "elsewhere"}, "amqp://u:p@elsewhere:5672//"),
            ({"password": "new"}, "amqp://u:new@h:5672//"),
            ({"port": 5673}, "amqp://u:p@h:5673//"),
        ],
    )
    def test_clone_overrides(self, override: dict[str, Any], expected: str) -> None:
        clone = Connection("amqp://u:p@h:5672//").clone(**override)
        assert clone.as_uri(include_password=True) == expected

    def test_clone_keeps_failover_urls(self) -> None:
        assert Connection("memory://a;memory://b").clone().alt == ["memory://a", "memory://b"]

    def test_pickle_round_trip(self) -> None:
        conn = Connection("amqp://u:p@h:5672/vh", transport_options={"x": 1})
        again = pickle.loads(pickle.dumps(conn))
        assert again.as_uri(include_password=True) == "amqp://u:p@h:5672/vh"
        assert again.transport_options == {"x": 1}


class TestLifecycle:
    def test_not_connected_until_used(self, conn: Connection) -> None:
        assert not conn.connected

    def test_connect(self, conn: Connection) -> None:
        assert conn.connect() is conn
        assert conn.connected

    def test_ensure_connection_returns_self(self, conn: Connection) -> None:
        assert conn.ensure_connection(max_retries=1) is conn
        assert conn.connected

    def test_release_disconnects(self, conn: Connection) -> None:
        conn.connect()
        conn.release()
        assert not conn.connected

    def test_close_is_release(self, conn: Connection) -> None:
        conn.connect()
        conn.close()
        assert not conn.connected

    def test_context_manager_releases(self, connect: Callable[..., Connection]) -> None:
        with connect() as conn:
            conn.connect()
            assert conn.connected
        assert not conn.connected

    def test_context_manager_releases_on_error(self, connect: Callable[..., Connection]) -> None:
        conn = connect()
        with pytest.raises(RuntimeError), conn:
            conn.connect()
            raise RuntimeError("boom")
        assert not conn.connected

    def test_connection_property_connects(self, conn: Connection) -> None:
        assert conn.connection is not None
        assert conn.connected

    def test_reconnects_after_release(self, conn: Connection) -> None:
        first = conn.default_channel
        conn.release()
        second = conn.default_channel
        assert conn.connected
        assert second is not first

    def test_transport(self, conn: Connection) -> None:
        assert isinstance(conn.transport, memory.Transport)
        assert isinstance(conn.transport, Transport)
        assert conn.get_transport_cls() is memory.Transport
        assert conn.transport is conn.transport

    def test_error_tuples(self, conn: Connection) -> None:
        from kombu_like.exceptions import ChannelError, ConnectionError

        assert ConnectionError in conn.connection_errors
        assert ChannelError in conn.channel_errors
        assert ConnectionError in conn.recoverable_connection_errors

    def test_supports_exchange_type(self, conn: Connection) -> None:
        for exchange_type in ("direct", "topic", "fanout", "headers"):
            assert conn.supports_exchange_type(exchange_type)
        assert not conn.supports_exchange_type("x-consistent-hash")

    def test_qos_semantics_matches_spec_is_a_property(self, conn: Connection) -> None:
        # Celery reads it uncalled (``not conn.qos_semantics_matches_spec``), as Kombu's is
        assert conn.qos_semantics_matches_spec is True


class TestChannels:
    def test_channel_returns_new_channels(self, conn: Connection) -> None:
        first, second = conn.channel(), conn.channel()
        assert first is not second
        assert first.channel_id != second.channel_id

    def test_default_channel_is_kept(self, conn: Connection) -> None:
        assert conn.default_channel is conn.default_channel

    def test_default_channel_replaced_when_closed(self, conn: Connection) -> None:
        first = conn.default_channel
        first.close()
        assert conn.default_channel is not first

    def test_channel_knows_its_connection(self, conn: Connection) -> None:
        assert conn.channel().connection.client is conn


class TestDrainEvents:
    def test_timeout_without_consumers(self, conn: Connection) -> None:
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=0.05)

    def test_timeout_is_builtin_timeout_error(self, conn: Connection) -> None:
        queue = Queue("drain_empty")
        with Consumer(conn, [queue], callbacks=[lambda body, message: None]):
            with pytest.raises(TimeoutError):
                conn.drain_events(timeout=0.05)
        assert socket.timeout is TimeoutError

    def test_delivers_to_consumer(self, conn: Connection) -> None:
        queue = Queue("drain_one")
        got: list[Any] = []
        with Consumer(conn, [queue], callbacks=[lambda body, message: got.append(body)]):
            conn.Producer().publish("hello", routing_key="drain_one")
            conn.drain_events(timeout=5)
        assert got == ["hello"]

    def test_wakes_when_consumer_added_on_other_channel(self, conn: Connection) -> None:
        queue = Queue("drain_multi")
        got: list[Any] = []
        channel = conn.channel()
        with Consumer(channel, [queue], callbacks=[lambda body, message: got.append(body)]):
            conn.Producer().publish("via channel", routing_key="drain_multi")
            conn.drain_events(timeout=5)
        assert got == ["via channel"]


class TestFactories:
    def test_producer(self, conn: Connection, collect: Callable[..., list[Message]]) -> None:
        producer = conn.Producer(exchange=Exchange("fac_ex"), routing_key="rk")
        assert isinstance(producer, Producer)
        assert producer.connection is conn
        queue = Queue("fac_q", Exchange("fac_ex"), "rk")
        queue(conn).declare()
        producer.publish({"via": "factory"})
        assert [m.payload for m in collect(conn, queue)] == [{"via": "factory"}]

    def test_producer_on_channel(self, conn: Connection) -> None:
        channel = conn.channel()
        assert conn.Producer(channel).channel is channel

    def test_consumer(self, conn: Connection) -> None:
        got: list[Any] = []
        queue = Queue("fac_consumer")
        consumer = conn.Consumer([queue], callbacks=[lambda body, message: (got.append(body), message.ack())])
        assert isinstance(consumer, Consumer)
        with consumer:
            conn.Producer().publish(5, routing_key="fac_consumer")
            conn.drain_events(timeout=5)
        assert got == [5]

    def test_simple_queue(self, conn: Connection) -> None:
        with conn.SimpleQueue("fac_simple") as queue:
            assert isinstance(queue, SimpleQueue)
            queue.put({"x": 1})
            message = queue.get(timeout=5)
            assert message.payload == {"x": 1}
            message.ack()

    def test_simple_buffer(self, conn: Connection) -> None:
        with conn.SimpleBuffer("fac_buffer") as buffer:
            assert isinstance(buffer, SimpleBuffer)
            buffer.put("y")
            assert buffer.get(timeout=5).payload == "y"


class TestFailoverURLs:
    def test_semicolon_list(self) -> None:
        conn = Connection("memory://a;memory://b")
        assert conn.alt == ["memory://a", "memory://b"]
        assert conn.hostname == "a"

    def test_list_of_urls(self) -> None:
        conn = Connection(["amqp://u:p@a:5672//", "amqp://u:p@b:5672//"])
        assert conn.alt == ["amqp://u:p@a:5672//", "amqp://u:p@b:5672//"]
        assert conn.hostname == "a"

    def test_alternates_keyword(self) -> None:
        assert Connection("amqp://a:5672//", alternates=["amqp://b:5672//"]).alt == ["amqp://b:5672//"]

    def test_single_url_has_no_alternates(self) -> None:
        assert Connection("memory://").alt == []

    def test_switch_next_round_robin(self) -> None:
        conn = Connection("memory://a;memory://b;memory://c")
        hosts = []
        for _ in range(4):
            conn.maybe_switch_next()
            hosts.append(conn.hostname)
        assert hosts == ["b", "c", "a", "b"]

    def test_shuffle_strategy_changes_host(self) -> None:
        conn = Connection("memory://a;memory://b", failover_strategy="shuffle")
        seen = set()
        for _ in range(4):
            conn.maybe_switch_next()
            seen.add(conn.hostname)
        assert seen <= {"a", "b"} and seen

    def test_custom_strategy(self) -> None:
        def always_last(urls: Any) -> Any:
            while True:
                yield urls[-1]

        conn = Connection("memory://a;memory://b;memory://c", failover_strategy=always_last)
        conn.maybe_switch_next()
        assert conn.hostname == "c"

    def test_completes_cycle(self) -> None:
        conn = Connection("memory://a;memory://b")
        assert not conn.completes_cycle(0)
        assert conn.completes_cycle(1)
        assert Connection("memory://").completes_cycle(0)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_retries", "three"),
        ("interval_start", -1),
        ("interval_step", "soon"),
        ("interval_max", True),
        ("connect_retries_timeout", "never"),
    ],
)
def test_a_bad_retry_setting_is_refused_naming_it(key: str, value: Any) -> None:
    # refused before connecting, not a TypeError from inside the retry loop once the broker fails
    conn = Connection("memory://", transport_options={key: value})
    with pytest.raises(ValueError, match=f"transport option {key!r} must be a number"):
        _ = conn.default_channel
    conn.release()


def test_retry_settings_given_as_strings_are_numbers() -> None:
    # as they come from an ini or environment-based configuration
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    conn = Connection(
        f"amqp://guest:guest@127.0.0.1:{port}//",
        transport_options={"max_retries": "1", "interval_start": "0", "interval_step": "0", "interval_max": "0.1"},
    )
    from kombu_like.exceptions import OperationalError

    with pytest.raises(OperationalError, match="after 2 attempts"):
        _ = conn.default_channel
    conn.release()
