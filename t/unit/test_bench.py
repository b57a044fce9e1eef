"""The benchmark's bookkeeping (the figures themselves are measured by extra/bench)."""

from __future__ import annotations

import pytest

from kombu_like.bench import BenchResult, main


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
