"""URL parsing and printing against Kombu 5.7: Connection(url) attributes, info(), as_uri().

RabbitMQ's URI examples, SQS and Redis forms, ``transport+`` prefixes, and URLs generated
by hypothesis from their parts.  Deliberate departures (listed in the migration guide) are
named where they are left out of a comparison.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any
from urllib.parse import quote

import kombu
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kombu_like

ATTRIBUTES = ("hostname", "port", "userid", "password", "virtual_host", "transport_cls", "uri_prefix")


def observe(lib: Any, url: Any, **kwargs: Any) -> dict[str, Any]:
    """What a user sees of ``lib.Connection(url)``; an exception's type name if it fails."""
    try:
        conn = lib.Connection(url, **kwargs)
    except Exception as exc:  # compared by type
        return {"error": type(exc).__name__}
    seen: dict[str, Any] = {name: getattr(conn, name) for name in ATTRIBUTES}
    info = conn.info()
    info.pop("credential_provider", None)
    if info.get("transport") == "rediss":
        # deliberate: Kombu turns certificate checks off for rediss:// without ssl options
        info.pop("ssl")
    seen["info"] = info
    seen["as_uri"] = conn.as_uri()
    seen["as_uri_password"] = conn.as_uri(include_password=True)
    seen["as_uri_mask"] = conn.as_uri(mask="XX")
    seen["repr"] = repr(conn).rsplit(" at ", 1)[0]
    copied = copy.copy(conn)
    seen["copy"] = (copied is not conn, copied.as_uri(include_password=True), copied.info() == conn.info())
    seen["clone_vhost"] = conn.clone(virtual_host="other").as_uri(include_password=True)
    seen["alt"] = list(conn.alt)
    return seen


def assert_same(url: Any, **kwargs: Any) -> None:
    ours = observe(kombu_like, url, **kwargs)
    theirs = observe(kombu, url, **kwargs)
    assert ours == theirs, url


RABBITMQ_URI_EXAMPLES = [
    # https://www.rabbitmq.com/docs/uri-spec
    "amqp://",
    "amqp://:@/",
    "amqp://user@/",
    "amqp://user:pass@/",
    "amqp://host",
    "amqp://:10000",
    "amqp:///vhost",
    "amqp://host/",
    "amqp://host/%2f",
    "amqp://host/%2F",
    "amqp://user:pass@host:10000/vhost",
    "amqp://user%61:%61pass@ho%61st:10000/v%2fhost",
    "amqp://guest:guest@localhost:5672//",
    "amqp://h/v?heartbeat=10",
    "amqp://h?ssl_cert_reqs=CERT_NONE&ssl_ca_certs=/x",
    "amqps://host",
    "pyamqp://u:p@host:1234/v",
]
OTHER_URLS = [
    "sqs://",
    "sqs://@",
    "sqs://AKIA:sec%2Fret@",
    "sqs://AKIA:secret@localhost:5000",
    "sqs://@localhost:5000",
    "SQS://key:secret@",
    "redis://",
    "redis://:pw@host:6380/2",
    "redis://user:pw@host/0",
    "redis://localhost/0",
    "rediss://host:6380/1",
    "sentinel://h:26379",
    "memory://",
    "memory://other",
    "memory:///vh",
    "redis+socket:///tmp/redis.sock",
    "redis+socket:///tmp/redis.sock?virtual_host=3",
    "amqp://a;amqp://b:1234/v",
    "redis://a:1/0;redis://b:2/0;redis://c:3/0",
]


@pytest.mark.parametrize("url", RABBITMQ_URI_EXAMPLES + OTHER_URLS)
def test_examples_parse_and_print_as_in_kombu(url: str) -> None:
    assert_same(url)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hostname": "h", "userid": "u", "password": "p", "virtual_host": "v", "port": 1, "transport": "redis"},
        {"hostname": "h"},
        {"hostname": "amqp://u@h", "password": "from-keyword"},
        {"hostname": "amqp://h", "heartbeat": None},
        {"hostname": ["amqp://a", "amqp://b"]},
        {"hostname": "amqp://a", "alternates": ["amqp://b", "amqp://c"]},
        {"hostname": "amqp://a;amqp://b", "failover_strategy": "shuffle"},
        {"hostname": "amqp://a", "failover_strategy": None},
        {"hostname": "amqp://a", "uri_prefix": "x"},
        {"hostname": "memory://", "transport_options": {"polling_interval": 1}},
    ],
)
def test_keyword_forms_as_in_kombu(kwargs: dict[str, Any]) -> None:
    hostname = kwargs.pop("hostname")
    assert_same(hostname, **kwargs)


def test_ipv6_host_prints_in_brackets() -> None:
    # deliberate departure: Kombu prints amqp://guest:**@%3A%3A1:5672//, which does not parse back
    ours = kombu_like.Connection("amqp://[::1]")
    assert ours.hostname == kombu.Connection("amqp://[::1]").hostname == "::1"
    assert ours.as_uri() == "amqp://guest:**@[::1]:5672//"
    assert kombu_like.Connection(ours.as_uri(include_password=True)).hostname == "::1"


