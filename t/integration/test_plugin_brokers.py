"""The pytest plugin's fixtures against a real broker (``--kombu-like-url`` / ini / env)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

PLUGIN = ("-p", "kombu_like.testing.plugin", "-p", "no:cacheprovider")

USER_TESTS = """
import uuid
from kombu_like import Connection


def test_round_trip(kombu_url, kombu_connection):
    assert kombu_url.startswith("{scheme}://")
    assert kombu_connection.transport.driver_type == "{scheme}"
    name = f"plugin-{{uuid.uuid4().hex}}"
    with kombu_connection.SimpleQueue(name) as queue:
        queue.put({{"n": 1}})
        assert queue.get(timeout=10).payload == {{"n": 1}}
        queue.queue(kombu_connection.default_channel).delete()


def test_inspector_needs_memory(kombu_broker):
    raise AssertionError("not reached: skipped on a real broker")
"""


@pytest.fixture(autouse=True)
def only_the_plugin_under_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("KOMBU_LIKE_TEST_URL", raising=False)


@pytest.fixture(params=[pytest.param("amqp", marks=pytest.mark.amqp), pytest.param("redis", marks=pytest.mark.redis)])
def broker(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param, str(request.getfixturevalue(f"{request.param}_url"))


def test_option_runs_the_fixtures_on_the_broker(pytester: pytest.Pytester, broker: tuple[str, str]) -> None:
    scheme, url = broker
    pytester.makepyfile(test_user=USER_TESTS.format(scheme=scheme))
    result = pytester.runpytest_subprocess(*PLUGIN, "-rs", f"--kombu-like-url={url}")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*kombu_like fixtures use*", "*kombu_broker inspects the in-memory broker*"])
    if "guest:guest@" in url:
        assert ":guest@" not in result.stdout.str()  # the password is masked in the header


def test_ini_setting_and_environment(
    pytester: pytest.Pytester, broker: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scheme, url = broker
    pytester.makepyfile(test_user=USER_TESTS.format(scheme=scheme))
    pytester.makeini(f"[pytest]\nkombu_like_url = {url}\n")
    pytester.runpytest_subprocess(*PLUGIN).assert_outcomes(passed=1, skipped=1)
    pytester.makeini("[pytest]\n")
    monkeypatch.setenv("KOMBU_LIKE_TEST_URL", url)
    pytester.runpytest_subprocess(*PLUGIN).assert_outcomes(passed=1, skipped=1)


def test_without_a_url_each_test_has_its_own_memory_broker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user="""
def test_memory(kombu_url, kombu_broker):
    assert kombu_url.startswith("memory:///pytest-")
    assert kombu_broker.queues() == []
"""
    )
    pytester.runpytest_subprocess(*PLUGIN).assert_outcomes(passed=1)


@pytest.mark.redis
def test_redis_tests_stay_apart_as_on_memory(pytester: pytest.Pytester, redis_url: str) -> None:
    pytester.makepyfile(
        test_user="""
import pytest
import redis

PREFIXES = []


@pytest.mark.parametrize("n", range(3))
def test_same_queue_name(n, kombu_url, kombu_connection):
    PREFIXES.append(kombu_url.partition("global_keyprefix=")[2])
    assert PREFIXES[-1].startswith("pytest-")
    with kombu_connection.SimpleQueue("orders") as queue:
        assert queue.qsize() == 0  # nothing left by the test before
        queue.put({"n": n})  # and left behind on purpose


def test_keys_were_deleted(kombu_url):
    assert len(set(PREFIXES)) == 3
    client = redis.Redis.from_url(kombu_url.partition("?")[0])
    try:
        for prefix in PREFIXES:
            assert list(client.scan_iter(match=prefix + "*", count=1000)) == []
    finally:
        client.close()
"""
    )
    result = pytester.runpytest_subprocess(*PLUGIN, f"--kombu-like-url={redis_url}")
    result.assert_outcomes(passed=4)
