"""Run one scenario on Kombu 5.7 and on kombu_like, against the same broker, and compare.

A :class:`Side` wraps one library (the ``kombu`` or the ``kombu_like`` module) and one
connection.  Every operation goes through the library's public API and returns an
:class:`Outcome`: the value a user would observe, reduced to plain data (messages become
their body, headers, properties and delivery_info keys), or the name of the exception
raised.  Both sides use their own queue and exchange names on the shared broker (a prefix
per side and per run); the prefix is replaced by ``<p>`` in everything observed, so the two
sides' outcomes compare equal when the libraries behave the same.
"""

from __future__ import annotations

import signal
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kombu

import kombu_like

from .departures import exception_name

LIBRARIES = {"kombu": kombu, "kombu_like": kombu_like}

#: properties a user reads; per-delivery bookkeeping (tags, envelope encoding) is left out
COMPARED_PROPERTIES = (
    "content_type",
    "content_encoding",
    "correlation_id",
    "reply_to",
    "priority",
    "expiration",
    "message_id",
    "type",
    "app_id",
    "user_id",
    "delivery_mode",
    "timestamp",
)
#: delivery_info values a user reads (all keys are compared as a set)
COMPARED_DELIVERY_INFO = ("exchange", "routing_key")


#: seconds after which an operation counts as hung
OPERATION_LIMIT = 15.0


class Hung(BaseException):
    """Raised into an operation that ran past its limit (a BaseException: not swallowed)."""


class deadline:
    """Interrupt the block with :class:`Hung` after ``seconds`` (main thread; else no limit)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.armed = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")

    def __enter__(self) -> None:
        if self.armed:
            self.previous = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: object) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)

    @staticmethod
    def _fire(signum: int, frame: Any) -> None:
        raise Hung()


@dataclass(frozen=True)
class Outcome:
    """What one library returned (``kind == "ok"``) or raised (``kind == "raised"``)."""

    kind: str
    value: Any

    def __repr__(self) -> str:
        return f"{self.kind}:{self.value!r}"


def unique_prefix() -> str:
    """A run prefix no other run uses (queue and exchange names start with it)."""
    return f"dx{uuid.uuid4().hex[:10]}"


def scrub(value: Any, prefix: str) -> Any:
    """``value`` with this side's name prefix replaced by ``<p>``, recursively."""
    if isinstance(value, str):
        return value.replace(prefix, "<p>")
    if isinstance(value, bytes):
        return value.replace(prefix.encode(), b"<p>")
    if isinstance(value, Mapping):
        return {scrub(k, prefix): scrub(v, prefix) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v, prefix) for v in value)
    return value


def message_view(message: Any, prefix: str) -> dict[str, Any]:
    """What a consumer observes of ``message``, as plain data."""
    try:
        payload: Any = ("ok", message.decode())
    except Exception as exc:
        payload = ("raised", exception_name(exc))
    properties = message.properties or {}
    delivery_info = message.delivery_info or {}
    view = {
        "payload": payload,
        "content_type": message.content_type,
        "content_encoding": message.content_encoding,
        "headers": dict(message.headers or {}),
        "properties": {k: properties[k] for k in COMPARED_PROPERTIES if k in properties},
        "delivery_info_keys": sorted(delivery_info),
        "delivery_info": {k: delivery_info.get(k) for k in COMPARED_DELIVERY_INFO},
        "redelivered": bool(delivery_info.get("redelivered", getattr(message, "redelivered", False))),
    }
    return scrub(view, prefix)


@dataclass
class Side:
    """One library's connection to the broker under test, with the names it uses."""

    library: str
    url: str
    prefix: str
    transport_options: dict[str, Any] = field(default_factory=dict)
    conn: Any = None
    channel: Any = None

    @property
    def lib(self) -> Any:
        return LIBRARIES[self.library]

    def name(self, short: str) -> str:
        return f"{self.prefix}{short}"

    def connect(self) -> None:
        self.conn = self.lib.Connection(self.url, transport_options=dict(self.transport_options))
        self.conn.connect()
        self.channel = self.conn.channel()

    def close(self) -> None:
        conn, self.conn, self.channel = self.conn, None, None
        if conn is not None:
            conn.release()

    def run(self, fn: Callable[[Side], Any], limit: float = OPERATION_LIMIT) -> Outcome:
        """Call ``fn(self)``; its value (or exception name) with the prefix scrubbed.

        An operation still running after ``limit`` seconds is interrupted and observed as
        ``hung`` (every operation the harness runs has a timeout far below the limit).
        """
        try:
            with deadline(limit):
                value = fn(self)
        except Hung:
            return Outcome("raised", "hung")
        except socket.timeout:
            return Outcome("raised", "timeout")
        except Exception as exc:
            return Outcome("raised", exception_name(exc))
        return Outcome("ok", scrub(value, self.prefix))


def run_both(sides: Mapping[str, Side], fn: Callable[[Side], Any]) -> dict[str, Outcome]:
    """``fn`` on each side, in order (Kombu first)."""
    return {lib: side.run(fn) for lib, side in sides.items()}
