"""Queue.from_dict with Celery-style configuration dicts, generated, compared with Kombu 5.7."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kombu_like

kombu = pytest.importorskip("kombu")

maybe_bool = st.none() | st.booleans()
names = st.sampled_from(["", "tasks", "media"])
keys = st.none() | st.sampled_from(["", "video", "a.b"])

configs = st.fixed_dictionaries(
    {},
    optional={
        "exchange": names,
        "exchange_type": st.sampled_from(["direct", "topic", "fanout"]),
        "routing_key": keys,
        "binding_key": keys,
        "durable": maybe_bool,
        "auto_delete": maybe_bool,
        "exchange_durable": maybe_bool,
        "exchange_auto_delete": maybe_bool,
        "queue_durable": maybe_bool,
        "queue_auto_delete": maybe_bool,
        "exclusive": st.booleans(),
        "queue_arguments": st.none() | st.just({"x-max-priority": 10}),
        "exchange_arguments": st.none() | st.just({"alternate-exchange": "ae"}),
        "max_priority": st.none() | st.integers(1, 10),
        "message_ttl": st.none() | st.floats(1, 100),
        "no_ack": st.booleans(),
    },
)


def observed(lib: Any, options: dict[str, Any]) -> dict[str, Any]:
    queue = lib.Queue.from_dict("q", **options)
    exchange = queue.exchange
    return {
        "queue": {
            k: getattr(queue, k)
            for k in (
                "name",
                "routing_key",
                "durable",
                "auto_delete",
                "exclusive",
                "queue_arguments",
                "max_priority",
                "message_ttl",
                "no_ack",
            )
        },
        "exchange": {k: getattr(exchange, k) for k in ("name", "type", "durable", "auto_delete", "arguments")},
    }


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(configs)
def test_from_dict_builds_what_kombu_builds(options: dict[str, Any]) -> None:
    assert observed(kombu_like, options) == observed(kombu, options)


def test_queue_round_trips_through_as_dict_as_in_kombu() -> None:
    for lib in (kombu_like, kombu):
        exchange = lib.Exchange("media", type="topic", durable=False)
        queue = lib.Queue("video", exchange, routing_key="video.#", max_priority=5, auto_delete=True)
        again = lib.Queue.from_dict("video", **queue.as_dict())
        assert (again.name, again.routing_key, again.max_priority, again.auto_delete) == ("video", "video.#", 5, True)
