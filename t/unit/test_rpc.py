"""RpcServer / RpcClient on memory://."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kombu_like import Connection, Exchange, Queue
from kombu_like.rpc import DIRECT_REPLY_TO, RemoteError, RpcClient, RpcServer, RpcTimeout
from kombu_like.transport.memory import Broker


@pytest.fixture
def options() -> dict[str, Any]:
    return {"broker": Broker()}


@pytest.fixture
def conn(options: dict[str, Any]) -> Iterator[Connection]:
    connection = Connection("memory://", transport_options=options)
    yield connection
    connection.release()


@pytest.fixture
def client(conn: Connection) -> Iterator[RpcClient]:
    rpc = RpcClient(conn)
    yield rpc
    rpc.close()


class Running:
    """An RpcServer running in a thread."""

    def __init__(self, server: RpcServer) -> None:
        self.server = server
        # a short drain interval only makes stopping at the end of a test quicker
        self.thread = threading.Thread(target=server.run, kwargs={"safety_interval": 0.1}, daemon=True)

    def __enter__(self) -> RpcServer:
        self.server.declare()
        self.thread.start()
        return self.server

    def __exit__(self, *exc_info: Any) -> None:
        self.server.should_stop = True
        self.thread.join(10)
        assert not self.thread.is_alive()


def server(options: dict[str, Any], queue: str | Queue, handler: Callable[[Any], Any], **kwargs: Any) -> Running:
    return Running(RpcServer(Connection("memory://", transport_options=options), queue, handler, **kwargs))


def add(payload: dict[str, int]) -> int:
    return payload["a"] + payload["b"]


def test_call_returns_the_result(options: dict[str, Any], client: RpcClient) -> None:
    with server(options, "rpc.add", add):
        assert client.call("rpc.add", {"a": 1, "b": 2}, timeout=5) == 3
        assert client.call("rpc.add", {"a": 40, "b": 2}, timeout=5) == 42
    # memory:// is not RabbitMQ: the client declared a reply queue of its own
    assert client.reply_queue is not None
    assert client.reply_queue.name.startswith("rpc.reply.") and client.reply_queue.name != DIRECT_REPLY_TO


def test_remote_exception_comes_back(
    options: dict[str, Any], client: RpcClient, caplog: pytest.LogCaptureFixture
) -> None:
    class InsufficientFunds(Exception):
        pass

    def withdraw(payload: Any) -> None:
        raise InsufficientFunds(f"balance too low for {payload}")

    with caplog.at_level(logging.ERROR, logger="kombu_like.rpc"), server(options, "rpc.withdraw", withdraw):
        with pytest.raises(RemoteError) as info:
            client.call("rpc.withdraw", 100, timeout=5)
        # the server keeps serving after a handler error
        with pytest.raises(RemoteError):
            client.call("rpc.withdraw", 5, timeout=5)
    error = info.value
    assert error.exc_type.endswith("InsufficientFunds")
    assert error.exc_message == "balance too low for 100"
    assert error.queue == "rpc.withdraw"
    assert "InsufficientFunds: balance too low for 100" in str(error)
    assert "handler raised" in caplog.text


def test_timeout_without_server(client: RpcClient) -> None:
    with pytest.raises(RpcTimeout, match="'rpc.nobody'.*0.1s") as info:
        client.call("rpc.nobody", "anyone?", timeout=0.1)
    assert isinstance(info.value, TimeoutError)
    with pytest.raises(ValueError, match="positive timeout"):
        client.call("rpc.nobody", "x", timeout=0)


def test_late_reply_is_dropped(options: dict[str, Any], client: RpcClient) -> None:
    release = threading.Event()

    def slow_echo(payload: Any) -> Any:
        if payload == "slow":
            release.wait(5)
        return payload

    with server(options, "rpc.echo", slow_echo):
        with pytest.raises(RpcTimeout):
            client.call("rpc.echo", "slow", timeout=0.2)
        release.set()
        # the late answer to "slow" arrives while this call waits: it is not taken for its answer
        assert client.call("rpc.echo", "fresh", timeout=5) == "fresh"
        assert client.call("rpc.echo", "again", timeout=5) == "again"


def test_expired_request_is_not_handled(options: dict[str, Any], client: RpcClient) -> None:
    handled: list[Any] = []
    rpc_server = RpcServer(Connection("memory://", transport_options=options), "rpc.late", handled.append)
    rpc_server.declare()
    with pytest.raises(RpcTimeout):
        client.call("rpc.late", "too late", timeout=0.05)
    time.sleep(0.1)  # past the request's deadline for sure
    with Running(rpc_server):
        assert client.call("rpc.late", "in time", timeout=5) is None
    assert handled == ["in time"]


def test_undecodable_request_is_answered_and_rejected(
    options: dict[str, Any], client: RpcClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="kombu_like.rpc"), server(options, "rpc.add", add):
        with pytest.raises(RemoteError) as info:
            client.call("rpc.add", b'{"a": 1,', timeout=5, content_type="application/json", content_encoding="utf-8")
        assert client.call("rpc.add", {"a": 2, "b": 2}, timeout=5) == 4
    assert "DecodeError" in info.value.exc_type
    record = next(r for r in caplog.records if "cannot decode request" in r.getMessage())
    assert "rpc.add" in record.getMessage() and "application/json" in record.getMessage()
    assert '{"a": 1,' in record.getMessage()


def test_unserializable_result_becomes_an_error(options: dict[str, Any], client: RpcClient) -> None:
    with server(options, "rpc.obj", lambda payload: object()):
        with pytest.raises(RemoteError) as info:
            client.call("rpc.obj", None, timeout=5)
    assert "EncodeError" in info.value.exc_type


def test_competing_servers_answer_every_call(options: dict[str, Any], client: RpcClient) -> None:
    served: list[str] = []

    def by(name: str) -> Callable[[Any], Any]:
        def handle(payload: Any) -> Any:
            served.append(name)
            return payload * 2

        return handle

    with server(options, "rpc.double", by("one")), server(options, "rpc.double", by("two")):
        assert [client.call("rpc.double", n, timeout=5) for n in range(20)] == [n * 2 for n in range(20)]
    assert len(served) == 20 and set(served) <= {"one", "two"}


def test_call_through_a_declared_queue(options: dict[str, Any], client: RpcClient) -> None:
    queue = Queue("rpc.topic.q", Exchange("rpc.topic", type="topic"), routing_key="math.#")
    with server(options, queue, add):
        assert client.call(queue, {"a": 5, "b": 5}, timeout=5) == 10


def test_clients_in_threads(options: dict[str, Any]) -> None:
    results: dict[int, Any] = {}

    def call(n: int) -> None:
        with RpcClient(Connection("memory://", transport_options=options)) as rpc:
            results[n] = [rpc.call("rpc.add", {"a": n, "b": i}, timeout=10) for i in range(5)]

    with server(options, "rpc.add", add, prefetch_count=4):
        threads = [threading.Thread(target=call, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert results == {n: [n + i for i in range(5)] for n in range(4)}


def test_client_recovers_after_its_connection_was_lost(options: dict[str, Any], conn: Connection) -> None:
    with server(options, "rpc.add", add), RpcClient(conn) as rpc:
        assert rpc.call("rpc.add", {"a": 1, "b": 1}, timeout=5) == 2
        conn.collect()  # the connection is gone, as after a network failure
        assert rpc.call("rpc.add", {"a": 2, "b": 2}, timeout=5) == 4
        conn.release()  # closed by its owner: the next call connects again
        assert rpc.call("rpc.add", {"a": 3, "b": 3}, timeout=5) == 6
