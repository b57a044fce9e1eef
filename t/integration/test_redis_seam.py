"""Redis through the transport seam: a driver error's side effect runs in on_driver_error."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import exceptions as rexc

from kombu_like import Connection, Producer
from kombu_like.exceptions import ConnectionError

from .test_redis_servers import redis_server

pytestmark = pytest.mark.redis


def test_a_read_only_replica_drops_the_connections_and_is_a_connection_error(tmp_path: Path) -> None:
    with (
        redis_server(tmp_path / "master") as master,
        redis_server(tmp_path / "replica", "--replicaof", "127.0.0.1", str(master)) as replica,
    ):
        conn = Connection(f"redis://127.0.0.1:{replica}/0")
        try:
            conn.connect()
            store = conn.connection.store
            dropped: list[bool] = []
            drop = store.drop_connections

            def record_drop() -> None:
                dropped.append(True)
                drop()

            store.drop_connections = record_drop
            with pytest.raises(ConnectionError) as info:
                Producer(conn).publish("to a replica", routing_key="seam-readonly")
            assert isinstance(info.value.__cause__, rexc.ReadOnlyError)
            assert "read-only replica" in str(info.value)
            assert dropped == [True]
            assert conn.connection_errors and isinstance(info.value, conn.recoverable_connection_errors)
        finally:
            conn.release()
