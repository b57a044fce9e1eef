"""URL parsing and masking.

Broker URLs have the shape ``scheme://user:password@host:port/virtual_host?options``.
Passwords never leave this module unmasked unless a caller asks for them explicitly.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Mapping
from functools import partial
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, unquote, urlparse, urlsplit

__all__ = [
    "as_url",
    "maybe_sanitize_url",
    "parse_ssl_cert_reqs",
    "parse_url",
    "safequote",
    "sanitize_url",
    "ssl_available",
    "url_to_parts",
    "urlparse",
    "urlparts",
]

_CERT_REQS = {
    "CERT_REQUIRED": ssl.CERT_REQUIRED,
    "required": ssl.CERT_REQUIRED,
    "CERT_OPTIONAL": ssl.CERT_OPTIONAL,
    "optional": ssl.CERT_OPTIONAL,
    "CERT_NONE": ssl.CERT_NONE,
    "none": ssl.CERT_NONE,
}


class urlparts(NamedTuple):  # noqa: N801 - Kombu's public name
    """The components of a broker URL."""

    scheme: str
    hostname: str | None
    port: int | None
    username: str | None
    password: str | None
    path: str | None
    query: Mapping[str, str]


def url_to_parts(url: str) -> urlparts:
    """Split ``url`` into its parts, percent-decoding each one.

    Raises :class:`ValueError` naming the problem (never echoing a password) when the URL
    cannot be parsed.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise ValueError(f"invalid broker URL {sanitize_url(url)!r}: expected scheme://...")
    scheme = scheme.lower()  # as urllib (and so Kombu) reads a scheme
    userinfo, hostpart = _split_userinfo(rest)
    if userinfo is not None:
        # secrets pasted unencoded (AWS keys often contain '/') still parse
        rest = quote(userinfo, safe=":%") + "@" + hostpart
    try:
        parts = urlsplit("http://" + rest)
        port = parts.port
    except ValueError as exc:
        # urllib's message quotes the offending text, which may be part of a password:
        # only its kind is told
        if "IPv6" in str(exc):
            problem = "an IPv6 address in brackets is not closed with ']'"
        elif "out of range" in str(exc):
            problem = "the port must be from 0 to 65535"
        else:
            problem = "the port is not a number (a password containing '/', '@' or ':' must be percent-encoded)"
        raise ValueError(f"invalid broker URL {sanitize_url(url)!r}: {problem}") from None
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    return urlparts(
        scheme,
        unquote(parts.hostname or "") or None,
        port,
        unquote(parts.username or "") or None,
        unquote(parts.password or "") or None,
        unquote(path) or None,
        dict(parse_qsl(parts.query)),
    )


def parse_url(url: str) -> dict[str, Any]:
    """Parse ``url`` into Connection keyword arguments (Kombu's ``parse_url``)."""
    scheme, host, port, user, password, path, query = url_to_parts(url)
    options: dict[str, Any] = dict(query)
    ssl_opts = {key: options.pop(key) for key in [k for k in options if k.startswith("ssl_")]}
    if ssl_opts:
        if "ssl_check_hostname" in ssl_opts:
            ssl_opts["ssl_check_hostname"] = ssl_opts["ssl_check_hostname"].lower() != "false"
        if "ssl_cert_reqs" in ssl_opts:
            value = ssl_opts["ssl_cert_reqs"]
            if value not in _CERT_REQS:
                # Kombu fails with a bare KeyError; quietly verifying instead would hide the typo
                raise ValueError(
                    f"invalid broker URL {sanitize_url(url)!r}: ssl_cert_reqs must be one of "
                    f"{', '.join(_CERT_REQS)}, not {value!r}"
                )
            ssl_opts["ssl_cert_reqs"] = _CERT_REQS[value]
        options["ssl"] = ssl_opts
    return dict(
        transport=scheme,
        hostname=host,
        port=port,
        userid=user,
        password=password,
        virtual_host=path,
        **options,
    )


