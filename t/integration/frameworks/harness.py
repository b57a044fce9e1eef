"""Processes for framework tests: drivers (clients) and workers, with bounded waits."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from itertools import count
from pathlib import Path
from typing import Any

from .venvs import REPO_ROOT, process_env


class RemoteError(Exception):
    """An exception raised inside a driver process."""

    def __init__(self, info: Mapping[str, Any]) -> None:
        self.type = str(info.get("type"))
        self.name = str(info.get("name"))
        self.message = str(info.get("message"))
        self.traceback = str(info.get("traceback"))
        super().__init__(f"{self.type}: {self.message}")


class OutputWatcher:
    """Reads a process's output in a thread, keeps the tail, and waits for patterns."""

    def __init__(self, stream: Any, keep: int = 400) -> None:
        self.lines: deque[str] = deque(maxlen=keep)
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in iter(stream.readline, ""):
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> bool:
        """True once a line matching ``pattern`` was seen (False after ``timeout`` or EOF)."""
        regex = re.compile(pattern)
        with self._cond:
            return self._cond.wait_for(
                lambda: any(regex.search(line) for line in self.lines) or self._closed, timeout
            ) and any(regex.search(line) for line in self.lines)

    def tail(self, n: int = 60) -> str:
        with self._cond:
            return "\n".join(list(self.lines)[-n:])


class Driver:
    """A client process running a scenario module (see :mod:`.driver`)."""

    def __init__(
        self,
        python: Path,
        module: str,
        env: Mapping[str, str] | None = None,
        alias: bool = True,
        start_timeout: float = 60,
    ) -> None:
        cmd = [str(python), "-m", "t.integration.frameworks.driver", *(["--alias"] if alias else []), module]
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=process_env(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.stderr = OutputWatcher(self.proc.stderr)
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read_replies, daemon=True).start()
        self._ids = count(1)
        self._next_reply(start_timeout, "start")

    def _read_replies(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, ""):
            self._replies.put(json.loads(line))
        self._replies.put(None)

    def _next_reply(self, timeout: float, what: str) -> dict[str, Any]:
        try:
            reply = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"driver did not answer {what!r} within {timeout}s; its stderr:\n{self.stderr.tail()}"
            ) from None
        if reply is None:
            self._replies.put(None)
            raise AssertionError(f"driver exited ({self.proc.poll()}) during {what!r}:\n{self.stderr.tail()}")
        return reply

    def call(self, name: str, *args: Any, timeout: float = 60, **kwargs: Any) -> Any:
        """Run ``module.name(*args, **kwargs)`` in the driver; re-raise its error as RemoteError."""
        request_id = next(self._ids)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": request_id, "call": name, "args": args, "kwargs": kwargs}) + "\n")
        self.proc.stdin.flush()
        reply = self._next_reply(timeout, name)
        assert reply["id"] == request_id, reply
        if "error" in reply:
            raise RemoteError(reply["error"])
        return reply["ok"]

    def close(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            try:
                self.call("shutdown", timeout=timeout)
            except (AssertionError, RemoteError, OSError):
                pass
        stop_process(self.proc, timeout)


class Worker:
    """A framework worker process; ``ready_pattern`` in its output means it is serving."""

    def __init__(
        self, cmd: Sequence[str], env: Mapping[str, str] | None, ready_pattern: str, ready_timeout: float = 60
    ) -> None:
        self.proc = subprocess.Popen(
            list(cmd),
            cwd=REPO_ROOT,
            env=process_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.output = OutputWatcher(self.proc.stdout)
        if not self.output.wait_for(ready_pattern, ready_timeout):
            tail = self.output.tail()
            stop_process(self.proc, 10)
            raise AssertionError(f"worker not ready within {ready_timeout}s ({cmd}):\n{tail}")

    def stop(self, timeout: float = 30) -> int | None:
        """Ask the worker to stop (SIGTERM: a warm shutdown) and wait for it."""
        return stop_process(self.proc, timeout)


def stop_process(proc: subprocess.Popen[Any], timeout: float) -> int | None:
    """SIGTERM ``proc``, wait up to ``timeout``, then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(10)
    return proc.returncode


def unique_suffix() -> str:
    return f"{os.getpid()}{os.urandom(3).hex()}"
