"""The helpers (SimpleQueue, pools, mixins, common, pidbox, RPC, events) on Redis.

The tests are :class:`~t.integration.test_helpers_amqp.HelperBehaviour`'s, run here against
Redis.  Redis has no broker-side acknowledgements: a message delivered on a connection
that is cut comes back after ``visibility_timeout``, kept short here.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from kombu_like import Connection
from kombu_like.rpc import RpcClient
from t.conftest import delete_unacked_keys, own_unacked_keys

from .test_helpers_amqp import Cleanup, HelperBehaviour

#: an unacked store of this run's own: the short visibility timeout below must not give
#: back messages that other tests on the same Redis hold
OWN_UNACKED = own_unacked_keys(f"kltest-helpers-{uuid.uuid4().hex[:8]}")


@pytest.mark.redis
class TestHelpersRedis(HelperBehaviour):
    broker_port = 6379
    transport_options = {"visibility_timeout": 5, "socket_timeout": 5, **OWN_UNACKED}

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _own_unacked(cls, redis_url: str) -> Iterator[None]:
        yield
        delete_unacked_keys(redis_url, OWN_UNACKED)

    @pytest.fixture
    def url(self, redis_url: str) -> str:
        return redis_url

    def test_rpc_reply_queue_is_removed_on_close(self, url: str, unique_name: str, cleanup: Cleanup) -> None:
        with self.connection(url) as conn:
            client = RpcClient(conn)
            with contextlib.suppress(TimeoutError):
                client.call(cleanup.queue(unique_name), "x", timeout=0.2)
            assert client.reply_queue is not None
            reply_queue = client.reply_queue.name
            assert reply_queue.startswith("rpc.reply.")
            with Connection(url) as other:
                assert other.default_channel.store.queue_exists(reply_queue)
                client.close()
                assert not other.default_channel.store.queue_exists(reply_queue)
