"""The pytest plugin (kombu_like.testing.plugin), run on test files of its own with pytester."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

PLUGIN = ("-p", "kombu_like.testing.plugin", "-p", "no:cacheprovider")


@pytest.fixture(autouse=True)
def only_the_plugin_under_test(monkeypatch: pytest.MonkeyPatch) -> None:
    # where kombu_like is installed its entry point would load the plugin a second time
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_user_code=source)
    return pytester.runpytest_inprocess(*PLUGIN, *args)


def test_publish_and_inspect_without_consuming(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
from kombu_like import Exchange, Producer, Queue


def place_order(connection, order_id):
    orders = Queue("orders", Exchange("shop", type="direct"), routing_key="order")
    Producer(connection).publish({"id": order_id}, exchange=orders.exchange, routing_key="order",
                                 declare=[orders], headers={"x-source": "shop"}, correlation_id="c1",
                                 compression="zlib", priority=3)


def test_inspect(kombu_connection, kombu_broker):
    place_order(kombu_connection, 7)
    place_order(kombu_connection, 8)
    assert kombu_broker.queues() == ["orders"]
    assert kombu_broker.count("orders") == 2
    assert kombu_broker.bodies("orders") == [{"id": 7}, {"id": 8}]
    first = kombu_broker.messages("orders")[0]
    assert first.headers["x-source"] == "shop"
    assert first.exchange == "shop" and first.routing_key == "order"
    assert first.correlation_id == "c1" and first.priority == 3
    assert first.content_type == "application/json"
    assert first.raw != b'{"id": 7}'  # stored compressed
    assert kombu_broker.bindings("shop") == [("orders", "order")]
    # looking did not consume: the messages are still there for a consumer
    with kombu_connection.SimpleQueue("orders") as queue:
        assert queue.get(timeout=5).payload == {"id": 7}
    # the consumer took both; the one get() did not return went back when it closed
    assert kombu_broker.bodies("orders") == [{"id": 8}]
""",
    )
    result.assert_outcomes(passed=1)


def test_each_test_has_its_own_broker(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
import pytest
from kombu_like import Connection, transport
from kombu_like.transport import memory

seen = []


def key(url):
    connection = Connection(url)
    return memory.broker_name(connection.hostname, connection.virtual_host)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_isolated(n, kombu_url, kombu_connection, kombu_broker):
    assert kombu_broker.count("shared") == 0  # nothing left over from the other runs
    with Connection(kombu_url) as own:  # code under test building its own connection
        own.SimpleQueue("shared").put(n)
    assert kombu_broker.bodies("shared") == [n]
    # the process-wide memory:// broker is not this test's broker
    assert memory.get_broker("/") is not kombu_broker.broker
    assert memory._brokers[key(kombu_url)] is kombu_broker.broker
    seen.append(kombu_url)


def test_urls_were_distinct_and_brokers_dropped():
    assert len(set(seen)) == 3
    assert not any(key(url) in memory._brokers for url in seen)
""",
    )
    result.assert_outcomes(passed=4)


def test_purge_and_all_messages(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_purge(kombu_connection, kombu_broker):
    kombu_connection.SimpleQueue("a").put(1)
    kombu_connection.SimpleQueue("b").put(2)
    kombu_connection.SimpleQueue("b").put(3)
    assert {q: [m.body for m in ms] for q, ms in kombu_broker.all_messages().items()} == {"a": [1], "b": [2, 3]}
    assert kombu_broker.purge("b") == 2
    assert kombu_broker.purge() == 1
    assert kombu_broker.all_messages() == {}
""",
    )
    result.assert_outcomes(passed=1)


def test_a_wrong_expectation_fails(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_wrong(kombu_connection, kombu_broker):
    kombu_connection.SimpleQueue("q").put("actual")
    assert kombu_broker.bodies("q") == ["expected"]
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*'actual'*"])


def test_fixtures_are_listed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_empty="def test_nothing():\n    pass\n")
    result = pytester.runpytest_inprocess(*PLUGIN, "--fixtures")
    result.stdout.fnmatch_lines(["*kombu_url*", "*kombu_connection*", "*kombu_broker*"])


def test_plugin_is_declared_as_entry_point() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    section = text.split("[project.entry-points.pytest11]", 1)[1].split("[", 1)[0]
    assert 'kombu_like = "kombu_like.testing.plugin"' in section


def test_clean_memory_empties_the_process_wide_broker(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
import pytest
import kombu_like
from kombu_like.transport.memory import Channel

@pytest.mark.parametrize("n", [1, 2])
def test_leaves_a_message(n, kombu_clean_memory):
    assert kombu_clean_memory.count("leftover") == 0
    with kombu_like.Connection("memory://") as conn:
        kombu_like.Producer(conn).publish(n, routing_key="leftover", declare=[kombu_like.Queue("leftover")])
    assert Channel.queues["leftover"].qsize() == 1

def test_nothing_left():
    assert "leftover" not in Channel.queues
""",
    )
    result.assert_outcomes(passed=3)
