"""The benchmark's bookkeeping (the figures themselves are measured by extra/bench)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kombu_like.bench import BenchResult, main
from kombu_like.transport import TRANSPORT_ALIASES, memory


def test_best_of_keeps_the_better_figure_of_each_measure() -> None:
    first = BenchResult("kombu_like", "memory://", 10, 100.0, 300.0, None, 0.5, 2.0, {"a": 1})
    second = BenchResult("kombu_like", "memory://", 10, 200.0, 250.0, 400.0, 0.7, 1.5, {"b": 2})
    best = first.best_of(second)
    assert (best.publish_per_s, best.consume_per_s, best.batch_publish_per_s) == (200.0, 300.0, 400.0)
    assert (best.rtt_p50_ms, best.rtt_p99_ms) == (0.5, 1.5)
    assert best.extra == {"a": 1, "b": 2}


def test_rounds_alternate_the_libraries_and_print_one_row_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memory://", "-n", "50", "--roundtrips", "5", "--rounds", "2", "--vs", "kombu"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("(round 1 of 2)") == 2 and captured.err.count("(round 2 of 2)") == 2
    header = captured.out.splitlines()[0].split()
    assert header == ["kombu_like", "kombu", "ratio"]


ROOT = Path(__file__).resolve().parents[2]


def _extra_bench(*args: str, venv: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KOMBU_LIKE_URL")}
    env["KOMBU_LIKE_VENV"] = str(venv)
    return subprocess.run(
        [str(ROOT / "extra" / "bench"), *args], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
    )


def test_extra_bench_is_the_command_run_by_the_virtualenv(tmp_path: Path) -> None:
    # a virtualenv stand-in whose python is the one running these tests (which has amqp)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    result = _extra_bench("memory://", "-n", "200", "--roundtrips", "5", "--rounds", "2", venv=venv)
    assert result.returncode == 0, result.stderr
    rows = {re.split(r"\s{2,}", line.strip())[0] for line in result.stdout.splitlines()[1:]}
    assert {"CPU s/10k publish", "CPU s/10k consume", "publish", "roundtrip p50"} <= rows
    assert result.stderr.count("(round 2 of 2)") == 1
    # one set of options: the script's help is the command's
    help_text = _extra_bench("--help", venv=venv).stdout
    assert "--rounds" in help_text and "--vs" in help_text and "--raw" in help_text
    assert help_text.startswith("Usage: kombu-like bench [OPTIONS] [URL]")


@pytest.mark.parametrize("args", [("--messages", "-5"), ("--messages", "0"), ("--rounds", "0")])
def test_out_of_range_numbers_are_usage_errors(args: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memory://", *args]) == 2
    assert "not in the range" in capsys.readouterr().err


def test_cpu_seconds_per_10k_messages_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memory://", "-n", "100", "--roundtrips", "3", "--vs", "kombu"]) == 0
    cpu = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("CPU s/10k")]
    assert len(cpu) == 3
    for line in cpu:
        ours, theirs = (float(v) for v in re.findall(r"(\d+\.\d+) s", line))
        assert ours > 0 and theirs > 0


def test_async_api_runs_beside_the_blocking_one(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["memory://", "-n", "50", "--roundtrips", "3", "--api", "async", "--vs", "sync", "--inflight", "8"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["kombu_like.aio", "kombu_like", "ratio"]
    rows = {re.split(r"\s{2,}", line.strip())[0]: line for line in lines[1:]}
    assert {"publish", "consume", "CPU s/10k publish", "CPU s/10k consume", "roundtrip p50"} <= set(rows)
    assert "-" not in rows["publish"].split()


class ElsewhereTransport(memory.Transport):
    """A transport of its own, which the asyncio API has no driver for."""

    driver_type = "elsewhere"


def test_async_api_on_a_transport_without_its_driver_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(TRANSPORT_ALIASES, "elsewhere", f"{__name__}:ElsewhereTransport")
    # a message naming the transport, not a traceback
    with pytest.raises(SystemExit) as exit_:
        main(["elsewhere://", "-n", "5", "--api", "async"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "kombu_like.aio cannot run on elsewhere://" in err and "Traceback" not in err


def test_aio_pika_needs_an_amqp_url(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["memory://", "-n", "5", "--api", "async", "--vs", "aio-pika"])
    assert exit_.value.code == 2
    assert "--vs aio-pika needs an amqp:// URL" in capsys.readouterr().err
