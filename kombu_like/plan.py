"""Broker operations written once, run by the blocking API and by the asyncio API.

An operation that takes several broker calls (declare a queue: its exchange, the queue,
its bindings; a ``get`` that converts what it fetched) is written as a *plan*: a generator
that yields :class:`Step` s -- which channel method to call, with what -- and receives each
call's result.  It never does I/O itself, so one plan serves both drivers:

* :func:`run` calls each step at once on a blocking channel and returns the plan's result;
* a channel of :mod:`kombu_like.aio` has a ``run_plan`` method, and :func:`run` hands the
  plan to it: the result is then an awaitable, which awaits each step in turn.

A step that raises raises inside the plan, at its ``yield``: a plan handles errors with
``try`` as any code does -- but never yields inside ``finally`` (a cancelled asyncio run
closes the plan at the ``yield`` it waits at, and a plan may not yield while closing).
A step's "channel" may be any object (a message, the consumer itself): what matters is
that its method returns the result, or an awaitable of it.

So ``queue.declare()`` declares on a blocking channel and ``await queue.declare()`` on an
asyncio channel, with the same code deciding what is declared.
"""

from __future__ import annotations

import inspect
from collections.abc import Generator
from typing import Any, NamedTuple, TypeVar

__all__ = ["SENT", "Plan", "Ready", "Step", "arun", "call", "is_async", "run"]

_T = TypeVar("_T")


class Step(NamedTuple):
    """One channel call of a plan: ``channel.<method>(*args, **kwargs)``."""

    channel: Any
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


#: a plan: yields steps, receives their results, returns the operation's result
Plan = Generator[Step, Any, _T]


def call(target: Any, method: str, /, *args: Any, **kwargs: Any) -> Plan[Any]:
    """A plan of one step, ``target.<method>(*args, **kwargs)`` (``yield from call(...)``
    inside a plan); returns its result.  ``target`` is a channel, or an entity or consumer
    whose own method then runs (so a subclass's override takes part)."""
    return (yield Step(target, method, args, kwargs))


def run(channel: Any, plan: Plan[_T]) -> Any:
    """Run ``plan``: its result on a blocking ``channel``; an awaitable of it when the
    channel runs plans itself (an asyncio channel's ``run_plan``)."""
    if is_async(channel):
        return channel.run_plan(plan)
    try:
        step = next(plan)
        while True:
            try:
                result = getattr(step.channel, step.method)(*step.args, **step.kwargs)
            except Exception as exc:  # the plan may handle it; if not, it comes back out
                step = plan.throw(exc)
                continue
            step = plan.send(result)
    except StopIteration as stop:
        return stop.value


def is_async(channel: Any) -> bool:
    """True for a channel of the asyncio API (its class defines ``run_plan``)."""
    return getattr(type(channel), "run_plan", None) is not None


async def arun(plan: Plan[_T]) -> _T:
    """Run ``plan`` awaiting the steps whose calls return awaitables (the asyncio driver)."""
    try:
        step = next(plan)
        while True:
            try:
                result = getattr(step.channel, step.method)(*step.args, **step.kwargs)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:  # the plan may handle it; if not, it comes back out
                step = plan.throw(exc)
                continue
            step = plan.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


class Ready:
    """An awaitable whose result is known already: what an asyncio channel returns for an
    operation completed without waiting (every operation of an in-process broker).  It
    never suspends, so a cancellation cannot cut it short; unlike a coroutine it may also
    be dropped unawaited."""

    __slots__ = ("value",)

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        return self.value
        yield  # pragma: no cover - makes this a generator

    def __repr__(self) -> str:
        return f"<Ready {self.value!r}>"


#: what an asyncio channel's publish returns when it waits for nothing from the broker
#: (written, or handed to the I/O thread; AMQP without confirms): ``None`` when awaited,
#: so ``await exchange.publish(...)`` works on every transport
SENT = Ready(None)
