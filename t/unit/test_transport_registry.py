"""Transport registry: URL scheme -> transport class, aliases, entry points."""

from __future__ import annotations

import sys
from typing import Any

import pytest

import kombu_like.transport as registry
from kombu_like import Connection
from kombu_like.transport import (
    TRANSPORT_ALIASES,
    get_transport_cls,
    memory,
    register_transport,
    resolve_transport,
)
from kombu_like.transport.base import Transport


class PluginTransport(memory.Transport):
    """A third-party transport (a memory transport under another name)."""

    driver_type = "plugin"


class FakeEntryPoint:
    def __init__(self, name: str, target: Any) -> None:
        self.name = name
        self.value = f"somewhere:{name}"
        self._target = target
        self.loaded = 0

    def load(self) -> Any:
        self.loaded += 1
        return self._target


@pytest.fixture
def aliases(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private copy of the alias table, so registrations do not leak between tests."""
    table = dict(TRANSPORT_ALIASES)
    monkeypatch.setattr(registry, "TRANSPORT_ALIASES", table)
    return table


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace the installed entry points with a controllable set."""
    state: dict[str, Any] = {"points": [], "groups": []}

    def fake_entry_points(*, group: str) -> list[FakeEntryPoint]:
        state["groups"].append(group)
        return list(state["points"])

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    return state


class TestAliases:
    @pytest.mark.parametrize(
        ("alias", "same_as"),
        [("pyamqp", "amqp"), ("rediss", "redis"), ("SQS", "sqs")],
    )
    def test_alias_targets(self, alias: str, same_as: str) -> None:
        assert TRANSPORT_ALIASES[alias] == TRANSPORT_ALIASES[same_as]

    @pytest.mark.parametrize("scheme", ["amqp", "pyamqp", "amqps", "memory", "redis", "rediss", "sqs"])
    def test_builtin_schemes_known(self, scheme: str) -> None:
        module, _, attr = TRANSPORT_ALIASES[scheme].partition(":")
        assert module.startswith("kombu_like.transport.")
        assert attr

    def test_amqps_uses_ssl_transport(self) -> None:
        assert TRANSPORT_ALIASES["amqps"] != TRANSPORT_ALIASES["amqp"]

    def test_memory(self) -> None:
        assert resolve_transport("memory") is memory.Transport

    def test_get_transport_cls_is_resolve_transport(self) -> None:
        assert get_transport_cls is resolve_transport


class TestResolve:
    def test_class_passes_through(self) -> None:
        assert resolve_transport(PluginTransport) is PluginTransport

    @pytest.mark.parametrize(
        "name",
        [
            "kombu_like.transport.memory:Transport",
            "kombu_like.transport.memory.Transport",
            "os:system",
            "t.unit.not_imported",
        ],
    )
    def test_import_paths_are_refused_before_importing(self, name: str) -> None:
        before = set(sys.modules)
        with pytest.raises(ValueError, match="Invalid transport scheme"):
            resolve_transport(name)
        assert set(sys.modules) == before

    def test_registered_path_still_resolves(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(TRANSPORT_ALIASES, "mem2", "kombu_like.transport.memory:Transport")
        assert resolve_transport("mem2") is memory.Transport

    def test_register_refuses_a_dotted_scheme(self) -> None:
        with pytest.raises(ValueError, match="Invalid transport scheme"):
            register_transport("a.b", memory.Transport)

    def test_unknown_scheme_lists_known_ones(self, entry_points: dict[str, Any]) -> None:
        with pytest.raises(KeyError) as excinfo:
            resolve_transport("bogus")
        message = str(excinfo.value)
        assert "bogus" in message
        for known in ("amqp", "memory", "redis", "sqs"):
            assert known in message

    def test_connection_with_unknown_scheme(self, entry_points: dict[str, Any]) -> None:
        conn = Connection("bogus://host")
        with pytest.raises(KeyError, match="bogus"):
            conn.transport  # noqa: B018

    def test_connection_with_transport_class(self) -> None:
        conn = Connection(hostname="localhost", transport=PluginTransport)
        assert isinstance(conn.transport, PluginTransport)
        conn.release()


class TestRegister:
    def test_register_class(self, aliases: dict[str, str]) -> None:
        register_transport("mine", PluginTransport)
        assert resolve_transport("mine") is PluginTransport
        conn = Connection("mine://localhost")
        assert isinstance(conn.transport, PluginTransport)
        conn.release()

    def test_register_path(self, aliases: dict[str, str]) -> None:
        register_transport("mine2", "kombu_like.transport.memory:Transport")
        assert resolve_transport("mine2") is memory.Transport


class TestEntryPoints:
    def test_entry_point_transport(self, entry_points: dict[str, Any]) -> None:
        point = FakeEntryPoint("plugin", PluginTransport)
        entry_points["points"] = [FakeEntryPoint("other", memory.Transport), point]
        assert resolve_transport("plugin") is PluginTransport
        assert point.loaded == 1
        assert entry_points["groups"] == ["kombu_like.transports"]

    def test_connection_uses_entry_point(self, entry_points: dict[str, Any]) -> None:
        entry_points["points"] = [FakeEntryPoint("plugin", PluginTransport)]
        conn = Connection("plugin://localhost")
        try:
            assert isinstance(conn.transport, PluginTransport)
            assert isinstance(conn.transport, Transport)
            conn.connect()
            assert conn.connected
        finally:
            conn.release()

    def test_builtin_alias_wins_over_entry_point(self, entry_points: dict[str, Any]) -> None:
        point = FakeEntryPoint("memory", PluginTransport)
        entry_points["points"] = [point]
        assert resolve_transport("memory") is memory.Transport
        assert point.loaded == 0

    def test_unknown_after_entry_points(self, entry_points: dict[str, Any]) -> None:
        entry_points["points"] = [FakeEntryPoint("plugin", PluginTransport)]
        with pytest.raises(KeyError, match="nothere"):
            resolve_transport("nothere")
        assert entry_points["groups"] == ["kombu_like.transports"]
