"""Kombu's event loop and ours run the same scenarios and leave the same trace.

Each scenario drives a hub through its public API (and the internals Celery's worker
uses: ``readers``/``writers``, ``consolidate``, ``_pop_ready``, ``propagate_errors``) and
records what was called, in which order, and what the hub holds afterwards; the scenario
runs on ``kombu.asynchronous`` and on ``kombu_like.asynchronous`` and the traces must match.
"""

from __future__ import annotations

import importlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from queue import Empty
from types import ModuleType
from typing import Any

import pytest

import kombu_like.asynchronous
import kombu_like.asynchronous.hub

pytest.importorskip("kombu.asynchronous.hub")
KOMBU = importlib.import_module("kombu.asynchronous")

Trace = list[Any]
Scenario = Callable[[ModuleType], Trace]

#: seconds any one scenario may run the loop before it is considered stuck
BOUND = 5.0


@contextmanager
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def run_bounded(hub: Any, stop: type[BaseException]) -> None:
    """``run_forever`` with a timer that stops it should the scenario not."""
    bound = hub.call_later(BOUND, hub.stop)
    hub.run_forever()
    bound.cancel()


def stop_class(lib: ModuleType) -> type[BaseException]:
    return lib.hub.Stop  # type: ignore[no-any-return]


# -- scenarios ----------------------------------------------------------------------------
def readers_and_writers(lib: ModuleType) -> Trace:
    # a reader and a writer on two sockets, as Celery's pool registers them (Kombu's epoll
    # poller keeps the first interest of a descriptor registered for both)
    trace: Trace = []
    hub = lib.Hub()
    with socket_pair() as (a, b), socket_pair() as (c, _d):
        fd, wfd = a.fileno(), c.fileno()

        def on_writable() -> None:
            trace.append("writable")
            hub.remove_writer(wfd)
            trace.append(("after remove_writer", wfd in hub.writers, fd in hub.readers))
            b.send(b"x")

        def on_readable(tag: str) -> None:
            trace.append(("readable", tag, a.recv(10)))
            hub.stop()

        hub.add_reader(a, on_readable, "arg")
        hub.add_writer(c, on_writable)
        trace.append(("added", fd in hub.readers, wfd in hub.writers, hub.readers[fd][1]))
        run_bounded(hub, stop_class(lib))
        hub.remove_reader(fd)
        trace.append(("after remove_reader", fd in hub.readers))
        hub.add_reader(fd, on_readable, "again")
        hub.remove(fd)
        trace.append(("after remove", fd in hub.readers, fd in hub.writers))
        # a number reused after its socket was closed is watched again (a reconnect)
        hub.add_reader(a, on_readable, "old")
        hub.run_once()
    with socket_pair() as (e, f):
        if f.fileno() == fd:
            e, f = f, e
        trace.append(("same number", e.fileno() == fd))
        hub.add_reader(e, lambda: (trace.append(("reused", e.recv(10))), hub.stop()))
        f.send(b"y")
        run_bounded(hub, stop_class(lib))
    hub.close()
    return trace


def timers_in_order(lib: ModuleType) -> Trace:
    trace: Trace = []
    hub = lib.Hub()
    now = time.monotonic()
    hub.call_later(0.03, trace.append, "later 30ms")
    hub.call_later(0.01, trace.append, "later 10ms")
    hub.call_at(now + 0.02, trace.append, "at 20ms")
    cancelled = hub.call_later(0.005, trace.append, "cancelled")
    cancelled.cancel()
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 3:
            repeating.cancel()
            hub.call_later(0.02, hub.stop)

    repeating = hub.call_repeatedly(0.04, tick)
    run_bounded(hub, stop_class(lib))
    trace.append(("ticks", len(ticks)))
    hub.close()
    return trace


def call_soon_and_stop(lib: ModuleType) -> Trace:
    trace: Trace = []
    hub = lib.Hub()
    hub.on_tick.add(lambda: trace.append("tick"))

    def first() -> None:
        trace.append("first")
        hub.call_soon(second, "from first")

    def second(arg: str) -> None:
        trace.append(("second", arg))
        hub.stop()

    hub.call_soon(first)
    hub.call_soon(trace.append, "cancelled").cancel()
    with socket_pair() as (a, b):
        # readable throughout (never read), so no round waits in the poller
        b.send(b"x")
        hub.add_reader(a, lambda: None)
        run_bounded(hub, stop_class(lib))
    # only the rounds that ran count: stop ends the loop at the start of a round
    trace.append(("ticks before stop", trace.count("tick")))
    hub.close()
    return [item for item in trace if item != "tick"]


