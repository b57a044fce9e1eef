"""The bridge that runs the conformance tests on the asyncio API: what a synchronous test
body sees of work done on the loop's thread."""

from __future__ import annotations

import asyncio
import contextvars
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from kombu_like.testing.conformance.bridge import AioBridge

current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="unset")


@pytest.fixture
def bridge() -> Iterator[AioBridge]:
    bridge = AioBridge(limit=5.0)
    yield bridge
    bridge.close()


def test_results_and_errors_cross_to_the_caller(bridge: AioBridge) -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def time_out() -> None:
        raise socket.timeout("timed out")

    assert bridge.call(answer()) == 42
    # a timeout raised by the awaited operation is its result, not the bridge's own limit
    with pytest.raises(socket.timeout):
        bridge.call(time_out())


def test_a_call_that_outlives_its_limit_fails_the_test(bridge: AioBridge) -> None:
    bridge.limit = 0.05
    with pytest.raises(pytest.fail.Exception, match="did not end"):
        bridge.call(asyncio.sleep(10))


def test_context_variables_carry_from_one_call_to_the_next(bridge: AioBridge) -> None:
    async def set_it() -> None:
        current.set("set by the first call")

    async def read_it() -> str:
        return current.get()

    bridge.call(set_it())
    assert bridge.call(read_it()) == "set by the first call"


def test_started_now_runs_to_its_first_suspension_at_once_and_the_rest_before_the_call_returns(
    bridge: AioBridge,
) -> None:
    steps: list[str] = []

    async def acknowledge(fail: bool) -> None:
        if fail:
            raise ValueError("refused before suspending")
        steps.append("written")
        await asyncio.sleep(0.01)  # waiting for room, say
        steps.append("room")

    async def callback() -> Any:
        bridge.start_now(acknowledge(fail=False))
        seen = list(steps)
        with pytest.raises(ValueError, match="refused"):
            bridge.start_now(acknowledge(fail=True))
        return seen

    assert bridge.call(callback()) == ["written"]
    assert steps == ["written", "room"]
