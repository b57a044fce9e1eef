"""What a Connection's URLs and options mean: failover strategies, the URL (or URLs) it is
given, a URL's query string split into Connection arguments and transport options, and the
numbers its options must be (seconds, retry settings)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

from .transport import TRANSPORT_ALIASES, check_transport_name
from .utils.url import as_url, maybe_sanitize_url, parse_url, url_to_parts

__all__ = ["FailoverStrategy", "HostnameParts", "failover_strategies", "read_hostname", "resolve_aliases"]


#: Strategy = a function taking the list of URLs and yielding the URL to try next, forever.
FailoverStrategy = Callable[[Sequence[str]], Iterator[str]]


def _shuffle(items: Sequence[str]) -> Iterator[str]:
    """Random URLs, never the same one twice in a row (when there is a choice)."""
    last = None
    while True:
        choice = random.choice(items)
        if len(items) > 1 and choice == last:
            continue
        last = choice
        yield choice


#: failover strategies by name, as in Kombu (``failover_strategy="shuffle"``)
failover_strategies: dict[str, FailoverStrategy] = {
    "round-robin": itertools.cycle,
    "shuffle": _shuffle,
}

#: transport names printed as the protocol they speak (Kombu's table)
resolve_aliases = {"pyamqp": "amqp", "librabbitmq": "amqp"}

#: keyword arguments of Connection that a URL's query string may set (as in Kombu);
#: other query keys become transport options
_URL_PARAMS = frozenset({"ssl", "heartbeat", "connect_timeout", "login_method", "insist"})


class HostnameParts(NamedTuple):
    """What a Connection's ``hostname`` and ``alternates`` arguments say."""

    #: Connection parameters they set (hostname, transport, port, userid, ...)
    params: dict[str, Any]
    #: the failover URLs; the first is the one in use
    alternates: list[str]
    #: transport options from the URL's query string
    url_options: dict[str, Any]
    #: the prefix of a ``redis+socket://`` style scheme, None without one
    uri_prefix: str | None
    #: the URL (or host name) in use, as given
    first_url: Any


def read_hostname(
    hostname: str | Sequence[str] | None, transport: Any, alternates: Sequence[str] | None
) -> HostnameParts:
    """Read a Connection's ``hostname``: a URL, ``;``-separated URLs, a list of them, or a
    host name, with the ``alternates`` it is given beside it."""
    # unlike Kombu, the caller's list is copied, never extended in place
    alt: list[str] = list(alternates or [])
    params: dict[str, Any] = {}
    url_options: dict[str, Any] = {}
    prefix: str | None = None
    if hostname and not isinstance(hostname, str):
        alt.extend(hostname)
        hostname = params["hostname"] = alt[0]
    if isinstance(hostname, str) and hostname:
        if ";" in hostname:
            alt = hostname.split(";") + alt
            hostname = params["hostname"] = alt[0]
        scheme, sep, _ = hostname.partition("://")
        scheme = scheme.lower()  # as urllib (and so Kombu) reads a scheme
        # a registered compound scheme (redis+streams) names a transport of its own;
        # any other X+Y is read Kombu's way
        if sep and "+" in scheme and scheme not in TRANSPORT_ALIASES:
            # e.g. redis+socket:///tmp/redis.sock: the transport reads the rest itself
            prefix, params["hostname"] = hostname.split("+", 1)
            params["transport"] = check_transport_name(prefix)
        elif sep:
            if not transport:
                transport = check_transport_name(scheme)
            if not getattr(transport, "can_parse_url", False):
                url_params = parse_url(hostname)
                url_options = _split_url_options(url_params)
                params.update({k: v for k, v in url_params.items() if v is not None})
                params["hostname"] = url_params["hostname"]
            params["transport"] = transport
    return HostnameParts(params, alt, url_options, prefix, hostname)


def _split_url_options(url_params: dict[str, Any]) -> dict[str, Any]:
    """Take the query-string keys that are not Connection arguments out of ``url_params``.

    Kombu refuses them (TypeError); they become transport options here.  The keys that
    are Connection arguments stay, converted as Connection converts them.
    """
    known = {"transport", "hostname", "port", "userid", "password", "virtual_host"} | _URL_PARAMS
    options = {key: _coerce_option(url_params.pop(key)) for key in list(url_params) if key not in known}
    return options


def _sanitized(uri: str, mask: str) -> str:
    """``uri`` rebuilt from its parts with the password masked, as Kombu prints it."""
    try:
        scheme, host, port, user, password, path, _ = url_to_parts(uri)
        return as_url(scheme, host, port, user, password, path, sanitize=True, mask=mask)
    except ValueError:  # unparsable: mask textually rather than fail to print
        return str(maybe_sanitize_url(uri, mask))


def _seconds(name: str, value: Any) -> float:
    """``heartbeat`` or ``connect_timeout`` as a number, or a ValueError naming it (a URL's
    ``?heartbeat=abc`` used to fail as "could not convert string to float")."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, not {value!r}") from None


def _retry_number(key: str, value: Any) -> Any:
    """A retry setting from ``transport_options``: a number not below zero (a string from a
    configuration file is read as one), or None where Kombu reads None as "no limit"."""
    if type(value) in (int, float) and value >= 0:
        return value
    if value is None and key in ("max_retries", "connect_retries_timeout"):
        return None
    number: Any = None
    if isinstance(value, str):
        try:
            number = int(value) if key == "max_retries" else float(value)
        except ValueError:
            number = None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = value
    if number is None or number != number or number < 0:
        unit = "retries" if key == "max_retries" else "seconds"
        raise ValueError(f"transport option {key!r} must be a number of {unit} (not negative), not {value!r}")
    return number


def _coerce_option(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value
