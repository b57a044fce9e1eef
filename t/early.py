"""Slow runs that a test only checks the outcome of, started as soon as the session has
collected that test, so they go on while other tests wait on brokers.

A test module declares its run as an :class:`Early` (the tests that check it, and how to
start it in a directory of its own); ``t/conftest.py`` starts the declared runs after
collection and closes them when the session ends.  The test takes the session's run with
:meth:`Early.run`, which starts one itself when the session did not (a run of that test
alone, say).  Under pytest-xdist every worker collects every test but only one runs it, so
there the test starts its run itself while the other workers go on with theirs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest


class Run(Protocol):
    def close(self) -> None: ...


@dataclass(frozen=True, eq=False)
class Early:
    """A run the tests ending in ``tests`` (node id suffixes) check."""

    name: str
    tests: tuple[str, ...]
    start: Callable[[Path], Run]
    key: pytest.StashKey[Run] = field(default_factory=pytest.StashKey)

    def begin(self, session: pytest.Session) -> None:
        if os.environ.get("PYTEST_XDIST_WORKER"):
            # every worker collects every test, but only one runs it: the test starts its
            # run itself, while the other workers go on with theirs
            return
        if any(item.nodeid.endswith(self.tests) for item in session.items):
            workdir = Path(tempfile.mkdtemp(prefix=f"kl-{self.name}-"))
            try:
                run = self.start(workdir)
            except Exception as exc:  # the test reports it, not the session's collection
                run = _Failed(exc, workdir)
            session.config.stash[self.key] = run

    def end(self, session: pytest.Session) -> None:
        run = session.config.stash.get(self.key, None)
        if run is not None:
            run.close()

    def run(self, request: pytest.FixtureRequest) -> Any:
        """The session's run, or one started now (closed when the test ends)."""
        run = request.config.stash.get(self.key, None)
        if run is None:
            run = self.start(Path(tempfile.mkdtemp(prefix=f"kl-{self.name}-")))
            request.addfinalizer(run.close)
        if isinstance(run, _Failed):
            raise run.error
        return run


class _Failed:
    """A run that could not start: its error is raised by the test that checks it."""

    def __init__(self, error: BaseException, workdir: Path) -> None:
        self.error = error
        self.workdir = workdir

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


class ProcessRun:
    """A command running in ``workdir``, its output (stdout and stderr) kept in a file there."""

    def __init__(
        self, argv: Sequence[str], workdir: Path, *, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self._output = (workdir / "output.txt").open("w+")
        self.proc = subprocess.Popen(
            list(argv),
            cwd=cwd or workdir,
            env=None if env is None else dict(env),
            stdout=self._output,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait(self, timeout: float) -> tuple[int, str]:
        """The command's exit status and its output (the last 20,000 characters)."""
        returncode = self.proc.wait(timeout=timeout)
        self._output.seek(0)
        return returncode, self._output.read()[-20000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._output.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
