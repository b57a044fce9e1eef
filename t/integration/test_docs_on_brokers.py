"""The userguide's examples on RabbitMQ, Redis and sqlite, not only on memory://.

``docs/conf.py`` replaces every ``"memory://"`` of a page with ``KOMBU_LIKE_DOCS_URL``
before Sphinx's doctest builder reads it; where a broker's output legitimately differs,
the page holds that output in a block marked ``:skipif: transport != "redis"``.
Each broker gets a namespace of its own (a fresh RabbitMQ vhost, a fresh Redis key
prefix, a fresh sqlite file), so the examples' fixed names never meet another run's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from t.early import Early, ProcessRun
from t.unit.test_docs import DOCS, ROOT, check_doctest_report

#: (broker, page) pairs with a known, reported bug: that page's failures are expected on that
#: broker, and once it passes the entry must go (a strict expected failure)
KNOWN_FAILURES: set[tuple[str, str]] = set()

#: the pages whose examples must hold on every broker, not only on memory://
BROKER_PAGES = [*sorted((DOCS / "userguide").glob("*.rst")), DOCS / "getting-started.rst"]


@contextmanager
def _rabbitmq_vhost() -> Iterator[str]:
    """A fresh RabbitMQ vhost: names the examples declare cannot meet another run's."""
    vhost = f"docs-{uuid.uuid4().hex[:12]}"

    def ctl(*args: str) -> None:
        result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"rabbitmqctl {' '.join(args)}: {result.stdout}{result.stderr}"

    ctl("add_vhost", vhost)
    try:
        ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        ctl("delete_vhost", vhost)


@contextmanager
def _redis_prefix() -> Iterator[str]:
    """Redis with a fresh key prefix, whose keys are deleted afterwards."""
    import redis

    prefix = f"docs-{uuid.uuid4().hex[:12]}."
    try:
        yield f"redis://127.0.0.1:6379/0?global_keyprefix={prefix}"
    finally:
        client = redis.Redis(host="127.0.0.1", port=6379, db=0)
        try:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


def _start_doctest(url: str, out: Path) -> ProcessRun:
    """Sphinx's doctest builder on :data:`BROKER_PAGES` with ``memory://`` replaced by ``url``.

    Only those pages (and the root page, which Sphinx needs) are read: reading every page
    of the docs, autodoc included, would double each run's work, and the other pages'
    examples run on memory:// in t/unit/test_docs.py.
    """
    pages = [str(page.relative_to(DOCS)) for page in BROKER_PAGES]
    env = {**os.environ, "KOMBU_LIKE_DOCS_URL": url}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    out.mkdir()
    return ProcessRun(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-q",
            "-E",
            "-b",
            "doctest",
            "-D",
            "include_patterns=" + ",".join(["index.rst", *pages]),
            # the root page's toctree names pages left out on purpose
            "-D",
            "suppress_warnings=ref.python,toc.not_readable",
            "-d",
            str(out / "doctrees"),
            str(DOCS),
            str(out / "doctest"),
            *pages,
        ],
        out,
        cwd=DOCS,
        env=env,
    )


class BrokerDocsRuns:
    """The doctest builds of :data:`BROKER_PAGES` on each broker, in parallel, each in a
    namespace of its own (removed by :meth:`close`).  The RabbitMQ run starts last: making
    its vhost takes rabbitmqctl a while, during which the other two already run."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._stack = ExitStack()
        self.runs: dict[str, ProcessRun] = {}
        try:
            for name, namespace in (
                ("sqlite", lambda: f"sqlite:///{workdir / 'docs.db'}"),
                ("redis", lambda: self._stack.enter_context(_redis_prefix())),
                ("amqp", lambda: self._stack.enter_context(_rabbitmq_vhost())),
            ):
                run = self.runs[name] = _start_doctest(namespace(), workdir / name)
                self._stack.callback(run.close)
        except BaseException:
            self._stack.close()
            raise

    def close(self) -> None:
        self._stack.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


#: started as soon as the session has collected the test (:mod:`t.early`): three Sphinx
#: builds of about 15 s that run while other tests wait on brokers
BROKER_DOCS = Early(
    "docs-on-brokers", ("test_docs_on_brokers.py::test_userguide_examples_hold_on_every_broker",), BrokerDocsRuns
)


@pytest.mark.amqp
@pytest.mark.redis
def test_userguide_examples_hold_on_every_broker(request: pytest.FixtureRequest, amqp_url: str, redis_url: str) -> None:
    # the same pages, with memory:// replaced by each broker's URL (docs/conf.py), built in
    # parallel; a block marked ``:skipif: transport != "redis"`` holds one broker's output
    runs: BrokerDocsRuns = BROKER_DOCS.run(request)
    outcomes = {name: run.wait(timeout=240)[::-1] for name, run in runs.runs.items()}
    for name, (stdout, returncode) in outcomes.items():
        report = runs.workdir / name / "doctest" / "output.txt"
        details = report.read_text() if report.exists() else ""
        failed_pages = set(re.findall(r'^File "([^"]+)", line \d+', details, re.M))
        expected = {page for broker, page in KNOWN_FAILURES if broker == name}
        assert not expected - failed_pages, f"{expected - failed_pages} pass on {name} now: update KNOWN_FAILURES"
        if failed_pages and failed_pages <= expected:
            continue
        check_doctest_report(report, returncode, stdout, f" on {name}")