def as_url(
    scheme: str,
    host: str | None = None,
    port: int | None = None,
    user: str | None = None,
    password: str | None = None,
    path: str | None = None,
    query: Mapping[str, Any] | None = None,
    sanitize: bool = False,
    mask: str = "**",
) -> str:
    """Build a URL from parts as Kombu does; with ``sanitize`` the password is ``mask``.

    User, password and host are percent-encoded; ``path`` is used as given (callers
    quote it), after a ``/`` that is always there: ``as_url("amqp", "h")`` is
    ``"amqp://h/"``.  ``query`` (which Kombu ignores) is appended when given.
    """
    out = [f"{scheme}://"]
    if user or password:
        if user:
            out.append(quote(user, safe=""))
        if password:
            if sanitize:
                out.append(f":{mask}" if mask else ":")
            else:
                out.append(":" + quote(password, safe=""))
        out.append("@")
    if host:
        # an IPv6 address goes in brackets (Kombu percent-encodes its colons instead,
        # which no URL parser reads back)
        out.append(f"[{host}]" if ":" in host else quote(host, safe=""))
    if port:
        out.append(f":{port}")
    out.append("/")
    if path:
        out.append(str(path))
    if query:
        out.append("?" + "&".join(f"{quote(str(k), safe='')}={quote(str(v), safe='')}" for k, v in query.items()))
    return "".join(out)


def sanitize_url(url: str, mask: str = "**") -> str:
    """Return ``url`` with its password replaced by ``mask``.

    Works on malformed URLs too: anything between ``://user:`` and ``@`` is masked.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, hostpart = _split_userinfo(rest)
    if userinfo is not None and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        # Kombu rebuilds the URL, so one without a path comes back with "/" after the host;
        # Celery's backends print (and its tests compare) that form
        cut = min((i for i in (hostpart.find("?"), hostpart.find("#")) if i != -1), default=len(hostpart))
        if hostpart[:cut] and "/" not in hostpart[:cut]:
            hostpart = f"{hostpart[:cut]}/{hostpart[cut:]}"
        return f"{scheme}://{user}:{mask}@{hostpart}"
    return url


def _split_userinfo(rest: str) -> tuple[str | None, str]:
    """Split ``user:password@host...`` at the last ``@`` before any query or fragment.

    Looking for the last ``@`` (not the part before the first ``/``) keeps unencoded
    ``/`` and ``@`` characters of a password inside the userinfo.
    """
    end = len(rest)
    for stop in ("?", "#"):
        index = rest.find(stop)
        if index != -1:
            end = min(end, index)
    at = rest.rfind("@", 0, end)
    if at == -1:
        return None, rest
    return rest[:at], rest[at + 1 :]


#: ``scheme://user:password@`` inside free text (to the last "@" of the word: a password
#: may hold "@" itself)
_URL_CREDENTIALS = re.compile(r"(\w[\w+.-]*://[^\s/@:]*:)(\S+)(@)")


def scrub_credentials(text: str, mask: str = "**") -> str:
    """``text`` (an error message, a log line) with the password of every URL in it masked;
    unlike :func:`sanitize_url` it leaves the rest of the text as it is."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{mask}{m.group(3)}", text)


def maybe_sanitize_url(url: Any, mask: str = "**") -> Any:
    """Sanitize ``url`` if it is a URL string, else return it unchanged."""
    if isinstance(url, str) and "://" in url:
        return sanitize_url(url, mask)
    return url


#: Kombu's private name for :func:`url_to_parts`, imported by Celery.
_parse_url = url_to_parts


# -- Kombu's remaining names in this module ------------------------------------------
#: whether the ``ssl`` module is available (it always is where kombu_like runs)
ssl_available = True

#: ``quote`` with no safe characters: ``/`` becomes ``%2F`` (one URL component)
safequote = partial(quote, safe="")

logger = logging.getLogger(__name__)

# the package logger's NullHandler comes with the exception tree
from .. import exceptions as _exceptions  # noqa: E402,F401


def parse_ssl_cert_reqs(query_value: str) -> Any:
    """The :mod:`ssl` constant an ``ssl_cert_reqs`` URL value names.

    ``required``/``optional``/``none`` and their ``CERT_*`` spellings; any other value
    raises :class:`KeyError`, as in Kombu.
    """
    return _CERT_REQS[query_value]
