"""The transport conformance suite on ``memory://``.

Once with a private :class:`~kombu_like.transport.memory.Broker` per test (nothing is
shared with any other test), once on a plain ``memory://<virtual host>`` URL, where every
connection of the process shares the virtual host's broker as on a real shared broker.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import MappingProxyType

import pytest

from kombu_like import Connection
from kombu_like.testing.conformance import AsyncAPITests, ConformanceBase, TransportConformance
from kombu_like.testing.hostile import HostileInputTests
from kombu_like.transport import memory
from kombu_like.transport.memory import Broker


class MemoryTimings:
    """The in-memory broker answers at once: short waits keep the suite fast."""

    quiet = 0.05
    short_ttl = 0.02
    expiry_wait = 0.15
    # memory:// declares implements.asynchronous only when asked: the event-loop tests run
    transport_options = MappingProxyType({"event_loop": True})


class TestMemoryIsolatedBroker(MemoryTimings, TransportConformance, AsyncAPITests):
    url = "memory://"

    @pytest.fixture(autouse=True)
    def _isolated_broker(self) -> Iterator[None]:
        # the suite's TTL and exclusive-queue tests expect RabbitMQ's expiry and deletion
        # (not the defaults, which follow Kombu's memory transport)
        self.broker = Broker(honour_expiration=True, honour_auto_delete=True)
        yield

    def make_connection(self) -> Connection:
        return Connection(self.url, transport_options={**self.transport_options, "broker": self.broker})


class TestMemorySharedVirtualHost(MemoryTimings, TransportConformance):
    url = f"memory://conformance-{uuid.uuid4().hex[:8]}"

    @pytest.fixture(autouse=True)
    def _expiring_brokers(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # every broker of the process drops expired messages and deletes exclusive and
        # auto_delete queues, as RabbitMQ does, while the suite runs
        monkeypatch.setattr(Broker, "honour_expiration", True)
        monkeypatch.setattr(Broker, "honour_auto_delete", True)


class NoExtrasTransport(memory.Transport):
    """A memory transport declaring neither priority nor TTL nor headers exchanges."""

    capabilities = memory.Transport.capabilities.replace(
        priority=False, ttl=False, exchange_types=frozenset({"direct", "topic", "fanout"})
    )


class TestHarness:
    """The conformance base class itself."""

    def test_unique_names_differ(self) -> None:
        base = ConformanceBase()
        first, second = base.unique("queue name/with:odd chars"), base.unique("queue name/with:odd chars")
        assert first != second
        assert all(c.isalnum() or c in "-_" for c in first)

    def test_transport_options_are_not_shared(self) -> None:
        base = ConformanceBase()
        conn = base.make_connection()
        conn.transport_options["changed"] = True
        assert "changed" not in ConformanceBase.transport_options
        assert "changed" not in base.make_connection().transport_options
        with pytest.raises(TypeError):
            ConformanceBase.transport_options["x"] = 1  # type: ignore[index]

    @pytest.mark.parametrize("capability", ["priority", "ttl"])
    def test_missing_capability_skips_naming_it(self, capability: str) -> None:
        conn = Connection(hostname="localhost", transport=NoExtrasTransport)
        with pytest.raises(pytest.skip.Exception, match=capability):
            ConformanceBase().require_capability(conn, capability)

    def test_missing_exchange_type_skips_naming_it(self) -> None:
        conn = Connection(hostname="localhost", transport=NoExtrasTransport)
        with pytest.raises(pytest.skip.Exception, match="headers"):
            ConformanceBase().require_exchange_type(conn, "headers")
        ConformanceBase().require_exchange_type(conn, "topic")

    def test_present_capability_does_not_skip(self) -> None:
        ConformanceBase().require_capability(Connection("memory://"), "priority")

    def test_package_exports(self) -> None:
        import kombu_like.testing as testing

        assert testing.TransportConformance is TransportConformance
        with pytest.raises(AttributeError):
            testing.NoSuchThing  # noqa: B018


class TestMemoryHostileInput(MemoryTimings, HostileInputTests):
    url = f"memory://hostile-{uuid.uuid4().hex[:8]}"
