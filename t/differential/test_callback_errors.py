"""An exception raised by a consumer callback reaches the caller of drain_events as raised.

Kombu does not treat an error from user code as a broker error; turning a callback's
``OSError`` into a connection error would make ``ensure``/``ConsumerMixin`` reconnect and
run the callback again on the redelivered message.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import kombu_like

kombu = pytest.importorskip("kombu")


class CallbackFailure(OSError):
    pass


def outcome(lib: Any, url: str) -> tuple[str, str]:
    queue = lib.Queue(f"t_cb_{uuid.uuid4().hex[:12]}")
    with lib.Connection(url) as conn:
        lib.Producer(conn).publish({"n": 1}, routing_key=queue.name, declare=[queue])

        def callback(body: Any, message: Any) -> None:
            raise CallbackFailure("raised by the callback")

        try:
            with lib.Consumer(conn, [queue], callbacks=[callback]):
                conn.drain_events(timeout=5)
        except Exception as exc:
            caught = (type(exc).__name__, str(exc))
        else:
            caught = ("nothing", "")
        queue(conn.default_channel).delete()
    return caught


@pytest.mark.parametrize("transport", ["memory", "redis"])
def test_callback_error_is_not_translated(transport: str, request: pytest.FixtureRequest) -> None:
    url = "memory://" if transport == "memory" else request.getfixturevalue("redis_url")
    ours = outcome(kombu_like, url)
    assert ours == ("CallbackFailure", "raised by the callback")
    assert ours == outcome(kombu, url)
