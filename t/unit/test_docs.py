"""Every code example in the documentation runs.

Python examples are Sphinx ``testcode``/``testoutput`` blocks, run by the doctest builder.
Shell examples are ``.. code-block:: console`` blocks: each ``$ command`` runs in bash, in
a fresh directory per page (so ``kombu-like`` uses a fresh sqlite file), and its output
must match the lines under it.  In expected output ``...`` matches any text within a line,
and a line that is only ``...`` matches any number of lines.

The userguide's Python examples also run on RabbitMQ, Redis and sqlite:
t/integration/test_docs_on_brokers.py.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from t.early import Early, ProcessRun

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. code-block:: console\s*$")


@dataclass
class Command:
    page: str
    line: int
    command: str
    expected: list[str]


def console_blocks(path: Path) -> list[list[Command]]:
    """The ``$`` commands of each console block of ``path``, with their expected output."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[list[Command]] = []
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        i += 1
        if not match:
            continue
        indent = len(match.group("indent"))
        body: list[tuple[int, str]] = []
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            body.append((i + 1, lines[i]))
            i += 1
        content = [(n, text) for n, text in body if text.strip()]
        if not content:
            continue
        margin = min(len(text) - len(text.lstrip()) for _, text in content)
        commands: list[Command] = []
        for number, text in body:
            text = text[margin:].rstrip()
            if text.startswith("$ "):
                commands.append(Command(path.name, number, text[2:], []))
            elif commands:
                commands[-1].expected.append(text)
        for command in commands:
            while command.expected and not command.expected[-1]:
                command.expected.pop()
        blocks.append(commands)
    return blocks


def output_matches(expected: list[str], actual: str) -> bool:
    """True when ``actual`` matches ``expected`` lines with ``...`` wildcards."""
    pattern = []
    for line in expected:
        if line.strip() == "...":
            pattern.append(r"(?:[^\n]*\n)*?")
        else:
            pattern.append(re.escape(line).replace(re.escape("..."), r"[^\n]*") + r"\n")
    text = "\n".join(part.rstrip() for part in actual.rstrip("\n").split("\n")) + "\n" if actual.strip() else ""
    return re.fullmatch("".join(pattern), text) is not None


def _pages_with_console_examples() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.rst") if "_build" not in p.parts and console_blocks(p))


@pytest.fixture
def shell_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose ``kombu-like`` is this checkout's, run by this interpreter."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "kombu-like"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m kombu_like.cli "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if k != "KOMBU_LIKE_URL"}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["COLUMNS"] = "200"
    return env


@pytest.mark.parametrize("page", _pages_with_console_examples(), ids=lambda p: str(p.relative_to(DOCS)))
def test_console_examples(page: Path, tmp_path: Path, shell_env: dict[str, str]) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    for block in console_blocks(page):
        for command in block:
            result = subprocess.run(
                ["bash", "-c", command.command],
                cwd=workdir,
                env=shell_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=120,
            )
            where = f"{page.relative_to(DOCS)}:{command.line}: $ {command.command}"
            assert result.returncode == 0, f"{where}\nexited {result.returncode}:\n{result.stdout}"
            assert output_matches(command.expected, result.stdout), (
                f"{where}\nexpected:\n" + "\n".join(command.expected) + f"\ngot:\n{result.stdout}"
            )


def test_there_are_console_examples() -> None:
    # the page list above must not silently come up empty
    assert DOCS / "cli.rst" in _pages_with_console_examples()


def test_output_matching() -> None:
    assert output_matches(["a ... c", "...", "z"], "a b c\nx\ny\nz\n")
    assert output_matches(["...", "z"], "z\n")
    assert not output_matches(["a", "b"], "a\nc\n")
    assert not output_matches(["a"], "a\nextra\n")


def test_example_transport_passes_the_conformance_suite(request: pytest.FixtureRequest) -> None:
    # writing-a-transport.rst shows these two files and says the suite runs them
    returncode, output = TOY_TRANSPORT_RUN.run(request).wait(timeout=300)
    assert returncode == 0, output
    assert re.search(r"\b[1-9]\d* passed", output), output


def _sphinx(builder: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-b", builder, *extra, str(DOCS), str(out / builder)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )


def check_doctest_report(report: Path, returncode: int, stdout: str, what: str = "") -> None:
    details = report.read_text() if report.exists() else ""
    assert returncode == 0, f"sphinx doctest{what} failed:\n{stdout}\n{details}"
    summary = re.search(r"(\d+) tests?\b.*?(\d+) failures? in tests", details, re.S)
    assert summary is not None, details
    assert int(summary.group(1)) > 0, "the doctest builder found no examples"
    assert int(summary.group(2)) == 0, details


class DocsBuild:
    """The html build with warnings as errors, then the doctest build, on a thread.

    The html build reads every page (that is where most warnings come from, so it must be
    the build that reads them); the doctest build then runs on its pickled doctrees instead
    of parsing every page, autodoc included, a second time.  Both take about half a minute
    of one core: they run while other tests wait on brokers (:mod:`t.early`).
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="docs-build")
        doctrees = ("-d", str(out / "doctrees"))
        self.html = self._pool.submit(_sphinx, "html", out, "-W", "--keep-going", *doctrees)
        self.doctest = self._pool.submit(_sphinx, "doctest", out, *doctrees)
        self._pool.shutdown(wait=False)

    def close(self) -> None:
        self.doctest.cancel()
        if self.doctest.done():  # a build still running (the session was cut short) keeps its files
            shutil.rmtree(self.out, ignore_errors=True)


DOCS_BUILD = Early(
    "docs",
    ("test_docs.py::test_python_examples_pass_sphinx_doctest", "test_docs.py::test_html_builds_without_warnings"),
    DocsBuild,
)


def _toy_transport_run(workdir: Path) -> ProcessRun:
    examples = DOCS / "examples"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(examples), str(ROOT), env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(examples)]
    return ProcessRun([*argv, str(examples / "test_toy_transport.py")], workdir, cwd=examples, env=env)


#: the conformance suite on the example transport of writing-a-transport.rst
TOY_TRANSPORT_RUN = Early(
    "toy-transport", ("test_docs.py::test_example_transport_passes_the_conformance_suite",), _toy_transport_run
)


@pytest.fixture(scope="module")
def docs_build(request: pytest.FixtureRequest) -> DocsBuild:
    return DOCS_BUILD.run(request)  # type: ignore[no-any-return]


def test_python_examples_pass_sphinx_doctest(docs_build: DocsBuild) -> None:
    assert docs_build.html.result(timeout=300).returncode == 0, "the html build failed: see the test of it"
    result = docs_build.doctest.result(timeout=300)
    check_doctest_report(docs_build.out / "doctest" / "output.txt", result.returncode, result.stdout)


def test_html_builds_without_warnings(docs_build: DocsBuild) -> None:
    result = docs_build.html.result(timeout=300)
    assert result.returncode == 0, f"sphinx -W -b html failed:\n{result.stdout}"
