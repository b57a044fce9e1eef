"""Transport options: one dataclass per transport, checked when the connection is made."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kombu_like import Connection
from kombu_like.transport.amqp.options import AMQPOptions
from kombu_like.transport.memory import MemoryOptions
from kombu_like.transport.options import TransportOptions, UnknownTransportOptionWarning, option, options_table
from kombu_like.transport.redis.options import RedisOptions
from kombu_like.transport.sqlite import SqliteOptions
from kombu_like.transport.sqs.client import Settings, SQSOptions

ALL_OPTIONS = [MemoryOptions, SqliteOptions, SQSOptions, RedisOptions, AMQPOptions]


def sqlite_url(tmp_path: Path, query: str = "") -> str:
    return f"sqlite:///{tmp_path / 'q.db'}" + (f"?{query}" if query else "")


def test_misspelt_option_is_warned_about_with_the_closest_name(tmp_path: Path) -> None:
    conn = Connection(sqlite_url(tmp_path), transport_options={"visiblity_timeout": 5})
    with pytest.warns(UnknownTransportOptionWarning, match="'visiblity_timeout'.*did you mean 'visibility_timeout'"):
        conn.connect()
    conn.release()


def test_bad_value_from_the_url_names_the_option(tmp_path: Path) -> None:
    conn = Connection(sqlite_url(tmp_path, "visibility_timeout=abc"))
    with pytest.raises(ValueError, match="'visibility_timeout' must be a number, not 'abc'"):
        conn.connect()
    conn.release()


def test_value_out_of_range_names_the_option(tmp_path: Path) -> None:
    conn = Connection(sqlite_url(tmp_path), transport_options={"synchronous": "sometimes"})
    with pytest.raises(ValueError, match="'synchronous' must be one of OFF, NORMAL, FULL, EXTRA"):
        conn.connect()
    conn.release()


def test_url_strings_are_converted_to_the_fields_types(tmp_path: Path) -> None:
    conn = Connection(sqlite_url(tmp_path, "busy_timeout=2.5&synchronous=full"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conn.connect()
    try:
        options = conn.transport.check_options()  # type: ignore[attr-defined]
        assert isinstance(options, SqliteOptions)
        assert options.busy_timeout == 2.5
        assert options.synchronous == "FULL"
    finally:
        conn.release()


def test_connection_level_options_are_not_unknown() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MemoryOptions.from_transport_options({"max_retries": 3, "interval_start": 0, "max_decompressed_size": None})


def test_redis_options_share_the_checks() -> None:
    assert issubclass(RedisOptions, TransportOptions)
    with pytest.raises(ValueError, match="'visibility_timeout' must be a number, not 'abc'"):
        RedisOptions.from_transport_options({"visibility_timeout": "abc"})
    with pytest.warns(UnknownTransportOptionWarning, match="did you mean 'fanout_patterns'"):
        RedisOptions.from_transport_options({"fanout_pattern": True})
    assert RedisOptions.from_transport_options({"priority_steps": "0,5,9"}).priority_steps == (0, 5, 9)


def test_sqs_options_are_checked_when_settings_are_read() -> None:
    with pytest.warns(UnknownTransportOptionWarning, match="did you mean 'wait_time_seconds'"):
        Settings.from_options({"wait_time_second": 1}, None, None)
    with pytest.raises(ValueError, match="'queue_tags' must be a mapping"):
        Settings.from_options({"queue_tags": 3}, None, None)


@dataclass
class Typed(TransportOptions):
    transport_name: ClassVar[str] = "typed"

    count: int = option(1, "a count")
    ratio: float = option(0.5, "a ratio")
    flag: bool = option(False, "a flag")
    name: str | None = option(None, "a name")


@given(value=st.one_of(st.text(max_size=8), st.floats(allow_nan=False), st.integers(), st.booleans(), st.none()))
def test_a_value_is_converted_or_refused_naming_the_option(value: Any) -> None:
    for key in ("count", "ratio", "flag", "name"):
        try:
            made = Typed.from_transport_options({key: value})
        except ValueError as exc:
            assert f"typed transport option {key!r} must be" in str(exc)
        else:
            assert isinstance(getattr(made, key), {"count": int, "ratio": float, "flag": bool, "name": str}[key]) or (
                key == "name" and value is None
            )


@pytest.mark.parametrize("cls", ALL_OPTIONS, ids=lambda c: c.__name__)
def test_every_option_has_a_row_in_the_table(cls: type[TransportOptions]) -> None:
    table = "\n".join(options_table(cls))
    for key in cls.keys():
        assert f"``{key}``" in table


@pytest.mark.parametrize(
    ("page", "cls"),
    [
        ("sqlite", SqliteOptions),
        ("sqs", SQSOptions),
        ("memory", MemoryOptions),
        ("amqp", AMQPOptions),
        ("redis", RedisOptions),
    ],
)
def test_transport_pages_show_the_generated_table(page: str, cls: type[TransportOptions]) -> None:
    text = (Path(__file__).parents[2] / "docs" / "transports" / f"{page}.rst").read_text()
    assert re.search(rf"^\.\. transport-options:: {re.escape(cls.__module__)}:{cls.__name__}$", text, re.M)


def test_every_redis_option_is_described() -> None:
    undescribed = [key for key, field in RedisOptions.keys().items() if not field.metadata.get("doc")]
    assert undescribed == []


def test_amqp_options_name_a_misspelt_or_bad_option() -> None:
    with pytest.warns(UnknownTransportOptionWarning, match="'confirm_pubish'.*did you mean 'confirm_publish'"):
        Connection("amqp://", transport_options={"confirm_pubish": True}).create_transport()
    with pytest.raises(ValueError, match="'rpc_timeout' must be a number or None, not 'soon'"):
        Connection("amqp://?rpc_timeout=soon").create_transport()


#: a Celery ``broker_transport_options`` written for each broker, as Kombu's docs and
#: Celery's give them
CELERY_CONFIGS = {
    "redis": {
        "visibility_timeout": 43200,
        "fanout_prefix": True,
        "fanout_patterns": True,
        "global_keyprefix": "app:",
        "sep": ":",
        "queue_order_strategy": "priority",
        "priority_steps": list(range(10)),
        "polling_interval": 1,
        "socket_timeout": 5,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 25,
        "retry_on_timeout": True,
        "max_connections": 20,
        "master_name": "mymaster",
        "sentinel_kwargs": {"password": "x"},
        "max_retries": 3,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
    },
    "sqs": {
        "region": "eu-west-1",
        "predefined_queues": {},
        "wait_time_seconds": 10,
        "sts_role_arn": "arn:aws:iam::1:role/r",
        "visibility_timeout": 3600,
        "polling_interval": 1,
        "queue_name_prefix": "prod-",
    },
    "amqp": {"confirm_publish": True, "client_properties": {"connection_name": "w"}, "max_retries": 3},
}


@pytest.mark.parametrize(
    ("cls", "config"),
    [
        (MemoryOptions, "redis"),
        (MemoryOptions, "sqs"),
        (MemoryOptions, "amqp"),
        (SqliteOptions, "redis"),
        (SqliteOptions, "sqs"),
        (SqliteOptions, "amqp"),
        (AMQPOptions, "redis"),
        (AMQPOptions, "sqs"),
        (RedisOptions, "amqp"),
        (RedisOptions, "sqs"),
        (SQSOptions, "redis"),
        (SQSOptions, "amqp"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_another_brokers_kombu_options_are_not_unknown(cls: type[TransportOptions], config: str) -> None:
    # Celery passes broker_transport_options to whichever broker the URL names, and Kombu
    # ignores keys meant for another transport: a suite run with -W error must not fail
    options = {k: v for k, v in CELERY_CONFIGS[config].items() if k not in cls.keys()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cls.warn_unknown(options)


def test_production_options_on_a_memory_test_broker_connect_under_warnings_as_errors() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Connection("memory://", transport_options=CELERY_CONFIGS["redis"]) as conn:
            conn.SimpleQueue("t-options-prod").put({"x": 1})


@dataclass
class Counterpart(TransportOptions):
    transport_name: ClassVar[str] = "counterpart"
    kombu_options: ClassVar[frozenset[str] | None] = frozenset({"read_timeout", "visibility_timeout"})

    visibility_timeout: float = option(1.0, "seconds")


def test_an_option_kombus_counterpart_reads_is_warned_about_as_not_supported() -> None:
    with pytest.warns(UnknownTransportOptionWarning, match="'read_timeout' .*Kombu.*not supported"):
        Counterpart.from_transport_options({"read_timeout": 5})
    # a misspelling is still unknown, with the closest name
    with pytest.warns(UnknownTransportOptionWarning, match="did you mean 'visibility_timeout'"):
        Counterpart.from_transport_options({"visiblity_timeout": 5})


@pytest.mark.parametrize(
    ("cls", "key"),
    [
        (SqliteOptions, "polling_interval"),
        (AMQPOptions, "rpc_timeout"),
        (RedisOptions, "socket_timeout"),
        (SQSOptions, "wait_time_seconds"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_nan_is_not_a_number_of_seconds(cls: type[TransportOptions], key: str) -> None:
    # NaN passes every "not negative" check and only fails later, inside a socket timeout
    with pytest.raises(ValueError, match=f"{key!r} must be"):
        if cls is SQSOptions:
            Settings.from_options({key: float("nan")}, None, None)
        else:
            cls.from_transport_options({key: "nan"})


def test_polling_interval_none_means_the_default_as_in_kombu(tmp_path: Path) -> None:
    # Kombu's virtual transports skip polling_interval=None; a shared Celery configuration
    # may carry it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conn = Connection(sqlite_url(tmp_path), transport_options={"polling_interval": None})
        try:
            conn.SimpleQueue("t-polling-none").put({"x": 1})
        finally:
            conn.release()
