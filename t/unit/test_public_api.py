"""The top-level public API: sorted ``__all__``, every name present, Kombu's names resolve."""

from __future__ import annotations

import importlib

import pytest

import kombu_like


def test_all_is_sorted() -> None:
    assert list(kombu_like.__all__) == sorted(kombu_like.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(set(kombu_like.__all__)) == len(kombu_like.__all__)


@pytest.mark.parametrize("name", sorted(kombu_like.__all__))
def test_every_name_in_all_exists(name: str) -> None:
    assert getattr(kombu_like, name) is not None


def test_kombu_names_resolve() -> None:
    import kombu

    missing = [name for name in kombu.__all__ if not hasattr(kombu_like, name)]
    assert missing == [], f"Kombu 5 public names missing from kombu_like: {missing}"


@pytest.mark.parametrize(
    ("name", "module", "attr"),
    [
        ("Connection", "kombu_like.connection", "Connection"),
        ("BrokerConnection", "kombu_like.connection", "Connection"),
        ("Exchange", "kombu_like.entity", "Exchange"),
        ("Queue", "kombu_like.entity", "Queue"),
        ("binding", "kombu_like.entity", "binding"),
        ("Message", "kombu_like.message", "Message"),
        ("Producer", "kombu_like.messaging", "Producer"),
        ("Consumer", "kombu_like.messaging", "Consumer"),
        ("parse_url", "kombu_like.utils.url", "parse_url"),
        ("eventloop", "kombu_like.common", "eventloop"),
        ("uuid", "kombu_like.common", "uuid"),
    ],
)
def test_names_are_the_module_objects(name: str, module: str, attr: str) -> None:
    assert getattr(kombu_like, name) is getattr(importlib.import_module(module), attr)


def test_global_pools() -> None:
    from kombu_like import connections, producers

    assert connections is not None and producers is not None


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        kombu_like.no_such_name  # noqa: B018


def test_version() -> None:
    assert kombu_like.__version__.startswith("5.")
    assert tuple(kombu_like.VERSION[:2]) == (5, 7)


def test_serializer_switches() -> None:
    from kombu_like import serialization

    assert kombu_like.enable_insecure_serializers is serialization.enable_insecure_serializers
    assert kombu_like.disable_insecure_serializers is serialization.disable_insecure_serializers


@pytest.mark.parametrize(
    "module",
    [
        "kombu_like.exceptions",
        "kombu_like.connection",
        "kombu_like.entity",
        "kombu_like.messaging",
        "kombu_like.message",
        "kombu_like.simple",
        "kombu_like.common",
        "kombu_like.retry",
    ],
)
def test_module_all_names_exist(module: str) -> None:
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.__all__ names missing {name!r}"


def test_kombu_exception_names_resolve() -> None:
    import kombu.exceptions

    from kombu_like import exceptions

    missing = [name for name in kombu.exceptions.__all__ if not hasattr(exceptions, name)]
    assert missing == []


def test_exception_hierarchy_matches_kombu_where_it_matters() -> None:
    from kombu_like import exceptions as e

    assert issubclass(e.ConnectionError, e.OperationalError)
    assert issubclass(e.OperationalError, e.KombuError)
    assert issubclass(e.NotFound, e.ChannelError)
    assert issubclass(e.ContentDisallowed, e.SerializerNotInstalled)
    assert issubclass(e.DecodeError, e.SerializationError)
    assert issubclass(e.EncodeError, e.SerializationError)
    assert e.TimeoutError is TimeoutError
