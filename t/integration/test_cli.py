"""The ``kombu-like`` command end to end, run as a user runs it: in subprocesses.

On sqlite (two processes sharing one file, no broker), against RabbitMQ and Redis, and
across libraries: what the command publishes, Kombu 5.7 consumes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KOMBU_LIKE_URL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kombu_like.cli", *args]


def run(
    *args: str, cwd: Path, stdin: str | None = None, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``kombu-like ARGS`` and return its result (stdout and stderr apart)."""
    return subprocess.run(
        _command(*args),
        cwd=cwd,
        env=_env(**env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(*args: str, cwd: Path, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    result = run(*args, cwd=cwd, stdin=stdin, **env)
    assert result.returncode == 0, f"kombu-like {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The single error line of a failed command (no traceback)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kombu-like: error: ")
    return lines[0]


# -- sqlite: the default, no broker --------------------------------------------------------------
def test_default_url_is_an_sqlite_file_in_the_working_directory(tmp_path: Path) -> None:
    ok("publish", '{"n": 1}', "--queue", "jobs", cwd=tmp_path)
    assert (tmp_path / "kombu_like.db").exists()
    assert ok("size", "jobs", cwd=tmp_path).stdout.strip() == "1"
    got = records(ok("consume", "jobs", "--count", "1", cwd=tmp_path).stdout)
    assert [r["body"] for r in got] == [{"n": 1}]
    assert ok("size", "jobs", cwd=tmp_path).stdout.strip() == "0"


def test_url_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/env.db"
    ok("publish", "hello", "--queue", "q", cwd=tmp_path, KOMBU_LIKE_URL=url)
    assert (tmp_path / "env.db").exists() and not (tmp_path / "kombu_like.db").exists()
    assert ok("--url", url, "size", "q", cwd=tmp_path).stdout.strip() == "1"


def test_one_process_publishes_while_another_consumes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    ok("--url", url, "publish", "--queue", "work", cwd=tmp_path, stdin="")  # declare the queue
    consumer = subprocess.Popen(
        _command("--url", url, "consume", "work", "--count", "50", "--timeout", "30"),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = "".join(json.dumps({"n": n, "text": f"line {n}"}) + "\n" for n in range(50))
        published = ok("--url", url, "publish", "--queue", "work", cwd=tmp_path, stdin=lines)
        assert "published 50 messages" in published.stderr
        out, err = consumer.communicate(timeout=60)
    finally:
        if consumer.poll() is None:
            consumer.kill()
    assert consumer.returncode == 0, err
    assert [r["body"]["n"] for r in records(out)] == list(range(50))
    assert ok("--url", url, "size", "work", cwd=tmp_path).stdout.strip() == "0"


def test_publish_options_arrive_in_the_message(tmp_path: Path) -> None:
    ok(
        "publish", '{"a": [1, 2]}', "--exchange", "logs", "--exchange-type", "topic", "--queue", "errors",
        "--binding-key", "*.error", "--routing-key", "web.error", "-H", "host=web1", "-H", "attempt=2",
        "--priority", "4", "--max-priority", "9", "--serializer", "msgpack", "--compression", "zlib",
        cwd=tmp_path,
    )  # fmt: skip
    (record,) = records(ok("consume", "errors", "--count", "1", "--accept", "msgpack", cwd=tmp_path).stdout)
    assert record["body"] == {"a": [1, 2]}
    assert record["content_type"] == "application/x-msgpack"
    assert record["headers"]["host"] == "web1" and record["headers"]["attempt"] == "2"
    assert record["headers"]["compression"] == "application/x-gzip"
    assert record["properties"]["priority"] == 4
    assert record["delivery_info"] == {"exchange": "logs", "routing_key": "web.error", "redelivered": False}


def test_raw_text_and_bytes(tmp_path: Path) -> None:
    ok("publish", "--raw", "--queue", "lines", cwd=tmp_path, stdin="not json\n{also text}\n")
    got = records(ok("consume", "lines", "--timeout", "0.5", cwd=tmp_path).stdout)
    assert [r["body"] for r in got] == ["not json", "{also text}"]


def test_requeue_peeks_and_no_ack_takes(tmp_path: Path) -> None:
    ok("publish", "--queue", "peek", cwd=tmp_path, stdin="1\n2\n")
    peeked = records(ok("consume", "peek", "--count", "2", "--requeue", cwd=tmp_path).stdout)
    assert [r["body"] for r in peeked] == [1, 2]
    assert ok("size", "peek", cwd=tmp_path).stdout.strip() == "2"
    taken = records(ok("consume", "peek", "--count", "2", "--no-ack", cwd=tmp_path).stdout)
    assert [r["body"] for r in taken] == [1, 2]
    assert all(r["delivery_info"]["redelivered"] for r in taken)
    assert ok("size", "peek", cwd=tmp_path).stdout.strip() == "0"


def test_undecodable_message_is_reported_and_left_in_the_queue(tmp_path: Path) -> None:
    ok("publish", '{"n": 1}', "--queue", "mixed", "--serializer", "yaml", cwd=tmp_path)
    ok("publish", '{"n": 2}', "--queue", "mixed", cwd=tmp_path)
    result = run("consume", "mixed", "--timeout", "0.5", cwd=tmp_path)
    assert [r["body"] for r in records(result.stdout)] == [{"n": 2}]
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "queue 'mixed'" in result.stderr and "application/x-yaml" in result.stderr
    assert "b'n: 1" in result.stderr  # a preview of the raw bytes
    assert ok("size", "mixed", cwd=tmp_path).stdout.strip() == "1"
    (kept,) = records(ok("consume", "mixed", "--count", "1", "--accept", "yaml", cwd=tmp_path).stdout)
    assert kept["body"] == {"n": 1} and kept["delivery_info"]["redelivered"]


def test_bad_stdin_line_stops_after_publishing_what_came_before(tmp_path: Path) -> None:
    result = run("publish", "--queue", "nums", cwd=tmp_path, stdin="1\n2\n{broken\n4\n")
    line = one_line_error(result)
    assert "stdin line 3" in line and "{broken" in line and "2 messages before it were published" in line
    assert ok("size", "nums", cwd=tmp_path).stdout.strip() == "2"


def test_queues_size_purge_delete(tmp_path: Path) -> None:
    ok("publish", "--queue", "a", cwd=tmp_path, stdin="1\n2\n3\n")
    ok("publish", "x", "--queue", "b", cwd=tmp_path)
    listing = ok("queues", "--json", cwd=tmp_path).stdout
    assert records(listing) == [{"name": "a", "ready": 3, "unacked": 0}, {"name": "b", "ready": 1, "unacked": 0}]
    table = ok("queues", cwd=tmp_path).stdout.splitlines()
    assert table[0].split() == ["queue", "ready", "unacked"] and table[1].split() == ["a", "3", "0"]
    assert "purged 3 messages from 'a'" in ok("purge", "a", cwd=tmp_path).stdout
    refused = one_line_error(run("delete", "b", "--if-empty", cwd=tmp_path))
    assert "not deleted" in refused
    assert "deleted queue 'b' (1 message)" in ok("delete", "b", cwd=tmp_path).stdout
    assert records(ok("queues", "--json", cwd=tmp_path).stdout) == [{"name": "a", "ready": 0, "unacked": 0}]


def test_consume_count_not_reached_within_timeout_exits_3(tmp_path: Path) -> None:
    ok("publish", "only one", "--queue", "few", cwd=tmp_path)
    result = run("consume", "few", "--count", "2", "--timeout", "0.5", cwd=tmp_path)
    assert len(records(result.stdout)) == 1
    assert "1 of 2 messages" in one_line_error(result, code=3)


def test_interrupted_consumer_exits_130_without_a_traceback(tmp_path: Path) -> None:
    ok("publish", "--queue", "slow", cwd=tmp_path, stdin="")
    consumer = subprocess.Popen(
        _command("consume", "slow"), cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(1.0)  # let it start waiting; the exit below is what the test checks
    consumer.send_signal(signal.SIGINT)
    _, err = consumer.communicate(timeout=30)
    assert consumer.returncode == 130 and "Traceback" not in err


def test_demo_runs_on_the_default_transport(tmp_path: Path) -> None:
    result = ok("demo", cwd=tmp_path)
    assert "done: 3 messages published and consumed" in result.stdout
    assert (tmp_path / "kombu_like.db").exists()


def test_bench_prints_a_table(tmp_path: Path) -> None:
    result = ok("bench", "--messages", "200", "--roundtrips", "10", "--no-batch", cwd=tmp_path)
    rows = {line.split()[0] for line in result.stdout.splitlines()[1:]}
    assert {"publish", "consume", "roundtrip"} <= rows
    assert result.stdout.splitlines()[0].split() == ["kombu_like"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--url", "nosuch://user:secret@host/", "size", "q"), "No such transport: 'nosuch'"),
        (("--url", "sqlite:////no/such/dir/q.db", "size", "q"), "/no/such/dir/q.db"),
        (("--url", "sqlite://q.db", "size", "q"), "sqlite:///q.db"),
        (("consume", "missing", "--count", "1"), "no such queue 'missing'"),
        (("size", "missing"), "no such queue 'missing'"),
        (("publish", "x", "--queue", "q", "--serializer", "nope"), "nope"),
        (("publish", "x", "--queue", "q", "--compression", "snappy"), "snappy"),
        (("publish", "x", "--exchange", "nowhere"), "no such exchange 'nowhere'"),
        (("-o", "oops", "size", "q"), "key=value"),
    ],
)
def test_expected_failures_are_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = run(*args, cwd=tmp_path)
    line = one_line_error(result, code=2 if args[0] == "-o" else 1)
    assert message in line
    assert "secret" not in result.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = run("consume", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    result = run("consume", "q", "--no-ack", "--requeue", cwd=tmp_path)
    assert "cannot be used together" in one_line_error(result, code=2)


# -- real brokers -------------------------------------------------------------------------
@pytest.fixture(params=[pytest.param("amqp", marks=pytest.mark.amqp), pytest.param("redis", marks=pytest.mark.redis)])
def broker_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


def test_publish_consume_manage_on_a_broker(broker_url: str, unique_name: str, tmp_path: Path) -> None:
    queue = unique_name
    try:
        ok("--url", broker_url, "publish", "--queue", queue, cwd=tmp_path, stdin='{"n": 1}\n{"n": 2}\n{"n": 3}\n')
        assert ok("--url", broker_url, "size", queue, cwd=tmp_path).stdout.strip() == "3"
        peek = ("--url", broker_url, "consume", queue, "--count", "2", "--timeout", "10", "--requeue")
        assert [r["body"] for r in records(ok(*peek, cwd=tmp_path).stdout)] == [{"n": 1}, {"n": 2}]
        assert ok("--url", broker_url, "size", queue, cwd=tmp_path).stdout.strip() == "3"
        got = records(ok("--url", broker_url, "consume", queue, "--count", "2", "--timeout", "10", cwd=tmp_path).stdout)
        assert [r["body"] for r in got] == [{"n": 1}, {"n": 2}]
        assert all(r["queue"] == queue for r in got)
        assert "purged 1 message" in ok("--url", broker_url, "purge", queue, cwd=tmp_path).stdout
    finally:
        run("--url", broker_url, "delete", queue, cwd=tmp_path)
    line = one_line_error(run("--url", broker_url, "size", queue, cwd=tmp_path))
    assert f"no such queue '{queue}'" in line


def test_topic_exchange_on_a_broker(broker_url: str, unique_name: str, tmp_path: Path) -> None:
    queue = unique_name
    try:
        ok(
            "--url", broker_url, "publish", '"disk full"', "--exchange", unique_name, "--exchange-type", "topic",
            "--queue", queue, "--binding-key", "*.error", "--routing-key", "web.error", "-H", "host=web1",
            cwd=tmp_path,
        )  # fmt: skip
        (record,) = records(
            ok("--url", broker_url, "consume", queue, "--count", "1", "--timeout", "10", cwd=tmp_path).stdout
        )
        assert record["body"] == "disk full" and record["headers"]["host"] == "web1"
        assert record["delivery_info"]["routing_key"] == "web.error"
    finally:
        run("--url", broker_url, "delete", queue, cwd=tmp_path)


@pytest.mark.amqp
def test_broker_down_after_retries_masks_the_password(tmp_path: Path) -> None:
    result = run("--url", "amqp://guest:s3cret-pw@127.0.0.1:1//", "--retries", "1", "size", "q", cwd=tmp_path)
    line = one_line_error(result)
    assert "after 2 attempts" in line and "amqp://guest:**@127.0.0.1:1//" in line
    assert "s3cret-pw" not in result.stderr + result.stdout


@pytest.mark.amqp
def test_wrong_password_is_one_line_and_masked(amqp_url: str, tmp_path: Path) -> None:
    wrong = amqp_url.replace("guest:guest@", "guest:not-the-pw@")
    result = run("--url", wrong, "--retries", "0", "size", "q", cwd=tmp_path)
    line = one_line_error(result)
    assert "ACCESS_REFUSED" in line or "refused" in line.lower()
    assert "not-the-pw" not in result.stderr


@pytest.mark.amqp
def test_queues_on_amqp_says_what_to_do(amqp_url: str, tmp_path: Path) -> None:
    line = one_line_error(run("--url", amqp_url, "queues", cwd=tmp_path))
    assert "cannot list queues" in line and "rabbitmqctl" in line


@pytest.mark.interop
def test_kombu_consumes_what_the_command_publishes(broker_url: str, unique_name: str, tmp_path: Path) -> None:
    import kombu

    ok(
        "--url", broker_url, "publish", '{"from": "kombu-like"}', "--queue", unique_name, "-H", "k=v",
        "--compression", "zlib", cwd=tmp_path,
    )  # fmt: skip
    with kombu.Connection(broker_url) as conn:
        try:
            queue = kombu.Queue(unique_name)(conn.default_channel)
            message = None
            deadline = time.monotonic() + 10
            while message is None and time.monotonic() < deadline:
                message = queue.get(accept=["json"])
                if message is None:
                    time.sleep(0.05)
            assert message is not None
            assert message.payload == {"from": "kombu-like"} and message.headers["k"] == "v"
            message.ack()
        finally:
            kombu.Queue(unique_name)(conn.default_channel).delete()


def test_missing_click_names_the_extra(tmp_path: Path) -> None:
    code = "import sys; sys.modules['click'] = None; from kombu_like.cli import main; sys.exit(main(['queues']))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60
    )
    assert 'pip install "kombu_like[cli]"' in one_line_error(result)


def test_binary_bodies_are_printed_base64(tmp_path: Path) -> None:
    from kombu_like import Connection, Producer, Queue

    with Connection(f"sqlite:///{tmp_path}/kombu_like.db") as conn:
        Producer(conn).publish(b"\xff\x00\xfe", routing_key="bin", declare=[Queue("bin")])
    (record,) = records(ok("consume", "bin", "--count", "1", cwd=tmp_path).stdout)
    assert record["body_encoding"] == "base64" and record["body"] == "/wD+"
    assert record["content_type"] == "application/data"


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            _command("publish", "--queue", "bar"),
            cwd=tmp_path,
            env=_env(COLUMNS="100"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
        )
        out, _ = proc.communicate("".join(f"{n}\n" for n in range(1200)), timeout=60)
        os.close(follower)
        follower = -1
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closes when the command has exited
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    text = shown.decode("utf-8", "replace")
    assert "publishing" in text and "#" in text and "1200" in text
    assert "published 1200 messages" in text
    assert ok("size", "bar", cwd=tmp_path).stdout.strip() == "1200"


@pytest.mark.parametrize(
    "payload",
    [
        '{"body": "e30=", "content-type": "application/json", "headers": [1], "properties": {}}',
        '{"body": "e30=", "content-type": "application/json", "headers": {}, "properties": "not a mapping"}',
        '{"body": "e30=", "content-type": 5, "headers": {"compression": 7}, "properties": {}}',
        "not json at all",
    ],
)
def test_consume_goes_past_a_poison_message_with_one_line(tmp_path: Path, payload: str) -> None:
    import sqlite3

    from kombu_like import Connection, Producer, Queue

    with Connection(f"sqlite:///{tmp_path}/kombu_like.db") as conn:
        Queue("poisoned")(conn.default_channel).declare()
    # written by another program, before the good message
    with sqlite3.connect(tmp_path / "kombu_like.db") as db:
        db.execute("INSERT INTO kl_messages (queue, priority, payload) VALUES ('poisoned', 0, ?)", (payload,))
    with Connection(f"sqlite:///{tmp_path}/kombu_like.db") as conn:
        Producer(conn).publish({"good": 1}, routing_key="poisoned")
    result = run("consume", "poisoned", "--count", "1", "--timeout", "20", cwd=tmp_path)
    assert [r["body"] for r in records(result.stdout)] == [{"good": 1}]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "cannot decode a message" in line]
    assert len(lines) == 1, result.stderr
    assert "'poisoned'" in lines[0]
    # exit status 1: the bad message was left in its queue, which the summary line says
    assert result.returncode == 1
    assert ok("size", "poisoned", cwd=tmp_path).stdout.strip() == "1"
