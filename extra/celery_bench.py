"""Tasks per second through a real Celery worker, on Kombu and on kombu_like, same broker.

Run by ``extra/celery-bench`` (which finds or builds the Celery virtualenv the integration
tests use), or directly by a Python that has Celery, Kombu and redis-py installed::

    extra/celery-bench redis://127.0.0.1:6379/0 amqp://guest:guest@127.0.0.1:5672// --rounds 3

Method, for each broker and each round, the two libraries taking turns:

1. a publisher process (on the library under test) sends ``--tasks`` no-op tasks to a queue
   of their own, before any worker runs;
2. ``celery worker -P prefork -c 2`` starts on that library (kombu_like through
   ``python -m kombu_like.alias``), results ignored, mingle and gossip off;
3. the clock and the CPU count start when the worker's ``worker_ready`` signal fires (Celery
   takes no task before it) and stop when the last task has run: each task increments a
   counter in Redis (``--counter``) and the one that reaches the total pushes a "done"
   entry the bench waits for.  CPU seconds are those of the worker's main process and of
   its pool processes over exactly that window, read from ``/proc``, and beside them those
   of the servers on this machine (RabbitMQ's ``beam.smp``, ``redis-server``: the broker or
   the counter), since on a small machine the run is bound by all of them together;
4. the worker is stopped (a warm shutdown) and the queue deleted.

Each library keeps its best round (highest tasks/s; the CPU columns are that round's).
The publisher's rate and CPU (the client side of the broker) are reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LIBRARIES = ("kombu", "kombu_like")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- the Celery application: imported by the worker (``-A celery_bench``) and the publisher --
def _make_app() -> Any:
    from celery import Celery
    from celery.signals import worker_ready, worker_shutdown

    app = Celery("klbench", broker=os.environ.get("KL_BENCH_BROKER", "memory://"))
    app.conf.update(
        task_default_queue=os.environ.get("KL_BENCH_QUEUE", "klbench"),
        control_exchange="klbench.control",
        event_exchange="klbench.ev",
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    counter: list[Any] = []

    @app.task(name="klbench.noop", ignore_result=True)
    def noop() -> None:
        if not counter:  # one client per pool process, made after the fork
            import redis

            counter.append(redis.Redis.from_url(os.environ["KL_BENCH_COUNTER"]))
        done = counter[0].incr(os.environ["KL_BENCH_KEY"] + ":count")
        if done == int(os.environ["KL_BENCH_TASKS"]):
            counter[0].rpush(os.environ["KL_BENCH_KEY"] + ":done", time.time())

    @worker_ready.connect(weak=False)
    def report_ready(sender: Any = None, **_: Any) -> None:
        import kombu
        import redis

        info = {"loop": getattr(sender.loop, "__name__", repr(sender.loop)), "kombu": kombu.__name__}
        if os.environ.get("KL_BENCH_PROFILE"):
            import cProfile

            # from here on, the main process's calls (the loop starts right after this signal)
            profiler.append(cProfile.Profile())
            profiler[0].enable()
        redis.Redis.from_url(os.environ["KL_BENCH_COUNTER"]).rpush(
            os.environ["KL_BENCH_KEY"] + ":ready", json.dumps(info)
        )

    profiler: list[Any] = []

    @worker_shutdown.connect(weak=False)
    def save_profile(**_: Any) -> None:
        if profiler:
            profiler[0].disable()
            profiler[0].dump_stats(os.environ["KL_BENCH_PROFILE"])

    app.klbench_noop = noop
    return app


if os.environ.get("KL_BENCH_KEY"):
    app = _make_app()


def publish(tasks: int) -> None:
    """Send ``tasks`` no-op tasks on one producer; print the seconds and CPU it took."""
    started, cpu = time.perf_counter(), time.process_time()
    with app.producer_or_acquire() as producer:
        for _ in range(tasks):
            app.klbench_noop.apply_async(producer=producer)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"seconds": elapsed, "cpu": cpu}))


def delete_queue() -> None:
    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(app.conf.task_default_queue)


# -- the bench ------------------------------------------------------------------------------
@dataclass
class Round:
    library: str
    loop: str
    tasks_per_s: float
    seconds: float
    cpu_main: float
    cpu_pool: float
    publish_per_s: float
    publish_cpu: float
    #: CPU seconds of the broker servers over the window, by command name
    cpu_servers: dict[str, float]

    @property
    def cpu_worker(self) -> float:
        return self.cpu_main + self.cpu_pool


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


#: servers whose CPU is reported beside the worker's (RabbitMQ, and Redis: the broker or
#: the counter's); the run is bound by the CPU of all of them together
SERVERS = ("beam.smp", "redis-server")


def _server_pids() -> dict[int, str]:
    pids = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if name in SERVERS:
                pids[int(entry.name)] = name
    return pids


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _python_cmd(python: str, library: str) -> list[str]:
    return [python, "-m", "kombu_like.alias"] if library == "kombu_like" else [python]


def run_round(
    python: str, broker: str, counter_url: str, library: str, tasks: int, timeout: float, profile: str | None = None
) -> Round:
    import redis

    key = f"klbench:{os.getpid()}:{os.urandom(4).hex()}"
    env = dict(os.environ)
    env.update(
        KL_BENCH_BROKER=broker,
        KL_BENCH_QUEUE=key.replace(":", "."),
        KL_BENCH_COUNTER=counter_url,
        KL_BENCH_KEY=key,
        KL_BENCH_TASKS=str(tasks),
        PYTHONPATH=os.pathsep.join([str(HERE), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    if profile:
        env["KL_BENCH_PROFILE"] = profile
    client = redis.Redis.from_url(counter_url, socket_timeout=timeout + 30)
    script = str(Path(__file__).resolve())
    published = json.loads(
        subprocess.run(
            [*_python_cmd(python, library), script, "publish", str(tasks)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        ).stdout.splitlines()[-1]
    )
    worker_cmd = [
        *_python_cmd(python, library),
        "-m",
        "celery",
        "-A",
        "celery_bench",
        "worker",
        "-P",
        "prefork",
        "-c",
        "2",
        "--without-mingle",
        "--without-gossip",
        "-l",
        "WARNING",
        "-n",
        f"{key.replace(':', '.')}@localhost",
    ]
    with tempfile.TemporaryFile("w+") as log:
        worker = subprocess.Popen(worker_cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            ready = client.blpop([key + ":ready"], timeout=60)
            if ready is None:
                raise RuntimeError(f"{library} worker not ready within 60s:\n{_tail(log)}")
            started = time.time()
            pool = _children(worker.pid)
            servers = _server_pids()
            main0, pool0 = _cpu(worker.pid), {pid: _cpu(pid) for pid in pool}
            servers0 = {pid: _cpu(pid) for pid in servers}
            done = client.blpop([key + ":done"], timeout=timeout)
            finished = time.time()
            main1, pool1 = _cpu(worker.pid), {pid: _cpu(pid) for pid in pool}
            servers1 = {pid: _cpu(pid) for pid in servers}
            if done is None:
                count = client.get(key + ":count")
                raise RuntimeError(f"{library}: {count} of {tasks} tasks ran within {timeout}s:\n{_tail(log)}")
            # the last task's own clock, not the moment the bench noticed it
            finished = min(finished, float(done[1]))
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
            client.delete(key + ":count", key + ":done", key + ":ready")
    subprocess.run(
        [*_python_cmd(python, library), script, "delete"], env=env, check=True, capture_output=True, timeout=60
    )
    seconds = finished - started
    info = json.loads(ready[1])
    if info["kombu"] != library:
        raise RuntimeError(f"the worker ran {info['kombu']}, not {library}")
    return Round(
        library=library,
        loop=info["loop"],
        tasks_per_s=tasks / seconds,
        seconds=seconds,
        cpu_main=main1 - main0,
        cpu_pool=sum(pool1[p] - pool0[p] for p in pool),
        publish_per_s=tasks / published["seconds"],
        publish_cpu=published["cpu"],
        cpu_servers={name: sum(servers1[p] - servers0[p] for p, n in servers.items() if n == name) for name in SERVERS},
    )


def _tail(log: Any, lines: int = 40) -> str:
    log.seek(0)
    return "".join(log.readlines()[-lines:])


def _print_profile(path: str, top: int) -> None:
    import pstats

    for order in ("tottime", "cumtime"):
        print(f"== {path} by {order}", file=sys.stderr)
        pstats.Stats(path, stream=sys.stderr).sort_stats(order).print_stats(top)


def format_table(broker: str, tasks: int, best: dict[str, Round]) -> str:
    rows = [
        ("loop", lambda r: r.loop, None),
        ("tasks/s", lambda r: f"{r.tasks_per_s:,.0f}", lambda k, o: o.tasks_per_s / k.tasks_per_s),
        ("wall s", lambda r: f"{r.seconds:.2f}", None),
        ("CPU s worker main", lambda r: f"{r.cpu_main:.2f}", lambda k, o: k.cpu_main / o.cpu_main),
        ("CPU s pool (2)", lambda r: f"{r.cpu_pool:.2f}", lambda k, o: k.cpu_pool / o.cpu_pool),
        ("CPU s worker total", lambda r: f"{r.cpu_worker:.2f}", lambda k, o: k.cpu_worker / o.cpu_worker),
        *(
            (
                f"CPU s {name}",
                lambda r, n=name: f"{r.cpu_servers[n]:.2f}",
                lambda k, o, n=name: k.cpu_servers[n] / o.cpu_servers[n] if o.cpu_servers[n] else 0.0,
            )
            for name in SERVERS
        ),
        ("publish tasks/s", lambda r: f"{r.publish_per_s:,.0f}", lambda k, o: o.publish_per_s / k.publish_per_s),
        ("publish CPU s", lambda r: f"{r.publish_cpu:.2f}", lambda k, o: k.publish_cpu / o.publish_cpu),
    ]
    out = [f"{broker}  ({tasks:,} no-op tasks, prefork -c 2, results ignored)"]
    out.append(f"  {'':<20}{'kombu':>12}{'kombu_like':>12}{'ratio':>8}")
    kombu, ours = best["kombu"], best["kombu_like"]
    for name, cell, ratio in rows:
        r = f"{ratio(kombu, ours):.2f}x" if ratio else ""
        out.append(f"  {name:<20}{cell(kombu):>12}{cell(ours):>12}{r:>8}")
    return "\n".join(out)


def bench(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="celery-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("brokers", nargs="+", help="broker URLs (redis://, amqp:// or pyamqp://)")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per library (they take turns)")
    parser.add_argument("--counter", default="redis://127.0.0.1:6379/0", help="Redis for the done counter")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", action="store_true", help="print every round as JSON lines too")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="cProfile the worker's main process from worker_ready on (slows it: the figures are "
        "then for finding hot spots, not for comparing); prints the top functions and leaves "
        "DIR/<scheme>-<library>.prof",
    )
    parser.add_argument("--top", type=int, default=25, help="functions to print per profile")
    options = parser.parse_args(argv)
    tables = []
    for broker in options.brokers:
        best: dict[str, Round] = {}
        for index in range(options.rounds * len(LIBRARIES)):
            # alternate which library goes first, so neither always runs on a warm broker
            library = LIBRARIES[(index + index // len(LIBRARIES)) % len(LIBRARIES)]
            print(f"{broker}: round {index // 2 + 1} {library} ...", file=sys.stderr, flush=True)
            profile = None
            if options.profile:
                Path(options.profile).mkdir(parents=True, exist_ok=True)
                profile = str(Path(options.profile, f"{broker.split(':', 1)[0]}-{library}.prof").resolve())
            result = run_round(
                sys.executable, broker, options.counter, library, options.tasks, options.timeout, profile
            )
            if profile:
                _print_profile(profile, options.top)
            print(
                f"  {result.tasks_per_s:,.0f} tasks/s on {result.loop}, CPU main {result.cpu_main:.2f}s "
                f"pool {result.cpu_pool:.2f}s",
                file=sys.stderr,
                flush=True,
            )
            if options.json:
                print(json.dumps({"broker": broker, **result.__dict__}), flush=True)
            if library not in best or result.tasks_per_s > best[library].tasks_per_s:
                best[library] = result
        tables.append(format_table(broker, options.tasks, best))
    print("\n\n".join(tables))
    print("ratio: kombu_like over Kombu for rates, Kombu over kombu_like for CPU (above 1: kombu_like better)")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["publish"]:
        publish(int(argv[1]))
        return 0
    if argv[:1] == ["delete"]:
        delete_queue()
        return 0
    return bench(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
