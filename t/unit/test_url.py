"""URL parsing and password masking (kombu_like.utils.url), checked against Kombu's."""

from __future__ import annotations

import ssl

import pytest

import kombu_like
from kombu_like.utils.url import as_url, maybe_sanitize_url, parse_url, sanitize_url, url_to_parts

URLS = [
    "amqp://user:pass@localhost:5672/my/vhost",
    "amqp://user:pass@localhost:5672/%2F",
    "amqp://user:pass@localhost:5672//",
    "amqp://h",
    "amqp://u:p%40ss@h:5672/v%20h",
    "pyamqp://guest:guest@localhost:5672//",
    "amqps://u:p@h:5671/vh",
    "redis://:pw@h:6379/0",
    "redis://:pw@h:6379/0?x=1",
    "rediss://user:pw@h:6380/1",
    "sqs://AKIA:se%2Fcret@",
    "sqs://",
    "memory://",
    "memory://vhost",
]


@pytest.mark.parametrize("url", URLS)
def test_parse_url_matches_kombu(url: str) -> None:
    from kombu.utils.url import parse_url as kombu_parse_url

    assert parse_url(url) == kombu_parse_url(url)


@pytest.mark.parametrize("url", URLS)
def test_url_to_parts_matches_kombu(url: str) -> None:
    from kombu.utils.url import url_to_parts as kombu_url_to_parts

    assert tuple(url_to_parts(url)) == tuple(kombu_url_to_parts(url))


def test_parse_url_is_public() -> None:
    assert kombu_like.parse_url is parse_url


def test_parse_url_fields() -> None:
    assert parse_url("amqp://user:pass@localhost:5672/%2F") == {
        "transport": "amqp",
        "hostname": "localhost",
        "port": 5672,
        "userid": "user",
        "password": "pass",
        "virtual_host": "/",
    }


def test_parse_url_ssl_options() -> None:
    parsed = parse_url("rediss://:pw@h:6380/0?ssl_cert_reqs=none&ssl_check_hostname=false&ssl_ca_certs=/ca.pem")
    assert parsed["ssl"] == {
        "ssl_cert_reqs": ssl.CERT_NONE,
        "ssl_check_hostname": False,
        "ssl_ca_certs": "/ca.pem",
    }


def test_parse_url_query_options() -> None:
    assert parse_url("redis://h:6379/0?visibility_timeout=30")["visibility_timeout"] == "30"


def test_url_to_parts_names() -> None:
    parts = url_to_parts("amqp://u:p@h:1/v?a=b")
    assert (parts.scheme, parts.hostname, parts.port) == ("amqp", "h", 1)
    assert (parts.username, parts.password, parts.path) == ("u", "p", "v")
    assert parts.query == {"a": "b"}


def test_invalid_url_error_masks_password() -> None:
    with pytest.raises(ValueError) as excinfo:
        url_to_parts("amqp://u:topsecret@h:notaport/")
    assert "topsecret" not in str(excinfo.value)
    assert "notaport" in str(excinfo.value)


def test_url_without_scheme_is_rejected() -> None:
    with pytest.raises(ValueError, match="scheme"):
        url_to_parts("localhost:5672")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://u:p@h//", "amqp://u:**@h//"),
        ("redis://:p@h/0", "redis://:**@h/0"),
        ("amqp://u@h//", "amqp://u@h//"),
        ("amqp://h//", "amqp://h//"),
        ("amqp://u:p:with:colons@h//", "amqp://u:**@h//"),
        ("sqs://AKIA:abc/def@", "sqs://AKIA:**@"),
    ],
)
def test_sanitize_url(url: str, expected: str) -> None:
    assert sanitize_url(url) == expected


def test_sanitize_url_custom_mask() -> None:
    assert sanitize_url("amqp://u:p@h//", mask="XXX") == "amqp://u:XXX@h//"


def test_maybe_sanitize_url_leaves_non_urls() -> None:
    assert maybe_sanitize_url(1) == 1
    assert maybe_sanitize_url("not a url") == "not a url"
    assert maybe_sanitize_url("amqp://u:p@h//") == "amqp://u:**@h//"


def test_as_url() -> None:
    assert as_url("amqp", "h", 5672, "u", "p", "vh") == "amqp://u:p@h:5672/vh"
    assert as_url("amqp", "h", 5672, "u", "p", "vh", sanitize=True) == "amqp://u:**@h:5672/vh"
    assert as_url("redis", "h", 6379, None, "pw", "0", sanitize=True) == "redis://:**@h:6379/0"
    assert as_url("memory") == "memory:///"
    assert as_url("amqp", "::1", 5672) == "amqp://[::1]:5672/"
    assert as_url("amqp", "h", query={"a": "b c"}) == "amqp://h/?a=b%20c"


def test_as_url_quotes_credentials() -> None:
    url = as_url("amqp", "h", 5672, "u@x", "p/w:d", "v")
    assert url == "amqp://u%40x:p%2Fw%3Ad@h:5672/v"
    assert parse_url(url)["password"] == "p/w:d"
    assert parse_url(url)["userid"] == "u@x"


@pytest.mark.parametrize("url", ["sqs://AKIA:a8f3/de+f9@", "amqp://user:pa/ss@host//"])
def test_unencoded_slash_in_password_never_leaks(url: str) -> None:
    # AWS secret keys often contain '/', and users paste them unencoded
    secret_parts = url.split("://", 1)[1].split("@")[0].split(":", 1)[1].split("/")
    assert all(part not in sanitize_url(url) for part in secret_parts)
    try:
        conn = kombu_like.Connection(url)
    except ValueError as exc:
        assert all(part not in str(exc) for part in secret_parts)
    else:
        assert all(part not in repr(conn) for part in secret_parts)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("amqp://[::1", "IPv6 address in brackets is not closed"),
        ("redis://localhost:99999/0", "port must be from 0 to 65535"),
        ("amqp://host:notaport//", "port is not a number"),
        ("rediss://localhost:6380/0?ssl_cert_reqs=requierd", "ssl_cert_reqs must be one of"),
    ],
)
def test_a_malformed_url_is_refused_saying_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        kombu_like.Connection(url)


@pytest.mark.parametrize("name", ["heartbeat", "connect_timeout"])
def test_a_duration_that_is_not_a_number_is_refused_naming_it(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be a number of seconds, not 'abc'"):
        kombu_like.Connection(f"amqp://guest:guest@localhost//?{name}=abc")


def test_scrub_credentials_masks_passwords_in_free_text_and_keeps_the_rest() -> None:
    from kombu_like.utils.url import scrub_credentials

    text = "Error -2 connecting to sentinel://:s3cr@t@host:6379. Name or service not known."
    assert scrub_credentials(text) == "Error -2 connecting to sentinel://:**@host:6379. Name or service not known."
    assert scrub_credentials("no url here: a:b@c") == "no url here: a:b@c"
    assert scrub_credentials("amqp://u:p@h/ and redis://:q@r/0") == "amqp://u:**@h/ and redis://:**@r/0"


def test_a_failed_connect_names_the_driver_error_without_garbling_it() -> None:
    from kombu_like import Connection
    from kombu_like.exceptions import OperationalError

    # a mis-written URL: redis-py echoes the host, password and all, into its message
    conn = Connection("redis+sentinel://:pw@x@no-such-host.invalid:26379/0", connect_timeout=1)
    with pytest.raises(OperationalError) as info:
        conn.ensure_connection(max_retries=0)
    message = str(info.value)
    assert "pw@x" not in message
    # the driver's sentence is kept as it was written, not parsed as if it were a URL
    assert message.endswith("Name or service not known."), message
