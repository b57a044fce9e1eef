"""The Redis wire on the asyncio loop: the blocking transport's conversations (script
fallback after ``SCRIPT FLUSH``, the ledger of lost takes) run on it unchanged, and a cut
connection fails what waits without leaving the stream out of step."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis import exceptions as rexc

from kombu_like import Connection
from kombu_like.transport.redis import scripts
from kombu_like.transport.redis.aio_wire import AsyncWire, endpoint_of
from kombu_like.transport.redis.command import Ledger, connect_conversation, recover_conversation, script_conversation
from kombu_like.transport.redis.conversation import adrive, call

from ..conftest import own_unacked_keys
from .test_redis_servers import redis_server

pytestmark = pytest.mark.redis


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


@pytest.fixture
def conn(redis_url: str, unique_name: str) -> Iterator[Connection]:
    with Connection(redis_url, transport_options=own_unacked_keys(unique_name)) as conn:
        conn.connect()
        yield conn


async def command_wire(conn: Connection) -> AsyncWire:
    """A command connection on the loop, set up by the blocking one's conversation."""
    endpoint = endpoint_of(conn.transport._connection_kwargs())
    assert endpoint is not None

    async def on_connect(wire: AsyncWire) -> None:
        await adrive(wire, connect_conversation(), connect=False)

    wire = AsyncWire(endpoint, "command", on_connect)
    await wire.connect()
    return wire


@pytest.fixture
def own_server_conn(tmp_path: Path, unique_name: str) -> Iterator[Connection]:
    """A connection to a Redis of the test's own (SCRIPT FLUSH reaches every client)."""
    with redis_server(tmp_path / "redis") as port:
        with Connection(f"redis://127.0.0.1:{port}/0", transport_options=own_unacked_keys(unique_name)) as conn:
            conn.connect()
            yield conn


def test_no_thread_is_started_and_a_script_is_loaded_again_after_script_flush(
    own_server_conn: Connection, unique_name: str
) -> None:
    conn = own_server_conn
    threads = threading.active_count()
    keys = conn.connection.store.keys

    async def main() -> Any:
        wire = await command_wire(conn)
        try:
            await adrive(wire, call("SCRIPT", "FLUSH"))
            # the blocking wire's conversation, awaited: NOSCRIPT, SCRIPT LOAD, once more
            probe = [keys.unacked, keys.unacked_index, f"{unique_name}.list"]
            return await adrive(wire, script_conversation(scripts.RESTORE, probe, ["no-such-tag", "", "head", "1"]))
        finally:
            wire.disconnect()

    assert run(main()) == 0  # nothing recorded under that tag: nothing given back
    assert threading.active_count() == threads


def test_a_take_whose_reply_was_lost_is_given_back_by_the_ledger_on_the_loop(
    conn: Connection, unique_name: str
) -> None:
    queue = f"{unique_name}.q"
    store = conn.connection.store
    taker = store.taker
    keys, names, _ = taker._lists_for([queue])
    envelope = {"body": "x", "properties": {"delivery_tag": "t1"}, "headers": {}, "content-type": "text/plain"}
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    client.lpush(keys[0], json.dumps(envelope))
    ledger = Ledger()

    async def main() -> None:
        wire = await command_wire(conn)
        try:
            score, data = taker.take_request(keys, names, 1, None, False)
            wire.execute_packed(data, 1)  # the take runs; its reply is never read
            ledger.takes.append((score, queue))
            await adrive(wire, recover_conversation(ledger, store.keys))
        finally:
            wire.disconnect()

    run(main())
    assert ledger.takes == []
    assert client.llen(keys[0]) == 1
    restored = json.loads(client.lindex(keys[0], 0))
    assert restored["body"] == "x"
    client.delete(*keys)


def test_a_cut_connection_fails_the_waiting_round_and_reports_deferred_writes_lost(conn: Connection) -> None:
    lost: list[str] = []

    async def main() -> None:
        wire = await command_wire(conn)
        client_id = await adrive(wire, call("CLIENT", "ID"))
        wire.send_deferred_packed(b"*1\r\n$4\r\nPING\r\n", 1, lambda: lost.append("ack"))
        waiting = wire.execute_packed(b"*3\r\n$5\r\nBLPOP\r\n$9\r\n{nothing}\r\n$1\r\n5\r\n", 1)
        await asyncio.sleep(0.05)
        redis.Redis.from_url("redis://127.0.0.1:6379/0").client_kill_filter(_id=client_id)
        with pytest.raises(rexc.ConnectionError):
            await waiting
        assert not wire.connected
        # reconnecting gives a new session, answering in step
        await wire.connect()
        assert await adrive(wire, call("PING")) == b"PONG"
        wire.disconnect()

    run(main())
    assert lost == []  # the PING was answered before the cut: nothing lost


def test_a_caller_that_stops_waiting_leaves_the_stream_in_step(conn: Connection) -> None:
    async def main() -> None:
        wire = await command_wire(conn)
        try:
            slow = asyncio.ensure_future(adrive(wire, call("DEBUG", "SLEEP", "0.05")))
            await asyncio.sleep(0)
            slow.cancel()
            assert await adrive(wire, call("ECHO", "after")) == b"after"
        finally:
            wire.disconnect()

    run(main())
