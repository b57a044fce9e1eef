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
        env,
        ready_pattern=r"Connected to",
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


# -- Nameko's publisher and event queues, the same steps on Kombu 5.7 and on kombu_like -----
@pytest.fixture(scope="module")
def clients(nameko: NamekoRun, nameko_python: Path) -> Iterator[dict[str, Driver]]:
    """A client process on each library, against the same services."""
    kombu_client = Driver(nameko_python, SCENARIOS, nameko.env, alias=False)
    try:
        yield {"kombu": kombu_client, "kombu_like": nameko.client}
    finally:
        kombu_client.close()


def _both(clients: dict[str, Driver], name: str, *args: object) -> tuple[object, object]:
    return clients["kombu"].call(name, *args), clients["kombu_like"].call(name, *args)


def _name(outcome: object) -> object:
    return outcome["error"] if isinstance(outcome, dict) else outcome


def test_publisher_per_call_options(clients: dict[str, Driver]) -> None:
    kombu_seen, ours = _both(clients, "publisher_per_call_options")
    assert ours == kombu_seen
    assert ours["options"] == {
        "payload": {"n": 1},
        "content_type": "application/x-python-serialize",
        "user_id": "guest",
        "delivery_mode": 2,
        "priority": 3,
        "headers": {"h": 1},
    }
    assert ours["no_retry"]["payload"] == {"n": 2} and ours["no_retry"]["delivery_mode"] == 1
    assert ours["foreign_user_id"] == {"error": "PreconditionFailed", "channel_error": True, "connection_error": False}
    assert ours["after_error"]["payload"] == {"n": 4}


@pytest.mark.parametrize("use_confirms", [True, False])
def test_publisher_confirms(clients: dict[str, Driver], use_confirms: bool) -> None:
    kombu_seen, ours = _both(clients, "publisher_confirms", use_confirms)
    assert [_name(x) for x in ours] == [_name(x) for x in kombu_seen]
    if use_confirms:  # the refused second message is reported
        assert ours[0] == "published" and ours[1]["error"] == "MessageNacked"
        # a departure (docs/migrating-from-kombu.rst): ours is one of the channel errors
        assert ours[1]["channel_error"] is True and kombu_seen[1]["channel_error"] is False
    else:
        assert ours == ["published", "published"]


@pytest.mark.parametrize("mandatory", [True, False])
def test_publish_to_a_missing_exchange(clients: dict[str, Driver], mandatory: bool) -> None:
    kombu_seen, ours = _both(clients, "publish_to_missing_exchange", mandatory)
    assert ours == kombu_seen
    # RabbitMQ closes the channel with NOT_FOUND; nothing is declared on the way
    not_found = {"error": "NotFound", "channel_error": True, "connection_error": False}
    assert ours == {"first": not_found, "second": not_found, "then": {"ok": True}}


def test_rpc_from_a_proxy_with_heartbeat_none(clients: dict[str, Driver]) -> None:
    kombu_seen, ours = _both(clients, "call_with_config", {"HEARTBEAT": None}, "greeter", "hello", "hb")
    assert ours == kombu_seen == "hello hb"


@pytest.mark.parametrize("library", ["kombu", "kombu_like"])
def test_auto_delete_event_queue_goes_with_its_service(
    library: str, nameko_python: Path, amqp_url: str, tmp_path: Path
) -> None:
    """A handler without reliable delivery, in a service run with ``HEARTBEAT: null``."""
    prefix = f"kl{unique_suffix()}"
    uri = amqp_url.rstrip("/") + "/"
    env = {"KL_AMQP_URI": uri, "KL_NAMEKO_PREFIX": prefix, "KL_NAMEKO_RPC_EXCHANGE": f"{prefix}-rpc"}
    config = tmp_path / "config.yaml"
    config.write_text(f"AMQP_URI: {uri}\nrpc_exchange: {prefix}-rpc\nHEARTBEAT: null\n")
    alias = ["-m", "kombu_like.alias"] if library == "kombu_like" else []
    service = Worker(
        [
            str(nameko_python),
            *alias,
            "-m",
            "nameko",
            "run",
            "t.integration.frameworks.nameko_volatile",
            "--config",
            str(config),
        ],
        env,
        ready_pattern=r"Connected to",
    )
    client = Driver(nameko_python, SCENARIOS, env, alias=library == "kombu_like")
    try:
        running = client.call("volatile_events", 30, timeout=60)
        assert running["heartbeat"] is None
        assert running["seen"] == [{"n": 1}]
        assert running["queue_exists"] is True
        code = service.stop()
        assert code in (0, None), service.output.tail()
        # auto-delete: the queue went with the service's consumer
        assert client.call("queue_exists", running["queue"]) is False
    finally:
        client.close()
        service.stop()
