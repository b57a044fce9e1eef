"""The seam between the virtual layer and a queue store: binding stores, error mapping,
capabilities, abstract methods."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kombu_like import Connection, Exchange, Producer, Queue
from kombu_like.exceptions import ConnectionError
from kombu_like.transport import register_transport
from kombu_like.transport.base import Capabilities
from kombu_like.transport.memory import Broker, MemoryStore
from kombu_like.transport.virtual import Binding, BindingStore, ExchangeInfo, QueueStore, VirtualTransport


class DictBindings:
    """A binding store of its own (not the default one), counting the calls it gets."""

    def __init__(self) -> None:
        self.exchanges: dict[str, ExchangeInfo] = {}
        self.table: dict[str, list[Binding]] = {}
        self.version = 0
        self.calls: list[str] = []
        self.fail_next: Exception | None = None

    def _called(self, name: str) -> None:
        self.calls.append(name)
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error

    def declare_exchange(self, info: ExchangeInfo) -> None:
        self._called("declare_exchange")
        self.exchanges.setdefault(info.name, info)

    def exchange(self, name: str) -> ExchangeInfo | None:
        self._called("exchange")
        return self.exchanges.get(name)

    def delete_exchange(self, name: str) -> None:
        self._called("delete_exchange")
        self.exchanges.pop(name, None)
        self.table.pop(name, None)
        self.version += 1

    def bind(self, exchange: str, binding: Binding) -> None:
        self._called("bind")
        if binding not in self.table.setdefault(exchange, []):
            self.table[exchange].append(binding)
            self.version += 1

    def unbind(self, exchange: str, binding: Binding) -> None:
        self._called("unbind")
        if binding in self.table.get(exchange, []):
            self.table[exchange].remove(binding)
            self.version += 1

    def unbind_queue(self, queue: str) -> None:
        self._called("unbind_queue")
        for exchange, bindings in self.table.items():
            self.table[exchange] = [b for b in bindings if b.queue != queue]
        self.version += 1

    def get_bindings(self, exchange: str) -> list[Binding]:
        self._called("get_bindings")
        return list(self.table.get(exchange, ()))

    def all_bindings(self) -> list[tuple[str, Binding]]:
        return [(ex, b) for ex, items in self.table.items() for b in items]


class SeamStore(MemoryStore):
    """The memory store with its own binding store and a record of driver errors."""

    capabilities = Capabilities(priority=True, extra={"declared": "on the store"})

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker)
        self.bindings: DictBindings = DictBindings()
        self.driver_errors: list[tuple[BaseException, str | None]] = []
        self.fail_next: Exception | None = None

    def put(self, queue: str, payload: dict[str, Any], priority: int = 0) -> None:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        super().put(queue, payload, priority)

    def on_driver_error(self, exc: BaseException, queue: str | None = None) -> None:
        self.driver_errors.append((exc, queue))


class Transport(VirtualTransport):
    driver_type = "seamtest"
    driver_name = "seamtest"
    Store = SeamStore

    def create_store(self) -> SeamStore:
        return SeamStore(self.transport_options["broker"])


register_transport("seamtest", f"{__name__}:Transport")


@pytest.fixture
def seam_conn() -> Iterator[Connection]:
    conn = Connection("seamtest://", transport_options={"broker": Broker()})
    yield conn
    conn.release()


def store_of(conn: Connection) -> SeamStore:
    conn.connect()
    store = conn.connection.store
    assert isinstance(store, SeamStore)
    return store


def test_custom_binding_store_satisfies_the_protocol() -> None:
    assert isinstance(DictBindings(), BindingStore)


def test_deleted_queue_leaves_the_stores_own_bindings(seam_conn: Connection) -> None:
    exchange = Exchange("seam-ex", type="direct")
    queue = Queue("seam-q", exchange, routing_key="k")
    producer = Producer(seam_conn)
    producer.publish("one", exchange=exchange, routing_key="k", declare=[queue])
    store = store_of(seam_conn)
    assert store.bindings.get_bindings("seam-ex") == [Binding("seam-q", "k", None)]
    queue(seam_conn.default_channel).delete()
    assert "unbind_queue" in store.bindings.calls
    assert store.bindings.all_bindings() == []
    producer.publish("two", exchange=exchange, routing_key="k")
    # the message matched no binding, so the deleted queue was not created again
    assert not store.queue_exists("seam-q")


def test_store_error_is_translated_and_seen_by_the_hook(seam_conn: Connection) -> None:
    store = store_of(seam_conn)
    error = BrokenPipeError(32, "broken pipe")
    store.fail_next = error
    with pytest.raises(ConnectionError) as info:
        Producer(seam_conn).publish("x", routing_key="seam-errors")
    assert info.value.__cause__ is error
    assert store.driver_errors == [(error, "seam-errors")]


def test_binding_store_errors_go_through_the_same_seam(seam_conn: Connection) -> None:
    store = store_of(seam_conn)
    error = ConnectionAbortedError("binding store went away")
    store.bindings.fail_next = error
    with pytest.raises(ConnectionError) as info:
        Exchange("seam-ex2", type="topic")(seam_conn.default_channel).declare()
    assert info.value.__cause__ is error
    assert store.driver_errors[-1][0] is error


def test_errors_of_the_library_pass_unchanged(seam_conn: Connection) -> None:
    store = store_of(seam_conn)
    Queue("seam-prio", max_priority=3)(seam_conn.default_channel).declare()
    from kombu_like.exceptions import PreconditionFailed

    with pytest.raises(PreconditionFailed) as info:
        Queue("seam-prio", max_priority=5)(seam_conn.default_channel).declare()
    assert info.value.__cause__ is None
    assert store.driver_errors and store.driver_errors[-1][1] == "seam-prio"


def test_capabilities_are_the_stores(seam_conn: Connection) -> None:
    # as declared on the store, except asynchronous: what the store's hooks make it
    assert Transport.capabilities == SeamStore.capabilities.replace(asynchronous=True)
    assert seam_conn.transport.capabilities.extra["declared"] == "on the store"


def test_a_store_missing_a_method_cannot_be_made() -> None:
    class Incomplete(QueueStore):
        def declare_queue(self, queue: str, arguments: Any = None) -> None: ...

    with pytest.raises(TypeError, match="abstract") as info:
        Incomplete()  # type: ignore[abstract]
    for name in ("put", "get", "ack", "requeue", "purge", "size", "delete_queue", "queue_exists"):
        assert name in str(info.value)


def test_a_channel_missing_a_method_cannot_be_made() -> None:
    from kombu_like.transport.base import Channel

    class Partial(Channel):
        def basic_publish(self, message: Any, exchange: str = "", routing_key: str = "", *a: Any, **k: Any) -> None:
            return None

    with pytest.raises(TypeError, match="abstract") as info:
        Partial()  # type: ignore[abstract]
    for name in ("queue_declare", "basic_consume", "basic_ack", "basic_get", "exchange_declare"):
        assert name in str(info.value)


def test_every_virtual_channel_is_a_complete_channel(seam_conn: Connection) -> None:
    from kombu_like.transport.base import Channel

    channel = seam_conn.channel()
    assert isinstance(channel, Channel)
    assert not getattr(type(channel), "__abstractmethods__", None)


def test_native_channels_translate_at_the_same_seam() -> None:
    from kombu_like.transport import base

    seen: list[BaseException] = []

    class NativeTransport(base.Transport):
        def on_driver_error(self, exc: BaseException) -> None:
            seen.append(exc)

    class NativeChannel:
        def __init__(self, transport: base.Transport) -> None:
            self.transport = transport

        @base.driver_seam((OSError,))
        def basic_publish(self, fail: BaseException) -> None:
            raise fail

    channel = NativeChannel(NativeTransport(Connection("memory://")))
    error = ConnectionResetError("peer went away")
    with pytest.raises(ConnectionError) as info:
        channel.basic_publish(error)
    assert info.value.__cause__ is error
    assert seen == [error]
    other = KeyError("not a driver error")
    with pytest.raises(KeyError) as raised:
        channel.basic_publish(other)
    assert raised.value is other
    assert seen == [error]


def test_asynchronous_follows_the_event_loop_hooks() -> None:
    from kombu_like.asynchronous import Hub
    from kombu_like.transport.virtual.store import drives_event_loop

    class HalfEvented(MemoryStore):
        """Declares asynchronous but leaves a hook out: it cannot be driven."""

        capabilities = Capabilities(asynchronous=True)
        periodic = QueueStore.periodic  # type: ignore[assignment]

    class HalfTransport(Transport):
        Store = HalfEvented

        def create_store(self) -> HalfEvented:
            return HalfEvented(Broker())

    assert drives_event_loop(MemoryStore) and not drives_event_loop(HalfEvented)
    assert Transport.capabilities.asynchronous
    assert not HalfTransport.capabilities.asynchronous
    conn = Connection(hostname="localhost", transport=HalfTransport)
    hub = Hub()
    try:
        assert not conn.is_evented
        conn.register_with_event_loop(hub)  # does nothing, as on Kombu's blocking transports
        assert not hub.readers
        assert conn.connection.loop_driver is None
    finally:
        conn.release()
        hub.close()


def test_periodic_work_that_names_its_next_run_runs_then_too() -> None:
    import time

    from kombu_like.asynchronous import Hub

    interval = 0.5
    runs: list[float] = []

    class Timed(MemoryStore):
        """Periodic work that asks to run again 0.01 s later, twice, then leaves it to its interval."""

        def periodic(self) -> list[tuple[float, Any]]:
            return [(interval, self.work)]

        def work(self) -> float | None:
            runs.append(time.monotonic())
            return 0.01 if len(runs) < 3 else None

    class TimedTransport(VirtualTransport):
        Store = Timed
        capabilities = Capabilities(asynchronous=True)

        def create_store(self) -> Timed:
            return Timed(Broker())

    conn = Connection(hostname="localhost", transport=TimedTransport)
    hub = Hub()
    try:
        conn.register_with_event_loop(hub)
        deadline = time.monotonic() + 10
        while not runs and time.monotonic() < deadline:
            hub.run_once()
        assert runs, "the periodic work never ran"
        # until just before the interval's next run: only the two runs asked for came
        while time.monotonic() < runs[0] + 0.8 * interval:
            hub.run_once()
        assert len(runs) == 3
        assert runs[2] - runs[0] < interval
    finally:
        conn.release()
        hub.close()