def test_pickle_round_trip_keeps_what_kombu_keeps() -> None:
    for url in ("amqp://u:p@h:1/v", "redis://:pw@h/3", "sqs://k:s@"):
        ours = pickle.loads(pickle.dumps(kombu_like.Connection(url, heartbeat=5)))
        theirs = pickle.loads(pickle.dumps(kombu.Connection(url, heartbeat=5)))
        assert ours.as_uri(include_password=True) == theirs.as_uri(include_password=True)
        assert ours.heartbeat == theirs.heartbeat


def test_switch_as_in_kombu() -> None:
    ours, theirs = kombu_like.Connection("amqp://u:p@a/v"), kombu.Connection("amqp://u:p@a/v")
    for target in ("amqp://b:1234/w", "otherhost", "redis://:pw@r/2"):
        ours.switch(target)
        theirs.switch(target)
        assert ours.as_uri(include_password=True) == theirs.as_uri(include_password=True), target


# -- generated URLs -------------------------------------------------------------------------
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
host = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,5}){0,2}", fullmatch=True)


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["amqp", "amqps", "pyamqp", "redis", "rediss", "sqs", "memory", "sentinel"]))
    user = draw(st.none() | text)
    password = draw(st.none() | text)
    userinfo = ""
    if user is not None or password is not None:
        userinfo = quote(user or "", safe="")
        if password is not None:
            userinfo += ":" + quote(password, safe="")
        userinfo += "@"
    hostname = draw(st.none() | host)
    port = draw(st.none() | st.integers(1, 65535))
    netloc = userinfo + (hostname or "") + (f":{port}" if port else "")
    vhost = draw(st.none() | st.just("/") | text)
    path = "" if vhost is None else "/" + quote(vhost, safe="")
    return f"{scheme}://{netloc}{path}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(urls())
def test_generated_urls_as_in_kombu(url: str) -> None:
    assert_same(url)


@settings(max_examples=60, deadline=None)
@given(st.lists(urls(), min_size=2, max_size=4))
def test_generated_failover_lists_as_in_kombu(parts: list[str]) -> None:
    assert_same(";".join(parts))
    assert_same(parts)


# -- transport names that would be import paths ----------------------------------------------
dotted = st.from_regex(r"[a-z][a-z0-9]{0,6}(\.[a-z0-9]{1,6}){1,3}", fullmatch=True)
coloned = st.from_regex(r"[a-z][a-z0-9.]{0,6}(:[a-z0-9]{1,6}){1,2}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(dotted, st.sampled_from(["{n}://host", "{n}+amqp://host", "amqp://h;{n}://x", "{n}://"]))
def test_dotted_names_in_urls_refused_as_in_kombu(name: str, form: str) -> None:
    url = form.format(n=name)
    for lib in (kombu, kombu_like):
        with pytest.raises(ValueError, match="Invalid transport scheme"):
            lib.Connection(url)
        with pytest.raises(ValueError, match="Invalid transport scheme"):
            lib.Connection("amqp://h", alternates=[f"{name}://x"])
        with pytest.raises(ValueError, match="Invalid transport scheme"):
            lib.Connection("amqp://h").switch(f"{name}://x")


@settings(max_examples=30, deadline=None)
@given(coloned)
def test_colon_names_refused(name: str) -> None:
    # a "+" prefix is raw text: both refuse it.  Elsewhere urllib reads "a:b://h" as
    # scheme "a", which Kombu does not know; kombu_like refuses the name outright
    for lib in (kombu, kombu_like):
        with pytest.raises(ValueError, match="Invalid transport scheme"):
            lib.Connection(f"{name}+amqp://host")
    for url in (f"{name}://host", f"amqp://h;{name}://x"):
        with pytest.raises(ValueError, match="Invalid transport scheme"):
            kombu_like.Connection(url)
    with pytest.raises(ValueError, match="Invalid transport scheme"):
        kombu_like.Connection("amqp://h").switch(f"{name}://x")


def test_transport_keyword_import_path_refused_before_import() -> None:
    # deliberate departure: Kombu still imports a dotted transport= name from sys.path
    import sys

    before = set(sys.modules)
    for name in ("os.path:join", "t.unit.never_imported", "json:loads"):
        with pytest.raises(ValueError, match="Invalid transport scheme"):
            kombu_like.Connection("amqp://h", transport=name).transport  # noqa: B018
    assert set(sys.modules) == before


@given(st.sampled_from(list(kombu_like.connection.failover_strategies)))
def test_failover_strategy_names_as_in_kombu(name: str) -> None:
    assert_same("amqp://a;amqp://b;amqp://c", failover_strategy=name)
    ours = kombu_like.Connection("amqp://a;amqp://b", failover_strategy=name)
    theirs = kombu.Connection("amqp://a;amqp://b", failover_strategy=name)
    ours.maybe_switch_next()
    theirs.maybe_switch_next()
    assert {ours.hostname, theirs.hostname} <= {"a", "b"}