def stop_from_another_thread(lib: ModuleType) -> Trace:
    trace: Trace = []
    hub = lib.Hub()
    with socket_pair() as (a, b):
        hub.add_reader(a, lambda: None)
        started = time.monotonic()
        thread = threading.Timer(0.05, hub.stop)
        thread.start()
        run_bounded(hub, stop_class(lib))
        thread.join(BOUND)
        # woken at once, not after the poller's one-second timeout
        trace.append(("stopped promptly", time.monotonic() - started < 0.9))
        # and the hub runs again after a stop
        b.send(b"x")  # readable from now on: no round waits in the poller
        hub.call_soon(hub.stop)
        run_bounded(hub, stop_class(lib))
        trace.append("ran again")
    hub.close()
    return trace


def close_runs_on_close_and_pending(lib: ModuleType) -> Trace:
    trace: Trace = []
    hub = lib.Hub()
    lib.set_event_loop(hub)
    with socket_pair() as (a, _b):
        hub.add_reader(a, lambda: None)
        hub.on_close.add(lambda h: trace.append(("on_close", h is hub, len(h.readers))))
        hub.call_soon(trace.append, "pending ran")
        hub.close()
        trace.append(("after close", dict(hub.readers), lib.get_event_loop()))
    return trace


def consolidated_writers(lib: ModuleType) -> Trace:
    trace: Trace = []
    hub = lib.Hub()
    with socket_pair() as (a, _b), socket_pair() as (c, _d):

        def consolidate(fds: list[int]) -> None:
            trace.append(("consolidated", sorted(fds) == sorted([a.fileno(), c.fileno()])))
            for fd in fds:
                hub.remove_writer(fd)
            hub.stop()

        hub.consolidate_callback = consolidate
        hub.add(a, None, hub.WRITE, consolidate=True)
        hub.add(c, None, hub.WRITE, consolidate=True)
        trace.append(("held", hub.writers.get(a.fileno()), a.fileno() in hub.consolidate))
        run_bounded(hub, stop_class(lib))
        trace.append(("left", a.fileno() in hub.writers, a.fileno() in hub.consolidate))
    hub.close()
    return trace


def callback_errors(lib: ModuleType) -> Trace:
    trace: Trace = []
    hub = lib.Hub()
    logging.getLogger(lib.hub.__name__).disabled = True
    try:
        with socket_pair() as (a, b):
            fd = a.fileno()

            def raises_empty() -> None:
                trace.append("empty")
                hub.remove_reader(fd)
                raise Empty()

            b.send(b"x")
            hub.add_reader(a, raises_empty)
            hub.run_once()  # Empty from a reader is swallowed
            trace.append(("still watched", fd in hub.readers))

            def boom() -> None:
                raise KeyError("from a reader")

            hub.add_reader(a, boom)
            with pytest.raises(KeyError):
                hub.run_once()  # any other error leaves the round
            trace.append(("kept after an error", fd in hub.readers))
            hub.remove(fd)

            def gen() -> Iterator[None]:
                trace.append("gen step 1")
                yield
                trace.append("gen step 2")

            hub.add_reader(a, gen())  # a generator is advanced, not called
            hub.run_once()
            hub.run_once()
            hub.run_once()  # exhausted: StopIteration is swallowed
            trace.append(("generator kept", fd in hub.readers))
            hub.remove(fd)

            # a timer's error is logged, unless it is one of propagate_errors
            hub.add_reader(a, lambda: None)  # readable: the round does not wait
            hub.call_later(0, lambda: 1 / 0)
            hub.run_once()
            trace.append("timer error logged")
            hub.propagate_errors = (ZeroDivisionError,)
            hub.call_later(0, lambda: 1 / 0)
            with pytest.raises(ZeroDivisionError):
                hub.fire_timers(propagate=hub.propagate_errors)
            trace.append("timer error propagated")
    finally:
        logging.getLogger(lib.hub.__name__).disabled = False
        hub.close()
    return trace


def pop_ready_and_reset(lib: ModuleType) -> Trace:
    # Celery's prefork pool takes the queued callbacks itself before closing the hub, and
    # resets the hub (keeping its timer) when a connection is lost
    trace: Trace = []
    hub = lib.Hub()
    hub.call_soon(trace.append, "one")
    ready = hub._pop_ready()
    trace.append(("popped", len(ready)))
    for item in ready:
        item()
    entry = hub.call_later(60, trace.append, "never")
    with socket_pair() as (a, _b):
        hub.add_reader(a, lambda: None)
        hub.reset()
        trace.append(("after reset", len(hub.readers), entry in {s.entry for s in hub.timer.queue}))
        hub.add_reader(a, lambda: None)
        trace.append(("usable after reset", a.fileno() in hub.readers))
    entry.cancel()
    hub.close()
    return trace


SCENARIOS: list[Scenario] = [
    readers_and_writers,
    timers_in_order,
    call_soon_and_stop,
    stop_from_another_thread,
    close_runs_on_close_and_pending,
    consolidated_writers,
    callback_errors,
    pop_ready_and_reset,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_hub_behaves_as_kombus(scenario: Scenario) -> None:
    theirs = scenario(KOMBU)
    ours = scenario(kombu_like.asynchronous)
    assert ours == theirs
