"""The ``kombu-like`` command's usage rules: what it refuses, asks, and leaves out."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from t.integration.test_cli import _command, _env, ok, one_line_error, records, run


def test_body_that_starts_like_json_must_parse(tmp_path: Path) -> None:
    for body in ('{"name": "x.mp4"', "[1, 2", '  {"a": }'):
        result = run("publish", body, "--queue", "video", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert "BODY is not valid JSON" in result.stderr and "--raw" in result.stderr
    # nothing was sent; --raw sends the text as it is, and plain text stays a string
    assert run("size", "video", cwd=tmp_path).returncode == 1
    ok("publish", '{"name": "x.mp4"', "--queue", "video", "--raw", cwd=tmp_path)
    ok("publish", "disk full", "--queue", "video", cwd=tmp_path)
    got = records(ok("consume", "video", "--count", "2", "--timeout", "5", cwd=tmp_path).stdout)
    assert [r["body"] for r in got] == ['{"name": "x.mp4"', "disk full"]


@pytest.mark.parametrize(
    "args",
    [
        ("bench", "--messages", "-5"),
        ("bench", "--messages", "0"),
        ("bench", "--roundtrips", "0"),
        ("bench", "--prefetch", "0"),
        ("consume", "q", "--count", "0"),
        ("consume", "q", "--timeout", "-1"),
        ("--retries", "-1", "size", "q"),
        ("publish", "x", "--priority", "-1"),
        ("publish", "x", "--expiration", "0"),
    ],
)
def test_out_of_range_numbers_are_usage_errors(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "not in the range" in result.stderr


def test_global_options_after_the_command(tmp_path: Path) -> None:
    ok("publish", "1", "--queue", "q", "--url", "sqlite:///other.db", cwd=tmp_path)
    assert (tmp_path / "other.db").exists() and not (tmp_path / "kombu_like.db").exists()
    # after the command wins over before it
    assert ok("--url", "sqlite:///nowhere.db", "size", "q", "--url", "sqlite:///other.db", cwd=tmp_path).stdout == "1\n"
    line = one_line_error(run("size", "q", "--url", "amqp://guest:pw@127.0.0.1:1//", "--retries", "1", cwd=tmp_path))
    assert "after 2 attempts" in line


def test_quiet_and_log_level(tmp_path: Path) -> None:
    assert ok("-q", "publish", "1", "--queue", "q", cwd=tmp_path).stderr == ""
    assert ok("publish", "2", "--queue", "q", "--quiet", cwd=tmp_path).stderr == ""
    assert "published 1 message" in ok("publish", "3", "--queue", "q", cwd=tmp_path).stderr
    assert ok("purge", "q", "--quiet", cwd=tmp_path).stdout == ""
    debug = ok("--log-level", "debug", "size", "q", cwd=tmp_path).stderr
    assert "kombu-like: DEBUG: kombu_like" in debug
    assert ok("size", "q", "--log-level", "error", cwd=tmp_path).stderr == ""
    assert run("--log-level", "loud", "size", "q", cwd=tmp_path).returncode == 2


@pytest.mark.parametrize("count", [None, "10"])
def test_consume_ends_quietly_when_the_reader_goes_away(tmp_path: Path, count: str | None) -> None:
    ok("publish", "--queue", "q", cwd=tmp_path, stdin="1\n2\n3\n")
    args = ["consume", "q"] + (["--count", count] if count else [])
    proc = subprocess.Popen(_command(*args), cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert b'"body": 1' in proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does after its line
    try:
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
    assert proc.stderr.read() == b""
    proc.stderr.close()


def _read_terminal(leader: int, wait: float) -> bytes:
    """What the terminal shows within ``wait`` seconds (empty once the command has exited)."""
    if not select.select([leader], [], [], wait)[0]:
        return b""
    try:
        return os.read(leader, 4096)
    except OSError:  # EIO: the command exited and the terminal closed
        return b""


def _on_terminal(args: list[str], cwd: Path, answer: str) -> tuple[int, str]:
    """Run the command with stdin and stderr on a terminal, answer its question; (status, what it showed)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        _command(*args), cwd=cwd, env=_env(), stdin=follower, stdout=subprocess.PIPE, stderr=follower
    )
    os.close(follower)
    shown = b""
    deadline = time.monotonic() + 30
    try:
        while b"?" not in shown and proc.poll() is None and time.monotonic() < deadline:
            shown += _read_terminal(leader, 0.2)
        if proc.poll() is None:
            os.write(leader, answer.encode() + b"\n")
        out, _ = proc.communicate(timeout=30)
        while chunk := _read_terminal(leader, 0.1):
            shown += chunk
    finally:
        os.close(leader)
        proc.kill()
    return proc.returncode, shown.decode("utf-8", "replace") + out.decode("utf-8", "replace")


def test_purge_and_delete_ask_on_a_terminal(tmp_path: Path) -> None:
    ok("publish", "--queue", "q", cwd=tmp_path, stdin="1\n2\n")
    status, shown = _on_terminal(["purge", "q"], tmp_path, "n")
    assert status == 1 and "Purge 2 messages from queue 'q'" in shown and "was not purged" in shown
    assert ok("size", "q", cwd=tmp_path).stdout == "2\n"
    status, shown = _on_terminal(["purge", "q"], tmp_path, "y")
    assert status == 0 and "purged 2 messages" in shown
    status, shown = _on_terminal(["delete", "q"], tmp_path, "n")
    assert status == 1 and "Delete queue 'q'" in shown
    status, shown = _on_terminal(["delete", "q", "-f"], tmp_path, "")
    assert status == 0 and "?" not in shown and "deleted queue 'q'" in shown
    assert run("size", "q", cwd=tmp_path).returncode == 1


@pytest.mark.amqp
def test_demo_connects_before_it_says_so(amqp_url: str, tmp_path: Path) -> None:
    wrong = amqp_url.replace("guest:guest@", "guest:not-the-pw@")
    result = run("demo", "--url", wrong, cwd=tmp_path)
    assert "connected to" not in result.stdout
    assert "ACCESS_REFUSED" in one_line_error(result)
    started = time.monotonic()
    line = one_line_error(run("--retries", "1", "demo", "--url", "amqp://guest:pw@127.0.0.1:1//", cwd=tmp_path))
    assert "after 2 attempts" in line and time.monotonic() - started < 20


@pytest.mark.redis
def test_library_warnings_are_one_log_line(redis_url: str, unique_name: str, tmp_path: Path) -> None:
    try:
        result = ok("--url", redis_url, "publish", "1", "--queue", unique_name, "--max-priority", "5", cwd=tmp_path)
        (line,) = [line for line in result.stderr.splitlines() if "RuntimeWarning" in line]
        assert line.startswith("kombu-like: WARNING: kombu_like: RuntimeWarning: Redis queue")
        assert "warnings.warn" not in result.stderr
        quiet = ok(
            "--url", redis_url, "-q", "publish", "1", "--queue", unique_name, "--max-priority", "5", cwd=tmp_path
        )
        assert quiet.stderr == ""
        amqp_order = ok("--url", redis_url, "-o", "priority_order=amqp", "size", unique_name, cwd=tmp_path)
        assert amqp_order.stderr == ""
    finally:
        run("--url", redis_url, "delete", "-f", unique_name, cwd=tmp_path)
