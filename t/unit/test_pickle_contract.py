"""When a consumer unpickles: the same scenarios on Kombu 5.7 and on kombu_like.

Pickle is decoded when the consumer's ``accept`` lists it, or when the consumer has no
``accept`` list and enable_insecure_serializers() was called; never otherwise.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

ACCEPTS: list[list[str] | None] = [None, ["json"], ["pickle"], ["application/x-python-serialize"], ["json", "yaml"]]


@pytest.fixture(autouse=True)
def default_serializers() -> Iterator[None]:
    yield
    for name in ("kombu", "kombu_like"):
        importlib.import_module(f"{name}.serialization").disable_insecure_serializers(["json"])


def outcome(library: ModuleType, accept: list[str] | None, enabled: bool) -> str:
    serialization = importlib.import_module(f"{library.__name__}.serialization")
    if enabled:
        serialization.enable_insecure_serializers(["pickle"])
    else:
        serialization.disable_insecure_serializers(["json"])
    results: list[Any] = []
    with library.Connection(f"memory://pickle-{uuid.uuid4().hex[:8]}") as conn:
        queue = library.Queue(f"pickle-{uuid.uuid4().hex[:8]}")
        library.Producer(conn).publish({"n": 1}, routing_key=queue.name, declare=[queue], serializer="pickle")
        with library.Consumer(
            conn,
            [queue],
            accept=accept,
            callbacks=[lambda body, message: (results.append(body), message.ack())],
            on_decode_error=lambda message, exc: (results.append(type(exc).__name__), message.reject()),
        ):
            conn.drain_events(timeout=5)
        # Queue.get without accept follows the same switch
        library.Producer(conn).publish({"n": 2}, routing_key=queue.name, serializer="pickle")
        message = queue(conn.default_channel).get()
        try:
            results.append(message.decode())
        except Exception as exc:
            results.append(type(exc).__name__)
        message.ack()
    return " / ".join(map(str, results))


@pytest.mark.parametrize("enabled", [False, True], ids=["default", "insecure-enabled"])
@pytest.mark.parametrize("accept", ACCEPTS, ids=str)
def test_pickle_is_decoded_exactly_when_kombu_decodes_it(accept: list[str] | None, enabled: bool) -> None:
    import kombu

    import kombu_like

    ours = outcome(kombu_like, accept, enabled)
    theirs = outcome(kombu, accept, enabled)
    assert ours == theirs
    listed = accept is not None and bool({"pickle", "application/x-python-serialize"} & set(accept))
    consumer_decodes = listed or (accept is None and enabled)
    assert ours.startswith("{'n': 1}" if consumer_decodes else "ContentDisallowed")
    assert ours.endswith("{'n': 2}" if enabled else "ContentDisallowed")
