"""Redis serves priorities lowest first by default (Kombu's order): declaring says so."""

from __future__ import annotations

import uuid
import warnings

import pytest

from kombu_like import Connection, Queue


@pytest.mark.redis
def test_declaring_a_priority_queue_warns_about_the_order(redis_url: str) -> None:
    name = f"prio-{uuid.uuid4().hex}"
    with Connection(redis_url) as conn:
        channel = conn.default_channel
        try:
            with pytest.warns(RuntimeWarning, match=r"priority 0 is served first.*priority_order"):
                Queue(name, max_priority=9)(channel).declare()
        finally:
            Queue(name)(channel).delete()


@pytest.mark.redis
def test_no_warning_with_amqp_order_or_without_priorities(redis_url: str) -> None:
    names = [f"prio-{uuid.uuid4().hex}" for _ in range(2)]
    with Connection(redis_url, transport_options={"priority_order": "amqp"}) as conn:
        channel = conn.default_channel
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                Queue(names[0], max_priority=9)(channel).declare()
                Queue(names[1])(channel).declare()
        finally:
            for name in names:
                Queue(name)(channel).delete()
