"""AMQP exchange routing as plain functions.

Given an exchange type, its bindings and a message's routing key (and headers), return the
names of the queues the message goes to.  Nothing here does I/O, so every front end and
every queue store shares it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

__all__ = ["Binding", "ExchangeInfo", "route", "topic_matches"]


class Binding(NamedTuple):
    """One queue bound to one exchange."""

    queue: str
    routing_key: str
    arguments: Mapping[str, Any] | None = None


class ExchangeInfo(NamedTuple):
    """A declared exchange."""

    name: str
    type: str = "direct"
    durable: bool = False
    auto_delete: bool = False
    arguments: Mapping[str, Any] | None = None


@lru_cache(maxsize=4096)
def _topic_words(pattern: str) -> tuple[str, ...]:
    # consecutive '#' words match the same as one
    words: list[str] = []
    for word in pattern.split("."):
        if word == "#" and words and words[-1] == "#":
            continue
        words.append(word)
    return tuple(words)


def topic_matches(pattern: str, routing_key: str) -> bool:
    """True when ``routing_key`` matches the topic binding ``pattern``.

    ``*`` matches exactly one word and ``#`` zero or more words (words are separated by
    dots), as RabbitMQ defines it.
    """
    pat = _topic_words(pattern) if pattern else ()
    # the empty key has no words (RabbitMQ's rule): only '#' patterns match it
    key = routing_key.split(".") if routing_key else []
    # positions in the key reachable after matching a prefix of the pattern
    reachable = {0}
    for word in pat:
        if not reachable:
            return False
        if word == "#":
            reachable = set(range(min(reachable), len(key) + 1))
        elif word == "*":
            reachable = {i + 1 for i in reachable if i < len(key)}
        else:
            reachable = {i + 1 for i in reachable if i < len(key) and key[i] == word}
    return len(key) in reachable


def _headers_match(arguments: Mapping[str, Any] | None, headers: Mapping[str, Any] | None) -> bool:
    arguments = arguments or {}
    headers = headers or {}
    mode = str(arguments.get("x-match", "all")).lower()
    wanted = {k: v for k, v in arguments.items() if not k.startswith("x-")}
    if mode.startswith("any"):
        return any(k in headers and (v is None or headers[k] == v) for k, v in wanted.items())
    return all(k in headers and (v is None or headers[k] == v) for k, v in wanted.items())


def route(
    exchange_type: str,
    bindings: Iterable[Binding],
    routing_key: str,
    headers: Mapping[str, Any] | None = None,
) -> list[str]:
    """Return the queues (each once, in binding order) a message is routed to."""
    if exchange_type == "direct":
        found = [b.queue for b in bindings if b.routing_key == routing_key]
    elif exchange_type == "fanout":
        found = [b.queue for b in bindings]
    elif exchange_type == "topic":
        found = [b.queue for b in bindings if topic_matches(b.routing_key, routing_key)]
    elif exchange_type == "headers":
        found = [b.queue for b in bindings if _headers_match(b.arguments, headers)]
    else:
        raise ValueError(f"unknown exchange type {exchange_type!r}")
    return list(dict.fromkeys(found))
