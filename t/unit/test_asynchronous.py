"""The event loop, its timer and semaphore (``kombu_like.asynchronous``)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

import pytest

from kombu_like.asynchronous import ERR, READ, WRITE, Hub, get_event_loop, set_event_loop
from kombu_like.asynchronous.held import MAX_HELD_ROUNDS
from kombu_like.asynchronous.semaphore import DummyLock, LaxBoundedSemaphore
from kombu_like.asynchronous.timer import Entry, Timer, to_timestamp
from kombu_like.asynchronous.wakeup import WakeupFd
from kombu_like.transport.virtual import evloop
from kombu_like.utils.eventio import poll


def _due(timer: Timer) -> list[Any]:
    """Entries the timer hands out now, until it reports a wait."""
    out = []
    for _delay, entry in timer:
        if entry is None:
            break
        out.append(entry)
    return out


# -- Timer ----------------------------------------------------------------------------
def test_timer_hands_out_due_entries_in_eta_order() -> None:
    timer = Timer()
    now = time.monotonic()
    calls: list[str] = []
    timer.call_at(now - 1, calls.append, ("second",))
    timer.call_at(now - 2, calls.append, ("first",))
    timer.call_at(now + 60, calls.append, ("later",))
    for entry in _due(timer):
        timer.apply_entry(entry)
    assert calls == ["first", "second"]
    assert len(timer) == 1


def test_timer_reports_wait_until_next_entry_capped_by_max_interval() -> None:
    timer = Timer(max_interval=5)
    timer.call_after(1.0, lambda: None)
    delay, entry = next(iter(timer))
    assert entry is None
    assert 0 < delay <= 1.0
    timer.clear()
    timer.call_after(30.0, lambda: None)
    assert next(iter(timer)) == (5.0, None)
    timer.clear()
    assert next(iter(timer)) == (None, None)


def test_cancelled_entries_are_skipped() -> None:
    timer = Timer()
    calls: list[int] = []
    entry = timer.call_after(0, calls.append, (1,))
    timer.call_after(0, calls.append, (2,))
    assert entry is not None
    entry.cancel()
    assert entry.cancelled
    for due in _due(timer):
        due()
    assert calls == [2]


def test_call_repeatedly_reschedules_until_cancelled() -> None:
    timer = Timer()
    calls: list[float] = []
    entry = timer.call_repeatedly(0.01, lambda: calls.append(time.monotonic()))
    assert entry is not None
    deadline = time.monotonic() + 10
    while len(calls) < 3 and time.monotonic() < deadline:
        for delay, due in timer:
            if due is None:
                time.sleep(delay or 0.01)
                break
            due()
    assert len(calls) >= 3
    assert len(timer) == 1  # the next run is already scheduled
    entry.cancel()
    time.sleep(0.02)
    for due in _due(timer):
        due()
    assert len(timer) == 0  # cancelled: not rescheduled


def test_apply_entry_reports_errors_to_on_error() -> None:
    errors: list[BaseException] = []
    timer = Timer(on_error=errors.append)

    def boom() -> None:
        raise RuntimeError("timer boom")

    timer.apply_entry(Entry(boom))
    assert [str(e) for e in errors] == ["timer boom"]


def test_to_timestamp_converts_datetimes_to_the_monotonic_clock() -> None:
    in_two = datetime.now(timezone.utc) + timedelta(seconds=2)
    stamp = to_timestamp(in_two)
    assert 1.5 < stamp - time.monotonic() <= 2.0
    naive_utc = in_two.replace(tzinfo=None)
    assert abs(to_timestamp(naive_utc) - stamp) < 0.05
    assert to_timestamp(datetime(2000, 1, 1, tzinfo=timezone.utc)) == 0
    assert to_timestamp(12.5) == 12.5


def test_enter_at_accepts_a_datetime_eta() -> None:
    timer = Timer()
    timer.enter_at(Entry(lambda: None), datetime.now(timezone.utc) - timedelta(seconds=1))
    assert len(_due(timer)) == 1


def test_timer_thread_runs_an_eta_entry_not_before_its_time() -> None:
    # the way Celery's timer thread drives the schedule: iterate, sleep, run
    timer = Timer(max_interval=0.5)
    ran = threading.Event()
    at: list[float] = []
    eta = time.monotonic() + 0.3
    timer.call_at(eta, lambda: (at.append(time.monotonic()), ran.set()))

    def drive() -> None:
        for delay, entry in timer:
            if ran.is_set():
                return
            if entry is None:
                time.sleep(delay or 0.05)
            else:
                timer.apply_entry(entry)

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    assert ran.wait(10)
    thread.join(10)
    assert at[0] >= eta


# -- Hub ------------------------------------------------------------------------------
@pytest.fixture
def hub() -> Any:
    loop = Hub()
    yield loop
    loop.close()


def test_hub_calls_reader_when_socket_is_readable(hub: Hub) -> None:
    a, b = socket.socketpair()
    received: list[bytes] = []

    def on_readable() -> None:
        received.append(a.recv(100))
        hub.stop()

    hub.add_reader(a, on_readable)
    b.send(b"ping")
    hub.run_forever()
    assert received == [b"ping"]
    hub.remove_reader(a)
    assert a.fileno() not in hub.readers
    a.close()
    b.close()


def test_hub_calls_writer_and_keeps_reader_when_writer_removed(hub: Hub) -> None:
    a, b = socket.socketpair()
    events: list[str] = []

    def on_writable() -> None:
        events.append("w")
        hub.remove_writer(a)
        b.send(b"x")

    def on_readable() -> None:
        events.append("r" + a.recv(10).decode())
        hub.stop()

    hub.add_writer(a, on_writable)
    hub.add_reader(a, on_readable)
    hub.run_forever()
    assert events == ["w", "rx"]
    assert a.fileno() in hub.readers and a.fileno() not in hub.writers
    a.close()
    b.close()


def test_call_soon_from_another_thread_wakes_the_loop(hub: Hub) -> None:
    a, b = socket.socketpair()
    hub.add_reader(a, lambda: None)  # something to wait on; it never becomes readable
    done: list[str] = []
    thread = threading.Timer(0.1, lambda: hub.call_soon(lambda: (done.append("soon"), hub.stop())))
    thread.start()
    hub.run_forever()
    assert done == ["soon"]
    thread.join(5)
    a.close()
    b.close()


def test_wakeup_from_another_thread_wakes_a_poll_and_wakes_fold_until_drained() -> None:
    wakeup = WakeupFd()
    poller = poll()
    try:
        poller.register(wakeup.fileno(), READ)
        assert poller.poll(0) == [] and wakeup.drain() is False
        thread = threading.Thread(target=lambda: [wakeup.wake() for _ in range(3)])
        thread.start()
        assert poller.poll(5) == [(wakeup.fileno(), READ)]
        thread.join(5)
        assert wakeup.drain() is True
        assert poller.poll(0) == [], "three wake-ups needed more than one drain"
        wakeup.wake()  # a wake-up after a drain makes it readable again
        assert poller.poll(0) == [(wakeup.fileno(), READ)]
        assert wakeup.clear() is True  # the names transports used before stay
        assert evloop.WakeupFd is WakeupFd
    finally:
        poller.close()
        wakeup.close()
    wakeup.wake()  # closed: ignored, not an error
    wakeup.signal()
    assert wakeup.drain() is False


def test_hub_runs_timers(hub: Hub) -> None:
    fired: list[float] = []
    eta = time.monotonic() + 0.1
    hub.call_at(eta, lambda: (fired.append(time.monotonic()), hub.stop()))
    hub.run_forever()
    assert len(fired) == 1 and fired[0] >= eta


def test_hub_close_runs_on_close_and_pending_callbacks() -> None:
    loop = Hub()
    seen: list[str] = []
    loop.on_close.add(lambda h: seen.append("closed"))
    loop.call_soon(seen.append, "pending")
    set_event_loop(loop)
    assert get_event_loop() is loop
    loop.close()
    assert seen == ["closed", "pending"]
    assert get_event_loop() is None


def test_consolidated_writers_are_reported_together(hub: Hub) -> None:
    pairs = [socket.socketpair() for _ in range(2)]
    batches: list[list[int]] = []

    def consolidate(fds: list[int]) -> None:
        batches.append(sorted(fds))
        hub.stop()

    hub.consolidate_callback = consolidate
    for a, _ in pairs:
        hub.add(a, None, WRITE, consolidate=True)
    hub.run_forever()
    assert batches == [sorted(a.fileno() for a, _ in pairs)]
    for a, b in pairs:
        a.close()
        b.close()


# -- poller ---------------------------------------------------------------------------
def test_poller_reports_read_and_write_readiness() -> None:
    poller = poll()
    a, b = socket.socketpair()
    try:
        poller.register(a, WRITE)
        assert poller.poll(1) == [(a.fileno(), WRITE)]
        poller.register(a, READ | ERR)
        assert poller.poll(0) == []
        b.send(b"1")
        assert poller.poll(1) == [(a.fileno(), READ)]
        poller.unregister(a)
        poller.unregister(a)  # twice is fine
        assert poller.poll(0) == []
    finally:
        poller.close()
        a.close()
        b.close()


def test_a_descriptor_number_reused_after_close_is_watched_again(hub: Hub) -> None:
    # epoll forgets a closed socket by itself; a new socket given the same number (a
    # reconnect) must be watched, not skipped as "registered already"
    a, b = socket.socketpair()
    hub.add_reader(a, lambda: None)
    hub.run_once()
    number = a.fileno()
    a.close()
    b.close()
    c, d = socket.socketpair()
    if d.fileno() == number:
        c, d = d, c
    assert c.fileno() == number
    received: list[bytes] = []
    hub.add_reader(c, lambda: (received.append(c.recv(10)), hub.stop()))
    d.send(b"x")
    hub.call_later(5, hub.stop)
    hub.run_forever()
    assert received == [b"x"]
    c.close()
    d.close()


# -- semaphores -----------------------------------------------------------------------
def test_lax_bounded_semaphore() -> None:
    sem = LaxBoundedSemaphore(2)
    calls: list[int] = []
    assert sem.acquire(calls.append, 1)
    assert sem.acquire(calls.append, 2)
    assert not sem.acquire(calls.append, 3)  # waits for a release
    assert calls == [1, 2]
    sem.release()
    assert calls == [1, 2, 3]
    sem.release()
    sem.release()
    sem.release()  # more releases than acquires: the value stays bounded
    assert sem.value == 2
    sem.grow(1)
    assert sem.value == 3 and sem.initial_value == 3
    sem.shrink(2)
    assert sem.value == 1 and sem.initial_value == 1
    sem.acquire(calls.append, 4)
    sem.acquire(calls.append, 5)
    sem.clear()
    assert sem.value == 1
    sem.release()
    assert calls == [1, 2, 3, 4]


def test_dummy_lock_is_a_context_manager() -> None:
    with DummyLock() as lock:
        assert isinstance(lock, DummyLock)


# -- work deferred until the loop waits (a connection's acks) --------------------------
class Watched(NamedTuple):
    """A hub and a socket pair: ``near`` is the end it may watch."""

    hub: Hub
    near: socket.socket
    far: socket.socket

    def watch(self, callback: Any = lambda: None, busy: bool = False) -> None:
        """Watch ``near``; ``busy``: with a byte never read, readable every round."""
        if busy:
            self.far.sendall(b"x")
        self.hub.add_reader(self.near.fileno(), callback)


@pytest.fixture
def held_hub() -> Iterator[Watched]:
    near, far = socket.socketpair()
    watched = Watched(Hub(), near, far)
    try:
        yield watched
    finally:
        watched.hub.close()
        near.close()
        far.close()


def test_work_deferred_until_the_loop_waits_runs_before_it_waits(held_hub: Watched) -> None:
    hub = held_hub.hub
    ran: list[float] = []
    held_hub.watch()
    hub.call_soon(lambda: hub.defer_until_wait(lambda: ran.append(time.monotonic())))
    hub.call_later(0.3, lambda: None)  # the round then waits up to 0.3 s
    loop = hub.create_loop()
    started = time.monotonic()
    next(loop)  # runs the callback, then waits
    ended = time.monotonic()
    assert len(ran) == 1
    assert ran[0] - started < 0.1 and ended - ran[0] > 0.15  # run first, then the wait


def test_deferred_work_waits_while_events_keep_coming_but_a_few_rounds_at_most(
    held_hub: Watched,
) -> None:
    hub = held_hub.hub
    rounds: list[int] = []
    ran: list[int] = []
    held_hub.watch(lambda: rounds.append(1), busy=True)
    hub.call_soon(lambda: hub.defer_until_wait(lambda: ran.append(len(rounds))))
    loop = hub.create_loop()
    for _ in range(MAX_HELD_ROUNDS - 1):
        next(loop)
    assert ran == []  # every round found events at once: nothing waited yet
    next(loop)
    assert ran == [MAX_HELD_ROUNDS - 1]
    assert len(rounds) == MAX_HELD_ROUNDS


def test_deferred_work_runs_when_the_loop_stops_or_a_single_round_ends(held_hub: Watched) -> None:
    hub = held_hub.hub
    ran: list[str] = []
    held_hub.watch(busy=True)

    def defer_and_stop() -> None:
        hub.defer_until_wait(lambda: ran.append("stopped"))
        hub.stop()

    hub.call_soon(defer_and_stop)
    hub.run_forever()
    assert ran == ["stopped"]
    hub.run_once()  # the stopped loop's last word (as Kombu's): a new loop starts next
    hub.call_soon(lambda: hub.defer_until_wait(lambda: ran.append("once")))
    hub.run_once()
    assert ran == ["stopped", "once"]
    # another thread cannot defer: it is told so, and does the work itself
    answers: list[bool] = []
    thread = threading.Thread(target=lambda: answers.append(hub.defer_until_wait(lambda: None)))
    thread.start()
    thread.join(5)
    assert answers == [False]
    # nor can the loop's thread between rounds or after the last: no wait is certain to come
    assert hub.defer_until_wait(lambda: None) is False


def test_deferred_work_held_by_a_slow_round_goes_before_the_next_one(held_hub: Watched) -> None:
    # a callback that takes long (a task run in the loop's thread) must not keep the work
    # it deferred -- a connection's ack -- held through the rounds after it
    hub = held_hub.hub
    ran: list[int] = []
    rounds: list[int] = []

    def on_readable() -> None:
        rounds.append(1)
        if len(rounds) == 1:  # the first message: acked, then a slow task
            hub.defer_until_wait(lambda: ran.append(len(rounds)))
            time.sleep(0.05)

    held_hub.watch(on_readable, busy=True)
    loop = hub.create_loop()
    next(loop)
    assert ran == []
    next(loop)  # held longer than MAX_HELD_SECONDS: run before this round's look
    assert ran == [1]


def test_closing_the_hub_runs_what_waited_for_it_to_wait_before_its_on_close(
    held_hub: Watched,
) -> None:
    hub = held_hub.hub
    order: list[str] = []
    held_hub.watch(busy=True)
    hub.on_close.add(lambda h: order.append("closed"))
    hub.call_soon(lambda: hub.defer_until_wait(lambda: order.append("acks")))
    loop = hub.create_loop()
    next(loop)  # the round found events at once: the acks are still held
    assert order == []
    hub.close()
    assert order == ["acks", "closed"]
    loop.close()
