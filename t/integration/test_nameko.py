"""Nameko 2.14 runs unchanged on kombu_like over RabbitMQ.

Two services run under ``nameko run`` (with ``python -m kombu_like.alias``), a standalone
client calls them: RPC (sync, async, service to service, remote errors), events (from a
service and from a standalone dispatcher), publisher confirms with ``mandatory`` for
unroutable messages, heartbeats and pooled connections.  Nameko lives in its own cached
virtualenv (``frameworks/venvs.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .frameworks.harness import Driver, Worker, unique_suffix
from .frameworks.venvs import framework_python

pytestmark = [pytest.mark.timeout(900), pytest.mark.amqp]

SERVICES = "t.integration.frameworks.nameko_services"
SCENARIOS = "t.integration.frameworks.nameko_scenarios"
#: seconds; short so that the idle test spans several heartbeat intervals
HEARTBEAT = 2


@dataclass
class NamekoRun:
    env: dict[str, str]
    services: Worker
    client: Driver


@pytest.fixture(scope="module")
def nameko_python() -> Path:
    return framework_python("nameko")


@pytest.fixture(scope="module")
def nameko(nameko_python: Path, amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NamekoRun]:
    prefix = f"kl{unique_suffix()}"
    uri = amqp_url.rstrip("/") + "/"  # Nameko spells the default vhost with one slash
    env = {"KL_AMQP_URI": uri, "KL_NAMEKO_PREFIX": prefix, "KL_NAMEKO_RPC_EXCHANGE": f"{prefix}-rpc"}
    config = tmp_path_factory.mktemp("nameko") / "config.yaml"
    config.write_text(
        f"AMQP_URI: {uri}\nrpc_exchange: {prefix}-rpc\nHEARTBEAT: {HEARTBEAT}\n"
        "LOGGING:\n  version: 1\n  handlers:\n    console: {class: logging.StreamHandler}\n"
        "  root: {level: INFO, handlers: [console]}\n"
    )
    services = Worker(
        [str(nameko_python), "-m", "kombu_like.alias", "-m", "nameko", "run", SERVICES, "--config", str(config)],
        env, ready_pattern=r"Connected to",
    )
    client = Driver(nameko_python, SCENARIOS, env)
    try:
        client.call("wait_until_serving", 30, timeout=60)
        yield NamekoRun(env, services, client)
    finally:
        client.close()
        code = services.stop()
        assert code in (0, None), f"nameko run exited with {code}:\n{services.output.tail()}"


def test_services_and_client_use_kombu_like(nameko: NamekoRun) -> None:
    assert nameko.client.call("libraries") == {
        "client": "kombu_like",
        "service": {"kombu": "kombu_like", "connection": "kombu_like.connection"},
    }


def test_rpc_call(nameko: NamekoRun) -> None:
    assert nameko.client.call("call", "greeter", "hello", "ann") == "hello ann"


def test_rpc_call_async(nameko: NamekoRun) -> None:
    assert nameko.client.call("call_async", ["a", "b", "c"]) == ["hello a", "hello b", "hello c"]


def test_rpc_between_services(nameko: NamekoRun) -> None:
    assert nameko.client.call("call", "listener", "relay", "bob") == "hello bob (relayed)"


def test_remote_error_reaches_the_caller(nameko: NamekoRun) -> None:
    assert nameko.client.call("remote_failure", "bad input 7") == {"exc_type": "ValueError", "value": "bad input 7"}


def test_events_from_a_service_and_from_a_standalone_dispatcher(nameko: NamekoRun) -> None:
    nameko.client.call("call", "greeter", "hello", "carl")  # the greeter dispatches "greeted"
    nameko.client.call("dispatch_event", "dora")
    seen = nameko.client.call("seen_until", ["carl", "dora"], 20)
    assert {"carl", "dora"} <= set(seen)


def test_unroutable_mandatory_message_raises_undeliverable(nameko: NamekoRun) -> None:
    assert nameko.client.call("publish_unroutable", True) == "UndeliverableMessage"


def test_unroutable_message_without_mandatory_is_published(nameko: NamekoRun) -> None:
    assert nameko.client.call("publish_unroutable", False) == "published"


def test_idle_services_keep_their_connection_through_heartbeats(nameko: NamekoRun) -> None:
    connected = nameko.services.output.tail(400).count("Connected to")
    assert connected >= 1
    # RabbitMQ closes a connection that misses two heartbeats; stay idle well past that
    time.sleep(HEARTBEAT * 3)
    assert nameko.client.call("call", "greeter", "hello", "after idle") == "hello after idle"
    log = nameko.services.output.tail(400)
    assert log.count("Connected to") == connected, f"services reconnected while idle:\n{log}"
    assert "missed heartbeats" not in log.lower()


@pytest.mark.interop
def test_client_on_kombu_calls_services_on_kombu_like(nameko: NamekoRun, nameko_python: Path) -> None:
    kombu_client = Driver(nameko_python, SCENARIOS, nameko.env, alias=False)
    try:
        assert kombu_client.call("libraries") == {
            "client": "kombu",
            "service": {"kombu": "kombu_like", "connection": "kombu_like.connection"},
        }
        assert kombu_client.call("call", "listener", "relay", "eve") == "hello eve (relayed)"
        assert kombu_client.call("remote_failure", "x") == {"exc_type": "ValueError", "value": "x"}
    finally:
        kombu_client.close()
